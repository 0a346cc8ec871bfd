//! The page of `harness bench --html`: sustained ingest against the offered rate per
//! architecture, CPU and memory per component, the Modbus ratio; with a baseline (a
//! previous `bench --json`), its figures beside the new ones.

use super::charts::{self, Axes, Group, Line, PALETTE};
use super::{esc, figure, page};
use crate::bench::{BenchReport, Step};
use anyhow::Result;
use plotters::style::RGBColor;
use std::fmt::Write as _;

/// Baseline bars: the new colour, lighter.
const BASELINE: RGBColor = RGBColor(176, 190, 197);
const NEW: RGBColor = PALETTE[0];

/// The rate sweep of one architecture: steps at its first (lowest) client count, one per
/// offered rate, in the order run.
fn rate_sweep(r: &BenchReport, arch: u8) -> Vec<&Step> {
    let steps: Vec<&Step> = r.steps.iter().filter(|s| s.architecture == arch).collect();
    let Some(clients) = steps.iter().map(|s| s.clients).min() else {
        return vec![];
    };
    let mut out: Vec<&Step> = Vec::new();
    for s in steps.into_iter().filter(|s| s.clients == clients) {
        if !out
            .iter()
            .any(|o| o.nominal_samples_per_s == s.nominal_samples_per_s)
        {
            out.push(s);
        }
    }
    out
}

/// The step whose resources stand for an architecture: the highest sustained rate, else
/// the last step run.
fn representative(r: &BenchReport, arch: u8) -> Option<&Step> {
    let best = r.best.iter().find(|b| b.architecture == arch);
    let sweep = rate_sweep(r, arch);
    best.and_then(|b| {
        sweep
            .iter()
            .find(|s| s.passed && s.nominal_samples_per_s == b.at_nominal_samples_per_s)
            .copied()
    })
    .or_else(|| sweep.last().copied())
}

fn architectures(new: &BenchReport, base: Option<&BenchReport>) -> Vec<u8> {
    let mut a: Vec<u8> = new
        .steps
        .iter()
        .chain(base.map_or(&[][..], |b| &b.steps[..]))
        .map(|s| s.architecture)
        .collect();
    a.sort_unstable();
    a.dedup();
    a
}

fn change(new: f64, old: f64) -> String {
    if old == 0.0 {
        return String::new();
    }
    format!("{:+.1}%", (new / old - 1.0) * 100.0)
}

