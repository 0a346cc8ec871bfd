//! The service-level invariants can fail: with a deliberately broken service-level core (a
//! Standby's data announced as 255, the level of live Primary data), `explore` finds a
//! failing seed, shrinks it, and the written scenario file replays the failure, while the
//! same file holds with the core intact. The core is switched process-wide, so this test
//! has a binary of its own.

use harness::explore::{ExploreSpec, Failure};
use harness::scenario::Scenario;
use smart_connector::switches::set_standby_level_healthy;
use std::path::Path;
use std::time::Duration;

const BROKEN: &str = "healthy level without current data";

#[test]
fn explore_finds_shrinks_and_replays_a_broken_service_level_core() {
    let out = std::env::temp_dir().join(format!("explore-broken-level-{}", std::process::id()));
    let spec = ExploreSpec {
        architecture: 3,
        seeds: 1..=300,
        shard: (1, 1),
        duration: Duration::from_secs(30),
        out_dir: out.clone(),
        jobs: 2,
    };
    set_standby_level_healthy(true);
    let found = find_first_failure(&spec);
    let failure = found.expect("a core announcing Standby data as healthy must be caught");
    assert!(
        failure.violations.iter().any(|v| v.contains(BROKEN)),
        "{failure:?}"
    );
    assert!(failure.shrunk_to >= 1 && failure.shrunk_to <= failure.episodes);

    // The written file replays the failure, with the shrunk schedule in it.
    let replay = Scenario::load(Path::new(&failure.file)).unwrap();
    assert_eq!(replay.faults.len(), failure.shrunk_to * 2);
    assert_eq!(replay.expect.invariants, Some(true));
    let broken = harness::sim::run_scenario(&replay, true).unwrap();
    assert!(!broken.passed);
    let invariants = broken
        .expectations
        .iter()
        .find(|e| e.name == "invariants")
        .unwrap();
    assert!(invariants.actual.contains(BROKEN), "{invariants:?}");

    // With the core intact the same schedule holds: the failure was the core's.
    set_standby_level_healthy(false);
    let intact = harness::sim::run_scenario(&replay, true).unwrap();
    assert!(intact.passed, "{:?}", intact.expectations);
    let _ = std::fs::remove_dir_all(out);
}

/// Explores seed after seed in small batches, stopping at the first failure.
fn find_first_failure(spec: &ExploreSpec) -> Option<Failure> {
    let (first, last) = (*spec.seeds.start(), *spec.seeds.end());
    let mut from = first;
    while from <= last {
        let to = (from + 9).min(last);
        let batch = ExploreSpec {
            seeds: from..=to,
            ..spec.clone()
        };
        let summary = harness::explore::explore(&batch, &|_, _| {}).unwrap();
        if let Some(f) = summary.failed.into_iter().next() {
            return Some(f);
        }
        from = to + 1;
    }
    None
}
