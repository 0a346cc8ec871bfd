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
    for name in names {
        let s = shipped(&name);
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
