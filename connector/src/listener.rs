//! The Modbus TCP listener: allow-list, connection limit, idle timeout, and one task
//! per connection running our own framing (see `modbus`) in front of the service.
//!
//! At the limit, the oldest connection that has not sent a whole request yet is closed to
//! make room (a flood of idle or half-sent connections cannot lock masters out); when
//! every connection is a working master, the *new* one is refused (closed at once): a
//! misbehaving client cannot knock a well-behaved one off. The accept loop is the
//! workspace's one (`po_runtime::accept`).

use crate::authz::{Rights, RoleTable};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::modbus::decode_request;
use crate::service::ModbusService;
use crate::status::{ClientEntry, StatusBoard};
use bytes::{Buf, BytesMut};
use ipnet::IpNet;
use po_runtime::accept::accept_loop;
use po_runtime::admission::{ConnectionCap, LogThrottle, Unproven, UnprovenTicket};
use po_runtime::tls::{HandshakeRefusals, TlsServer};
use po_runtime::{BoxListener, BoxStream, Clock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct ListenerLimits {
    pub allow: Vec<IpNet>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// What makes a listener Modbus/TCP Security: the TLS server end, how long a handshake
/// may take, and the role table that turns a certificate into rights.
#[derive(Debug)]
pub struct ModbusSecurity {
    pub tls: TlsServer,
    pub handshake_timeout: Duration,
    pub roles: RoleTable,
    pub refusals: HandshakeRefusals,
}

impl ModbusSecurity {
    pub fn new(tls: TlsServer, handshake_timeout: Duration, roles: RoleTable) -> ModbusSecurity {
        ModbusSecurity {
            tls,
            handshake_timeout,
            roles,
            refusals: HandshakeRefusals::default(),
        }
    }

    /// The TLS handshake, then the master's rights from its certificate's role. `None`
    /// (logged and counted): the master is not let in.
    async fn admit(
        &self,
        stream: BoxStream,
        peer: SocketAddr,
        metrics: &Metrics,
        clock: &dyn Clock,
    ) -> Option<(BoxStream, Arc<Rights>)> {
        match self.tls.accept(stream, self.handshake_timeout).await {
            Ok((stream, identity)) => {
                let (rights, why) = self.roles.rights_for(identity.role.as_deref());
                match why {
                    Some(why) => {
                        tracing::warn!(%peer, client = %identity.describe(), role = %rights.role, "Modbus/TCP Security connection: {why}")
                    }
                    None => {
                        tracing::info!(%peer, client = %identity.describe(), role = %rights.role, "Modbus/TCP Security connection accepted")
                    }
                }
                Some((stream, rights))
            }
            Err(e) => {
                metrics.modbus_refused_tls.fetch_add(1, Relaxed);
                if let Some(more) = self.refusals.handle_refusal(clock.tokio_now()) {
                    tracing::warn!(%peer, not_logged = more, "Modbus/TCP Security connection refused: {e}");
                }
                None
            }
        }
    }
}

/// Accepts Modbus masters until `lifecycle.stop_accepting` fires: plain Modbus TCP
/// without `security`, Modbus/TCP Security with it. Both share every limit. Masters are
/// closed between two requests on `close_masters`, at once on `abort`.
#[allow(clippy::too_many_arguments)]
pub async fn serve_modbus(
    listener: BoxListener,
    service: Arc<ModbusService>,
    limits: ListenerLimits,
    security: Option<Arc<ModbusSecurity>>,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    lifecycle: Arc<Lifecycle>,
) {
    let cancel = lifecycle.abort.clone();
    let close = lifecycle.close_masters.clone();
    let cap = ConnectionCap::new(limits.max_connections);
    let unproven = Unproven::default();
    // Shared with the other Modbus listener: a drain waits for every master to end.
    let tracker = lifecycle.masters.clone();
    let mut refused = LogThrottle::new(Duration::from_secs(10));
    // Every image the service answers from carries the connector's one clock.
    let clock = service.image().clock().clone();
    let name = if security.is_some() {
        "Modbus/TCP Security"
    } else {
        "Modbus"
    };
    let unrestricted = Arc::new(Rights::unrestricted());
    accept_loop(
        &*listener,
        name,
        &cap,
        &unproven,
        &metrics.modbus_accept,
        lifecycle.stop_accepting.clone().cancelled_owned(),
        |stream, peer, permit, ticket| {
            if !limits.allow.is_empty() && !limits.allow.iter().any(|n| n.contains(&peer.ip())) {
                metrics.modbus_refused_allow_list.fetch_add(1, Relaxed);
                if let Some(more) = refused.handle_event(clock.tokio_now()) {
                    tracing::warn!(%peer, not_logged = more, "Modbus connection refused: address not in modbus.allow");
                }
                return;
            }
            metrics.modbus_connections.fetch_add(1, Relaxed);
            metrics.modbus_connections_total.fetch_add(1, Relaxed);
            // A TLS master is logged once it has shown its certificate (`admit`); before,
            // a flood of plaintext clients would log a line each.
            if security.is_none() {
                tracing::info!(%peer, "{name} connection accepted");
            }
            let (service, metrics, cancel) = (service.clone(), metrics.clone(), cancel.clone());
            let (close, clock) = (close.clone(), clock.clone());
            let (security, unrestricted) = (security.clone(), unrestricted.clone());
            let idle = limits.idle_timeout;
            let listed = board.handle_client(peer);
            tracker.spawn(async move {
                let serve = async {
                    let _ = stream.set_nodelay(true);
                    // The handshake counts as "no request yet": a stalled one may be
                    // closed to make room, and never holds a place past its timeout.
                    let (stream, rights) = match &security {
                        None => (stream, unrestricted),
                        Some(sec) => tokio::select! {
                            a = sec.admit(stream, peer, &metrics, &*clock) => match a {
                                Some(admitted) => admitted,
                                None => return,
                            },
                            _ = ticket.evicted() => return,
                        },
                    };
                    connection(stream, peer, &service, &rights, &metrics, &listed.entry, idle, ticket, &close).await;
                };
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = serve => {}
                }
                drop(listed);
                metrics.modbus_connections.fetch_sub(1, Relaxed);
                drop(permit);
            });
        },
    )
    .await;
    // Closed now, not after the last master: a drain lets no one else in, not even
    // into the kernel's backlog.
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Completes when a connection that has not sent a whole request yet must make room.
async fn evicted(ticket: &Option<UnprovenTicket>) {
    match ticket {
        Some(t) => t.evicted().await,
        None => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut stream: BoxStream,
    peer: SocketAddr,
    service: &ModbusService,
    rights: &Rights,
    metrics: &Metrics,
    listed: &ClientEntry,
    idle: Duration,
    ticket: UnprovenTicket,
    close: &CancellationToken,
) {
    let clock = service.image().clock().clone();
    let mut input = BytesMut::with_capacity(1024);
    let mut output = BytesMut::with_capacity(4096);
    // Until its first whole request the connection may be closed to make room.
    let mut ticket = Some(ticket);
    // One idle timer for the connection's life, re-armed only when it fires: a timer per
    // read (`timeout(idle, read)`) cost a timer-wheel insert and removal per request
    // (~1 100 instructions of ~10 000; scripts/modbus-cost.sh). Likewise one wait for the
    // drain instead of a new waiter per request.
    let mut last_read = clock.tokio_now();
    let idle_timer = tokio::time::sleep_until(last_read + idle);
    tokio::pin!(idle_timer);
    let closed = close.cancelled();
    tokio::pin!(closed);
    loop {
        let read = tokio::select! {
            r = stream.read_buf(&mut input) => r,
            () = &mut idle_timer => {
                let quiet_since = last_read + idle;
                if clock.tokio_now() < quiet_since {
                    idle_timer.as_mut().reset(quiet_since);
                    continue;
                }
                metrics.modbus_idle_closed.fetch_add(1, Relaxed);
                tracing::info!(%peer, ?idle, "Modbus connection closed: idle");
                return;
            }
            _ = evicted(&ticket) => {
                tracing::debug!(%peer, "Modbus connection closed to make room: no request yet");
                return;
            }
            // Between two requests: a drain closes the connection here, never while
            // an answer is being worked out or written.
            () = &mut closed => {
                let _ = stream.shutdown().await;
                tracing::info!(%peer, "Modbus connection closed: connector shutting down");
                return;
            }
        };
        match read {
            Ok(0) => {
                tracing::info!(%peer, "Modbus connection closed by the master");
                return;
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "Modbus connection closed: {e}");
                return;
            }
            Ok(_) => last_read = clock.tokio_now(),
        }
        // Answer every complete request in the buffer, then write once.
        loop {
            match decode_request(&input) {
                Ok(Some((frame, used))) => {
                    ticket = None;
                    input.advance(used);
                    listed.requests.fetch_add(1, Relaxed);
                    service.handle(frame, rights, &mut output).await;
                }
                Ok(None) => break,
                Err(e) => {
                    metrics.modbus_framing_errors.fetch_add(1, Relaxed);
                    tracing::warn!(%peer, error = %e, "Modbus connection closed: bad framing");
                    let _ = stream.write_all(&output).await;
                    return;
                }
            }
        }
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
    }
}
