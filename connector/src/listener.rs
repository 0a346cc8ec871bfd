//! The Modbus TCP listener: allow-list, connection limit, idle timeout, and one task
//! per connection running our own framing (see `modbus`) in front of the service.
//!
//! Over the limit, the *new* connection is refused (closed at once): evicting an idle
//! master instead would let a misbehaving client knock a well-behaved one off.

use crate::metrics::Metrics;
use crate::modbus::decode_request;
use crate::service::ModbusService;
use bytes::{Buf, BytesMut};
use ipnet::IpNet;
use po_runtime::{BoxListener, BoxStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
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
    cancel: CancellationToken,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "Modbus accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        if !limits.allow.is_empty() && !limits.allow.iter().any(|n| n.contains(&peer.ip())) {
            metrics.modbus_refused_allow_list.fetch_add(1, Relaxed);
            tracing::warn!(%peer, "Modbus connection refused: address not in modbus.allow");
            drop(stream);
            continue;
        }
        if open.load(Relaxed) >= limits.max_connections {
            metrics.modbus_refused_limit.fetch_add(1, Relaxed);
            tracing::warn!(%peer, max = limits.max_connections, "Modbus connection refused: max_connections reached");
            drop(stream);
            continue;
        }
        open.fetch_add(1, Relaxed);
        metrics.modbus_connections.fetch_add(1, Relaxed);
        metrics.modbus_connections_total.fetch_add(1, Relaxed);
        tracing::info!(%peer, "Modbus connection accepted");
        let (service, metrics2, open2, cancel2) = (
            service.clone(),
            metrics.clone(),
            open.clone(),
            cancel.clone(),
        );
        let idle = limits.idle_timeout;
        tracker.spawn(async move {
            tokio::select! {
                _ = cancel2.cancelled() => {}
                _ = connection(stream, peer, &service, &metrics2, idle) => {}
            }
            open2.fetch_sub(1, Relaxed);
            metrics2.modbus_connections.fetch_sub(1, Relaxed);
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    mut stream: BoxStream,
    peer: SocketAddr,
    service: &ModbusService,
    metrics: &Metrics,
    idle: Duration,
) {
    let _ = stream.set_nodelay(true);
    let mut input = BytesMut::with_capacity(1024);
    let mut output = BytesMut::with_capacity(4096);
    loop {
        match tokio::time::timeout(idle, stream.read_buf(&mut input)).await {
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
                    input.advance(used);
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
