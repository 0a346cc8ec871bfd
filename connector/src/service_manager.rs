//! Talking to the service manager (systemd's `sd_notify` protocol, docs/service.md):
//! READY once data is served, WATCHDOG while the engine answers its liveness probe,
//! STATUS lines a person reads in `systemctl status`, STOPPING on SIGTERM. Without a
//! service manager (`NOTIFY_SOCKET` unset) nothing is sent and nothing changes.
//!
//! What to say and when is decided here (sans-IO: the status, the liveness verdict and
//! the manager's environment in; notices and a tick interval out); the binary reads the
//! environment and writes the notices to the socket.

use crate::api::StatusDoc;
use std::time::Duration;

/// One message to the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Ready,
    Watchdog,
    Stopping,
    Status(String),
}

/// What has been said so far, so each tick says only what changed.
#[derive(Debug, Default)]
pub struct Notices {
    ready: bool,
    status: String,
    stopping: bool,
}

impl Notices {
    /// A periodic tick: READY the first time data is served, STATUS when the line
    /// changes, WATCHDOG while the engine answers (`alive`) and a watchdog is wanted.
    pub fn handle_tick(&mut self, status: &StatusDoc, alive: bool, watchdog: bool) -> Vec<Notice> {
        let mut out = Vec::new();
        if self.stopping {
            return out;
        }
        let serving = status.reason.is_none();
        if serving && !self.ready {
            self.ready = true;
            out.push(Notice::Ready);
        }
        let line = status_line(status);
        if line != self.status {
            self.status = line.clone();
            out.push(Notice::Status(line));
        }
        if watchdog && alive {
            out.push(Notice::Watchdog);
        }
        out
    }

    /// SIGTERM: STOPPING, and no WATCHDOG or READY after it.
    pub fn handle_stop(&mut self) -> Vec<Notice> {
        if std::mem::replace(&mut self.stopping, true) {
            return Vec::new();
        }
        vec![
            Notice::Stopping,
            Notice::Status("draining: finishing writes in progress, then closing".into()),
        ]
    }
}

/// The one-line status: what is served, or why nothing is.
pub fn status_line(status: &StatusDoc) -> String {
    match (&status.active, &status.reason) {
        (_, Some(why)) => format!("{}: {why}", status.state),
        (Some(a), None) => format!(
            "serving {} data from {} (epoch {})",
            a.role, a.source, a.epoch
        ),
        (None, None) => status.state.clone(),
    }
}

/// How often to tick, and whether to send WATCHDOG: `None` without a service manager
/// (no `NOTIFY_SOCKET`); else half the watchdog interval it asked for (its rule), at most
/// every 500 ms so READY follows the first data closely.
pub fn tick_plan(notify_socket: bool, watchdog_usec: Option<u64>) -> Option<(Duration, bool)> {
    if !notify_socket {
        return None;
    }
    let every = match watchdog_usec {
        Some(u) => Duration::from_micros(u / 2).min(Duration::from_millis(500)),
        None => Duration::from_millis(500),
    };
    Some((
        every.max(Duration::from_millis(10)),
        watchdog_usec.is_some(),
    ))
}

/// The watchdog interval the manager asked for, by `sd_watchdog_enabled(3)`'s rule:
/// `WATCHDOG_USEC` set, and `WATCHDOG_PID`, when set, naming this process (the
/// `sd-notify` crate also requires the PID to be set, which systemd does not).
pub fn watchdog_usec(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<u64> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => Some(usec),
        Some(Ok(p)) if p == me => Some(usec),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ActiveDoc, ModbusDoc, PointsSummary};

    fn doc(state: &str, reason: Option<&str>) -> StatusDoc {
        StatusDoc {
            connector: "sc".into(),
            version: "0".into(),
            uptime_ms: 0,
            state: state.into(),
            reason: reason.map(str::to_string),
            service_level: if reason.is_none() { 255 } else { 1 },
            active: reason.is_none().then(|| ActiveDoc {
                index: 1,
                source: "po-a".into(),
                role: "primary".into(),
                epoch: 3,
            }),
            switches_total: 0,
            switches: vec![],
            sources: vec![],
            modbus: ModbusDoc {
                listen: String::new(),
                unit_ids: vec![],
                max_connections: 0,
                clients: vec![],
                requests_total: 0,
                exceptions_total: 0,
            },
            opcua: None,
            points: PointsSummary {
                total: 0,
                not_good: 0,
                data_age_ms: None,
            },
        }
    }

    #[test]
    fn ticks_at_half_the_watchdog_interval_at_most_every_500_ms() {
        assert_eq!(tick_plan(false, Some(200_000)), None);
        assert_eq!(
            tick_plan(true, None),
            Some((Duration::from_millis(500), false))
        );
        assert_eq!(
            tick_plan(true, Some(200_000)),
            Some((Duration::from_millis(100), true))
        );
        assert_eq!(
            tick_plan(true, Some(30_000_000)),
            Some((Duration::from_millis(500), true))
        );
        assert_eq!(
            tick_plan(true, Some(4_000)),
            Some((Duration::from_millis(10), true))
        );
    }

    #[test]
    fn the_watchdog_is_for_this_process_only() {
        assert_eq!(watchdog_usec(Some("200000"), None, 7), Some(200_000));
        assert_eq!(watchdog_usec(Some("200000"), Some("7"), 7), Some(200_000));
        assert_eq!(watchdog_usec(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_usec(Some("0"), None, 7), None);
        assert_eq!(watchdog_usec(Some("soon"), None, 7), None);
        assert_eq!(watchdog_usec(None, Some("7"), 7), None);
    }

    #[test]
    fn ready_once_serving_watchdog_only_while_alive_nothing_after_stopping() {
        let mut n = Notices::default();
        let starting = doc(
            "starting",
            Some("no server has delivered a tag catalogue yet"),
        );
        let t = n.handle_tick(&starting, true, true);
        assert_eq!(
            t,
            vec![
                Notice::Status("starting: no server has delivered a tag catalogue yet".into()),
                Notice::Watchdog
            ]
        );
        let serving = doc("primary", None);
        let t = n.handle_tick(&serving, true, true);
        assert_eq!(
            t,
            vec![
                Notice::Ready,
                Notice::Status("serving primary data from po-a (epoch 3)".into()),
                Notice::Watchdog
            ]
        );
        // The same status again: only the watchdog; READY never twice.
        assert_eq!(n.handle_tick(&serving, true, true), vec![Notice::Watchdog]);
        // A stuck engine: no WATCHDOG, so the manager restarts the service.
        assert_eq!(n.handle_tick(&serving, false, true), vec![]);
        // No watchdog asked for: none sent.
        assert_eq!(n.handle_tick(&serving, true, false), vec![]);
        let stop = n.handle_stop();
        assert_eq!(stop[0], Notice::Stopping);
        assert_eq!(n.handle_tick(&serving, true, true), vec![]);
        assert_eq!(n.handle_stop(), vec![]);
    }
}