/// The whole bench page.
pub fn bench_page(new: &BenchReport, baseline: Option<&BenchReport>) -> Result<String> {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<h1>harness bench — {} backend, {} cores</h1>",
        esc(&new.backend),
        new.cores
    );
    if let Some(b) = baseline {
        let _ = writeln!(
            o,
            "<p class=\"meta\">Compared with a baseline: {} backend, {} cores (dashed lines, grey bars).</p>",
            esc(&b.backend),
            b.cores
        );
    }
    let archs = architectures(new, baseline);

    // Sustained ingest against offered rate.
    let mut lines = Vec::new();
    let mut x_lo = f64::MAX;
    let mut x_hi = 0.0f64;
    for (i, arch) in archs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let lighter = RGBColor(
            ((u16::from(color.0) + 255) / 2) as u8,
            ((u16::from(color.1) + 255) / 2) as u8,
            ((u16::from(color.2) + 255) / 2) as u8,
        );
        for (report, dashed) in [(Some(new), false), (baseline, true)] {
            let Some(report) = report else { continue };
            let color = if dashed { lighter } else { color };
            let sweep = rate_sweep(report, *arch);
            if sweep.is_empty() {
                continue;
            }
            for s in &sweep {
                x_lo = x_lo.min(f64::from(s.nominal_samples_per_s));
                x_hi = x_hi.max(f64::from(s.nominal_samples_per_s));
            }
            lines.push(Line {
                name: format!(
                    "architecture {arch}{}",
                    if dashed { " (baseline)" } else { "" }
                ),
                color,
                points: sweep
                    .iter()
                    .map(|s| Some((f64::from(s.nominal_samples_per_s), s.ingest_updates_per_s)))
                    .collect(),
                dashed,
                marks: true,
            });
        }
    }
    if !lines.is_empty() {
        // What ingest would be if every sample changed value.
        lines.push(Line {
            name: "offered (every sample a change)".into(),
            color: RGBColor(158, 158, 158),
            points: vec![Some((x_lo, x_lo)), Some((x_hi, x_hi))],
            dashed: true,
            marks: false,
        });
        let axes = Axes {
            title: "Sustained ingest against offered rate".into(),
            x_desc: "offered tag samples/s (log)".into(),
            y_desc: "updates/s ingested per connector".into(),
            x: (x_lo / 1.5)..(x_hi * 1.5),
            x_log: true,
            height: 380,
        };
        let svg = charts::line_chart(&axes, &lines, &[])?;
        o.push_str(&figure(
            "",
            "chart-bench-ingest",
            &svg,
            "Per architecture, each step of the rate sweep: updates/s one connector accepted at the offered sample rate (servers send only changed values, so ingest stays below the offered rate). The sweep stops at the first step that broke an expectation.",
        ));
    }

    // CPU and memory per component, at each architecture's representative step.
    let mut cpu = Vec::new();
    let mut mem = Vec::new();
    for arch in &archs {
        let mut components: Vec<String> = Vec::new();
        let new_step = representative(new, *arch);
        let old_step = baseline.and_then(|b| representative(b, *arch));
        for s in new_step.iter().chain(old_step.iter()) {
            for r in &s.resources {
                if !components.contains(&r.component) {
                    components.push(r.component.clone());
                }
            }
        }
        for c in components {
            let pick = |s: Option<&Step>, f: fn(&crate::report::Resource) -> f64| {
                s.and_then(|s| s.resources.iter().find(|r| r.component == c).map(f))
            };
            let name = format!("arch {arch} · {c}");
            let mut cpu_values = vec![pick(new_step, |r| r.cpu_percent)];
            let mut mem_values = vec![pick(new_step, |r| r.rss_mib)];
            if baseline.is_some() {
                cpu_values.push(pick(old_step, |r| r.cpu_percent));
                mem_values.push(pick(old_step, |r| r.rss_mib));
            }
            cpu.push(Group {
                name: name.clone(),
                values: cpu_values,
            });
            mem.push(Group {
                name,
                values: mem_values,
            });
        }
    }
    let mut series = vec![("this run".to_string(), NEW)];
    if baseline.is_some() {
        series.push(("baseline".to_string(), BASELINE));
    }
    if !cpu.is_empty() {
        let svg = charts::bar_chart("CPU per component", "% of one core", &series, &cpu)?;
        o.push_str(&figure(
            "",
            "chart-bench-cpu",
            &svg,
            "CPU of each component over the step with the highest sustained ingest of its architecture (in-process: the harness with every component).",
        ));
        let svg = charts::bar_chart("Memory per component", "MiB resident", &series, &mem)?;
        o.push_str(&figure(
            "",
            "chart-bench-memory",
            &svg,
            "Resident memory of each component at the end of the same step.",
        ));
    }

    // The Modbus comparison.
    if let Some(m) = &new.modbus {
        let old = baseline.and_then(|b| b.modbus.as_ref());
        let mut groups = vec![
            Group {
                name: "Smart Connector".into(),
                values: vec![Some(m.connector_requests_per_s)],
            },
            Group {
                name: "bare tokio-modbus".into(),
                values: vec![Some(m.bare_requests_per_s)],
            },
        ];
        if baseline.is_some() {
            groups[0]
                .values
                .push(old.map(|o| o.connector_requests_per_s));
            groups[1].values.push(old.map(|o| o.bare_requests_per_s));
        }
        let svg = charts::bar_chart("Modbus throughput", "requests/s", &series, &groups)?;
        let mut caption = format!(
            "{} connections × {} registers: the connector answers {:.2} of the bare server's requests/s",
            m.connections, m.quantity, m.ratio
        );
        if let Some(o) = old {
            let _ = write!(caption, " (baseline {:.2})", o.ratio);
        }
        caption.push('.');
        o.push_str(&figure("", "chart-bench-modbus", &svg, &caption));
    }

    o.push_str(&super::bench_opcua::opcua_section(new, baseline)?);

    // Tables.
    o.push_str("<h3>Highest sustained</h3>\n<table class=\"best\">\n<tr><th>architecture</th><th>updates/s per connector</th><th>at samples/s</th><th>third-party connections</th>");
    if baseline.is_some() {
        o.push_str("<th>baseline updates/s</th><th>change</th><th>baseline connections</th>");
    }
    o.push_str("</tr>\n");
    for b in &new.best {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"num\">{:.0}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            b.architecture, b.max_ingest_updates_per_s, b.at_nominal_samples_per_s, b.max_clients
        );
        if let Some(base) = baseline {
            match base.best.iter().find(|x| x.architecture == b.architecture) {
                Some(x) => {
                    let _ = write!(
                        o,
                        "<td class=\"num\">{:.0}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                        x.max_ingest_updates_per_s,
                        change(b.max_ingest_updates_per_s, x.max_ingest_updates_per_s),
                        x.max_clients
                    );
                }
                None => o.push_str("<td></td><td></td><td></td>"),
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");
    if let Some(m) = &new.modbus {
        o.push_str("<h3>Modbus</h3>\n<table class=\"modbus\">\n<tr><th></th><th>connector requests/s</th><th>bare requests/s</th><th>ratio</th><th>ingest during the load</th><th>connector threads</th></tr>\n");
        let mut rows = vec![("this run", m)];
        if let Some(old) = baseline.and_then(|b| b.modbus.as_ref()) {
            rows.push(("baseline", old));
        }
        for (name, m) in rows {
            let _ = writeln!(
                o,
                "<tr><th>{name}</th><td class=\"num\">{:.0}</td><td class=\"num\">{:.0}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.0} updates/s</td><td>{}</td></tr>",
                m.connector_requests_per_s,
                m.bare_requests_per_s,
                m.ratio,
                m.ingest_during_load_updates_per_s,
                esc(&m.connector_threads)
            );
        }
        o.push_str("</table>\n");
    }
    if let Some(t) = &new.tls {
        o.push_str("<h3>TLS, against plaintext in the same run</h3>\n<table class=\"tls\">\n<tr><th></th><th>TLS</th><th>plaintext</th><th>ratio</th></tr>\n");
        let _ = writeln!(
            o,
            "<tr><th>Modbus/TCP Security, 8 masters × 125 registers (requests/s)</th><td class=\"num\">{:.0}</td><td class=\"num\">{:.0}</td><td class=\"num\">{:.2}</td></tr>",
            t.modbus_tls_requests_per_s, t.modbus_plain_requests_per_s, t.modbus_ratio
        );
        let _ = writeln!(
            o,
            "<tr><th>architecture 3 ingest at {} samples/s (updates/s per connector)</th><td class=\"num\">{:.0}</td><td class=\"num\">{:.0}</td><td class=\"num\">{:.2}</td></tr>",
            t.ingest_nominal_samples_per_s,
            t.ingest_tls_updates_per_s,
            t.ingest_plain_updates_per_s,
            t.ingest_ratio
        );
        o.push_str("</table>\n");
    }
    o.push_str("<h3>Steps</h3>\n<table class=\"steps\">\n<tr><th>arch</th><th>offered samples/s</th><th>tags / scan</th><th>clients</th><th>verdict</th><th>ingest/s</th><th>delivered/s</th><th>p99</th><th>wrong</th><th>resources</th><th>broke</th></tr>\n");
    let tls_steps = new.tls.iter().flat_map(|t| &t.ingest_steps);
    for s in new.steps.iter().chain(&new.sizes).chain(tls_steps) {
        let v = if s.passed { "pass" } else { "fail" };
        let res: Vec<String> = s
            .resources
            .iter()
            .map(|r| format!("{} {:.0}% {:.0} MiB", r.component, r.cpu_percent, r.rss_mib))
            .collect();
        let _ = writeln!(
            o,
            "<tr class=\"{v}\"><td>{}</td><td class=\"num\">{}</td><td>{} / {} ms</td><td class=\"num\">{}</td><td class=\"{v}\">{}</td><td class=\"num\">{:.0}</td><td class=\"num\">{:.0}</td><td class=\"num\">{} ms</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            s.architecture,
            s.nominal_samples_per_s,
            s.tags,
            s.scan_ms,
            s.clients,
            if s.passed { "ok" } else { "BROKE" },
            s.ingest_updates_per_s,
            s.delivered_values_per_s,
            s.latency_p99_ms,
            s.values_wrong,
            esc(&res.join(" · ")),
            esc(&s.failed.join("; "))
        );
    }
    o.push_str("</table>\n");
    Ok(page(
        &format!("harness bench — {} backend", new.backend),
        &o,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Best, ModbusComparison};
    use crate::report::Resource;

    fn step(arch: u8, rate: u32, clients: usize, ingest: f64, passed: bool) -> Step {
        Step {
            architecture: arch,
            nominal_samples_per_s: rate,
            tags: 1000,
            scan_ms: 100.0,
            clients,
            passed,
            ingest_updates_per_s: ingest,
            delivered_values_per_s: ingest * 2.0,
            latency_p99_ms: 120,
            values_wrong: 0,
            failed: if passed {
                vec![]
            } else {
                vec!["min_updates_per_s 1 (limit >= 2)".into()]
            },
            resources: vec![
                Resource {
                    component: "po-a".into(),
                    cpu_percent: ingest / 10_000.0,
                    rss_mib: 20.0,
                },
                Resource {
                    component: "sc-a".into(),
                    cpu_percent: ingest / 5_000.0,
                    rss_mib: 30.0,
                },
            ],
        }
    }

    fn report(scale: f64) -> BenchReport {
        BenchReport {
            backend: "process".into(),
            cores: 2,
            steps: vec![
                step(1, 100_000, 1, 80_000.0 * scale, true),
                step(1, 400_000, 1, 320_000.0 * scale, true),
                step(1, 1_200_000, 1, 500_000.0 * scale, false),
                step(1, 100_000, 1, 80_000.0 * scale, true),
                step(1, 100_000, 2, 80_000.0 * scale, true),
                step(3, 100_000, 1, 78_000.0 * scale, true),
                step(3, 400_000, 1, 200_000.0 * scale, false),
            ],
            best: vec![
                Best {
                    architecture: 1,
                    max_ingest_updates_per_s: 320_000.0 * scale,
                    at_nominal_samples_per_s: 400_000,
                    max_clients: 2,
                },
                Best {
                    architecture: 3,
                    max_ingest_updates_per_s: 78_000.0 * scale,
                    at_nominal_samples_per_s: 100_000,
                    max_clients: 1,
                },
            ],
            modbus: Some(ModbusComparison {
                connector_threads: "auto".into(),
                connections: 8,
                quantity: 125,
                connector_requests_per_s: 40_000.0 * scale,
                bare_requests_per_s: 50_000.0,
                ratio: 0.8 * scale,
                ingest_during_load_updates_per_s: 80_000.0,
            }),
            sizes: vec![step(3, 1_000_000, 1, 800_000.0 * scale, true)],
            tls: None,
            opcua: None,
        }
    }

    #[test]
    fn the_bench_page_draws_the_baseline_beside_the_new_figures() {
        let new = report(1.0);
        let old = report(0.5);
        // A baseline goes through JSON, as `--baseline` reads it.
        let old: BenchReport = serde_json::from_str(&serde_json::to_string(&old).unwrap()).unwrap();
        let html = bench_page(&new, Some(&old)).unwrap();
        for class in [
            "chart-bench-ingest",
            "chart-bench-cpu",
            "chart-bench-memory",
            "chart-bench-modbus",
        ] {
            assert_eq!(
                html.matches(&format!("class=\"chart {class}\"")).count(),
                1,
                "{class}"
            );
        }
        // Two lines per architecture (new solid, baseline dashed) with their legends.
        assert!(html.contains("architecture 1 (baseline)"));
        assert!(html.contains("architecture 3 (baseline)"));
        // Baseline bars beside the new ones: the legend and the grey fill.
        assert!(html.contains(">baseline<"), "bar legend");
        assert!(html.contains("#B0BEC5"), "baseline bars drawn");
        // The table compares: 320000 against 160000 is +100 %.
        assert!(html.contains("+100.0%"), "change column");
        assert!(
            html.contains("(baseline 0.40)"),
            "Modbus ratio of the baseline"
        );
        // The ingest sweep of architecture 1 has its three offered rates, not the
        // repeated first step of the connection sweep.
        assert_eq!(rate_sweep(&new, 1).len(), 3);
        // No script, nothing fetched.
        assert!(!html.contains("<script"));
        assert!(!html.contains("src="));

        let alone = bench_page(&new, None).unwrap();
        assert!(!alone.contains("baseline"));
    }
}
