//! Starting the OPC UA face (docs/opcua.md): the stack's server with our node manager,
//! endpoints, limits and authenticator; the admission in front of it; the task that
//! turns the image's change feed into data-change notifications and keeps `ServiceLevel`
//! equal to status register 14.

use super::auth::{Access, Authenticator};
use super::face_thread::FaceThread;
use super::nodes::{TagNodes, TagNodesConfig};
use super::redundancy::announce_redundancy;
use super::sessions::SessionRegistry;
use crate::authz::RoleTable;
use crate::config::{ConnectorConfig, OpcUaConfig};
use crate::engine::WriteRequest;
use crate::image_slot::ImageSlot;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use opcua::crypto::SecurityPolicy;
use opcua::server::{ServerBuilder, ServerEndpoint, ServerHandle};
use opcua::types::{AttributeId, MessageSecurityMode};
use po_runtime::accept::accept_loop;
use po_runtime::admission::{ConnectionCap, LogThrottle, Unproven};
use po_runtime::{BoxListener, Clock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum OpcUaError {
    #[error("opcua: cannot open the internal listener: {0}")]
    Inner(std::io::Error),
    #[error("opcua: cannot start the face's thread: {0}")]
    Thread(std::io::Error),
    #[error("opcua: the server configuration is refused: {0}")]
    Config(String),
    #[error(
        "opcua: cannot read {0} (make it with `smart-connector certs opcua --dir <pki_dir> --uri <application uri>`)"
    )]
    Certificate(std::path::PathBuf),
}

/// A running OPC UA face.
#[derive(Clone)]
pub struct OpcUaFace {
    pub handle: ServerHandle,
    pub nodes: Arc<TagNodes>,
    pub addr: SocketAddr,
    pub application_uri: String,
    sessions: Arc<SessionRegistry>,
    metrics: Arc<Metrics>,
}

impl OpcUaFace {
    /// Whether any session is open (a drain then gives it notice).
    pub fn has_sessions(&self) -> bool {
        !self
            .sessions
            .sessions(self.handle.subscriptions())
            .is_empty()
    }

    /// What `/api/status` and the status page show of the face now.
    pub fn doc(&self, service_level: u8) -> crate::api::OpcUaDoc {
        super::sessions::doc(
            self.addr.to_string(),
            self.application_uri.clone(),
            service_level,
            self.sessions.sessions(self.handle.subscriptions()),
            self.metrics.opcua_notifications.load(Relaxed),
        )
    }
}

impl std::fmt::Debug for OpcUaFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpcUaFace")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Everything the face is built from.
#[allow(missing_debug_implementations)] // holds the listener, a trait object
pub struct OpcUaStart<'a> {
    pub config: &'a ConnectorConfig,
    pub opcua: &'a OpcUaConfig,
    /// The public listener (already bound: a port in use failed the start).
    pub listener: BoxListener,
    pub images: Arc<ImageSlot>,
    pub wake: Arc<Notify>,
    pub writes: mpsc::Sender<WriteRequest>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
    pub tracker: &'a TaskTracker,
    pub cancel: CancellationToken,
}

/// The most nodes one request may name (reads, browses, monitored items per call).
pub const MAX_NODES_PER_CALL: usize = 100_000;
/// The shortest publishing interval a subscription is granted, and how often the stack
/// checks every subscription for an elapsed interval.
const MIN_PUBLISHING_INTERVAL_MS: u64 = 10;

fn endpoint(spec: &str, users: &[String]) -> ServerEndpoint {
    let (policy, mode) = match spec.split_once('/') {
        None => (SecurityPolicy::None, MessageSecurityMode::None),
        Some((p, m)) => (
            match p {
                "basic256sha256" => SecurityPolicy::Basic256Sha256,
                "aes128-sha256-rsaoaep" => SecurityPolicy::Aes128Sha256RsaOaep,
                _ => SecurityPolicy::Aes256Sha256RsaPss,
            },
            match m {
                "sign" => MessageSecurityMode::Sign,
                _ => MessageSecurityMode::SignAndEncrypt,
            },
        ),
    };
    ServerEndpoint::new("/", policy, mode, users)
}

