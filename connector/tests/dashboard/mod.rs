//! The shipped Grafana dashboard (deploy/grafana/smart-connector.json) and its queries,
//! shared by the tests that check them (grafana_dashboard.rs, prometheus.rs).

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

pub fn dashboard() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/smart-connector.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every query of every panel: (panel title, PromQL expression as Grafana stores it, with
/// its `$instance` and `$__rate_interval` variables).
pub fn queries(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((title.to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// Every `sc_…` name in a PromQL expression.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sc_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}
