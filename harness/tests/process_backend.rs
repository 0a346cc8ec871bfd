//! The process backend runs the real binaries and never leaves a child behind, after a
//! normal run or after Ctrl-C.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scenario(name: &str, duration: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-proc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
architecture = 3
backend = "process"
duration = "{duration}"
[site]
devices = 2
tags_per_device = 16
scan_period = "50ms"
[redundancy]
heartbeat = "50ms"
failover_timeout = "300ms"
[third_party]
kind = "redundant"
poll_period = "50ms"
[[fault]]
at = "1s"
action = "crash"
target = "po-a"
[expect]
max_values_wrong = 0
"#
        ),
    )
    .unwrap();
    path
}

/// Processes whose command line mentions `needle` (the run directory of one harness run).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn a_process_run_passes_and_leaves_no_child() {
    let path = scenario("proc-run", "2500ms");
    let child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "-q"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("process backend") && stdout.contains("PASSED"),
        "{stdout}"
    );
    let left = processes_mentioning(&format!("harness-proc-run-{pid}"));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn ctrl_c_stops_every_child() {
    let path = scenario("proc-int", "60s");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "-q"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let needle = format!("harness-proc-int-{pid}");
    // Wait until the children run (both connectors started), then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_mentioning(&needle).len() < 4 {
        assert!(Instant::now() < deadline, "children never started");
        assert!(child.try_wait().unwrap().is_none(), "harness exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // Every child has been sent SIGKILL by then (dropped handles, and --pdeathsig when the
    // harness exits); a child being torn down by the kernel may still be listed for a
    // moment, so wait for them to go, but not for ever.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = processes_mentioning(&needle);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = processes_mentioning(&needle);
    }
    assert!(left.is_empty(), "left behind: {left:?}");
}
