//! Is the engine alive? A probe asks it to answer between two events (see
//! `engine::EnginePing`); an engine stuck inside one event (a bug, a lock, a busy loop)
//! stops answering. `/healthz` and the service manager's watchdog read the verdict, so a
//! stuck connector is restarted instead of serving frozen data with a green light.

use po_runtime::Clock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the probe asks, and after how long without an answer the engine counts as
/// stuck (three missed probes: one slow moment on a loaded host is not a verdict).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
pub const STUCK_AFTER: Duration = Duration::from_secs(3);

/// The verdict, sans-IO: answers and `now` in, "stuck for how long" out.
#[derive(Debug, Clone)]
pub struct EngineWatch {
    stuck_after: Duration,
    last_answer: Instant,
}

impl EngineWatch {
    /// A watch that counts the engine as alive at `now` (it has just been started).
    pub fn new(now: Instant, stuck_after: Duration) -> EngineWatch {
        EngineWatch {
            stuck_after,
            last_answer: now,
        }
    }

    /// The engine answered a probe at `now`.
    pub fn handle_answer(&mut self, now: Instant) {
        self.last_answer = self.last_answer.max(now);
    }

    /// `Some(silence)` once the engine has not answered for `stuck_after` or longer.
    pub fn poll_stuck(&self, now: Instant) -> Option<Duration> {
        let silence = now.saturating_duration_since(self.last_answer);
        (silence >= self.stuck_after).then_some(silence)
    }
}

/// The watch shared by the probe task, `/healthz` and the watchdog.
#[derive(Debug)]
pub struct Liveness {
    clock: Arc<dyn Clock>,
    watch: Mutex<EngineWatch>,
}

impl Liveness {
    pub fn new(clock: Arc<dyn Clock>) -> Liveness {
        let now = clock.now();
        Liveness {
            clock,
            watch: Mutex::new(EngineWatch::new(now, STUCK_AFTER)),
        }
    }

    pub fn handle_answer(&self) {
        let now = self.clock.now();
        self.watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handle_answer(now);
    }

    /// Why the connector is not alive, if it is not.
    pub fn stuck(&self) -> Option<String> {
        let now = self.clock.now();
        let silence = self
            .watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .poll_stuck(now)?;
        Some(format!(
            "engine stuck: no answer to the liveness probe for {}",
            humantime::format_duration(Duration::from_millis(silence.as_millis() as u64))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stuck_exactly_after_the_bound_and_alive_again_on_an_answer() {
        let t0 = Instant::now();
        let mut w = EngineWatch::new(t0, Duration::from_secs(3));
        assert_eq!(w.poll_stuck(t0 + Duration::from_millis(2999)), None);
        assert_eq!(
            w.poll_stuck(t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        w.handle_answer(t0 + Duration::from_secs(4));
        assert_eq!(w.poll_stuck(t0 + Duration::from_secs(5)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_shared_watch_reads_the_clock_it_was_given() {
        // SystemClock follows tokio's clock, which this test drives by hand.
        let live = Liveness::new(Arc::new(po_runtime::SystemClock));
        assert_eq!(live.stuck(), None);
        tokio::time::advance(Duration::from_millis(2500)).await;
        live.handle_answer();
        tokio::time::advance(Duration::from_millis(2999)).await;
        assert_eq!(live.stuck(), None, "answered 2.999 s ago");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            live.stuck().as_deref(),
            Some("engine stuck: no answer to the liveness probe for 3s")
        );
        live.handle_answer();
        assert_eq!(live.stuck(), None);
    }

    proptest! {
        /// Model: stuck iff the newest answer (or the start) is at least `bound` old.
        #[test]
        fn the_verdict_follows_the_newest_answer(
            answers in proptest::collection::vec(0u64..10_000, 0..20),
            ask in 0u64..20_000,
            bound in 1u64..5_000,
        ) {
            let t0 = Instant::now();
            let at = |ms: u64| t0 + Duration::from_millis(ms);
            let mut w = EngineWatch::new(t0, Duration::from_millis(bound));
            for a in &answers {
                w.handle_answer(at(*a));
            }
            let newest = answers.iter().copied().max().unwrap_or(0);
            let silence = ask.saturating_sub(newest);
            let expected = (silence >= bound).then(|| Duration::from_millis(silence));
            prop_assert_eq!(w.poll_stuck(at(ask)), expected);
        }
    }
}
