//! The network-namespace backend: real network stacks, faults in the kernel, nothing left
//! behind. These tests need root (CAP_NET_ADMIN); without it each one says why it was
//! skipped and passes (CI here runs as root, so they run there).

use harness::launch::{RunOptions, run_scenario};
use harness::scenario::{BackendKind, Scenario};
use std::process::Command;
use std::time::Duration;

/// `None` when the netns backend can run here, else why not (printed by the skipping test).
fn skip_reason() -> Option<String> {
    harness::netns::namespaces::check_privileges()
        .err()
        .map(|why| format!("skipped: {why}"))
}

fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn of_process(pid: u32) -> Vec<String> {
    let prefix = format!("{}{pid}-", harness::netns::namespaces::FAMILY);
    namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// One netns test at a time: they share two cores, and each checks that its own run's
/// namespaces are gone.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(text: &str, keep_logs: bool) -> harness::report::Report {
    let s = Scenario::parse(text, "netns-test.toml").unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run_scenario(
            &s,
            RunOptions {
                backend: BackendKind::Netns,
                quiet: true,
                keep_logs,
            },
        ))
        .unwrap()
}

const SITE: &str = r#"
[site]
devices = 20
tags_per_device = 50
scan_period = "100ms"
[redundancy]
heartbeat = "100ms"
failover_timeout = "500ms"
[connector]
source_timeout = "300ms"
"#;

#[test]
fn kernel_faults_apply_and_the_namespaces_are_gone_afterwards() {
    if let Some(why) = skip_reason() {
        eprintln!("{why}");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let text = format!(
        r#"
name = "netns-kernel-faults"
architecture = 3
duration = "9s"
{SITE}
[third_party]
kind = "redundant"
writes_per_s = 5
[[fault]]
at = "1s"
action = "reject"
target = "sc-b->po-b"
[[fault]]
at = "2s"
action = "heal"
target = "sc-b->po-b"
[[fault]]
at = "3s"
action = "bandwidth"
target = "sc-a->po-b"
rate = "1mbit"
[[fault]]
at = "4s"
action = "delay"
target = "tp->sc-a"
latency = "20ms"
[[fault]]
at = "5s"
action = "heal"
target = "tp->sc-a"
[[fault]]
at = "5s"
action = "heal"
target = "sc-a->po-b"
[[fault]]
at = "6s"
action = "isolate"
target = "host-d"
[[fault]]
at = "7s"
action = "heal"
target = "host-d"
[expect]
max_values_wrong = 0
max_writes_lost = 0
"#
    );
    let report = run(&text, false);
    assert_eq!(report.backend, "netns");
    assert!(report.passed, "{}", report.render_table());
    let mechanisms: Vec<&str> = report
        .failovers
        .iter()
        .map(|f| f.mechanism.as_str())
        .collect();
    for expected in [
        "reject with tcp reset",
        "tc htb class of 1mbit",
        "fault proxy",
        "pulled cable",
    ] {
        assert!(
            mechanisms.iter().any(|m| m.contains(expected)),
            "no fault applied by {expected}: {mechanisms:?}"
        );
    }
    assert_eq!(of_process(std::process::id()), Vec::<String>::new());
}

#[test]
fn a_black_hole_is_detected_by_silence_while_connects_to_it_hang() {
    if let Some(why) = skip_reason() {
        eprintln!("{why}");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // sc-a follows po-a; its link to po-a becomes a black hole in the kernel. The exact
    // detection time is asserted in the simulation (sim_backend.rs, virtual time); here
    // the real kernel shows what a black hole is: the session ends by silence, not by a
    // close, the connects that follow time out instead of being refused, and the switch
    // to po-b happened before the first of them gave up.
    let text = format!(
        r#"
name = "netns-black-hole"
architecture = 3
duration = "8s"
{SITE}
[[fault]]
at = "2s"
action = "cut"
target = "sc-a->po-a"
[expect]
max_values_wrong = 0
"#
    );
    let report = run(&text, true);
    assert!(report.passed, "{}", report.render_table());
    let dir = std::env::temp_dir().join(format!(
        "harness-netns-black-hole-{}-netns",
        std::process::id()
    ));
    let log = std::fs::read_to_string(dir.join("sc-a.log")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<&str> = log.lines().collect();
    let position = |what: &[&str]| {
        lines
            .iter()
            .position(|l| what.iter().all(|w| l.contains(w)))
            .unwrap_or_else(|| panic!("no line with {what:?} in sc-a.log:\n{log}"))
    };
    let switch = position(&["active source switch", "from=po-a", "to=po-b"]);
    let silent = position(&["source lost", "source=po-a", "server silent"]);
    let hung = position(&["source=po-a", "connect timed out"]);
    assert!(switch < hung, "the switch waited for a connect:\n{log}");
    assert!(silent < hung, "{log}");
    assert!(
        !log.contains("Connection refused") && !log.contains("reset by peer"),
        "a black hole answers nothing:\n{log}"
    );
}

#[test]
fn a_killed_run_leaves_nothing_behind_once_the_next_run_started() {
    if let Some(why) = skip_reason() {
        eprintln!("{why}");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let harness = env!("CARGO_BIN_EXE_harness");
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let mut victim = Command::new(harness)
        .args(["run", "--backend", "netns", "-q"])
        .arg(format!("{scenarios}/arch3-steady.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = victim.id();
    // Wait (bounded, as a safety net) until the run has namespaces with components in
    // them, then kill it mid-run.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let running = loop {
        let with_pids: Vec<String> = of_process(pid)
            .into_iter()
            .filter(|ns| {
                let out = Command::new("ip")
                    .args(["netns", "pids", ns])
                    .output()
                    .unwrap();
                !out.stdout.is_empty()
            })
            .collect();
        if with_pids.len() >= 4 {
            break with_pids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started its components"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    victim.kill().unwrap(); // SIGKILL: no cleanup of its own
    victim.wait().unwrap();
    assert!(
        !of_process(pid).is_empty(),
        "left behind, as a killed run does"
    );
    // Its components die with it (parent-death signal): the namespaces empty.
    for ns in &running {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .unwrap();
            if out.stdout.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{ns} still has processes"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The next run removes what the killed one left, and its own at the end.
    let next = Command::new(harness)
        .args(["run", "--backend", "netns", "-q"])
        .arg(format!("{scenarios}/ci-smoke.toml"))
        .output()
        .unwrap();
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert!(
        String::from_utf8_lossy(&next.stderr).contains("left behind by a killed run"),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert_eq!(of_process(pid), Vec::<String>::new());
}
