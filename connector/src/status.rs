//! `StatusBoard`: what the status page and `/api/status` show, written by the engine
//! (sources, switches) and the Modbus listener (connected masters), read by the HTTP
//! listener.
//!
//! The data path never waits for a reader: a source's "last heard" is an atomic store per
//! message, and the locks are taken only on rare events (a connect, a loss, a role
//! change, a switch, a master arriving or leaving) and by a page request for as long as
//! it takes to copy a few dozen fields.

use crate::api::{ActiveDoc, ClientDoc, SourceDoc, SwitchDoc};
use po_protocol::Role;
use po_runtime::Clock;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How many switches the page keeps (the counter counts them all).
const SWITCH_HISTORY: usize = 20;

/// What the connector knows of one configured server.
#[derive(Debug, Clone)]
struct SourceState {
    name: String,
    address: SocketAddr,
    /// The Client Access licence presented (a licence name, not a secret), or `None` for
    /// `Local` access.
    licence: Option<String>,
    connected: bool,
    /// Connected, but its catalogue differs from the one the map was built from.
    catalog_mismatch: bool,
    role: Option<Role>,
    epoch: u64,
    /// Why the last session ended (shown until the next one starts).
    last_error: Option<String>,
    connects: u64,
    losses: u64,
}

/// One switch of the active source, as the page lists it.
#[derive(Debug, Clone)]
struct SwitchRecord {
    /// Wall time in ms since the Unix epoch (for people) and time since start (for
    /// ordering against the uptime).
    at_unix_ms: u64,
    since_start: Duration,
    from: Option<(usize, Role, u64)>,
    to: Option<(usize, Role, u64)>,
    reason: String,
    /// "none → some" after an earlier activation: data resumed, not the first choice.
    resumed: bool,
}

/// The kind of a change of the active source, by the rule the selector counts switches
/// with (only from one server to another).
fn change_kind(
    from: Option<(usize, Role, u64)>,
    to: Option<(usize, Role, u64)>,
    resumed: bool,
) -> &'static str {
    match (from, to) {
        (Some(a), Some(b)) if a.0 != b.0 => "switch",
        (Some(_), Some(_)) => "role change",
        (Some(_), None) => "no source",
        (None, Some(_)) if resumed => "resumed",
        (None, Some(_)) => "initial selection",
        (None, None) => "no source",
    }
}

/// A connected Modbus master; the listener counts its requests.
#[derive(Debug)]
pub struct ClientEntry {
    address: SocketAddr,
    connected_at: Instant,
    /// Requests answered on this connection.
    pub requests: AtomicU64,
}

/// Removes its master from the board when the connection ends.
#[derive(Debug)]
pub struct ClientGuard {
    board: Arc<StatusBoard>,
    id: u64,
    pub entry: Arc<ClientEntry>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        lock(&self.board.clients).remove(&self.id);
    }
}

/// Shared status of a running connector.
#[derive(Debug)]
pub struct StatusBoard {
    clock: Arc<dyn Clock>,
    started: Instant,
    /// A server not heard from for this long is shown as silent (the selector's rule).
    source_timeout: Duration,
    sources: Mutex<Vec<SourceState>>,
    /// Per source: microseconds since `started` when it was last heard from, plus one
    /// (0: never). Stored on every message, so it is an atomic, not under the lock.
    heard_us: Vec<AtomicU64>,
    switches: Mutex<VecDeque<SwitchRecord>>,
    clients: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    next_client: AtomicU64,
    /// Whether any source was ever active (the switch history is bounded).
    ever_active: std::sync::atomic::AtomicBool,
}

/// A configured server, as the board first shows it.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    pub address: SocketAddr,
    pub licence: Option<String>,
}

