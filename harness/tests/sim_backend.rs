//! The simulation backend: every shipped scenario passes in virtual time, and a run is
//! reproducible from its seed.

use harness::scenario::Scenario;
use std::path::Path;

fn shipped(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&path).unwrap()
}

fn json_without_wall(s: &Scenario) -> String {
    let mut report = harness::sim::run_scenario(s, true).unwrap();
    let sim = report.sim.as_mut().expect("a simulated run reports `sim`");
    assert_eq!(sim.seed, s.seed);
    assert!(sim.virtual_s >= s.duration.as_secs_f64());
    sim.wall_s = 0.0;
    serde_json::to_string_pretty(&report).unwrap()
}

#[test]
fn every_shipped_scenario_passes_in_the_simulation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 11, "scenarios found: {names:?}");
    // Scenarios the simulation refuses (exit 2 from `harness run`): floods need processes,
    // a million tags need more than one thread, TLS needs real time, the OPC UA stack
    // tokio's own sockets and clocks.
    let mut refused = Vec::new();
    for name in names {
        let s = shipped(&name);
        if !harness::launch::unsupported_by(&s, harness::scenario::BackendKind::Sim).is_empty() {
            refused.push(name);
            continue;
        }
        let report = harness::sim::run_scenario(&s, true).unwrap();
        assert_eq!(report.backend, "sim");
        let failed: Vec<_> = report.expectations.iter().filter(|e| !e.passed).collect();
        assert!(report.passed, "{name} failed under sim: {failed:?}");
        assert!(
            report.failovers.iter().all(|f| f.recovered),
            "{name}: {:?}",
            report.failovers
        );
    }
    assert_eq!(
        refused,
        [
            "arch2-opcua-primary-crash.toml",
            "arch3-flood.toml",
            "arch3-million.toml",
            "arch3-opcua-failover.toml",
            "arch3-opcua-tls.toml",
            "arch3-tls-primary-crash.toml",
            "arch3-tls-roles.toml"
        ]
    );
}

#[test]
fn the_same_file_and_seed_give_the_same_report_but_for_wall_s() {
    let s = shipped("arch3-sync-cut.toml");
    let first = json_without_wall(&s);
    let second = json_without_wall(&s);
    assert_eq!(first, second);
    // And the seed matters: another seed gives another run.
    let mut other = s.clone();
    other.seed += 1;
    assert_ne!(first, json_without_wall(&other));
}

#[test]
fn a_silent_primary_is_detected_in_virtual_time_exactly_as_configured() {
    // Pause = the Primary stops talking but keeps its sockets: the Standby promotes after
    // failover_timeout and the connectors follow once source_timeout has passed.
    let s = shipped("arch3-primary-pause.toml");
    let report = harness::sim::run_scenario(&s, true).unwrap();
    let pause = &report.failovers[0];
    assert!(pause.fault.starts_with("pause"));
    // Time is exact here: the gap can be no shorter than the detection time, and
    // within detection plus a poll, a scan and a heartbeat.
    let detect = s.connector.source_timeout.as_millis() as u64;
    let slack = (s.third_party.poll_period + s.site.scan_period + s.redundancy.heartbeat)
        .as_millis() as u64;
    assert!(
        (detect..=detect + slack).contains(&pause.gap_ms),
        "gap {} ms, detection {detect} ms",
        pause.gap_ms
    );
}

/// The virtual time at which `metric` of connector `name` first satisfies `want` after
/// `from`.
fn first_after(
    timeline: &[(std::time::Duration, i64)],
    from: std::time::Duration,
    want: impl Fn(i64) -> bool,
) -> Option<std::time::Duration> {
    timeline
        .iter()
        .find(|(at, v)| *at >= from && want(*v))
        .map(|(at, _)| *at - from)
}