pub async fn start(s: OpcUaStart<'_>) -> Result<OpcUaFace, OpcUaError> {
    let o = s.opcua;
    let public = s.listener.local_addr().unwrap_or(o.listen);
    let face_thread = FaceThread::new().map_err(OpcUaError::Thread)?;
    // The stack's listener and server belong to the face's runtime (their IO is driven
    // there, not by the connector's runtime).
    let inner = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .and_then(|l| {
            l.set_nonblocking(true)?;
            let _on_face_thread = face_thread.handle().enter();
            tokio::net::TcpListener::from_std(l)
        })
        .map_err(OpcUaError::Inner)?;
    let inner_addr = inner.local_addr().map_err(OpcUaError::Inner)?;
    let roles = RoleTable::from_config(&s.config.modbus);
    let access = Arc::new(Access::new(o, &roles));
    let sessions = Arc::new(SessionRegistry::new(access.clone()));
    let app_uri = o.application_uri(&s.config.name);
    let mut b = ServerBuilder::new()
        .application_name(format!("Smart Connector {}", s.config.name))
        .application_uri(app_uri.clone())
        .product_uri("urn:smart-connector")
        .host(public.ip().to_string())
        .port(public.port())
        .discovery_urls(vec!["/".to_owned()])
        .with_authenticator(Arc::new(Authenticator(access.clone())))
        .max_sessions(o.max_sessions)
        .max_message_size(o.max_message_size)
        .receive_buffer_size(65_535)
        .send_buffer_size(65_535)
        // Enough chunks for the largest message allowed, no more.
        .max_chunk_count(o.max_message_size / 65_535 + 1)
        // A request may name many nodes (a client subscribing to a large site); the
        // message size bounds it anyway. The stack's default, 1 000, refused a
        // CreateMonitoredItems of 5 000 items as undecodable.
        .max_array_length(MAX_NODES_PER_CALL)
        .diagnostics_enabled(false)
        // The stack decides whether a subscription's publishing interval has elapsed only
        // when this timer ticks (default 100 ms). A 100 ms interval polled every 100 ms
        // publishes every 100 or 200 ms depending on timer jitter (the elapsed time is
        // compared with `>=`), adding up to a whole interval of latency; the smallest
        // publishing interval we grant (10 ms) is the tick that keeps every interval on
        // time to within 10 ms.
        .subscription_poll_interval_ms(MIN_PUBLISHING_INTERVAL_MS)
        // A client's certificate is trusted once it is in `pki_dir/trusted`.
        .trust_client_certs(false);
    match &o.pki_dir {
        Some(dir) => {
            // The stack would start without them and fail every secure channel: refuse
            // to start instead, saying what is missing.
            for f in ["own/cert.der", "private/private.pem"] {
                if std::fs::metadata(dir.join(f)).is_err() {
                    return Err(OpcUaError::Certificate(dir.join(f)));
                }
            }
            b = b
                .pki_dir(dir.clone())
                .certificate_path("own/cert.der")
                .private_key_path("private/private.pem")
                .create_sample_keypair(false);
        }
        None => {
            // Only `none` endpoints (check refuses anything else without a pki_dir). The
            // stack still reads its own certificate for every channel (and logs an error
            // per connection without one): a throwaway one in a private temporary
            // directory, made at start.
            b = b
                .pki_dir(
                    std::env::temp_dir()
                        .join(format!("smart-connector-opcua-{}", std::process::id())),
                )
                .certificate_path("own/cert.der")
                .private_key_path("private/private.pem")
                .create_sample_keypair(true);
        }
    }
    for (i, spec) in o.security.iter().enumerate() {
        b = b.add_endpoint(format!("e{i}"), endpoint(spec, &[]));
    }
    b = b.default_endpoint("e0");
    {
        let l = b.limits_mut();
        l.max_sessions = o.max_sessions;
        l.subscriptions.max_subscriptions_per_session = o.max_subscriptions_per_session;
        l.subscriptions.max_monitored_items_per_sub = o.max_monitored_items_per_subscription;
        // Sampling interval 0: every change the connector ingests.
        l.subscriptions.min_sampling_interval_ms = 0.0;
        l.subscriptions.min_publishing_interval_ms = MIN_PUBLISHING_INTERVAL_MS as f64;
        // A client that reads slower than the site changes makes notifications wait here;
        // past this many per subscription the oldest give way (docs/opcua.md), so a slow
        // client costs bounded memory.
        l.subscriptions.max_queued_notifications = 100_000;
        l.operational.max_monitored_items_per_call =
            o.max_monitored_items_per_subscription.min(100_000);
    }
    let nodes_config = TagNodesConfig {
        namespace_uri: o.namespace_uri.clone(),
        images: s.images.clone(),
        access,
        writes: s.writes,
        lifecycle: s.lifecycle.clone(),
        write_timeout: s.config.policy.write_timeout,
        stale_after: s.config.policy.stale_after,
        sessions: sessions.clone(),
    };
    b = b.with_node_manager(move |ctx: opcua::server::node_manager::ServerContext| {
        TagNodes::new(nodes_config, &ctx)
    });
    b = b.token(s.cancel.child_token());
    let (server, handle) = {
        let _on_face_thread = face_thread.handle().enter();
        b.build().map_err(OpcUaError::Config)?
    };
    let nodes = handle
        .node_managers()
        .get_of_type::<TagNodes>()
        .ok_or_else(|| OpcUaError::Config("the tags node manager is missing".into()))?;
    handle.set_service_level(s.images.current().service_level());
    announce_redundancy(&handle, o, &app_uri);

    let info = handle.info().clone();
    face_thread.spawn(async move {
        if let Err(e) = server.run_with(inner).await {
            tracing::error!("OPC UA server stopped: {e}");
        }
    });
    let face = OpcUaFace {
        handle,
        nodes,
        addr: public,
        application_uri: app_uri.clone(),
        sessions,
        metrics: s.metrics.clone(),
    };
    face_thread.spawn(notify_changes(
        face.clone(),
        s.images.clone(),
        s.wake,
        s.config.policy.stale_after,
        s.cancel.clone(),
    ));
    face_thread.run(s.tracker).map_err(OpcUaError::Thread)?;
    // The stack records the port it listens on for its endpoint URLs; clients reach it
    // through the public one.
    for _ in 0..1000 {
        if info.port.load(Relaxed) == inner_addr.port() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    info.port.store(public.port(), Relaxed);

    s.tracker.spawn(front(
        s.listener,
        inner_addr,
        s.images.current().clock().clone(),
        o.clone(),
        s.metrics.clone(),
        s.lifecycle.clone(),
        s.cancel.clone(),
    ));
    tracing::info!(opcua = %public, application_uri = %app_uri, endpoints = ?o.security, "listening for OPC UA");
    Ok(face)
}

/// The admission in front of the stack: the allow-list and the connection cap of every
/// listener (`po_runtime::accept`), so a flood on this port cannot reach the others and
/// none of theirs can reach this one. A connection proves itself with its Hello.
async fn front(
    listener: BoxListener,
    inner: SocketAddr,
    clock: Arc<dyn Clock>,
    config: OpcUaConfig,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    cancel: CancellationToken,
) {
    let cap = ConnectionCap::new(config.max_connections);
    let unproven = Unproven::default();
    let tracker = TaskTracker::new();
    let mut refused = LogThrottle::new(Duration::from_secs(10));
    accept_loop(
        &*listener,
        "OPC UA",
        &cap,
        &unproven,
        &metrics.opcua_accept,
        lifecycle.stop_accepting.clone().cancelled_owned(),
        |mut client, peer, permit, ticket| {
            if !config.allow.is_empty() && !config.allow.iter().any(|n| n.contains(&peer.ip())) {
                metrics.opcua_refused_allow_list.fetch_add(1, Relaxed);
                if let Some(more) = refused.handle_event(clock.tokio_now()) {
                    tracing::warn!(%peer, not_logged = more, "OPC UA connection refused: address not in opcua.allow");
                }
                return;
            }
            let (cancel, metrics) = (cancel.clone(), metrics.clone());
            tracker.spawn(async move {
                let _permit = permit;
                metrics.opcua_connections.fetch_add(1, Relaxed);
                let relay = async {
                    let _ = client.set_nodelay(true);
                    // Until its first message header (the Hello) the connection may be
                    // closed to make room; the stack times out a Hello that never ends.
                    let mut head = [0u8; 8];
                    tokio::select! {
                        r = client.read_exact(&mut head) => if r.is_err() { return },
                        _ = ticket.evicted() => return,
                    }
                    drop(ticket);
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(inner).await else {
                        return;
                    };
                    let _ = upstream.set_nodelay(true);
                    if upstream.write_all(&head).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                };
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = relay => {}
                }
                metrics.opcua_connections.fetch_sub(1, Relaxed);
            });
        },
    )
    .await;
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Turns the image's change feed into notifications, and keeps `ServiceLevel` equal to
/// status register 14 (published at once on every change).
async fn notify_changes(
    face: OpcUaFace,
    images: Arc<ImageSlot>,
    wake: Arc<Notify>,
    stale_after: Duration,
    cancel: CancellationToken,
) {
    let (handle, nodes, metrics) = (&face.handle, &face.nodes, &face.metrics);
    // Read and published here, not taken from `start`: the image may have changed
    // between the two (this task runs on the face's thread), and a level compared with
    // one the stack never received would never be published.
    let mut level = images.current().service_level();
    handle.set_service_level(level);
    // The session gauges are sampled once a second.
    let mut gauges = tokio::time::interval(Duration::from_secs(1));
    // Values of a stale image turn `BadNoCommunication` after `stale_after` more with no
    // event to say so: a timer does.
    let mut stale_deadline: Option<u64> = None;
    loop {
        let sleep = match stale_deadline {
            Some(at) => {
                let now = images.current().clock().wall().0;
                Duration::from_micros(at.saturating_sub(now))
            }
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = gauges.tick() => {
                let sessions = face.sessions.sessions(handle.subscriptions());
                metrics.opcua_sessions.store(sessions.len() as i64, Relaxed);
                metrics.opcua_subscriptions.store(sessions.iter().map(|s| s.subscriptions).sum::<usize>() as i64, Relaxed);
                metrics.opcua_monitored_items.store(sessions.iter().map(|s| s.monitored_items).sum::<usize>() as i64, Relaxed);
                if let Some(feed) = images.current().feed() {
                    let dropped = feed.overflowed();
                    if metrics.opcua_feed_dropped.swap(dropped, Relaxed) < dropped {
                        tracing::warn!(dropped_total = dropped, "OPC UA notifier behind: samples dropped from the change feed");
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {
                if stale_deadline.is_some() {
                    stale_deadline = None;
                    renotify_all(handle, nodes, metrics);
                }
            }
        }
        let image = images.current().clone();
        let now_level = image.service_level();
        if now_level != level {
            level = now_level;
            handle.set_service_level(level);
        }
        let Some(feed) = image.feed() else { continue };
        let drained = feed.drain();
        if drained.everything {
            stale_deadline = image
                .stale_since_us()
                .map(|since| since + stale_after.as_micros() as u64);
            renotify_all(handle, nodes, metrics);
        }
        if drained.changes.is_empty() {
            continue;
        }
        let (image, tree) = nodes.view();
        let stale_since = image.stale_since_us();
        let now = image.clock().wall().0;
        let items: Vec<_> = drained
            .changes
            .iter()
            .map(|c| {
                let status =
                    super::values::status_of(c.value.quality, stale_since, now, stale_after);
                (
                    super::values::data_value(&c.value, status),
                    nodes.tag_node_id(&image, &tree, c.point),
                )
            })
            .collect();
        metrics
            .opcua_notifications
            .fetch_add(items.len() as u64, Relaxed);
        handle.subscriptions().notify_data_change(
            items
                .iter()
                .map(|(dv, id)| (dv.clone(), id, AttributeId::Value)),
        );
    }
}

/// Every watched point again (the image's status changed for all of them).
fn renotify_all(handle: &ServerHandle, nodes: &TagNodes, metrics: &Metrics) {
    let (image, tree) = nodes.view();
    let Some(feed) = image.feed() else { return };
    let items: Vec<_> = (0..image.map().points().len() as u32)
        .filter(|&p| feed.interest(p) > 0)
        .map(|p| {
            (
                nodes.value_of(&image, p),
                nodes.tag_node_id(&image, &tree, p),
            )
        })
        .collect();
    metrics
        .opcua_notifications
        .fetch_add(items.len() as u64, Relaxed);
    handle.subscriptions().notify_data_change(
        items
            .iter()
            .map(|(dv, id)| (dv.clone(), id, AttributeId::Value)),
    );
}