impl StatusBoard {
    pub fn new(
        clock: Arc<dyn Clock>,
        source_timeout: Duration,
        sources: Vec<SourceInfo>,
    ) -> StatusBoard {
        let started = clock.now();
        StatusBoard {
            clock,
            started,
            source_timeout,
            heard_us: sources.iter().map(|_| AtomicU64::new(0)).collect(),
            sources: Mutex::new(
                sources
                    .into_iter()
                    .map(|s| SourceState {
                        name: s.name,
                        address: s.address,
                        licence: s.licence,
                        connected: false,
                        catalog_mismatch: false,
                        role: None,
                        epoch: 0,
                        last_error: None,
                        connects: 0,
                        losses: 0,
                    })
                    .collect(),
            ),
            switches: Mutex::new(VecDeque::new()),
            clients: Mutex::new(BTreeMap::new()),
            next_client: AtomicU64::new(0),
            ever_active: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Time since the connector started.
    pub fn uptime(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.started)
    }

    /// Any message from source `i` (cheap: one atomic store).
    pub fn handle_heard(&self, i: usize) {
        let us = self.uptime().as_micros().min(u128::from(u64::MAX - 1)) as u64;
        self.heard_us[i].store(us + 1, Relaxed);
    }

    pub fn handle_connected(&self, i: usize, role: Role, epoch: u64, catalog_ok: bool) {
        self.handle_heard(i);
        let mut sources = lock(&self.sources);
        let s = &mut sources[i];
        s.connected = true;
        s.catalog_mismatch = !catalog_ok;
        s.role = Some(role);
        s.epoch = epoch;
        s.last_error = None;
        s.connects += 1;
    }

    pub fn handle_lost(&self, i: usize, reason: &str) {
        let mut sources = lock(&self.sources);
        let s = &mut sources[i];
        s.connected = false;
        s.last_error = Some(reason.to_string());
        s.losses += 1;
    }

    /// A heartbeat: records when it was heard, and the role and epoch it announced.
    pub fn handle_heartbeat(&self, i: usize, role: Role, epoch: u64) {
        self.handle_heard(i);
        let mut sources = lock(&self.sources);
        let s = &mut sources[i];
        if s.role != Some(role) || s.epoch != epoch {
            s.role = Some(role);
            s.epoch = epoch;
        }
    }

    /// A switch of the active source, with the reason the engine gives.
    pub fn handle_switch(
        &self,
        from: Option<(usize, Role, u64)>,
        to: Option<(usize, Role, u64)>,
        reason: String,
    ) {
        let mut switches = lock(&self.switches);
        let resumed = from.is_none() && self.ever_active.load(Relaxed);
        if to.is_some() {
            self.ever_active.store(true, Relaxed);
        }
        if switches.len() == SWITCH_HISTORY {
            switches.pop_back();
        }
        switches.push_front(SwitchRecord {
            at_unix_ms: self.clock.wall().0 / 1000,
            since_start: self.uptime(),
            from,
            to,
            reason,
            resumed,
        });
    }

    /// A Modbus master connected; the guard removes it again.
    pub fn handle_client(self: &Arc<Self>, address: SocketAddr) -> ClientGuard {
        let id = self.next_client.fetch_add(1, Relaxed);
        let entry = Arc::new(ClientEntry {
            address,
            connected_at: self.clock.now(),
            requests: AtomicU64::new(0),
        });
        lock(&self.clients).insert(id, entry.clone());
        ClientGuard {
            board: self.clone(),
            id,
            entry,
        }
    }

    /// The name of source `i` (empty for an index no source has).
    pub fn source_name(&self, i: usize) -> String {
        lock(&self.sources)
            .get(i)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    /// Every source, as `/api/status` shows it.
    pub fn sources(&self) -> Vec<SourceDoc> {
        let uptime = self.uptime();
        let sources = lock(&self.sources).clone();
        sources
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let heard = self.heard_us[i].load(Relaxed);
                let last_heard_ms = (heard > 0).then(|| {
                    uptime
                        .saturating_sub(Duration::from_micros(heard - 1))
                        .as_millis() as u64
                });
                let silent =
                    last_heard_ms.is_none_or(|ms| Duration::from_millis(ms) >= self.source_timeout);
                let health = if !s.connected {
                    "disconnected"
                } else if s.catalog_mismatch {
                    "catalogue differs"
                } else if silent {
                    "silent"
                } else {
                    "healthy"
                };
                SourceDoc {
                    index: i + 1,
                    name: s.name,
                    address: s.address.to_string(),
                    access: if s.licence.is_some() {
                        "client-access"
                    } else {
                        "local"
                    }
                    .to_string(),
                    licence: s.licence,
                    connected: s.connected,
                    health: health.to_string(),
                    role: s.role.filter(|_| s.connected).map(role_name),
                    epoch: s.epoch,
                    last_heard_ms,
                    last_error: s.last_error,
                    connects: s.connects,
                    losses: s.losses,
                }
            })
            .collect()
    }

