//! The invariants of docs/design.md §11, checked on every simulated run that asks for them
//! (`[expect] invariants = true`, and every run of `harness explore`).
//!
//! During the run, after every simulation step: never two Primaries with the same epoch;
//! a connector never serves Primary data of an epoch lower than one it served before (in
//! one incarnation: a restarted connector remembers nothing). At the end: no wrong value,
//! no lost acknowledged write, every connector serving Primary data, and the third
//! parties reading fresh data again within the recovery window after the last fault.

use crate::observed::Observed;
use crate::report::Report;
use po_protocol::Role;
use std::collections::BTreeMap;
use std::time::Duration;

/// Register 1 of the status block: serving Primary data.
const SERVING_PRIMARY: u8 = 1;
/// Register 1 of the status block: serving Standby data.
const SERVING_STANDBY: u8 = 2;

#[derive(Debug, Default)]
pub struct Invariants {
    /// Per connector: the highest epoch it served Primary data of (this incarnation).
    served: BTreeMap<String, u32>,
    /// What broke, each rule once per component, with the virtual time.
    pub violations: Vec<String>,
}

impl Invariants {
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
