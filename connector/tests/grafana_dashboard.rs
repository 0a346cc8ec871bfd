//! The Grafana dashboard in deploy/grafana/ names only metrics the connector exports,
//! and is a dashboard Grafana can import (panels with a place, a title and queries).

mod dashboard;

use dashboard::{dashboard, metric_names, queries};
use smart_connector::metrics::Metrics;
use std::collections::BTreeSet;

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let exported: BTreeSet<String> = Metrics::default()
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let d = dashboard();
    let mut queried = BTreeSet::new();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(!title.is_empty());
        assert!(p["gridPos"]["w"].as_u64().unwrap() > 0, "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
    }
    for (title, expr) in queries(&d) {
        for name in metric_names(&expr) {
            assert!(
                exported.contains(&name),
                "panel '{title}' queries {name}, which the connector does not export"
            );
            queried.insert(name);
        }
    }
    // What the issue asks the dashboard to show: sources, switches, ingest, Modbus
    // requests/exceptions/connections, write outcomes.
    for must in [
        "sc_active_source",
        "sc_source_switches_total",
        "sc_ingest_updates_total",
        "sc_modbus_requests_total",
        "sc_modbus_exceptions_total",
        "sc_modbus_connections",
        "sc_writes_total",
        "sc_service_level",
        "sc_opcua_sessions",
        "sc_opcua_monitored_items",
        "sc_opcua_notifications_total",
    ] {
        assert!(queried.contains(must), "no panel shows {must}");
    }
}

#[test]
fn the_data_source_is_chosen_at_import() {
    let d = dashboard();
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["uid"], "smart-connector");
}