#[test]
fn a_black_holed_source_is_detected_by_silence_and_hanging_connects_do_not_delay_the_switch() {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;
    // sc-a follows po-a (the Primary). 1: its link to po-a becomes a black hole (no FIN, no
    // RST; connects hang). 2: its link to po-b too. 3: po-b's link comes back while po-a's
    // stays black: sc-a must take po-b although its connects to po-a keep hanging.
    let s = Scenario::parse(
        r#"
name = "black-hole-detection"
architecture = 3
duration = "15s"
[site]
devices = 20
tags_per_device = 50
scan_period = "100ms"
[redundancy]
heartbeat = "100ms"
failover_timeout = "500ms"
[connector]
source_timeout = "300ms"
[[fault]]
at = "4s"
action = "cut"
target = "sc-a->po-a"
[[fault]]
at = "7s"
action = "cut"
target = "sc-a->po-b"
[[fault]]
at = "10s"
action = "heal"
target = "sc-a->po-b"
"#,
        "black-hole.toml",
    )
    .unwrap();
    // sc-a's active source (0 none, 1 po-a, 2 po-b) whenever it changes.
    let mut timeline: Vec<(Duration, i64)> = Vec::new();
    let (report, observed) = harness::sim::run_with(&s, true, |at, o| {
        if let Some(Some(c)) = o.connectors.get("sc-a") {
            let v = c.metrics.active_source.load(Relaxed);
            if timeline.last().map(|(_, last)| *last) != Some(v) {
                timeline.push((at, v));
            }
        }
    })
    .unwrap();
    assert_eq!(report.integrity.values_wrong, 0);
    let observed = observed.lock().unwrap();
    let applied: Vec<Duration> = observed.faults.iter().map(|(at, _)| *at).collect();
    assert_eq!(applied.len(), 3, "{:?}", observed.faults);
    let before = timeline.iter().rfind(|(at, _)| *at < applied[0]);
    assert_eq!(
        before.map(|x| x.1),
        Some(1),
        "sc-a follows po-a at first: {timeline:?}"
    );

    eprintln!("faults at {applied:?}; sc-a active source {timeline:?}");
    let source_timeout = s.connector.source_timeout;
    let heartbeat = s.redundancy.heartbeat;
    // 1. Detected by silence alone: not before source_timeout minus the heartbeat that
    //    may have been in flight, not after source_timeout plus one heartbeat.
    let detected = first_after(&timeline, applied[0], |v| v == 2).expect("switched to po-b");
    assert!(
        detected >= source_timeout - heartbeat && detected <= source_timeout + heartbeat,
        "switch {detected:?} after the black hole; source_timeout {source_timeout:?}; {timeline:?}"
    );
    // 2. Both black: no source within the same bound.
    let none = first_after(&timeline, applied[1], |v| v == 0).expect("no source");
    assert!(none <= source_timeout + heartbeat, "{none:?}; {timeline:?}");
    // 3. po-b is back while every connect to po-a hangs: sc-a takes po-b within one
    //    connect attempt (connect timeout, the larger of source_timeout and 500 ms), one
    //    reconnect backoff (at most 500 ms in the harness) and a heartbeat.
    let connect_timeout = source_timeout.max(Duration::from_millis(500));
    let back = first_after(&timeline, applied[2], |v| v == 2).expect("took po-b again");
    assert!(
        back <= connect_timeout + Duration::from_millis(500) + heartbeat,
        "{back:?} after po-b came back; {timeline:?}"
    );
    // po-a never came back for sc-a: it is still black-holed at the end.
    assert_eq!(timeline.last().map(|x| x.1), Some(2), "{timeline:?}");
}

#[test]
fn the_status_api_shows_a_primary_crash_within_a_second_of_virtual_time() {
    use std::time::Duration;
    // What sc-a's `/api/status` answers (the handler serializes exactly this document),
    // read at every step of the simulation once po-a has crashed.
    let s = shipped("arch3-primary-crash.toml");
    let mut crashed_at: Option<Duration> = None;
    let mut shown_after: Option<(Duration, smart_connector::api::StatusDoc)> = None;
    let (report, _) = harness::sim::run_with(&s, true, |at, o| {
        if crashed_at.is_none() {
            crashed_at = o.faults.first().map(|(t, _)| *t);
        }
        let (Some(crash), None) = (crashed_at, &shown_after) else {
            return;
        };
        if let Some(Some(c)) = o.connectors.get("sc-a") {
            let doc = smart_connector::http::status_doc(&c.status);
            if doc.active.as_ref().is_some_and(|a| a.source == "po-b")
                && doc.sources[0].health != "healthy"
            {
                shown_after = Some((at - crash, doc));
            }
        }
    })
    .unwrap();
    assert_eq!(report.integrity.values_wrong, 0);
    let (after, doc) = shown_after.expect("sc-a's status never showed po-b active");
    eprintln!("sc-a's /api/status showed po-b active {after:?} after the crash");
    assert!(
        after <= Duration::from_secs(1),
        "/api/status showed the switch {after:?} after the crash"
    );
    let switch = &doc.switches[0];
    assert_eq!(switch.from.as_ref().unwrap().source, "po-a");
    assert!(switch.reason.contains("po-a"), "{}", switch.reason);
    assert_eq!(doc.sources[1].name, "po-b");
}
