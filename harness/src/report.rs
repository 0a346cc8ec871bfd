//! Reports: the JSON of docs/design.md §7 (`schema_version = 1`), a terminal summary table and
//! JUnit XML (one test case per expectation).

use crate::scenario::Expect;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub scenario: String,
    pub architecture: u8,
    pub backend: String,
    pub passed: bool,
    pub duration_s: f64,
    pub licences: Licences,
    pub ingest: Ingest,
    pub modbus: Modbus,
    pub latency_ms: Latency,
    pub failovers: Vec<Failover>,
    pub integrity: Integrity,
    pub writes: Writes,
    pub expectations: Vec<Expectation>,
    /// CPU and memory per component over the measured run (extension of the §7 keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// Connection floods run during the scenario and what the listeners did with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floods: Vec<crate::flood::FloodSummary>,
    /// Simulation backend only: the seed and the virtual and wall time of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimInfo>,
    /// What happened when during the run, sampled per interval (docs/design.md §14; the HTML
    /// report draws it). Absent in reports of older harness versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<crate::timeline::Timeline>,
}

/// What a simulated run took (§11).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SimInfo {
    pub seed: u64,
    /// Virtual seconds simulated (start-up included).
    pub virtual_s: f64,
    /// Wall-clock seconds the simulation took: the only field that differs between two
    /// runs of the same file and seed.
    pub wall_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Resource {
    pub component: String,
    /// Percent of one core over the measured run.
    pub cpu_percent: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Licences {
    pub po_server: u32,
    pub smart_connector: u32,
    pub client_access: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ingest {
    /// Tag updates accepted by all connectors together.
    pub updates: u64,
    /// The highest per-connector rate: what one connector sustained.
    pub updates_per_s: f64,
    /// Per connector: name and updates/s.
    pub per_connector: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Modbus {
    pub requests: u64,
    pub requests_per_s: f64,
    /// Tag values the third parties read per second (the delivered rate).
    pub values_per_s: f64,
    /// Exceptions, timeouts and connection failures seen by the third parties.
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub samples: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Failover {
    pub fault: String,
    pub at_s: f64,
    pub gap_ms: u64,
    /// False when some third party never read data sampled after the fault.
    pub recovered: bool,
    /// How the backend applied the fault (e.g. "nftables drop", "SIGKILL").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mechanism: String,
    /// Each third party's own gap, when Modbus masters and OPC UA clients (or several
    /// kinds) ran together; empty otherwise (`gap_ms` is then the only one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_third_party: Vec<ThirdPartyGap>,
}

/// One third party's failover gap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThirdPartyGap {
    /// `modbus 0`, `opcua 0`, …
    pub third_party: String,
    pub gap_ms: u64,
    pub recovered: bool,
}

impl Failover {
    /// `modbus 0 180 ms, opcua 0 213 ms` (empty without a breakdown).
    pub fn breakdown(&self) -> String {
        self.by_third_party
            .iter()
            .map(|g| {
                format!(
                    "{} {} ms{}",
                    g.third_party,
                    g.gap_ms,
                    if g.recovered {
                        ""
                    } else {
                        " (never recovered)"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Integrity {
    pub values_checked: u64,
    pub values_wrong: u64,
    /// Up to ten wrong values, for diagnosis.
    pub wrong_examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Writes {
    pub sent: u64,
    pub acked: u64,
    pub applied: u64,
    pub lost: u64,
    pub refused: u64,
    /// Each lost write with the history of its tag, for diagnosis (up to ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Expectation {
    pub name: String,
    pub limit: String,
    pub actual: String,
    pub passed: bool,
}

fn ms(d: std::time::Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// The expectations a scenario sets, as (name, limit) rows (`harness plan`): the limits
/// `Report::judge` writes, so the two can never disagree.
pub fn expectation_limits(e: &Expect) -> Vec<(String, String)> {
    let mut r = Report::default();
    r.judge(e);
    r.expectations
        .into_iter()
        .map(|x| (x.name, x.limit))
        .collect()
}

impl Report {
    /// Evaluates `expect` against the figures and sets `expectations` and `passed`.
    pub fn judge(&mut self, e: &Expect) {
        let mut out = Vec::new();
        let mut row = |name: &str, limit: String, actual: String, passed: bool| {
            out.push(Expectation {
                name: name.into(),
                limit,
                actual,
                passed,
            })
        };
        if let Some(v) = e.min_updates_per_s {
            let a = self.ingest.updates_per_s;
            row(
                "min_updates_per_s",
                format!(">= {v}"),
                format!("{a:.0}"),
                a >= v,
            );
        }
        if let Some(v) = e.min_values_per_s {
            let a = self.modbus.values_per_s;
            row(
                "min_values_per_s",
                format!(">= {v}"),
                format!("{a:.0}"),
                a >= v,
            );
        }
        if let Some(v) = e.max_failover_gap {
            let worst = self.failovers.iter().map(|f| f.gap_ms).max();
            let all_recovered = self.failovers.iter().all(|f| f.recovered);
            let actual = match worst {
                Some(w) if all_recovered => format!("{w} ms"),
                Some(w) => format!("{w} ms (not recovered)"),
                None => "no faults".into(),
            };
            row(
                "max_failover_gap",
                format!("<= {}", ms(v)),
                actual,
                all_recovered && worst.unwrap_or(0) <= v.as_millis() as u64,
            );
        }
        if let Some(v) = e.max_latency_p99 {
            let a = self.latency_ms.p99;
            let has = self.latency_ms.samples > 0;
            row(
                "max_latency_p99",
                format!("<= {}", ms(v)),
                if has {
                    format!("{a} ms")
                } else {
                    "no samples".into()
                },
                has && a <= v.as_millis() as u64,
            );
        }
        if let Some(v) = e.max_values_wrong {
            let a = self.integrity.values_wrong;
            row(
                "max_values_wrong",
                format!("<= {v}"),
                format!("{a} of {}", self.integrity.values_checked),
                a <= v && self.integrity.values_checked > 0,
            );
        }
        if let Some(v) = e.max_writes_lost {
            let a = self.writes.lost;
            row(
                "max_writes_lost",
                format!("<= {v}"),
                format!("{a} of {} acked", self.writes.acked),
                a <= v,
            );
        }
        if let Some(v) = e.min_writes_applied {
            let a = self.writes.applied;
            row(
                "min_writes_applied",
                format!(">= {v}"),
                a.to_string(),
                a >= v,
            );
        }
        if let Some(v) = e.min_writes_refused {
            let a = self.writes.refused;
            row(
                "min_writes_refused",
                format!(">= {v}"),
                a.to_string(),
                a >= v,
            );
        }
        if let Some(v) = e.max_modbus_errors {
            let a = self.modbus.errors;
            row(
                "max_modbus_errors",
                format!("<= {v}"),
                a.to_string(),
                a <= v,
            );
        }
        self.passed = out.iter().all(|x| x.passed);
        self.expectations = out;
    }

    /// The summary printed at the end of a run.
    pub fn render_table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} — architecture {}, {} backend, {:.1} s: {}",
            self.scenario,
            self.architecture,
            self.backend,
            self.duration_s,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        let _ = writeln!(
            o,
            "  ingest {:.0} updates/s per connector · delivered {:.0} values/s · {:.0} Modbus requests/s · {} errors",
            self.ingest.updates_per_s,
            self.modbus.values_per_s,
            self.modbus.requests_per_s,
            self.modbus.errors
        );
        let _ = writeln!(
            o,
            "  freshness p50 {} ms · p99 {} ms · max {} ms · integrity {} wrong of {} · writes {} sent, {} acked, {} applied, {} lost, {} refused",
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.integrity.values_wrong,
            self.integrity.values_checked,
            self.writes.sent,
            self.writes.acked,
            self.writes.applied,
            self.writes.lost,
            self.writes.refused
        );
        for f in &self.failovers {
            let _ = writeln!(
                o,
                "  fault {} at {:.1} s: gap {} ms{}{}{}",
                f.fault,
                f.at_s,
                f.gap_ms,
                if f.recovered {
                    ""
                } else {
                    " (never recovered)"
                },
                if f.by_third_party.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.breakdown())
                },
                if f.mechanism.is_empty() {
                    String::new()
                } else {
                    format!(" · {}", f.mechanism)
                }
            );
        }
        for f in &self.floods {
            let _ = writeln!(
                o,
                "  flood {} {} ×{}: at most {} held open at once · {} connections · {} closed by the listener · {} failed to connect",
                f.target,
                f.mode,
                f.connections,
                f.max_open,
                f.connected,
                f.closed_by_peer,
                f.connect_failed
            );
        }
        if !self.expectations.is_empty() {
            let w = self
                .expectations
                .iter()
                .map(|e| e.name.len())
                .max()
                .unwrap_or(0)
                .max(11);
            let lw = self
                .expectations
                .iter()
                .map(|e| e.limit.len())
                .max()
                .unwrap_or(0)
                .max(5);
            let aw = self
                .expectations
                .iter()
                .map(|e| e.actual.len())
                .max()
                .unwrap_or(0)
                .max(6);
            let _ = writeln!(
                o,
                "  {:<w$}  {:<lw$}  {:<aw$}  verdict",
                "expectation", "limit", "actual"
            );
            for e in &self.expectations {
                let _ = writeln!(
                    o,
                    "  {:<w$}  {:<lw$}  {:<aw$}  {}",
                    e.name,
                    e.limit,
                    e.actual,
                    if e.passed { "pass" } else { "FAIL" }
                );
            }
        }
        if !self.resources.is_empty() {
            let parts: Vec<String> = self
                .resources
                .iter()
                .map(|r| {
                    format!(
                        "{} {:.0}% CPU {:.1} MiB",
                        r.component, r.cpu_percent, r.rss_mib
                    )
                })
                .collect();
            let _ = writeln!(o, "  resources: {}", parts.join(" · "));
        }
        for ex in &self.integrity.wrong_examples {
            let _ = writeln!(o, "  wrong value: {ex}");
        }
        for ex in &self.writes.lost_examples {
            let _ = writeln!(o, "  lost write: {ex}");
        }
        o
    }
}

/// XML needs the same escapes as an HTML attribute: one helper for both.
fn xml_escape(s: &str) -> String {
    crate::escape::esc(s)
}

/// JUnit XML: a test suite per scenario, a test case per expectation.
pub fn junit(reports: &[Report], skipped: &[Skipped]) -> String {
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let tests: usize = reports.iter().map(|r| r.expectations.len()).sum::<usize>() + skipped.len();
    let failures: usize = reports
        .iter()
        .map(|r| r.expectations.iter().filter(|e| !e.passed).count())
        .sum();
    let _ = writeln!(
        o,
        "<testsuites name=\"harness\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{}\">",
        skipped.len()
    );
    // A skipped scenario is one test case (it has no expectations judged) marked
    // <skipped/>, so CI shows it rather than losing it.
    for s in skipped {
        let _ = writeln!(
            o,
            "  <testsuite name=\"{}\" tests=\"1\" failures=\"0\" skipped=\"1\" time=\"0.000\">",
            xml_escape(&format!("{} [{}]", s.scenario, s.backend))
        );
        let _ = writeln!(
            o,
            "    <testcase classname=\"{}\" name=\"run\">\n      <skipped message=\"{}\"/>\n    </testcase>",
            xml_escape(&s.scenario),
            xml_escape(&s.message())
        );
        let _ = writeln!(o, "  </testsuite>");
    }
    for r in reports {
        let f = r.expectations.iter().filter(|e| !e.passed).count();
        let _ = writeln!(
            o,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" time=\"{:.3}\">",
            xml_escape(&format!("{} [{}]", r.scenario, r.backend)),
            r.expectations.len(),
            r.duration_s
        );
        for e in &r.expectations {
            let _ = write!(
                o,
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml_escape(&r.scenario),
                xml_escape(&e.name)
            );
            if e.passed {
                let _ = writeln!(o, "/>");
            } else {
                let _ = writeln!(
                    o,
                    ">\n      <failure message=\"{}\">limit {}, actual {}</failure>\n    </testcase>",
                    xml_escape(&format!("{}: {} (limit {})", e.name, e.actual, e.limit)),
                    xml_escape(&e.limit),
                    xml_escape(&e.actual)
                );
            }
        }
        let _ = writeln!(o, "  </testsuite>");
    }
    let _ = writeln!(o, "</testsuites>");
    o
}

/// A scenario of a several-file run that the chosen backend cannot run: reported, not
/// run (`harness run` without `--strict`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub scenario: String,
    pub file: String,
    /// The backend that would have run it.
    pub backend: String,
    /// Why not: `KEY: WHY`, one per reason.
    pub skipped: Vec<String>,
    /// The backends that can run it.
    pub runnable_on: Vec<String>,
}

impl Skipped {
    /// Why, in one line (the keys that share a reason, such as four `loss` faults, under
    /// one reason), and who can run it.
    pub fn message(&self) -> String {
        let mut reasons: Vec<(Vec<&str>, &str)> = Vec::new();
        for r in &self.skipped {
            let (key, why) = r.split_once(": ").unwrap_or(("", r));
            match reasons.iter_mut().find(|(_, w)| *w == why) {
                Some((keys, _)) => keys.push(key),
                None => reasons.push((vec![key], why)),
            }
        }
        let reasons: Vec<String> = reasons
            .iter()
            .map(|(keys, why)| format!("{}: {why}", keys.join(", ")))
            .collect();
        format!(
            "the {} backend cannot run it: {}; backends that can run it: {}",
            self.backend,
            reasons.join("; "),
            if self.runnable_on.is_empty() {
                "none".to_string()
            } else {
                self.runnable_on.join(", ")
            }
        )
    }

    /// The terminal summary line.
    pub fn render(&self) -> String {
        format!(
            "{} ({}) — SKIPPED: {}\n",
            self.scenario,
            self.file,
            self.message()
        )
    }
}

/// Figures compared with a baseline: (name, higher is better, value).
fn guarded(r: &Report) -> Vec<(&'static str, bool, f64)> {
    let worst_gap = r.failovers.iter().map(|f| f.gap_ms).max();
    let mut v = vec![
        ("ingest.updates_per_s", true, r.ingest.updates_per_s),
        ("modbus.values_per_s", true, r.modbus.values_per_s),
        ("modbus.requests_per_s", true, r.modbus.requests_per_s),
        ("latency_ms.p99", false, r.latency_ms.p99 as f64),
    ];
    if let Some(g) = worst_gap {
        v.push(("failover_gap_ms", false, g as f64));
    }
    v
}

/// Latencies closer than this to the baseline are noise, whatever the percentage.
pub const LATENCY_NOISE_MS: f64 = 5.0;

/// Compares `r` with `baseline` (the same scenario and backend) and appends one
/// expectation per guarded figure: throughput may not fall, latency may not rise, by more
/// than `margin` (0.10 = 10 %). Sets `passed` again.
pub fn check_regression(r: &mut Report, baseline: &Report, margin: f64) {
    let old: std::collections::HashMap<&str, f64> = guarded(baseline)
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect();
    for (name, higher_is_better, new) in guarded(r) {
        let Some(&was) = old.get(name) else { continue };
        let (limit, passed) = if higher_is_better {
            let floor = was * (1.0 - margin);
            (
                format!(">= {floor:.0} (baseline {was:.0} - {:.0}%)", margin * 100.0),
                new >= floor,
            )
        } else {
            let ceiling = was * (1.0 + margin);
            (
                format!(
                    "<= {ceiling:.0} (baseline {was:.0} + {:.0}%)",
                    margin * 100.0
                ),
                new <= ceiling || new - was <= LATENCY_NOISE_MS,
            )
        };
        r.expectations.push(Expectation {
            name: format!("baseline {name}"),
            limit,
            actual: format!("{new:.0}"),
            passed,
        });
    }
    r.passed = r.expectations.iter().all(|e| e.passed);
}

/// Parses a percentage, `10%` or `10` (the same: the flag is in percent, so a bare
/// number is read as one), into a fraction.
pub fn parse_margin(s: &str) -> Result<f64, String> {
    let number = s.trim().strip_suffix('%').unwrap_or(s.trim()).trim();
    let percent = number
        .parse::<f64>()
        .map_err(|_| format!("`{s}` is not a percentage: write e.g. `10%`"))?;
    if (0.0..100.0).contains(&percent) {
        Ok(percent / 100.0)
    } else {
        Err(format!(
            "`{s}`: the margin is a percentage from 0% up to (not including) 100%, e.g. `10%`"
        ))
    }
}

/// Reads a baseline file: one report or an array of reports (`harness run --json`).
pub fn load_baseline(path: &std::path::Path) -> Result<Vec<Report>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: line {}: {e}", path.display(), e.line()))?;
    let parse = |v: serde_json::Value| {
        serde_json::from_value::<Report>(v)
            .map_err(|e| format!("{}: not a harness report: {e}", path.display()))
    };
    match value {
        // Scenarios the backend skipped have no figures to compare with.
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter(|v| v.get("skipped").is_none())
            .map(parse)
            .collect(),
        v => Ok(vec![parse(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Here rather than in timeline.rs: the report holds the timeline, not the other way
    // round, and a test there naming the report made the two modules a cycle
    // (scripts/module-cycles.py).
    #[test]
    fn old_reports_without_a_timeline_still_load() {
        let mut r = Report::default();
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("timeline"));
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        r.timeline = Some(crate::timeline::Timeline::default());
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back.timeline, Some(crate::timeline::Timeline::default()));
    }

    #[test]
    fn a_skipped_scenario_names_each_reason_once() {
        let why = "`loss` cannot be applied by the process backend (it needs a network that can lose packets: --backend sim or netns)";
        let s = Skipped {
            scenario: "lossy".into(),
            file: "scenarios/lossy.toml".into(),
            backend: "process".into(),
            skipped: vec![
                format!("fault[0].action: {why}"),
                format!("fault[1].action: {why}"),
                "security.tls: another reason".into(),
            ],
            runnable_on: vec!["sim".into(), "netns".into()],
        };
        assert_eq!(
            s.render(),
            format!(
                "lossy (scenarios/lossy.toml) — SKIPPED: the process backend cannot run it: fault[0].action, fault[1].action: {why}; security.tls: another reason; backends that can run it: sim, netns\n"
            )
        );
    }

    #[test]
    fn margins_parse() {
        assert_eq!(parse_margin("10%"), Ok(0.1));
        assert_eq!(parse_margin(" 25 % "), Ok(0.25));
        // A bare number is a percentage, like the default `10%` (not a fraction).
        assert_eq!(parse_margin("10"), Ok(0.1));
        assert_eq!(parse_margin("0.5"), Ok(0.005));
        assert!(parse_margin("150%").is_err());
        assert!(parse_margin("100").is_err());
        assert!(parse_margin("-1%").is_err());
        assert!(parse_margin("ten").is_err());
    }
}
