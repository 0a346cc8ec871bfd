//! The OPC UA sessions the status page, `/api/status` and the metrics list (docs/opcua.md
//! "Seen"): the stack keeps its sessions to itself, so the node manager notes each session
//! it serves a request for (a weak reference: a closed session disappears with the
//! stack's last reference), and the subscriptions and monitored items are counted from
//! the stack's subscription cache when asked.

use super::auth::Access;
use crate::api::{OpcUaDoc, OpcUaSessionDoc};
use opcua::server::SubscriptionCache;
use opcua::server::authenticator::UserToken;
use opcua::server::node_manager::RequestContext;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a session says of itself while it is open.
struct Seen {
    application: String,
    application_uri: String,
    security_mode: String,
    security_policy: String,
    user: Option<UserToken>,
}

/// Reads a session through a weak reference (the stack does not export its session type,
/// so the reference lives inside the closure); `None` once it is closed.
type Probe = Arc<dyn Fn() -> Option<Seen> + Send + Sync>;

pub struct SessionRegistry {
    seen: Mutex<HashMap<u32, Probe>>,
    access: Arc<Access>,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry").finish_non_exhaustive()
    }
}

impl SessionRegistry {
    pub fn new(access: Arc<Access>) -> SessionRegistry {
        SessionRegistry {
            seen: Mutex::new(HashMap::new()),
            access,
        }
    }

    /// Notes the session of a request.
    pub fn handle_request(&self, context: &RequestContext) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.entry(context.session_id).or_insert_with(|| {
            let weak = Arc::downgrade(&context.session);
            Arc::new(move || {
                let session = weak.upgrade()?;
                let s = session.read();
                s.is_activated().then(|| Seen {
                    application: s
                        .application_description()
                        .application_name
                        .text
                        .to_string(),
                    application_uri: s.application_description().application_uri.to_string(),
                    security_mode: format!("{:?}", s.message_security_mode()),
                    security_policy: s
                        .security_policy_uri()
                        .rsplit('#')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    user: s.user_token().cloned(),
                })
            })
        });
    }

    /// The sessions open now with their subscriptions and monitored items.
    pub fn sessions(&self, subscriptions: &SubscriptionCache) -> Vec<OpcUaSessionDoc> {
        // The probes run without our lock held: the stack may hold a session's lock while
        // it calls the node manager, which takes ours (`handle_request`).
        let probes: Vec<(u32, Probe)> = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.iter().map(|(id, p)| (*id, p.clone())).collect()
        };
        let mut out = Vec::new();
        let mut closed = Vec::new();
        for (id, probe) in probes {
            let Some(s) = probe() else {
                closed.push(id);
                continue;
            };
            let (subs, items) = match subscriptions.get_session_subscriptions(id) {
                Some(ss) => {
                    let ss = ss.lock();
                    let ids = ss.subscription_ids();
                    let items = ids
                        .iter()
                        .filter_map(|i| ss.get(*i).map(|sub| sub.len()))
                        .sum::<usize>();
                    (ids.len(), items)
                }
                None => (0, 0),
            };
            let (user, role) = match &s.user {
                Some(t) => (
                    if t.is_anonymous() {
                        "(anonymous)".to_string()
                    } else {
                        t.0.clone()
                    },
                    self.access.rights(t).role.clone(),
                ),
                None => (String::new(), String::new()),
            };
            out.push(OpcUaSessionDoc {
                id,
                application: s.application,
                application_uri: s.application_uri,
                security_mode: s.security_mode,
                security_policy: s.security_policy,
                user,
                role,
                subscriptions: subs,
                monitored_items: items,
            });
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for id in closed {
            seen.remove(&id);
        }
        out.sort_by_key(|s| s.id);
        out
    }
}

/// The `/api/status` document of the face.
pub fn doc(
    listen: String,
    application_uri: String,
    service_level: u8,
    sessions: Vec<OpcUaSessionDoc>,
    notifications_total: u64,
) -> OpcUaDoc {
    OpcUaDoc {
        listen,
        application_uri,
        service_level,
        subscriptions: sessions.iter().map(|s| s.subscriptions).sum(),
        monitored_items: sessions.iter().map(|s| s.monitored_items).sum(),
        sessions,
        notifications_total,
    }
}