    /// The recent switches, newest first.
    pub fn switches(&self) -> Vec<SwitchDoc> {
        let names: Vec<String> = lock(&self.sources).iter().map(|s| s.name.clone()).collect();
        let active = |a: Option<(usize, Role, u64)>| {
            a.map(|(i, role, epoch)| ActiveDoc {
                index: i + 1,
                source: names.get(i).cloned().unwrap_or_default(),
                role: role_name(role),
                epoch,
            })
        };
        lock(&self.switches)
            .iter()
            .map(|r| SwitchDoc {
                at_unix_ms: r.at_unix_ms,
                uptime_ms: r.since_start.as_millis() as u64,
                from: active(r.from),
                to: active(r.to),
                reason: r.reason.clone(),
                kind: change_kind(r.from, r.to, r.resumed).to_string(),
            })
            .collect()
    }

    /// The connected Modbus masters, oldest first.
    pub fn clients(&self) -> Vec<ClientDoc> {
        let now = self.clock.now();
        lock(&self.clients)
            .values()
            .map(|c| ClientDoc {
                address: c.address.to_string(),
                connected_ms: now.saturating_duration_since(c.connected_at).as_millis() as u64,
                requests: c.requests.load(Relaxed),
            })
            .collect()
    }
}

/// A lock that a panic elsewhere cannot poison for good: what the board holds is plain
/// data, never left half-updated by the few lines that change it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn role_name(role: Role) -> String {
    match role {
        Role::Primary => "primary",
        Role::Standby => "standby",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use po_runtime::SystemClock;

    fn board() -> Arc<StatusBoard> {
        Arc::new(StatusBoard::new(
            Arc::new(SystemClock),
            Duration::from_secs(3600),
            vec![
                SourceInfo {
                    name: "po-a".into(),
                    address: "127.0.0.1:7000".parse().unwrap(),
                    licence: Some("CA-1".into()),
                },
                SourceInfo {
                    name: "po-b".into(),
                    address: "127.0.0.2:7000".parse().unwrap(),
                    licence: None,
                },
            ],
        ))
    }

    #[test]
    fn sources_follow_connects_losses_and_heartbeats() {
        let b = board();
        let s = b.sources();
        assert_eq!(s[0].health, "disconnected");
        assert_eq!(s[0].last_heard_ms, None);
        assert_eq!(s[0].access, "client-access");
        assert_eq!(s[1].access, "local");
        b.handle_connected(0, Role::Standby, 3, true);
        b.handle_heartbeat(0, Role::Primary, 4);
        let s = b.sources();
        assert_eq!(s[0].health, "healthy");
        assert_eq!(s[0].role.as_deref(), Some("primary"));
        assert_eq!(s[0].epoch, 4);
        assert!(s[0].last_heard_ms.is_some());
        b.handle_lost(0, "connection reset");
        let s = b.sources();
        assert_eq!(s[0].health, "disconnected");
        assert_eq!(s[0].role, None);
        assert_eq!(s[0].last_error.as_deref(), Some("connection reset"));
        assert_eq!((s[0].connects, s[0].losses), (1, 1));
        b.handle_connected(1, Role::Primary, 1, false);
        assert_eq!(b.sources()[1].health, "catalogue differs");
    }

    #[test]
    fn switch_history_is_newest_first_and_bounded() {
        let b = board();
        for n in 0..(SWITCH_HISTORY as u64 + 5) {
            b.handle_switch(None, Some((1, Role::Primary, n)), format!("switch {n}"));
        }
        let sw = b.switches();
        assert_eq!(sw.len(), SWITCH_HISTORY);
        assert_eq!(sw[0].reason, format!("switch {}", SWITCH_HISTORY + 4));
        assert_eq!(sw[0].to.as_ref().unwrap().source, "po-b");
    }

    #[test]
    fn a_client_is_listed_while_its_guard_lives() {
        let b = board();
        let g = b.handle_client("10.0.0.9:5555".parse().unwrap());
        g.entry.requests.fetch_add(7, Relaxed);
        let c = b.clients();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].address.as_str(), c[0].requests), ("10.0.0.9:5555", 7));
        drop(g);
        assert!(b.clients().is_empty());
    }
}
