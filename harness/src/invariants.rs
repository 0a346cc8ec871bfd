//! The invariants of docs/design.md §11, checked on every simulated run that asks for them
//! (`[expect] invariants = true`, and every run of `harness explore`).
//!
//! During the run, after every simulation step: never two Primaries with the same epoch;
//! a connector never serves Primary data of an epoch lower than one it served before (in
//! one incarnation: a restarted connector remembers nothing). At the end: no wrong value,
//! no lost acknowledged write, every connector serving Primary data, and the third
//! parties reading fresh data again within the recovery window after the last fault.
//!
//! The service level (docs/simulation.md "The service-level invariants"), judged through
//! what a client reads (status register 14, `/api/status`): status register 14 and
//! `/api/status` never differ; a connector announcing >= 200 serves current data (live
//! data of the highest-epoch Primary); a connector serving current data announces more
//! than one serving lesser data; some connector announces >= 200 within the recovery
//! window after the last fault. The two ordering rules allow the reaction time the
//! recovery rule allows: a condition counts once it has lasted longer than the recovery
//! window (`grace`).

use crate::observed::Observed;
use crate::report::Report;
use po_protocol::Role;
use std::collections::BTreeMap;
use std::time::Duration;

/// Register 1 of the status block: serving Primary data.
const SERVING_PRIMARY: u8 = 1;
/// Register 1 of the status block: serving Standby data.
const SERVING_STANDBY: u8 = 2;

/// Service levels of docs/register-map.md "Service level": from here up, healthy.
const HEALTHY: u8 = 200;
/// Longest interval between two comparisons of register 14 with `/api/status`.
const DOC_SAMPLE: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub struct Invariants {
    /// Per connector: the highest epoch it served Primary data of (this incarnation).
    served: BTreeMap<String, u32>,
    /// How long a service-level ordering condition may hold before it counts: the
    /// connectors' reaction time (the recovery window).
    grace: Duration,
    /// Each service-level condition failing now, with the instant it started failing.
    failing_since: BTreeMap<String, Duration>,
    /// The last fault applied (time, label) and the first instant at or after it at which
    /// some connector announced a healthy level.
    last_fault: Option<(Duration, String)>,
    healthy_after_last_fault: Option<Duration>,
    /// The last instant observed.
    now: Duration,
    /// Per connector: register 14 when `/api/status` was last compared with it, and when.
    doc_sampled: BTreeMap<String, (Option<u16>, Duration)>,
    /// What broke, each rule once per component, with the virtual time.
    pub violations: Vec<String>,
}

/// What a connector serves, as the service-level rules rank it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    /// Live data of the highest-epoch Primary (in a split brain, of either Primary).
    Current,
    /// A Standby's data, stale data, no data yet, or a superseded Primary's data.
    Lesser,
}

/// One running connector as a client sees it, sampled in one step.
#[derive(Debug)]
struct Seen<'a> {
    name: &'a str,
    level: u8,
    state: u8,
    epoch: u32,
    data: Data,
}

impl Invariants {
    /// Checks the service-level ordering rules with `grace` as the connectors' reaction
    /// time (the recovery window).
    pub fn new(grace: Duration) -> Invariants {
        Invariants {
            grace,
            ..Invariants::default()
        }
    }

    /// Records whether condition `key` fails at `at`; answers the instant it started
    /// failing once it has failed for longer than the grace.
    fn persisting(
        &mut self,
        failing_now: &mut Vec<String>,
        key: String,
        at: Duration,
    ) -> Option<Duration> {
        let since = *self.failing_since.entry(key.clone()).or_insert(at);
        failing_now.push(key);
        (at.saturating_sub(since) > self.grace).then_some(since)
    }

    fn violate(&mut self, what: String) {
        let rule = what.split(':').next().unwrap_or_default().to_string();
        if !self.violations.iter().any(|v| v.starts_with(&rule)) {
            self.violations.push(what);
        }
    }

