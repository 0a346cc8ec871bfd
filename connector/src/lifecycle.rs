//! How a connector stops: at once (`shutdown`, a crash in a harness) or by draining
//! (SIGTERM, docs/service.md "Graceful drain").
//!
//! A drain says "draining" in the status block at once (service level 0), stops
//! accepting Modbus masters, lets the writes in progress finish (a write already
//! forwarded is answered once the Primary applied it, at most `write_timeout` later),
//! then closes every master between two requests and waits for the connections to end,
//! so none is cut in the middle of an answer. Only writes are counted: a read is
//! answered before its connection looks at the close signal again, so it needs no count
//! (and the read path pays nothing for the drain). The HTTP listener answers until the
//! end, so a load balancer reads `/readyz` = 503 "draining" while it happens.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the masters get to finish the answer they are writing once told to close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The stop signals of one connector, and the Modbus requests in progress.
#[derive(Debug)]
pub struct Lifecycle {
    /// Everything stops now: sources, engine, listeners, connections.
    pub abort: CancellationToken,
    /// Modbus listeners stop accepting (children of `abort`).
    pub stop_accepting: CancellationToken,
    /// Modbus connections close before their next request (children of `abort`).
    pub close_masters: CancellationToken,
    /// Every Modbus connection task, so a drain can wait for them to end.
    pub masters: TaskTracker,
    /// Writes being answered (forwarded to the Primary, awaiting its verdict).
    in_flight: AtomicUsize,
    draining: AtomicBool,
    idle: Notify,
}

impl Lifecycle {
    pub fn new(abort: CancellationToken) -> Lifecycle {
        Lifecycle {
            stop_accepting: abort.child_token(),
            close_masters: abort.child_token(),
            masters: TaskTracker::new(),
            abort,
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
        }
    }

    /// A Modbus write is being answered until the guard is dropped.
    pub fn write(&self) -> RequestGuard<'_> {
        self.in_flight.fetch_add(1, SeqCst);
        RequestGuard(self)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    /// Writes being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(SeqCst)
    }

    /// Stops accepting, waits for the writes in progress (at most `grace`), then closes
    /// the masters between requests and waits for their connections to end (at most
    /// 1 s more). Returns how many writes were still unanswered at the end of the grace
    /// period (0 when all finished).
    pub async fn drain(&self, grace: Duration) -> usize {
        self.draining.store(true, SeqCst);
        self.stop_accepting.cancel();
        let _ = tokio::time::timeout(grace, self.wait_idle()).await;
        let left = self.in_flight();
        self.close_masters.cancel();
        self.masters.close();
        let _ = tokio::time::timeout(CLOSE_GRACE, self.masters.wait()).await;
        left
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// See [`Lifecycle::request`].
#[derive(Debug)]
pub struct RequestGuard<'a>(&'a Lifecycle);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        // Only a drain waits for the count to reach 0: no wake-up costs otherwise.
        if self.0.in_flight.fetch_sub(1, SeqCst) == 1 && self.0.draining.load(SeqCst) {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_drain_waits_for_requests_in_progress_then_closes_masters() {
        let life = Arc::new(Lifecycle::new(CancellationToken::new()));
        let guard_life = life.clone();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let request = tokio::spawn(async move {
            let _g = guard_life.write();
            let _ = released.await;
        });
        tokio::task::yield_now().await;
        assert_eq!(life.in_flight(), 1);
        let drain_life = life.clone();
        let drain = tokio::spawn(async move { drain_life.drain(Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        // Accepting stopped at once; masters are not closed while a request is answered.
        assert!(life.stop_accepting.is_cancelled());
        assert!(life.is_draining());
        assert!(!life.close_masters.is_cancelled());
        release.send(()).unwrap();
        request.await.unwrap();
        assert_eq!(drain.await.unwrap(), 0);
        assert!(life.close_masters.is_cancelled());
        assert!(!life.abort.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_outlives_the_grace_period_is_counted_and_masters_closed() {
        let life = Lifecycle::new(CancellationToken::new());
        let _stuck = life.write();
        let start = tokio::time::Instant::now();
        assert_eq!(life.drain(Duration::from_secs(3)).await, 1);
        // Virtual time: exact (no master to wait for).
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(life.close_masters.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_waits_for_the_masters_to_end_but_not_for_ever() {
        let life = Arc::new(Lifecycle::new(CancellationToken::new()));
        // A master that ends when told to close, and one that never ends.
        let close = life.close_masters.clone();
        let polite = life.masters.spawn(async move { close.cancelled().await });
        let _stubborn = life.masters.spawn(std::future::pending::<()>());
        let start = tokio::time::Instant::now();
        assert_eq!(life.drain(Duration::from_secs(3)).await, 0);
        assert!(polite.is_finished());
        assert_eq!(
            start.elapsed(),
            CLOSE_GRACE,
            "waits for the masters, at most 1 s"
        );
    }

    #[test]
    fn abort_stops_accepting_and_closes_masters() {
        let life = Lifecycle::new(CancellationToken::new());
        life.abort.cancel();
        assert!(life.stop_accepting.is_cancelled());
        assert!(life.close_masters.is_cancelled());
    }
}
