//! Virtual time: the clock components get in a simulation, and log stamps in virtual time.

use po_protocol::Timestamp;
use po_runtime::Clock;
use std::time::Duration;

/// The wall clock of every simulated run starts at 2026-01-01T00:00:00Z.
pub const SIM_EPOCH: Duration = Duration::from_secs(1_767_225_600);

/// Virtual time: monotonic time is the host runtime's paused tokio clock, wall time the
/// simulation's elapsed time after [`SIM_EPOCH`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wall(&self) -> Timestamp {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        Timestamp((SIM_EPOCH + elapsed).as_micros() as u64)
    }
}

/// Log timestamps: virtual time (`sim+12.345678s`) inside a simulation, so the logs of a
/// replay line up with the report's fault times; the system clock elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogTimer;

impl tracing_subscriber::fmt::time::FormatTime for LogTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "sim+{:.6}s", t.as_secs_f64()),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}