    /// Checks the rules that must hold at every instant.
    pub fn observe(&mut self, at: Duration, o: &Observed) {
        let primaries: Vec<(&String, u64)> = o
            .servers
            .iter()
            .filter_map(|(n, h)| {
                h.status()
                    .filter(|s| s.role == Role::Primary)
                    .map(|s| (n, s.epoch))
            })
            .collect();
        if let [(a, ea), (b, eb)] = primaries[..]
            && ea == eb
        {
            self.violate(format!(
                "two primaries with one epoch: {a} and {b} both Primary with epoch {ea} at {:.3} s",
                at.as_secs_f64()
            ));
        }
        self.observe_levels(at, o, &primaries);
        for (name, c) in &o.connectors {
            let Some(crate::observed::RunningConnector { image, .. }) = c else {
                self.served.remove(name);
                continue;
            };
            let (state, epoch) = image.serving();
            if state != SERVING_PRIMARY {
                continue;
            }
            let highest = self.served.entry(name.clone()).or_insert(0);
            if epoch < *highest {
                let before = *highest;
                self.violate(format!(
                    "epoch went back {name}: served epoch {epoch} after epoch {before} at {:.3} s",
                    at.as_secs_f64()
                ));
            } else {
                *highest = epoch;
            }
        }
    }

    /// The service-level rules at one instant (docs/simulation.md "The service-level
    /// invariants").
    fn observe_levels(&mut self, at: Duration, o: &Observed, primaries: &[(&String, u64)]) {
        self.now = at;
        let highest = primaries.iter().map(|p| p.1).max();
        // In a split brain each side's connectors may follow their own Primary: none of
        // them can tell which one the pair will keep, and the level carries no epoch.
        let split_brain = primaries.len() > 1;
        let mut seen = Vec::with_capacity(o.connectors.len());
        for (name, c) in &o.connectors {
            let Some(c) = c else { continue };
            // The image a client is answered from now, as `/api/status` takes it.
            let image = c.status.images.current();
            let mut register = [0u16; 1];
            let level_register = image
                .read_registers(image.map().first_bank(), 14, &mut register)
                .then_some(register[0]);
            // Building the whole `/api/status` document every 1 ms step costs a fifth of
            // a run (it formats every source's address); the two are compared whenever
            // register 14 changes and every DOC_SAMPLE otherwise.
            let due = match self.doc_sampled.get(name.as_str()) {
                Some(&(last, t)) => last != level_register || at.saturating_sub(t) >= DOC_SAMPLE,
                None => true,
            };
            if due {
                let level_doc = smart_connector::http::status_doc(&c.status).service_level;
                if level_register != Some(u16::from(level_doc)) {
                    self.violate(format!(
                        "service level differs between register 14 and /api/status {name}: register 14 {level_register:?}, /api/status {level_doc} at {:.3} s",
                        at.as_secs_f64()
                    ));
                }
                self.doc_sampled.insert(name.clone(), (level_register, at));
            }
            let level = level_register.map_or(0, |l| l.min(255) as u8);
            let (state, epoch) = image.serving();
            let current = state == SERVING_PRIMARY
                && primaries
                    .iter()
                    .any(|p| p.1 == u64::from(epoch) && (split_brain || Some(p.1) == highest));
            seen.push(Seen {
                name,
                level,
                state,
                epoch,
                data: if current { Data::Current } else { Data::Lesser },
            });
        }
        let mut failing_now = Vec::new();
        for c in &seen {
            if c.level >= HEALTHY && c.data != Data::Current {
                let key = format!("healthy {}", c.name);
                if let Some(since) = self.persisting(&mut failing_now, key, at) {
                    self.violate(format!(
                        "healthy level without current data {}: announced {} while serving status state {} epoch {} (highest Primary epoch {highest:?}) from {:.3} s to {:.3} s",
                        c.name,
                        c.level,
                        c.state,
                        c.epoch,
                        since.as_secs_f64(),
                        at.as_secs_f64()
                    ));
                }
            }
        }
        for x in seen.iter().filter(|c| c.data == Data::Current) {
            for y in seen.iter().filter(|c| c.data == Data::Lesser) {
                if x.level > y.level {
                    continue;
                }
                let key = format!("order {} {}", x.name, y.name);
                if let Some(since) = self.persisting(&mut failing_now, key, at) {
                    self.violate(format!(
                        "levels send clients the wrong way {} {}: {} serves current data at level {}, {} serves status state {} epoch {} at level {} from {:.3} s to {:.3} s",
                        x.name,
                        y.name,
                        x.name,
                        x.level,
                        y.name,
                        y.state,
                        y.epoch,
                        y.level,
                        since.as_secs_f64(),
                        at.as_secs_f64()
                    ));
                }
            }
        }
        if !self.failing_since.is_empty() {
            self.failing_since.retain(|k, _| failing_now.contains(k));
        }
        if let Some((t, label)) = o.faults.last()
            && self
                .last_fault
                .as_ref()
                .is_none_or(|l| l.0 != *t || l.1 != *label)
        {
            self.last_fault = Some((*t, label.clone()));
            self.healthy_after_last_fault = None;
        }
        if self.healthy_after_last_fault.is_none() && seen.iter().any(|c| c.level >= HEALTHY) {
            self.healthy_after_last_fault = Some(at);
        }
    }

