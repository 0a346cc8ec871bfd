//! What one session counts while it is measured: notifications, their latency from the
//! value's SourceTimestamp to receipt, and bad statuses. Pure: receipt times come in.

use hdrhistogram::Histogram;
use opcua::types::DateTime;
use serde::{Deserialize, Serialize};

/// Latencies above this are clamped (a minute: well past any publishing interval).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Counts of one session (or of several, merged).
#[derive(Debug, Clone)]
pub struct NotificationStats {
    pub notifications: u64,
    /// Notifications whose status was not Good (their latency is counted all the same).
    pub bad_status: u64,
    /// Notifications without a SourceTimestamp: counted, no latency.
    pub no_timestamp: u64,
    latency_us: Histogram<u64>,
}

impl Default for NotificationStats {
    fn default() -> Self {
        NotificationStats {
            notifications: 0,
            bad_status: 0,
            no_timestamp: 0,
            latency_us: Histogram::new_with_max(MAX_LATENCY_US, 3).expect("valid histogram"),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl NotificationStats {
    /// One notification received at `received` (100 ns ticks, as `DateTime::ticks`).
    /// A source timestamp after receipt (clocks apart) counts as no latency at all.
    pub fn handle_notification(&mut self, source: Option<i64>, received: i64, good: bool) {
        self.notifications += 1;
        if !good {
            self.bad_status += 1;
        }
        match source {
            Some(at) => {
                let us = (received.saturating_sub(at).max(0) / 10) as u64;
                self.latency_us.saturating_record(us.min(MAX_LATENCY_US));
            }
            None => self.no_timestamp += 1,
        }
    }

    /// Convenience for the stack's `DateTime`s.
    pub fn handle_data_value(
        &mut self,
        source: Option<&DateTime>,
        received: &DateTime,
        good: bool,
    ) {
        self.handle_notification(source.map(DateTime::ticks), received.ticks(), good);
    }

    pub fn merge(&mut self, other: &NotificationStats) {
        self.notifications += other.notifications;
        self.bad_status += other.bad_status;
        self.no_timestamp += other.no_timestamp;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }

    pub fn latency(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &self.latency_us;
        LatencySummary {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 10_000;

    #[test]
    fn latencies_counts_and_bad_statuses_add_up() {
        let mut a = NotificationStats::default();
        for i in 1..=100 {
            a.handle_notification(Some(0), i * MS, true);
        }
        let mut b = NotificationStats::default();
        b.handle_notification(None, 5 * MS, false);
        // A source timestamp in the future (clocks apart): no negative latency.
        b.handle_notification(Some(10 * MS), 5 * MS, true);
        a.merge(&b);
        assert_eq!((a.notifications, a.bad_status, a.no_timestamp), (102, 1, 1));
        let l = a.latency();
        assert_eq!(l.samples, 101);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn an_empty_session_reports_zeroes() {
        let l = NotificationStats::default().latency();
        assert_eq!(l.samples, 0);
        assert_eq!(l.p99_ms, 0.0);
    }
}
