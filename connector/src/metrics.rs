//! Counters the connector exposes on its Prometheus text endpoint and that the
//! harness reads in process. Plain atomics: the hot paths only increment.

use po_runtime::admission::AcceptCounters;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub ingest_updates: AtomicU64,
    pub ingest_frames: AtomicU64,
    pub source_switches: AtomicU64,
    /// 0 none, 1 first source, 2 second.
    pub active_source: AtomicI64,
    /// The service level (`service_level`: 0 maintenance, 1 no data, 100 Standby data,
    /// 200 a source lost, 255 full), as status register 14 shows it.
    pub service_level: AtomicI64,
    pub source_connects: AtomicU64,
    pub source_losses: AtomicU64,
    pub resubscribes: AtomicU64,
    pub modbus_requests: AtomicU64,
    /// Exceptions by code 1, 2, 3, 4, 0x0B (index 0..5).
    pub modbus_exceptions: [AtomicU64; 5],
    pub modbus_connections: AtomicI64,
    pub modbus_connections_total: AtomicU64,
    pub modbus_refused_allow_list: AtomicU64,
    /// Modbus/TCP Security connections whose TLS handshake failed or timed out.
    pub modbus_refused_tls: AtomicU64,
    /// Requests refused with exception 01 because the master's role does not allow them.
    pub modbus_refused_role: AtomicU64,
    /// The Modbus listener's accept counters (cap refusals, descriptor exhaustion).
    pub modbus_accept: AcceptCounters,
    /// The HTTP (metrics) listener's.
    pub http_accept: AcceptCounters,
    pub modbus_idle_closed: AtomicU64,
    pub modbus_framing_errors: AtomicU64,
    /// The OPC UA listener's accept counters, open connections and allow-list refusals.
    pub opcua_accept: AcceptCounters,
    pub opcua_connections: AtomicI64,
    pub opcua_refused_allow_list: AtomicU64,
    /// OPC UA sessions, subscriptions and monitored items now, and notifications sent
    /// (sampled from the stack by the status poll).
    pub opcua_sessions: AtomicI64,
    pub opcua_subscriptions: AtomicI64,
    pub opcua_monitored_items: AtomicI64,
    pub opcua_notifications: AtomicU64,
    /// Samples the change feed dropped because the OPC UA notifier fell behind
    /// (`change_feed::PENDING_CAP`).
    pub opcua_feed_dropped: AtomicU64,
    pub writes_applied: AtomicU64,
    pub writes_refused: AtomicU64,
    pub writes_timed_out: AtomicU64,
}

/// Exception codes in the order of [`Metrics::modbus_exceptions`].
pub const EXCEPTION_CODES: [u8; 5] = [1, 2, 3, 4, 0x0B];

