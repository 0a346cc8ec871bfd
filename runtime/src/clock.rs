//! Time as a component sees it.

use po_protocol::Timestamp;
use std::fmt::Debug;
use std::time::Instant;

/// Monotonic and wall time. Component code asks this, never `Instant::now()`,
/// `SystemTime::now()` or `Timestamp::now()`, so a simulation can run it in virtual time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Monotonic time, comparable with tokio's timers (`tokio::time::Instant::from_std`).
    fn now(&self) -> Instant;
    /// Wall-clock time (what a server stamps its samples with).
    fn wall(&self) -> Timestamp;
    /// [`Clock::now`] as tokio's timers take it: deadlines, `sleep_until`, log throttles.
    fn tokio_now(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.now())
    }
}

/// The machine's clocks. Monotonic time comes from tokio's clock, which is the system's
/// unless a test paused it, so timers and `now()` always agree.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }
}
