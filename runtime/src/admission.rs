//! Who gets a place on a listener (sans-IO: events and `now` in, decisions out): the
//! connection cap, the queue of connections that have not proved themselves yet (the
//! ones a full listener closes to make room), the backoff after failed accepts, and the
//! throttle that keeps repeated warnings from flooding the log. The IO loop that uses
//! them is `accept::accept_loop`.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How many connections a listener may hold open at once.
#[derive(Debug, Clone)]
pub struct ConnectionCap {
    max: usize,
    open: Arc<AtomicUsize>,
}

/// One admitted connection's place under the cap; dropping it frees the place.
#[derive(Debug)]
pub struct CapPermit {
    open: Arc<AtomicUsize>,
}

impl Drop for CapPermit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Relaxed);
    }
}

impl ConnectionCap {
    pub fn new(max: usize) -> ConnectionCap {
        ConnectionCap {
            max,
            open: Arc::default(),
        }
    }

    /// A place, or `None` when `max` connections are open.
    pub fn try_acquire(&self) -> Option<CapPermit> {
        self.open
            .fetch_update(Relaxed, Relaxed, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| CapPermit {
                open: self.open.clone(),
            })
    }

    /// A place even when `max` are open: used right after making room by eviction
    /// (the evicted connection frees its place a moment later).
    pub(crate) fn acquire_over(&self) -> CapPermit {
        self.open.fetch_add(1, Relaxed);
        CapPermit {
            open: self.open.clone(),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// The open connections that have not proved themselves yet, oldest first: the ones a
/// full listener closes to make room.
#[derive(Debug, Clone, Default)]
pub struct Unproven {
    inner: Arc<Mutex<UnprovenInner>>,
}

#[derive(Debug, Default)]
struct UnprovenInner {
    next: u64,
    queue: VecDeque<(u64, Arc<tokio::sync::Notify>)>,
}

/// One connection's place among the unproven; dropping it (the connection proved itself
/// or ended) takes it out.
#[derive(Debug)]
pub struct UnprovenTicket {
    id: u64,
    notify: Arc<tokio::sync::Notify>,
    registry: Unproven,
}

impl Unproven {
    /// Registers a new connection as unproven.
    pub fn register(&self) -> UnprovenTicket {
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut inner = self.inner.lock().unwrap();
        let id = inner.next;
        inner.next += 1;
        inner.queue.push_back((id, notify.clone()));
        UnprovenTicket {
            id,
            notify,
            registry: self.clone(),
        }
    }

    /// Tells the oldest unproven connection to close; false when there is none.
    pub(crate) fn evict_oldest(&self) -> bool {
        match self.inner.lock().unwrap().queue.pop_front() {
            Some((_, notify)) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// Connections waiting to prove themselves.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().queue.len()
    }
}

impl UnprovenTicket {
    /// Completes when the listener needs this connection's place: close it then.
    pub async fn evicted(&self) {
        self.notify.notified().await;
    }
}

impl Drop for UnprovenTicket {
    fn drop(&mut self) {
        let mut inner = self.registry.inner.lock().unwrap();
        if let Some(i) = inner.queue.iter().position(|(id, _)| *id == self.id) {
            inner.queue.remove(i);
        }
    }
}

/// What a listener counts (rendered by the connector's metrics endpoint).
#[derive(Debug, Default)]
pub struct AcceptCounters {
    /// Connections admitted.
    pub accepted: AtomicU64,
    /// Connections closed at once because the cap was reached and every open connection
    /// had proved itself.
    pub refused_cap: AtomicU64,
    /// Unproven connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// `accept()` failures because descriptors (or kernel memory) ran out.
    pub fd_exhausted: AtomicU64,
    /// Other `accept()` failures.
    pub failed: AtomicU64,
}

/// Why an `accept()` failed, as far as backing off is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// EMFILE, ENFILE, ENOBUFS, ENOMEM: nothing will get better by retrying at once.
    Exhausted,
    /// Anything else (a connection reset before it was accepted, say).
    Other,
}

impl AcceptFailure {
    pub fn of(e: &io::Error) -> AcceptFailure {
        // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux).
        match e.raw_os_error() {
            Some(24 | 23 | 105 | 12) => AcceptFailure::Exhausted,
            _ => AcceptFailure::Other,
        }
    }
}

/// The backoff after failed accepts (sans-IO: failures in, pauses out). While
/// descriptors are exhausted the pause doubles from `min` up to `max`; any other
/// failure pauses `min`; an accepted connection resets it.
#[derive(Debug, Clone)]
pub struct AcceptBackoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl AcceptBackoff {
    pub fn new(min: Duration, max: Duration) -> AcceptBackoff {
        AcceptBackoff {
            min,
            max,
            next: min,
        }
    }

    /// How long to wait before the next `accept()`.
    pub fn handle_failure(&mut self, failure: AcceptFailure) -> Duration {
        match failure {
            AcceptFailure::Exhausted => {
                let pause = self.next;
                self.next = (self.next * 2).min(self.max);
                pause
            }
            AcceptFailure::Other => self.min,
        }
    }

    pub fn handle_accepted(&mut self) {
        self.next = self.min;
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff::new(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// At most one log line per `every` for a repeated event (sans-IO), after a burst of up
/// to `burst` lines: the first events are logged, later ones are counted and reported
/// with the next line. A token bucket: one line's worth comes back every `every`.
#[derive(Debug, Clone)]
pub struct LogThrottle {
    every: Duration,
    burst: u32,
    /// Lines that may be logged now, and when that was last worked out.
    tokens: f64,
    refilled: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// One line per `every`.
    pub fn new(every: Duration) -> LogThrottle {
        LogThrottle::with_burst(every, 1)
    }

    /// Up to `burst` lines at once (distinct events close together, each worth its own
    /// line, such as refused handshakes), then one per `every`.
    pub fn with_burst(every: Duration, burst: u32) -> LogThrottle {
        LogThrottle {
            every,
            burst: burst.max(1),
            tokens: f64::from(burst.max(1)),
            refilled: None,
            suppressed: 0,
        }
    }

    /// `Some(n)`: log now, mentioning the `n` events not logged since the last line;
    /// `None`: stay quiet.
    pub fn handle_event(&mut self, now: Instant) -> Option<u64> {
        if let Some(at) = self.refilled {
            let gained = now.saturating_duration_since(at).as_secs_f64() / self.every.as_secs_f64();
            self.tokens = (self.tokens + gained).min(f64::from(self.burst));
        }
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_admits_up_to_max_and_frees_on_drop() {
        let cap = ConnectionCap::new(2);
        let a = cap.try_acquire().unwrap();
        let _b = cap.try_acquire().unwrap();
        assert!(cap.try_acquire().is_none());
        assert_eq!(cap.open(), 2);
        assert_eq!(cap.max(), 2);
        drop(a);
        assert!(cap.try_acquire().is_some());
    }

    #[tokio::test]
    async fn the_oldest_unproven_is_told_to_close_and_proven_ones_leave_the_queue() {
        use futures::FutureExt as _;
        let u = Unproven::default();
        let first = u.register();
        let second = u.register();
        let third = u.register();
        drop(second); // proved itself
        assert_eq!(u.len(), 2);
        assert!(
            first.evicted().now_or_never().is_none(),
            "not told to close before an eviction"
        );
        assert!(u.evict_oldest());
        first.evicted().await; // the oldest was told (the notification is kept)
        assert!(u.evict_oldest());
        third.evicted().await;
        assert!(!u.evict_oldest(), "nothing left to evict");
    }

    #[test]
    fn exhaustion_backs_off_doubling_and_an_accept_resets() {
        let mut b = AcceptBackoff::new(Duration::from_millis(10), Duration::from_millis(50));
        let pauses: Vec<u128> = (0..5)
            .map(|_| b.handle_failure(AcceptFailure::Exhausted).as_millis())
            .collect();
        assert_eq!(pauses, [10, 20, 40, 50, 50]);
        assert_eq!(b.handle_failure(AcceptFailure::Other).as_millis(), 10);
        b.handle_accepted();
        assert_eq!(b.handle_failure(AcceptFailure::Exhausted).as_millis(), 10);
    }

    #[test]
    fn emfile_and_enfile_are_exhaustion() {
        for code in [24, 23] {
            let e = io::Error::from_raw_os_error(code);
            assert_eq!(AcceptFailure::of(&e), AcceptFailure::Exhausted);
        }
        let reset = io::Error::from_raw_os_error(104);
        assert_eq!(AcceptFailure::of(&reset), AcceptFailure::Other);
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_logs_once_per_period_and_counts_the_rest() {
        let mut t = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.handle_event(start), Some(0));
        for i in 1..=5 {
            assert_eq!(t.handle_event(start + Duration::from_secs(i)), None);
        }
        assert_eq!(t.handle_event(start + Duration::from_secs(10)), Some(5));
        assert_eq!(t.handle_event(start + Duration::from_secs(11)), None);
    }

    #[test]
    fn a_burst_is_logged_whole_then_one_line_per_period() {
        let start = Instant::now();
        let mut t = LogThrottle::with_burst(Duration::from_millis(100), 3);
        for _ in 0..3 {
            assert_eq!(t.handle_event(start), Some(0));
        }
        assert_eq!(t.handle_event(start), None);
        assert_eq!(t.handle_event(start + Duration::from_millis(50)), None);
        assert_eq!(t.handle_event(start + Duration::from_millis(100)), Some(2));
        assert_eq!(t.handle_event(start + Duration::from_millis(150)), None);
        // A long quiet spell refills the burst, no more.
        let later = start + Duration::from_secs(10);
        assert_eq!(t.handle_event(later), Some(1));
        assert_eq!(t.handle_event(later), Some(0));
        assert_eq!(t.handle_event(later), Some(0));
        assert_eq!(t.handle_event(later), None);
    }
}