    /// Checks the rules judged at the end of the run. `recovery` is the window after the
    /// last fault within which third parties must read fresh data again.
    /// `every_primary`: every connector must serve Primary data at the end (architecture
    /// 3, where each connector reaches both servers); otherwise (architecture 2, each
    /// connector on its local server) every connector serves data and one of them
    /// Primary data.
    pub fn finish(
        &mut self,
        report: &Report,
        o: &Observed,
        recovery: Duration,
        every_primary: bool,
    ) {
        if report.integrity.values_wrong > 0 {
            self.violate(format!(
                "wrong values: {} of {}",
                report.integrity.values_wrong, report.integrity.values_checked
            ));
        }
        if report.writes.lost > 0 {
            self.violate(format!(
                "lost writes: {} of {} acknowledged",
                report.writes.lost, report.writes.acked
            ));
        }
        let mut any_primary = false;
        for (name, c) in &o.connectors {
            let state = c.as_ref().map(|c| c.image.serving().0);
            any_primary |= state == Some(SERVING_PRIMARY);
            let ok = match state {
                Some(SERVING_PRIMARY) => true,
                Some(SERVING_STANDBY) => !every_primary,
                _ => false,
            };
            if !ok {
                self.violate(format!(
                    "not serving at the end {name}: status state {state:?} (1 = Primary data, 2 = Standby data)"
                ));
            }
        }
        if !any_primary {
            self.violate("no Primary data at the end: no connector serves Primary data".into());
        }
        // Mirrors the recovery rule below, on the service level: a redundancy-aware client
        // finds a healthy connector within the window (judged once the window has passed).
        if let Some((t, label)) = self.last_fault.clone() {
            let deadline = t + recovery;
            match self.healthy_after_last_fault {
                Some(h) if h <= deadline => {}
                h if h.is_some() || self.now > deadline => self.violate(format!(
                    "no healthy level after the last fault: after `{label}` at {:.3} s no connector announced >= 200 within {} ms ({})",
                    t.as_secs_f64(),
                    recovery.as_millis(),
                    match h {
                        Some(h) => format!("first at {:.3} s", h.as_secs_f64()),
                        None => "none by the end".to_string(),
                    }
                )),
                _ => {}
            }
        }
        let last = report
            .failovers
            .iter()
            .map(|f| f.at_s)
            .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
        if let Some(last) = last {
            for f in report.failovers.iter().filter(|f| f.at_s == last) {
                if !f.recovered || f.gap_ms > recovery.as_millis() as u64 {
                    self.violate(format!(
                        "no recovery: after `{}` at {:.3} s third parties waited {} ms for fresh data (window {} ms)",
                        f.fault,
                        f.at_s,
                        f.gap_ms,
                        recovery.as_millis()
                    ));
                }
            }
        }
    }
}
