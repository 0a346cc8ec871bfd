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
