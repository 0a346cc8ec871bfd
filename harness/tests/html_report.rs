//! `harness run … --html PATH` (docs/design.md §14): a short scenario with a Primary crash
//! renders a self-contained page with one chart per series, and its timeline shows the
//! connectors switching to the promoted Standby at the fault.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn harness() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-html-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Architecture 3 on a small site; the Primary crashes at 2 s of 5.
const CRASH: &str = include_str!("data/short-crash.toml");

/// Runs the crash scenario on `backend` with `--html` and `--json`; returns both.
fn run(backend: &str) -> (String, Value) {
    let dir = temp_dir(backend);
    let scenario = dir.join("crash.toml");
    std::fs::write(&scenario, CRASH).unwrap();
    let (html, json) = (dir.join("report.html"), dir.join("report.json"));
    let out = harness()
        .args(["run", "-q", "--backend", backend])
        .arg(&scenario)
        .arg("--html")
        .arg(&html)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The summary names every report it wrote.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (kind, path) in [("HTML", &html), ("JSON", &json)] {
        let line = format!("{kind} report written to {}", path.display());
        assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
    }
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let html = std::fs::read_to_string(&html).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (html, report)
}

/// Every value of an attribute `name=` in `html` (quoted with " or ').
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let needle = format!("{name}=");
    let mut at = 0;
    while let Some(i) = lower[at..].find(&needle) {
        let start = at + i + needle.len();
        // Only a whole attribute name: preceded by whitespace.
        let whole = lower[..at + i].ends_with(|c: char| c.is_whitespace());
        let rest = &html[start..];
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or(""),
        };
        if whole {
            out.push(value);
        }
        at = start;
    }
    out
}

/// The `<figure>` of chart `class`.
fn figure<'a>(html: &'a str, class: &str) -> &'a str {
    let open = format!("<figure class=\"chart {class}\"");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no {class} chart"));
    let len = html[start..].find("</figure>").expect("figure closed");
    &html[start..start + len]
}

/// The most points of any `<polyline>` in `svg`.
fn longest_polyline(svg: &str) -> usize {
    attribute_values(svg, "points")
        .iter()
        .map(|p| p.split_whitespace().count())
        .max()
        .unwrap_or(0)
}

fn check_self_contained(html: &str) {
    for attr in ["src", "href", "xlink:href", "action", "poster"] {
        for v in attribute_values(html, attr) {
            assert!(
                v.starts_with('#') || v.starts_with("data:"),
                "{attr}=\"{v}\" points outside the file"
            );
        }
    }
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "no script");
    assert!(!lower.contains("<link"), "no linked stylesheet or font");
    assert!(
        !lower.contains("@import") && !lower.contains("url("),
        "no CSS fetch"
    );
    assert!(lower.starts_with("<!doctype html>"));
    assert!(lower.trim_end().ends_with("</html>"));
}

/// The bands of component `name` in the timeline's `kind` ("servers" or "connectors").
fn bands<'a>(tl: &'a Value, kind: &str, name: &str) -> &'a Vec<Value> {
    tl[kind]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in timeline.{kind}"))["bands"]
        .as_array()
        .unwrap()
}

/// The band of `bands` covering time `t`.
fn at(bands: &[Value], t: f64) -> &Value {
    bands
        .iter()
        .find(|b| b["from_s"].as_f64().unwrap() <= t && t <= b["to_s"].as_f64().unwrap())
        .unwrap_or_else(|| panic!("no band at {t}: {bands:?}"))
}

/// When each connector first serves `po-b` data after the fault.
fn switch_to_po_b(tl: &Value, connector: &str, fault_s: f64) -> f64 {
    bands(tl, "connectors", connector)
        .iter()
        .find(|b| b["to_s"].as_f64().unwrap() > fault_s && b["source"] == "po-b")
        .unwrap_or_else(|| panic!("{connector} never took po-b: {tl}"))["from_s"]
        .as_f64()
        .unwrap()
}

