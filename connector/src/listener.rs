//! The Modbus TCP listener: allow-list, connection limit, idle timeout, and one task
//! per connection running our own framing (see `modbus`) in front of the service.
//!
//! At the limit, the oldest connection that has not sent a whole request yet is closed to
//! make room (a flood of idle or half-sent connections cannot lock masters out); when
//! every connection is a working master, the *new* one is refused (closed at once): a
//! misbehaving client cannot knock a well-behaved one off. The accept loop is the
//! workspace's one (`po_runtime::accept`).

use crate::metrics::Metrics;
use crate::modbus::decode_request;
use crate::service::ModbusService;
use crate::status::{ClientEntry, StatusBoard};
use bytes::{Buf, BytesMut};
use ipnet::IpNet;
use po_runtime::accept::accept_loop;
use po_runtime::admission::{ConnectionCap, LogThrottle, Unproven, UnprovenTicket};
use po_runtime::{BoxListener, BoxStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct ListenerLimits {
    pub allow: Vec<IpNet>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// Accepts Modbus masters until `cancel` fires.
pub async fn serve_modbus(
    listener: BoxListener,
    service: Arc<ModbusService>,
    limits: ListenerLimits,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    cancel: CancellationToken,
) {
    let cap = ConnectionCap::new(limits.max_connections);
    let unproven = Unproven::default();
    let tracker = TaskTracker::new();
    let mut refused = LogThrottle::new(Duration::from_secs(10));
    accept_loop(
        &*listener,
        "Modbus",
        &cap,
        &unproven,
        &metrics.modbus_accept,
        cancel.clone().cancelled_owned(),
        |stream, peer, permit, ticket| {
            if !limits.allow.is_empty() && !limits.allow.iter().any(|n| n.contains(&peer.ip())) {
                metrics.modbus_refused_allow_list.fetch_add(1, Relaxed);
                if let Some(more) = refused.handle_event(tokio::time::Instant::now()) {
                    tracing::warn!(%peer, not_logged = more, "Modbus connection refused: address not in modbus.allow");
                }
                return;
            }
            metrics.modbus_connections.fetch_add(1, Relaxed);
            metrics.modbus_connections_total.fetch_add(1, Relaxed);
            tracing::info!(%peer, "Modbus connection accepted");
            let (service, metrics, cancel) = (service.clone(), metrics.clone(), cancel.clone());
            let idle = limits.idle_timeout;
            let listed = board.handle_client(peer);
            tracker.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = connection(stream, peer, &service, &metrics, &listed.entry, idle, ticket) => {}
                }
                drop(listed);
                metrics.modbus_connections.fetch_sub(1, Relaxed);
                drop(permit);
            });
        },
    )
    .await;
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

async fn connection(
    mut stream: BoxStream,
    peer: SocketAddr,
    service: &ModbusService,
    metrics: &Metrics,
    listed: &ClientEntry,
    idle: Duration,
    ticket: UnprovenTicket,
) {
    let _ = stream.set_nodelay(true);
    let mut input = BytesMut::with_capacity(1024);
    let mut output = BytesMut::with_capacity(4096);
    // Until its first whole request the connection may be closed to make room.
    let mut ticket = Some(ticket);
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_buf(&mut input)) => r,
            _ = evicted(&ticket) => {
                tracing::debug!(%peer, "Modbus connection closed to make room: no request yet");
                return;
            }
        };
        match read {
            Err(_) => {
                metrics.modbus_idle_closed.fetch_add(1, Relaxed);
                tracing::info!(%peer, ?idle, "Modbus connection closed: idle");
                return;
            }
            Ok(Ok(0)) => {
                tracing::debug!(%peer, "Modbus connection closed by the master");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "Modbus connection failed");
                return;
            }
            Ok(Ok(_)) => {}
        }
        // Answer every complete request in the buffer, then write once.
        loop {
            match decode_request(&input) {
                Ok(Some((frame, used))) => {
                    ticket = None;
                    input.advance(used);
                    listed.requests.fetch_add(1, Relaxed);
                    service.handle(frame, &mut output).await;
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