impl Metrics {
    pub fn count_exception(&self, code: u8) {
        if let Some(i) = EXCEPTION_CODES.iter().position(|c| *c == code) {
            self.modbus_exceptions[i].fetch_add(1, Relaxed);
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "sc_ingest_updates_total",
            "Tag updates accepted from the active server.",
            self.ingest_updates.load(Relaxed),
        );
        counter(
            "sc_ingest_frames_total",
            "Snapshot and Updates frames accepted.",
            self.ingest_frames.load(Relaxed),
        );
        counter(
            "sc_source_switches_total",
            "Switches of the active server.",
            self.source_switches.load(Relaxed),
        );
        counter(
            "sc_source_connects_total",
            "Sessions established with servers.",
            self.source_connects.load(Relaxed),
        );
        counter(
            "sc_source_losses_total",
            "Sessions lost or refused.",
            self.source_losses.load(Relaxed),
        );
        counter(
            "sc_resubscribes_total",
            "Resubscriptions after a sequence gap.",
            self.resubscribes.load(Relaxed),
        );
        counter(
            "sc_modbus_requests_total",
            "Modbus requests answered.",
            self.modbus_requests.load(Relaxed),
        );
        counter(
            "sc_modbus_connections_total",
            "Modbus connections accepted.",
            self.modbus_connections_total.load(Relaxed),
        );
        counter(
            "sc_modbus_idle_closed_total",
            "Modbus connections closed for idleness.",
            self.modbus_idle_closed.load(Relaxed),
        );
        counter(
            "sc_modbus_framing_errors_total",
            "Modbus connections closed for bad framing.",
            self.modbus_framing_errors.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP sc_modbus_refused_total Modbus connections refused.\n# TYPE sc_modbus_refused_total counter\nsc_modbus_refused_total{{reason=\"allow_list\"}} {}\nsc_modbus_refused_total{{reason=\"max_connections\"}} {}\nsc_modbus_refused_total{{reason=\"tls_handshake\"}} {}",
            self.modbus_refused_allow_list.load(Relaxed),
            self.modbus_accept.refused_cap.load(Relaxed),
            self.modbus_refused_tls.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sc_modbus_role_refusals_total Modbus/TCP Security requests refused (exception 01) because the master's role does not allow them.\n# TYPE sc_modbus_role_refusals_total counter\nsc_modbus_role_refusals_total {}",
            self.modbus_refused_role.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sc_accept_failures_total Failed accept() calls by listener and reason (fd_exhausted: EMFILE/ENFILE, backed off).
# TYPE sc_accept_failures_total counter"
        );
        for (listener, c) in [
            ("modbus", &self.modbus_accept),
            ("http", &self.http_accept),
            ("opcua", &self.opcua_accept),
        ] {
            let _ = writeln!(
                s,
                "sc_accept_failures_total{{listener=\"{listener}\",reason=\"fd_exhausted\"}} {}\nsc_accept_failures_total{{listener=\"{listener}\",reason=\"other\"}} {}",
                c.fd_exhausted.load(Relaxed),
                c.failed.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP sc_http_connections_total HTTP connections by outcome.\n# TYPE sc_http_connections_total counter\nsc_http_connections_total{{outcome=\"accepted\"}} {}\nsc_http_connections_total{{outcome=\"refused_cap\"}} {}\nsc_http_connections_total{{outcome=\"evicted_unproven\"}} {}",
            self.http_accept.accepted.load(Relaxed),
            self.http_accept.refused_cap.load(Relaxed),
            self.http_accept.evicted.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sc_opcua_connections OPC UA TCP connections open.\n# TYPE sc_opcua_connections gauge\nsc_opcua_connections {}\n# HELP sc_opcua_refused_total OPC UA connections refused.\n# TYPE sc_opcua_refused_total counter\nsc_opcua_refused_total{{reason=\"allow_list\"}} {}\nsc_opcua_refused_total{{reason=\"max_connections\"}} {}\n# HELP sc_opcua_sessions OPC UA sessions open.\n# TYPE sc_opcua_sessions gauge\nsc_opcua_sessions {}\n# HELP sc_opcua_subscriptions OPC UA subscriptions.\n# TYPE sc_opcua_subscriptions gauge\nsc_opcua_subscriptions {}\n# HELP sc_opcua_monitored_items OPC UA monitored items.\n# TYPE sc_opcua_monitored_items gauge\nsc_opcua_monitored_items {}\n# HELP sc_opcua_notifications_total Data-change notifications handed to OPC UA subscriptions.\n# TYPE sc_opcua_notifications_total counter\nsc_opcua_notifications_total {}",
            self.opcua_connections.load(Relaxed),
            self.opcua_refused_allow_list.load(Relaxed),
            self.opcua_accept.refused_cap.load(Relaxed),
            self.opcua_sessions.load(Relaxed),
            self.opcua_subscriptions.load(Relaxed),
            self.opcua_monitored_items.load(Relaxed),
            self.opcua_notifications.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP sc_opcua_feed_dropped_total Samples dropped before OPC UA notification because the notifier fell behind.\n# TYPE sc_opcua_feed_dropped_total counter\nsc_opcua_feed_dropped_total {}",
            self.opcua_feed_dropped.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sc_modbus_evicted_total Modbus connections without a request yet, closed to make room at the connection cap.\n# TYPE sc_modbus_evicted_total counter\nsc_modbus_evicted_total {}",
            self.modbus_accept.evicted.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sc_modbus_exceptions_total Modbus exception responses by code.\n# TYPE sc_modbus_exceptions_total counter"
        );
        for (i, code) in EXCEPTION_CODES.iter().enumerate() {
            let _ = writeln!(
                s,
                "sc_modbus_exceptions_total{{code=\"{code:02X}\"}} {}",
                self.modbus_exceptions[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP sc_writes_total Modbus writes by outcome.\n# TYPE sc_writes_total counter\nsc_writes_total{{outcome=\"applied\"}} {}\nsc_writes_total{{outcome=\"refused\"}} {}\nsc_writes_total{{outcome=\"timed_out\"}} {}",
            self.writes_applied.load(Relaxed),
            self.writes_refused.load(Relaxed),
            self.writes_timed_out.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sc_active_source Active server: 0 none, 1 first, 2 second.\n# TYPE sc_active_source gauge\nsc_active_source {}\n# HELP sc_modbus_connections Open Modbus connections.\n# TYPE sc_modbus_connections gauge\nsc_modbus_connections {}",
            self.active_source.load(Relaxed),
            self.modbus_connections.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP sc_service_level Service level told to redundancy-aware clients (status register 14, OPC UA ServiceLevel): 0 maintenance, 1 no data, 100 Standby data, 200 a source lost, 255 full.\n# TYPE sc_service_level gauge\nsc_service_level {}",
            self.service_level.load(Relaxed)
        );
        s
    }
}
