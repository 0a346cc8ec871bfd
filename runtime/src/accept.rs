//! Accepting connections without letting one listener starve another (the one accept loop
//! of the workspace): a connection cap enforced before a connection costs more than its
//! socket, backoff when the process runs out of descriptors (instead of spinning on
//! `EMFILE`), counters for both, and warnings that cannot flood the log.
//!
//! Over the cap, the oldest connection that has not yet *proved itself* (sent a complete
//! first request, or said Hello) is closed to make room; when every open connection has
//! proved itself, the new one is closed at once. A flood of idle, slow or garbage
//! connections therefore never locks out a real client (whose first request arrives
//! within milliseconds), and never displaces one that is already working
//! (docs/connector.md, "Connection floods").

use crate::admission::{
    AcceptBackoff, AcceptCounters, AcceptFailure, CapPermit, ConnectionCap, LogThrottle, Unproven,
    UnprovenTicket,
};
use crate::net::{BoxStream, Listener};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::Instant;

/// Accepts on `listener` until `stop` completes. Each admitted connection is handed to
/// `admit` with the permit that holds its place under `cap` and its ticket among the
/// `unproven` (drop the ticket once the connection has proved itself; until then it may
/// be told to close, see [`UnprovenTicket::evicted`]). Over the cap the oldest unproven
/// connection makes room; with none, the new connection is closed at once. `name` labels
/// the warnings ("Modbus", "HTTP", "client access", ...).
pub async fn accept_loop<F>(
    listener: &dyn Listener,
    name: &str,
    cap: &ConnectionCap,
    unproven: &Unproven,
    counters: &AcceptCounters,
    stop: impl Future<Output = ()>,
    mut admit: F,
) where
    F: FnMut(BoxStream, SocketAddr, CapPermit, UnprovenTicket),
{
    let mut evictions = LogThrottle::new(Duration::from_secs(10));
    tokio::pin!(stop);
    let mut backoff = AcceptBackoff::default();
    let mut refusals = LogThrottle::new(Duration::from_secs(10));
    let mut failures = LogThrottle::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.handle_accepted();
                let permit = cap.try_acquire().or_else(|| {
                    unproven.evict_oldest().then(|| {
                        counters.evicted.fetch_add(1, Relaxed);
                        if let Some(more) = evictions.handle_event(Instant::now()) {
                            tracing::warn!(%peer, max = cap.max(), not_logged = more, "{name} connection cap reached: the oldest connection without a request closed to make room");
                        }
                        cap.acquire_over()
                    })
                });
                match permit {
                    Some(permit) => {
                        counters.accepted.fetch_add(1, Relaxed);
                        admit(stream, peer, permit, unproven.register());
                    }
                    None => {
                        drop(stream);
                        counters.refused_cap.fetch_add(1, Relaxed);
                        if let Some(more) = refusals.handle_event(Instant::now()) {
                            tracing::warn!(%peer, max = cap.max(), not_logged = more, "{name} connection refused: connection cap reached by working connections");
                        }
                    }
                }
            }
            Err(e) => {
                let failure = AcceptFailure::of(&e);
                match failure {
                    AcceptFailure::Exhausted => counters.fd_exhausted.fetch_add(1, Relaxed),
                    AcceptFailure::Other => counters.failed.fetch_add(1, Relaxed),
                };
                let pause = backoff.handle_failure(failure);
                if let Some(more) = failures.handle_event(Instant::now()) {
                    tracing::warn!(error = %e, retry_in = ?pause, not_logged = more, "{name} accept failed");
                }
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
