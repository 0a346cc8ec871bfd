//! The HTTP listener on the metrics address: `GET /metrics` (Prometheus text) and
//! `GET /health` (200 while data is fresh, 503 when stale). A deliberately small HTTP/1.0
//! responder behind the workspace's accept loop: a connection cap and a read timeout, so
//! idle or slow clients cannot hold more than `max_connections` descriptors, nor any of
//! them for longer than `read_timeout`; at the cap the oldest connection whose request is
//! not in yet makes room, so a scrape still gets through a flood.

use crate::image::RegisterImage;
use crate::metrics::Metrics;
use po_runtime::BoxListener;
use po_runtime::accept::accept_loop;
use po_runtime::admission::{ConnectionCap, Unproven};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The HTTP listener's limits (`[metrics]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub read_timeout: Duration,
}

/// The largest request head read; longer ones are answered from what was read.
const MAX_HEAD: usize = 2048;

/// Serves until `cancel` fires, then waits for the requests in progress.
pub async fn serve_http(
    listener: BoxListener,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    image: Arc<RegisterImage>,
    cancel: CancellationToken,
) {
    let cap = ConnectionCap::new(limits.max_connections);
    let unproven = Unproven::default();
    let tracker = TaskTracker::new();
    accept_loop(
        &*listener,
        "HTTP",
        &cap,
        &unproven,
        &metrics.http_accept,
        cancel.clone().cancelled_owned(),
        |mut stream, _peer, permit, ticket| {
            let (metrics, image, cancel) = (metrics.clone(), image.clone(), cancel.clone());
            tracker.spawn(async move {
                let _permit = permit;
                let mut buf = vec![0u8; MAX_HEAD];
                let mut n = 0;
                let read = async {
                    while n < buf.len() {
                        match stream.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                };
                // Until the request is in, the connection may be closed to make room.
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = ticket.evicted() => return,
                    r = tokio::time::timeout(limits.read_timeout, read) => if r.is_err() { return },
                }
                drop(ticket);
                let response = respond(&String::from_utf8_lossy(&buf[..n]), &metrics, &image);
                let _ = tokio::time::timeout(
                    limits.read_timeout,
                    stream.write_all(response.as_bytes()),
                )
                .await;
            });
        },
    )
    .await;
    tracker.close();
    tracker.wait().await;
}

fn respond(head: &str, metrics: &Metrics, image: &RegisterImage) -> String {
    let (status, body) = if head.starts_with("GET /metrics") {
        ("200 OK", metrics.render())
    } else if head.starts_with("GET /health") {
        if image.is_stale() {
            ("503 Service Unavailable", "stale\n".to_string())
        } else {
            ("200 OK", "ok\n".to_string())
        }
    } else {
        ("404 Not Found", "try /metrics or /health\n".to_string())
    };
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
