//! Self-contained HTML reports (docs/design.md §14): `harness run … --html PATH` and `harness
//! bench … --html PATH` write one file per invocation, with inline CSS and inline SVG
//! charts (drawn by plotters), no script and nothing fetched from anywhere.
//!
//! Per scenario: the verdict, rates over time (ingest per connector, delivered), freshness
//! p50/p99 over time, a band timeline per server (role, epoch) and per connector (active
//! source, role, epoch), write outcomes over time, fault markers across every chart, the
//! state changes, the expectations and the summary figures.

mod bench;
mod bench_opcua;
pub mod charts;

pub use bench::bench_page;

pub use crate::escape::esc;
use crate::report::Report;
use crate::timeline::Timeline;
use anyhow::{Context as _, Result};
use charts::{Axes, Line, PALETTE};
use std::fmt::Write as _;
use std::path::Path;

const CSS: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1000px; padding: 1em; color: #212121; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-top: 1.5em; }
.verdict { display: inline-block; padding: 0.1em 0.6em; border-radius: 0.3em; color: #fff; font-size: 0.8em; vertical-align: middle; }
.verdict.pass { background: #2e7d32; } .verdict.fail { background: #c62828; }
.meta { color: #555; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #ffebee; } td.pass { color: #2e7d32; } td.fail { color: #c62828; font-weight: bold; }
figure.chart { margin: 1em 0; } figure.chart svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.85em; }
.key span { display: inline-block; margin-right: 1em; font-size: 0.85em; }
.key i { display: inline-block; width: 1em; height: 0.8em; margin-right: 0.3em; vertical-align: middle; }
nav ul { padding-left: 1.2em; } code { background: #f5f5f5; padding: 0 0.2em; }
"#;

/// A whole page around `body`.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n<footer class=\"meta\">harness {}</footer>\n</body>\n</html>\n",
        esc(title),
        env!("CARGO_PKG_VERSION")
    )
}

pub(crate) fn verdict(passed: bool) -> &'static str {
    if passed {
        "<span class=\"verdict pass\">PASSED</span>"
    } else {
        "<span class=\"verdict fail\">FAILED</span>"
    }
}

/// A chart inside its figure: `class="chart {class}"`, `id="{prefix}{class}"`.
pub(crate) fn figure(prefix: &str, class: &str, svg: &str, caption: &str) -> String {
    format!(
        "<figure class=\"chart {class}\" id=\"{prefix}{class}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>\n",
        esc(caption)
    )
}