fn check_page_and_timeline(html: &str, report: &Value) {
    check_self_contained(html);
    // One chart per series, each drawn.
    for class in [
        "chart-rates",
        "chart-freshness",
        "chart-timeline",
        "chart-writes",
    ] {
        assert_eq!(
            html.matches(&format!("class=\"chart {class}\"")).count(),
            1,
            "exactly one {class}"
        );
        assert!(figure(html, class).contains("<svg"), "{class} is an SVG");
    }
    let samples = report["timeline"]["windows"].as_array().unwrap().len();
    assert!(samples >= 9, "5 s in 500 ms windows: {samples} windows");
    for class in ["chart-rates", "chart-freshness", "chart-writes"] {
        let points = longest_polyline(figure(html, class));
        assert!(
            points >= samples / 2,
            "{class}: a line of {points} points for {samples} windows"
        );
    }
    let timeline = figure(html, "chart-timeline");
    assert!(timeline.matches("<rect").count() >= 8, "bands drawn");

    // The fault, where the timeline says and where the report says.
    let tl = &report["timeline"];
    let faults = tl["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["fault"], "crash po-a");
    let fault = faults[0]["at_s"].as_f64().unwrap();
    assert!(fault >= 2.0, "applied at {fault} s");
    for class in [
        "chart-rates",
        "chart-freshness",
        "chart-timeline",
        "chart-writes",
    ] {
        assert!(
            figure(html, class).contains("crash po-a"),
            "{class} marks the fault"
        );
    }

    // Before the fault po-a is Primary and both connectors follow it; after it po-a is
    // down and po-b Primary with a higher epoch, and both connectors serve po-b data.
    let before = fault - 0.5;
    let po_a = bands(tl, "servers", "po-a");
    assert_eq!(at(po_a, before)["role"], "Primary");
    let epoch_before = at(po_a, before)["epoch"].as_u64().unwrap();
    let last_s = tl["windows"].as_array().unwrap().last().unwrap()["t_s"]
        .as_f64()
        .unwrap();
    assert_eq!(
        at(po_a, last_s)["role"],
        Value::Null,
        "po-a down at the end"
    );
    let po_b = bands(tl, "servers", "po-b");
    assert_eq!(at(po_b, before)["role"], "Standby");
    assert_eq!(at(po_b, last_s)["role"], "Primary");
    assert!(at(po_b, last_s)["epoch"].as_u64().unwrap() > epoch_before);
    for c in ["sc-a", "sc-b"] {
        let b = bands(tl, "connectors", c);
        assert_eq!(at(b, before)["source"], "po-a", "{c} before the fault");
        assert_eq!(at(b, before)["state"], "primary");
        let end = at(b, last_s);
        assert_eq!(
            (&end["source"], &end["role"], &end["state"]),
            (
                &Value::from("po-b"),
                &Value::from("Primary"),
                &Value::from("primary")
            ),
            "{c} at the end"
        );
        assert!(
            switch_to_po_b(tl, c, fault) >= fault,
            "{c} switched after the fault"
        );
    }
    // The page shows the switch: a band labelled with po-b as Primary, and a state change
    // of sc-a from po-a to po-b at or after the fault.
    assert!(timeline.contains("po-b · Primary"), "band label");
    let change = html
        .lines()
        .filter(|l| l.contains("class=\"change\"") && l.contains("connector sc-a"))
        .find(|l| l.contains("<td>po-a ·") && l.contains("<td>po-b ·"))
        .unwrap_or_else(|| panic!("no sc-a switch from po-a to po-b in the state changes"));
    let t: f64 = change
        .split("<td class=\"num\">")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(t >= fault - 0.01, "{change} (fault at {fault} s)");
}

#[test]
fn a_simulated_primary_crash_renders_a_self_contained_page_with_the_switch_at_the_fault() {
    let (html, report) = run("sim");
    check_page_and_timeline(&html, &report);
    // Virtual time is exact: both connectors serve the promoted Standby's data within
    // the recovery window (failover timeout + source timeout + 1 s) plus a sample.
    let tl = &report["timeline"];
    let fault = tl["faults"][0]["at_s"].as_f64().unwrap();
    for c in ["sc-a", "sc-b"] {
        let primary_b = bands(tl, "connectors", c)
            .iter()
            .find(|b| {
                b["from_s"].as_f64().unwrap() >= fault
                    && b["source"] == "po-b"
                    && b["role"] == "Primary"
            })
            .unwrap_or_else(|| panic!("{c}: {tl}"))["from_s"]
            .as_f64()
            .unwrap();
        assert!(
            primary_b - fault <= 0.3 + 0.2 + 1.0 + 0.25,
            "{c} served po-b as Primary {:.3} s after the fault",
            primary_b - fault
        );
    }
    insta::assert_snapshot!("timeline_schema", schema_text(&report["timeline"]));
}

#[test]
fn an_inprocess_primary_crash_renders_the_same_page() {
    let (html, report) = run("inprocess");
    check_page_and_timeline(&html, &report);
}

#[test]
fn a_bad_html_path_is_refused_before_anything_runs() {
    let dir = temp_dir("bad");
    let scenario = dir.join("crash.toml");
    std::fs::write(&scenario, CRASH).unwrap();
    let bad = dir.join("no-such-dir").join("report.html");
    let out = harness()
        .args(["run", "-q"])
        .arg(&scenario)
        .arg("--html")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&*bad.to_string_lossy()), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing ran");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shape of a JSON value: each scalar replaced by its type, arrays by the union of
/// their elements' shapes (so the snapshot holds the schema, not the figures).
fn schema(v: &Value) -> Value {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => {
            Value::Array(items.iter().map(schema).reduce(merge).into_iter().collect())
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), schema(v))).collect()),
    }
}

/// Merges two shapes; `null` gives way to any other type (which fields may be null is
/// documented in docs/scenarios.md; here it would depend on the run).
fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (x, Value::String(n)) if n == "null" => x,
        (Value::String(n), y) if n == "null" => y,
        (Value::Object(mut x), Value::Object(y)) => {
            for (k, v) in y {
                let merged = match x.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                x.insert(k, merged);
            }
            Value::Object(x)
        }
        (Value::Array(x), Value::Array(y)) => {
            Value::Array(x.into_iter().chain(y).reduce(merge).into_iter().collect())
        }
        (Value::String(x), Value::String(y)) => {
            let mut kinds: Vec<&str> = x.split('|').chain(y.split('|')).collect();
            kinds.sort_unstable();
            kinds.dedup();
            Value::String(kinds.join("|"))
        }
        (x, _) => x,
    }
}

/// The timeline's schema; per-connector maps keyed by connector name keep their keys.
fn schema_text(tl: &Value) -> String {
    serde_json::to_string_pretty(&schema(tl)).unwrap()
}
