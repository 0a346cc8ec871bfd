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
    /// From SourceTimestamp to ServerTimestamp (when the server took the value in): the
    /// part of the latency spent before the server, which splits a slow figure into
    /// "upstream" and "the server's publishing and the wire".
    to_server_us: Histogram<u64>,
}

impl Default for NotificationStats {
    fn default() -> Self {
        NotificationStats {
            notifications: 0,
            bad_status: 0,
            no_timestamp: 0,
            latency_us: Histogram::new_with_max(MAX_LATENCY_US, 3).expect("valid histogram"),
            to_server_us: Histogram::new_with_max(MAX_LATENCY_US, 3).expect("valid histogram"),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl NotificationStats {
    /// One notification received at `received` (100 ns ticks, as `DateTime::ticks`).
    /// A source timestamp after receipt (clocks apart) counts as no latency at all.
    /// `server`: the value's ServerTimestamp, when the server gives one.
    pub fn handle_notification(
        &mut self,
        source: Option<i64>,
        server: Option<i64>,
        received: i64,
        good: bool,
    ) {
        self.notifications += 1;
        if !good {
            self.bad_status += 1;
        }
        let us =
            |from: i64, to: i64| ((to.saturating_sub(from).max(0) / 10) as u64).min(MAX_LATENCY_US);
        match source {
            Some(at) => {
                self.latency_us.saturating_record(us(at, received));
                if let Some(server) = server {
                    self.to_server_us.saturating_record(us(at, server));
                }
            }
            None => self.no_timestamp += 1,
        }
    }

    /// Convenience for the stack's `DateTime`s.
    pub fn handle_data_value(
        &mut self,
        source: Option<&DateTime>,
        server: Option<&DateTime>,
        received: &DateTime,
        good: bool,
    ) {
        self.handle_notification(
            source.map(DateTime::ticks),
            server.map(DateTime::ticks),
            received.ticks(),
            good,
        );
    }

    pub fn merge(&mut self, other: &NotificationStats) {
        self.notifications += other.notifications;
        self.bad_status += other.bad_status;
        self.no_timestamp += other.no_timestamp;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.to_server_us.add(&other.to_server_us);
    }

    /// SourceTimestamp to receipt.
    pub fn latency(&self) -> LatencySummary {
        summary(&self.latency_us)
    }

    /// SourceTimestamp to ServerTimestamp (`samples` 0 when the server sent none).
    pub fn to_server(&self) -> LatencySummary {
        summary(&self.to_server_us)
    }
}

fn summary(h: &Histogram<u64>) -> LatencySummary {
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        samples: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
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
            a.handle_notification(Some(0), Some(i * MS / 10), i * MS, true);
        }
        let mut b = NotificationStats::default();
        b.handle_notification(None, None, 5 * MS, false);
        // A source timestamp in the future (clocks apart): no negative latency; no
        // ServerTimestamp: nothing for that split.
        b.handle_notification(Some(10 * MS), None, 5 * MS, true);
        a.merge(&b);
        assert_eq!((a.notifications, a.bad_status, a.no_timestamp), (102, 1, 1));
        let l = a.latency();
        assert_eq!(l.samples, 101);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        let s = a.to_server();
        assert_eq!(s.samples, 100, "only notifications with both timestamps");
        assert!((s.p99_ms - 9.9).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn an_empty_session_reports_zeroes() {
        let l = NotificationStats::default().latency();
        assert_eq!(l.samples, 0);
        assert_eq!(l.p99_ms, 0.0);
    }
}