/// Checks, before anything runs, that `path` can be written: its directory exists and it
/// is not a directory itself. The message names the path.
pub fn check_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("--html {}: is a directory", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "--html {}: directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Writes a page; the error names the path.
pub fn write(path: &Path, html: &str) -> Result<()> {
    std::fs::write(path, html).with_context(|| format!("writing HTML report {}", path.display()))
}

/// The page of `harness run`: one section per scenario.
pub fn run_page(reports: &[Report]) -> Result<String> {
    let mut body = String::new();
    let all = reports.iter().all(|r| r.passed);
    let title = match reports {
        [one] => format!("harness run — {}", one.scenario),
        _ => format!("harness run — {} scenarios", reports.len()),
    };
    let _ = writeln!(body, "<h1>harness run {}</h1>", verdict(all));
    let passed = reports.iter().filter(|r| r.passed).count();
    let _ = writeln!(
        body,
        "<p class=\"meta\">{} scenario{}, {passed} passed.</p>",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    );
    if reports.len() > 1 {
        body.push_str("<nav><ul>\n");
        for (i, r) in reports.iter().enumerate() {
            let _ = writeln!(
                body,
                "<li><a href=\"#s{i}\">{}</a> ({} backend) {}</li>",
                esc(&r.scenario),
                esc(&r.backend),
                verdict(r.passed)
            );
        }
        body.push_str("</ul></nav>\n");
    }
    for (i, r) in reports.iter().enumerate() {
        body.push_str(&scenario_section(i, r)?);
    }
    Ok(page(&title, &body))
}

fn x_max(r: &Report, tl: &Timeline) -> f64 {
    let last_window = tl.windows.last().map_or(0.0, |w| w.t_s);
    let last_band = tl
        .servers
        .iter()
        .flat_map(|t| t.bands.last().map(|b| b.to_s))
        .chain(
            tl.connectors
                .iter()
                .flat_map(|t| t.bands.last().map(|b| b.to_s)),
        )
        .fold(0.0, f64::max);
    r.duration_s.max(last_window).max(last_band).max(0.5)
}

fn time_axes(title: &str, y_desc: &str, x_max: f64, height: u32) -> Axes {
    Axes {
        title: title.into(),
        x_desc: "s since the start of the measured run".into(),
        y_desc: y_desc.into(),
        x: 0.0..x_max,
        x_log: false,
        height,
    }
}

fn line(name: &str, i: usize, points: Vec<Option<(f64, f64)>>) -> Line {
    Line {
        name: name.into(),
        color: PALETTE[i % PALETTE.len()],
        points,
        dashed: false,
        marks: false,
    }
}

/// The four charts of a timeline, the colour key and the table of state changes.
fn timeline_html(prefix: &str, r: &Report, tl: &Timeline) -> Result<String> {
    let x = x_max(r, tl);
    let mut o = String::new();
    // (a) rates
    let mut rates: Vec<Line> = tl
        .connectors
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let pts = tl
                .windows
                .iter()
                .map(|w| {
                    w.ingest_per_s
                        .get(&c.name)
                        .copied()
                        .flatten()
                        .map(|v| (w.t_s, v))
                })
                .collect();
            line(&format!("ingest {} (updates/s)", c.name), i, pts)
        })
        .collect();
    rates.push(Line {
        color: charts::PALETTE[6],
        ..line(
            "delivered to third parties (values/s)",
            0,
            tl.windows
                .iter()
                .map(|w| Some((w.t_s, w.delivered_per_s)))
                .collect(),
        )
    });
    let svg = charts::line_chart(
        &time_axes("Ingest and delivered rates", "per second", x, 340),
        &rates,
        &tl.faults,
    )?;
    o.push_str(&figure(
        prefix,
        "chart-rates",
        &svg,
        &format!(
            "Tag updates/s each connector accepted and tag values/s the third parties read, per {} ms window.",
            tl.window_ms
        ),
    ));
    // (b) freshness
    let fresh = vec![
        line(
            "p50",
            0,
            tl.windows
                .iter()
                .map(|w| w.freshness_p50_ms.map(|v| (w.t_s, v as f64)))
                .collect(),
        ),
        line(
            "p99",
            1,
            tl.windows
                .iter()
                .map(|w| w.freshness_p99_ms.map(|v| (w.t_s, v as f64)))
                .collect(),
        ),
    ];
    let svg = charts::line_chart(
        &time_axes("Freshness of the data read", "ms", x, 300),
        &fresh,
        &tl.faults,
    )?;
    o.push_str(&figure(
        prefix,
        "chart-freshness",
        &svg,
        "Probe age when a third party read it (read time minus sample time), p50 and p99 per window; gaps: no probe read in the window.",
    ));
    // (c) bands
    let svg = charts::band_chart(tl, x)?;
    o.push_str(&figure(
        prefix,
        "chart-timeline",
        &svg,
        "Each server's role and epoch as it announces them; each connector's active source with that source's role and epoch, from its Modbus status block.",
    ));
    let key = [
        (charts::PRIMARY, "Primary / serving Primary data"),
        (charts::STANDBY, "Standby / serving Standby data"),
        (charts::STALE, "no source: stale"),
        (charts::STARTING, "starting"),
        (charts::DOWN, "down / unreachable"),
        (charts::FAULT, "fault"),
    ];
    o.push_str("<p class=\"key\">");
    for (c, name) in key {
        let _ = write!(
            o,
            "<span><i style=\"background: rgb({},{},{})\"></i>{}</span>",
            c.0,
            c.1,
            c.2,
            esc(name)
        );
    }
    o.push_str("</p>\n");
    // (d) writes
    let writes = vec![
        line(
            "sent",
            0,
            tl.windows
                .iter()
                .map(|w| Some((w.t_s, w.writes_sent as f64)))
                .collect(),
        ),
        line(
            "acknowledged",
            2,
            tl.windows
                .iter()
                .map(|w| Some((w.t_s, w.writes_acked as f64)))
                .collect(),
        ),
        Line {
            color: charts::FAULT,
            ..line(
                "refused",
                0,
                tl.windows
                    .iter()
                    .map(|w| Some((w.t_s, w.writes_refused as f64)))
                    .collect(),
            )
        },
        Line {
            dashed: true,
            ..line(
                "acknowledged, not read back yet",
                3,
                tl.windows
                    .iter()
                    .map(|w| Some((w.t_s, w.writes_unconfirmed as f64)))
                    .collect(),
            )
        },
    ];
    let svg = charts::line_chart(
        &time_axes("Writes", "writes per window", x, 300),
        &writes,
        &tl.faults,
    )?;
    o.push_str(&figure(
        prefix,
        "chart-writes",
        &svg,
        &format!(
            "Setpoint writes sent, acknowledged and refused per {} ms window, and acknowledged writes not yet seen on a read (lost if the run ended there; the final count comes after a read-back: {} lost).",
            tl.window_ms, r.writes.lost
        ),
    ));
    // State changes
    let rows = charts::rows(tl);
    let mut list: Vec<(f64, usize, &str, &str)> = Vec::new();
    for (i, (_, bands)) in rows.iter().enumerate() {
        for pair in bands.windows(2) {
            list.push((pair[1].0, i, &pair[0].3, &pair[1].3));
        }
    }
    list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut changes = String::new();
    for (at, row, from, to) in list {
        let _ = writeln!(
            changes,
            "<tr class=\"change\"><td class=\"num\">{at:.2} s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rows[row].0),
            esc(from),
            esc(to)
        );
    }
    if !changes.is_empty() {
        o.push_str("<h3>State changes</h3>\n<table class=\"changes\">\n<tr><th>at</th><th>component</th><th>from</th><th>to</th></tr>\n");
        o.push_str(&changes);
        o.push_str("</table>\n");
    }
    Ok(o)
}

