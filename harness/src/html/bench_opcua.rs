//! The OPC UA section of `harness bench --html`: notifications/s and latency p99 of the
//! connector and node-opcua's server at each load, with the ratio of their highest
//! sustained notifications/s; a baseline's ratio beside it.

use super::charts::{self, Group, PALETTE};
use super::{esc, figure};
use crate::bench::BenchReport;
use crate::opcua_load::bench::OpcUaRun;
use anyhow::Result;
use std::fmt::Write as _;

pub fn opcua_section(new: &BenchReport, baseline: Option<&BenchReport>) -> Result<String> {
    let mut o = String::new();
    let Some(u) = &new.opcua else { return Ok(o) };
    let series = vec![
        ("Smart Connector".to_string(), PALETTE[0]),
        ("node-opcua server".to_string(), PALETTE[1]),
    ];
    let group = |pick: fn(&OpcUaRun) -> f64| -> Vec<Group> {
        u.levels
            .iter()
            .map(|l| Group {
                name: format!("{} × {} items", u.sessions, l.items_per_session),
                values: vec![
                    l.connector.as_ref().map(pick),
                    l.node_opcua.as_ref().map(pick),
                ],
            })
            .collect()
    };
    if !u.levels.is_empty() {
        let svg = charts::bar_chart(
            "OPC UA notifications",
            "notifications/s",
            &series,
            &group(|r| r.load.notifications_per_s),
        )?;
        let mut caption = format!(
            "The same `harness load --protocol opcua` against each server, every variable changing each second, publishing every {} ms. Highest sustained: connector {:.0}/s, node-opcua {:.0}/s, ratio {:.2}",
            u.publishing_ms,
            u.connector_max_notifications_per_s,
            u.node_opcua_max_notifications_per_s,
            u.ratio
        );
        for l in &u.levels {
            if let Some(r) = l.ratio_same_load {
                let _ = write!(
                    caption,
                    "; at {} × {} items connector ÷ node-opcua {r:.2}",
                    u.sessions, l.items_per_session
                );
            }
        }
        if let Some(old) = baseline.and_then(|b| b.opcua.as_ref()) {
            let _ = write!(caption, " (baseline {:.2})", old.ratio);
        }
        if let Some(why) = &u.node_opcua_skipped {
            let _ = write!(caption, "; node-opcua not measured: {why}");
        }
        caption.push('.');
        o.push_str(&figure("", "chart-bench-opcua", &svg, &caption));
        let svg = charts::bar_chart(
            "OPC UA latency p99",
            "ms from SourceTimestamp to receipt",
            &series,
            &group(|r| r.load.latency.p99_ms),
        )?;
        o.push_str(&figure(
            "",
            "chart-bench-opcua-latency",
            &svg,
            &format!(
                "99th percentile of the time from each value's SourceTimestamp to its arrival at the client; the target is the publishing interval + 50 ms = {:.0} ms.",
                u.publishing_ms + 50.0
            ),
        ));
    }
    o.push_str("<h3>OPC UA</h3>\n<table class=\"opcua\">\n<tr><th>server</th><th>sessions × items</th><th>verdict</th><th>notifications/s</th><th>delivered</th><th>p50</th><th>p99</th><th>errors</th><th>CPU</th><th>RSS</th></tr>\n");
    for l in &u.levels {
        for (who, r) in [("connector", &l.connector), ("node-opcua", &l.node_opcua)] {
            let Some(r) = r else { continue };
            let v = if r.passed { "pass" } else { "fail" };
            let _ = writeln!(
                o,
                "<tr class=\"{v}\"><td>{who}</td><td>{} × {}</td><td class=\"{v}\">{}</td><td class=\"num\">{:.0}</td><td class=\"num\">{:.1} %</td><td class=\"num\">{:.0} ms</td><td class=\"num\">{:.0} ms</td><td class=\"num\">{}</td><td class=\"num\">{:.0} %</td><td class=\"num\">{:.0} MiB</td></tr>",
                u.sessions,
                l.items_per_session,
                if r.passed { "ok" } else { "BROKE" },
                r.load.notifications_per_s,
                r.delivered * 100.0,
                r.load.latency.p50_ms,
                r.load.latency.p99_ms,
                r.load.errors,
                r.cpu_percent,
                r.rss_mib,
            );
        }
    }
    o.push_str("</table>\n");
    if let Some(why) = &u.node_opcua_skipped {
        let _ = writeln!(
            o,
            "<p class=\"meta\">node-opcua not measured: {}</p>",
            esc(why)
        );
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opcua_load::OpcUaLoadResult;
    use crate::opcua_load::bench::{OpcUaComparison, OpcUaLevel};
    use crate::opcua_load::stats::LatencySummary;

    fn run(notifications_per_s: f64, p99_ms: f64, passed: bool) -> OpcUaRun {
        OpcUaRun {
            load: OpcUaLoadResult {
                protocol: "opcua".into(),
                target: "opc.tcp://127.0.0.1:4840/".into(),
                security: "none".into(),
                sessions: 4,
                items_per_session: 25_000,
                monitored_items: 100_000,
                variables_found: 100_000,
                publishing_ms: 100.0,
                sampling_ms: 0.0,
                elapsed_s: 20.0,
                notifications: (notifications_per_s * 20.0) as u64,
                notifications_per_s,
                latency: LatencySummary {
                    samples: 10,
                    p50_ms: p99_ms / 2.0,
                    p99_ms,
                    max_ms: p99_ms,
                },
                latency_to_server: LatencySummary::default(),
                bad_status: 0,
                no_timestamp: 0,
                errors: 0,
            },
            expected_notifications_per_s: 100_000.0,
            delivered: notifications_per_s / 100_000.0,
            cpu_percent: 50.0,
            rss_mib: 120.0,
            passed,
        }
    }

    #[test]
    fn the_opcua_section_draws_both_servers_and_says_the_ratio() {
        let report = BenchReport {
            backend: "process".into(),
            cores: 2,
            steps: vec![],
            best: vec![],
            modbus: None,
            sizes: vec![],
            tls: None,
            opcua: Some(OpcUaComparison {
                sessions: 4,
                publishing_ms: 100.0,
                levels: vec![OpcUaLevel {
                    items_per_session: 25_000,
                    connector: Some(run(99_500.0, 120.0, true)),
                    node_opcua: Some(run(40_000.0, 900.0, false)),
                    ratio_same_load: Some(99_500.0 / 40_000.0),
                }],
                node_opcua_skipped: None,
                connector_max_notifications_per_s: 99_500.0,
                node_opcua_max_notifications_per_s: 0.0,
                ratio: 0.0,
            }),
        };
        let html = opcua_section(&report, None).unwrap();
        for class in ["chart-bench-opcua", "chart-bench-opcua-latency"] {
            assert!(
                html.contains(&format!("class=\"chart {class}\"")),
                "{class}"
            );
        }
        assert!(html.contains("Smart Connector") && html.contains("node-opcua server"));
        assert!(html.contains("ratio 0.00"), "the ratio is said");
        assert!(
            html.contains("connector ÷ node-opcua 2.49"),
            "and at the same load"
        );
        assert!(
            html.contains("99.5 %") && html.contains("BROKE"),
            "the table"
        );
        let none = BenchReport {
            opcua: None,
            ..report
        };
        assert!(opcua_section(&none, None).unwrap().is_empty());
    }
}