fn scenario_section(i: usize, r: &Report) -> Result<String> {
    let prefix = format!("s{i}-");
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<section class=\"scenario\" id=\"s{i}\">\n<h2>{} {}</h2>",
        esc(&r.scenario),
        verdict(r.passed)
    );
    let _ = write!(
        o,
        "<p class=\"meta\">architecture {} · {} backend · {:.1} s measured · licences: {} server, {} connector, {} Client Access",
        r.architecture,
        esc(&r.backend),
        r.duration_s,
        r.licences.po_server,
        r.licences.smart_connector,
        r.licences.client_access
    );
    if let Some(sim) = &r.sim {
        let _ = write!(
            o,
            " · seed {} · {:.1} s virtual in {:.1} s",
            sim.seed, sim.virtual_s, sim.wall_s
        );
    }
    o.push_str("</p>\n");
    match &r.timeline {
        Some(tl) => o.push_str(&timeline_html(&prefix, r, tl)?),
        None => o.push_str("<p class=\"meta\">This report has no timeline (written by an older harness): no charts.</p>\n"),
    }
    o.push_str("<h3>Expectations</h3>\n");
    if r.expectations.is_empty() {
        o.push_str("<p class=\"meta\">The scenario sets none.</p>\n");
    } else {
        o.push_str("<table class=\"expectations\">\n<tr><th>expectation</th><th>limit</th><th>actual</th><th>verdict</th></tr>\n");
        for e in &r.expectations {
            let v = if e.passed { "pass" } else { "fail" };
            let _ = writeln!(
                o,
                "<tr class=\"{v}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"{v}\">{}</td></tr>",
                esc(&e.name),
                esc(&e.limit),
                esc(&e.actual),
                if e.passed { "pass" } else { "FAIL" }
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str(&summary_html(r));
    o.push_str("</section>\n");
    Ok(o)
}

fn summary_html(r: &Report) -> String {
    let mut o = String::from("<h3>Figures</h3>\n<table class=\"summary\">\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    };
    let per: Vec<String> = r
        .ingest
        .per_connector
        .iter()
        .map(|(n, v)| format!("{n} {v:.0}/s"))
        .collect();
    row(
        "ingest",
        format!(
            "{:.0} updates/s per connector ({}) · {} updates in all",
            r.ingest.updates_per_s,
            per.join(", "),
            r.ingest.updates
        ),
    );
    row(
        "delivered",
        format!(
            "{:.0} values/s · {:.0} Modbus requests/s · {} errors",
            r.modbus.values_per_s, r.modbus.requests_per_s, r.modbus.errors
        ),
    );
    row(
        "freshness",
        format!(
            "p50 {} ms · p99 {} ms · max {} ms ({} probe reads)",
            r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.max, r.latency_ms.samples
        ),
    );
    row(
        "integrity",
        format!(
            "{} wrong of {} values checked",
            r.integrity.values_wrong, r.integrity.values_checked
        ),
    );
    row(
        "writes",
        format!(
            "{} sent, {} acknowledged, {} applied, {} lost, {} refused",
            r.writes.sent, r.writes.acked, r.writes.applied, r.writes.lost, r.writes.refused
        ),
    );
    for res in &r.resources {
        row(
            &format!("resources {}", res.component),
            format!("{:.0}% CPU · {:.1} MiB", res.cpu_percent, res.rss_mib),
        );
    }
    for f in &r.floods {
        row(
            &format!("flood {}", f.target),
            format!(
                "{} ×{}: at most {} open at once · {} connections · {} closed by the listener · {} failed to connect",
                f.mode, f.connections, f.max_open, f.connected, f.closed_by_peer, f.connect_failed
            ),
        );
    }
    o.push_str("</table>\n");
    if !r.failovers.is_empty() {
        o.push_str("<h3>Faults</h3>\n<table class=\"faults\">\n<tr><th>fault</th><th>at</th><th>gap until fresh data</th><th>mechanism</th></tr>\n");
        for f in &r.failovers {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"num\">{:.2} s</td><td class=\"num\">{} ms{}{}</td><td>{}</td></tr>",
                esc(&f.fault),
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
                    format!("<br><small>{}</small>", esc(&f.breakdown()))
                },
                esc(&f.mechanism)
            );
        }
        o.push_str("</table>\n");
    }
    let examples: Vec<&String> = r
        .integrity
        .wrong_examples
        .iter()
        .chain(&r.writes.lost_examples)
        .collect();
    if !examples.is_empty() {
        o.push_str("<h3>Examples</h3>\n<ul class=\"examples\">\n");
        for e in examples {
            let _ = writeln!(o, "<li><code>{}</code></li>", esc(e));
        }
        o.push_str("</ul>\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_a_report_without_timeline_renders() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
        );
        let r = Report {
            scenario: "<script>".into(),
            ..Report::default()
        };
        let html = run_page(&[r]).unwrap();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("no timeline"));
    }

    /// A timeline with every kind of state and a hole in the data.
    fn synthetic() -> Timeline {
        use crate::timeline::{
            Band, ConnectorState, FaultMark, ServerState, Serving, Track, Window,
        };
        use po_protocol::Role;
        let windows = (1..=20)
            .map(|i| {
                let t = f64::from(i) * 0.5;
                Window {
                    t_s: t,
                    ingest_per_s: [("sc-a".to_string(), (i != 9).then_some(1000.0))].into(),
                    delivered_per_s: 2000.0,
                    freshness_p50_ms: (i != 10).then_some(20),
                    freshness_p99_ms: (i != 10).then_some(40),
                    freshness_samples: 10,
                    writes_sent: 2,
                    writes_acked: 2,
                    ..Window::default()
                }
            })
            .collect();
        fn band<S>(from_s: f64, to_s: f64, state: S) -> Band<S> {
            Band {
                from_s,
                to_s,
                state,
            }
        }
        let conn = |state, source: Option<&str>, role, epoch| ConnectorState {
            service_level: None,
            state,
            source: source.map(String::from),
            role,
            epoch,
        };
        Timeline {
            interval_ms: 250,
            window_ms: 500,
            windows,
            servers: vec![Track {
                name: "po-a".into(),
                bands: vec![
                    band(
                        0.0,
                        4.0,
                        ServerState {
                            role: Some(Role::Primary),
                            epoch: Some(1),
                        },
                    ),
                    band(4.0, 10.0, ServerState::default()),
                ],
            }],
            connectors: vec![Track {
                name: "sc-a".into(),
                bands: vec![
                    band(
                        0.0,
                        4.25,
                        conn(Serving::Primary, Some("po-a"), Some(Role::Primary), Some(1)),
                    ),
                    band(4.25, 5.0, conn(Serving::Stale, None, None, None)),
                    band(5.0, 6.0, conn(Serving::Unreachable, None, None, None)),
                    band(
                        6.0,
                        10.0,
                        conn(Serving::Standby, Some("po-b"), Some(Role::Standby), Some(1)),
                    ),
                ],
            }],
            faults: vec![FaultMark {
                at_s: 4.0,
                fault: "crash <po-a>".into(),
                mechanism: String::new(),
            }],
        }
    }

    #[test]
    fn several_scenarios_get_a_section_each_with_their_own_chart_ids() {
        let tl = synthetic();
        // The timeline survives JSON (bands flatten their state).
        let back: Timeline = serde_json::from_str(&serde_json::to_string(&tl).unwrap()).unwrap();
        assert_eq!(back, tl);
        let r = |name: &str, passed| Report {
            scenario: name.into(),
            passed,
            duration_s: 10.0,
            timeline: Some(tl.clone()),
            ..Report::default()
        };
        let html = run_page(&[r("one", true), r("two", false)]).unwrap();
        for i in 0..2 {
            for class in [
                "chart-rates",
                "chart-freshness",
                "chart-timeline",
                "chart-writes",
            ] {
                assert_eq!(
                    html.matches(&format!("id=\"s{i}-{class}\"")).count(),
                    1,
                    "s{i}-{class}"
                );
            }
            assert!(html.contains(&format!("<a href=\"#s{i}\">")));
        }
        assert_eq!(html.matches("<section class=\"scenario\"").count(), 2);
        assert!(html.contains("verdict fail"));
        // The fault label is escaped inside the SVG too, and every state is named.
        assert!(!html.contains("<po-a>"));
        assert!(html.contains("crash &lt;po-a&gt;"));
        for label in [
            "po-a · Primary · e1",
            "no source: stale",
            "unreachable",
            "down",
        ] {
            assert!(html.contains(label), "{label}");
        }
        assert!(html.contains("po-b · Standby · e1"));
    }

    #[test]
    fn a_bad_path_is_named() {
        let e = check_writable(Path::new("/nonexistent-dir-xyz/r.html")).unwrap_err();
        assert!(e.contains("/nonexistent-dir-xyz/r.html"), "{e}");
        let e = check_writable(&std::env::temp_dir()).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        assert!(check_writable(Path::new("r.html")).is_ok());
    }
}
