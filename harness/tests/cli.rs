//! The `harness` binary: plans, invalid scenario files (exit 2), failing expectations
//! (exit 1) and its reports, help text.

use std::path::{Path, PathBuf};
use std::process::Command;

fn harness() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn plan_shows_the_netns_network_and_floods() {
    for (file, backend) in [
        ("arch3-primary-isolated", "netns"),
        ("arch3-flood", "process"),
    ] {
        let out = harness()
            .args([
                "plan",
                &format!("scenarios/{file}.toml"),
                "--backend",
                backend,
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        insta::assert_snapshot!(
            format!("plan_{file}_{backend}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

#[test]
fn plan_shows_every_architecture() {
    for file in ["arch1-steady", "arch2-primary-crash", "arch3-sync-cut"] {
        let out = harness()
            .args(["plan", &format!("scenarios/{file}.toml")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        insta::assert_snapshot!(
            format!("plan_{file}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

#[test]
fn invalid_scenarios_are_refused_before_anything_starts() {
    let dir = temp_dir("invalid");
    let base = "name = \"bad\"\narchitecture = 3\nduration = \"5s\"\n";
    let files = [
        (
            "unknown-key.toml",
            format!("{base}\n[third_party]\nclient = 2\n"),
        ),
        (
            "wrong-type.toml",
            format!("{base}\n[site]\ndevices = \"many\"\n"),
        ),
        (
            "architecture-4.toml",
            "name = \"bad\"\narchitecture = 4\nduration = \"5s\"\n".to_string(),
        ),
        (
            "unknown-host.toml",
            format!("{base}\n[[fault]]\nat = \"1s\"\naction = \"crash\"\ntarget = \"po-c\"\n"),
        ),
        (
            "fault-after-end.toml",
            format!("{base}\n[[fault]]\nat = \"9s\"\naction = \"crash\"\ntarget = \"po-a\"\n"),
        ),
        (
            "network-fault-on-a-server.toml",
            format!("{base}\n[[fault]]\nat = \"1s\"\naction = \"cut\"\ntarget = \"po-a\"\n"),
        ),
        (
            "bad-duration.toml",
            "name = \"bad\"\narchitecture = 1\nduration = \"5 parsecs\"\n".to_string(),
        ),
    ];
    let mut all = String::new();
    for (name, text) in &files {
        let path = write(&dir, name, text);
        let out = harness().args(["run", "-q"]).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let plan = harness().arg("plan").arg(&path).output().unwrap();
        assert_eq!(plan.status.code(), Some(2), "plan {name}");
        all.push_str(
            &String::from_utf8(out.stderr)
                .unwrap()
                .replace(&*dir.to_string_lossy(), "<dir>"),
        );
    }
    insta::assert_snapshot!(all);
}

/// A 1.5 s architecture 1 run on 32 tags that checks integrity, plus `extra` expectations.
fn small_arch1(name: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\narchitecture = 1\nduration = \"1500ms\"\n\n[site]\ndevices = 2\ntags_per_device = 16\nscan_period = \"50ms\"\n\n[third_party]\npoll_period = \"50ms\"\n\n[expect]\nmax_values_wrong = 0\n{extra}"
    )
}

#[test]
fn an_expectation_that_cannot_hold_exits_1_with_reports() {
    let dir = temp_dir("fail");
    let path = write(
        &dir,
        "impossible.toml",
        &small_arch1("impossible", "min_updates_per_s = 1000000000\n"),
    );
    let json = dir.join("r.json");
    let junit = dir.join("r.xml");
    let out = harness()
        .args(["run", "-q"])
        .arg(&path)
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("min_updates_per_s") && stdout.contains("FAIL"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "schema_version",
        "scenario",
        "architecture",
        "backend",
        "passed",
        "duration_s",
        "licences",
        "ingest",
        "modbus",
        "latency_ms",
        "failovers",
        "integrity",
        "writes",
        "expectations",
    ] {
        assert!(report.get(key).is_some(), "JSON misses {key}");
    }
    assert_eq!(report["passed"], false);
    assert!(report["ingest"]["updates_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["modbus"]["values_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["integrity"]["values_wrong"], 0);
    for line in [
        format!("JSON report written to {}", json.display()),
        format!("JUnit report written to {}", junit.display()),
    ] {
        assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"min_updates_per_s"),
        "{xml}"
    );
}

#[test]
fn help_text() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["plan", "--help"],
        vec!["explore", "--help"],
        vec!["flood", "--help"],
        vec!["bench", "--help"],
        vec!["load", "--help"],
        vec!["bare-modbus", "--help"],
    ] {
        let out = harness().args(&args).output().unwrap();
        assert!(out.status.success());
        insta::assert_snapshot!(
            format!("help_{}", args.join("_").trim_start_matches("--")),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

#[test]
fn a_better_baseline_fails_the_run_and_names_the_figure() {
    let dir = temp_dir("baseline");
    let path = write(&dir, "small.toml", &small_arch1("small", ""));
    let first = dir.join("first.json");
    let out = harness()
        .args(["run", "-q"])
        .arg(&path)
        .arg("--json")
        .arg(&first)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A baseline ten times faster than anything this run can do.
    let mut better: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&first).unwrap()).unwrap();
    let rate = better["ingest"]["updates_per_s"].as_f64().unwrap();
    better["ingest"]["updates_per_s"] = serde_json::json!(rate * 10.0);
    let baseline = write(&dir, "baseline.json", &better.to_string());
    let out = harness()
        .args(["run", "-q"])
        .arg(&path)
        .arg("--baseline")
        .arg(&baseline)
        .args(["--max-regression", "10%"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.contains("baseline ingest.updates_per_s"))
        .unwrap_or_else(|| panic!("regressed figure not named:\n{stdout}"));
    assert!(line.ends_with("FAIL"), "{line}");
    // A bad margin is invalid input.
    let out = harness()
        .args(["run", "-q"])
        .arg(&path)
        .arg("--baseline")
        .arg(&baseline)
        .args(["--max-regression", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explore_refuses_bad_arguments_with_exit_2() {
    for (args, says) in [
        (
            vec!["explore", "--architecture", "1", "--seeds", "1..2"],
            "architecture",
        ),
        (
            vec!["explore", "--architecture", "3", "--seeds", "9..2"],
            "empty",
        ),
        (
            vec![
                "explore",
                "--architecture",
                "3",
                "--seeds",
                "1..2",
                "--shard",
                "3/2",
            ],
            "K/N",
        ),
    ] {
        let out = harness().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn faults_a_backend_cannot_apply_are_refused_before_anything_starts() {
    let dir = temp_dir("unsupported");
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let fault = |action: &str, target: &str, extra: &str| {
        let text = small_arch1("f", "").replace("architecture = 1", "architecture = 3")
            + &format!(
                "\n[[fault]]\nat = \"1s\"\naction = \"{action}\"\ntarget = \"{target}\"\n{extra}\n"
            );
        write(&dir, &format!("{action}.toml"), &text)
    };
    let shipped = |name: &str| std::path::PathBuf::from(format!("{scenarios}/{name}"));
    for (file, backend, says) in [
        (
            fault("loss", "tp->sc-a", "fraction = 0.05"),
            "inprocess",
            "--backend sim or netns",
        ),
        (
            shipped("arch3-lossy-links.toml"),
            "process",
            "--backend sim or netns",
        ),
        (
            shipped("arch3-primary-isolated.toml"),
            "process",
            "a pulled cable is silent",
        ),
        (
            fault("reject", "sc-a->po-a", ""),
            "sim",
            "TCP resets: --backend netns",
        ),
        (
            fault("bandwidth", "sc-a->po-a", "rate = \"2mbit\""),
            "sim",
            "traffic shaper: --backend netns",
        ),
        (
            fault("bandwidth", "sc-a->po-a", "rate = \"2mbit\""),
            "process",
            "traffic shaper",
        ),
    ] {
        let out = harness()
            .args(["run", "-q", "--backend", backend])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{} on {backend}: {err}",
            file.display()
        );
        assert!(
            err.contains("fault[") && err.contains(says),
            "{} on {backend}: {err}",
            file.display()
        );
    }
}

#[test]
fn the_netns_backend_without_root_exits_2_and_says_why() {
    // Run as an unprivileged user where we can (root with setpriv), else as we are.
    let unprivileged = !nix_is_root();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/ci-smoke.toml");
    let exe = env!("CARGO_BIN_EXE_harness");
    let out = if unprivileged {
        harness()
            .args(["run", "-q", "--backend", "netns", scenario])
            .output()
            .unwrap()
    } else {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", exe])
            .args(["run", "-q", "--backend", "netns", scenario])
            .output()
            .unwrap()
    };
    let err = String::from_utf8(out.stderr).unwrap();
    if err.contains("Permission denied") && err.contains(exe) {
        eprintln!("skipped: the harness binary is not executable by an unprivileged user here");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs root (CAP_NET_ADMIN)"), "{err}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn flood_refuses_what_it_cannot_do() {
    let out = harness()
        .args(["flood", "--target", "127.0.0.1:9", "--connections", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--connections must be at least 1"));
    let out = harness()
        .args(["flood", "--target", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_flood_against_a_closed_port_counts_failed_connects_and_ends_by_itself() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again when dropped: nothing listens there
    let out = harness()
        .args(["flood", "-q", "--connections", "3", "--duration", "1s"])
        .args(["--reconnect-delay", "100ms"])
        .args(["--target", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["connected"], 0, "{summary}");
    assert!(
        summary["connect_failed"].as_u64().unwrap() >= 3,
        "{summary}"
    );
}

/// The short hash of the checkout's HEAD, or "unknown" outside a git checkout: what
/// `--version` must name (cargo rebuilds the binaries when HEAD moves).
fn expected_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8(o.stdout).unwrap().trim().to_string()
        })
}

#[test]
fn version_names_the_version_and_the_commit() {
    let commit = expected_commit();
    for args in [&["--version"][..], &["run", "--version"]] {
        let out = harness().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        // A subcommand's `--version` names it too (`harness-run 0.1.0 …`).
        let text = String::from_utf8(out.stdout).unwrap();
        let want = format!(" {} (commit {commit})\n", env!("CARGO_PKG_VERSION"));
        assert!(
            text.starts_with("harness") && text.ends_with(&want),
            "{args:?}: {text:?}"
        );
    }
}

/// The test-only glob: one scenario every backend runs, one that needs packet loss.
fn mixed_glob() -> Vec<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mixed"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_glob_runs_what_the_backend_can_and_skips_the_rest_by_name() {
    let dir = temp_dir("glob-skip");
    let (json, junit) = (dir.join("r.json"), dir.join("r.xml"));
    let out = harness()
        .args(["run", "-q"])
        .args(mixed_glob())
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("runs-everywhere — architecture 1, inprocess backend"),
        "{stdout}"
    );
    let skip = stdout
        .lines()
        .find(|l| l.contains("SKIPPED"))
        .unwrap_or_else(|| panic!("no SKIPPED line:\n{stdout}"));
    assert!(
        skip.starts_with("needs-loss (") && skip.contains("b-needs-loss.toml"),
        "{skip}"
    );
    assert!(
        skip.contains("SKIPPED: the inprocess backend cannot run it: fault[0].action: `loss`")
            && skip.ends_with("backends that can run it: sim, netns"),
        "{skip}"
    );
    assert!(
        stdout.contains("2 scenarios: 1 passed, 0 failed, 1 skipped"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let items = report.as_array().expect("an array for two scenarios");
    assert_eq!(items.len(), 2, "{report}");
    assert_eq!(items[0]["scenario"], "runs-everywhere");
    assert_eq!(items[0]["passed"], true);
    assert_eq!(items[1]["scenario"], "needs-loss");
    assert_eq!(items[1]["backend"], "inprocess");
    assert_eq!(items[1]["runnable_on"], serde_json::json!(["sim", "netns"]));
    assert!(items[1]["skipped"][0].as_str().unwrap().contains("loss"));
    // A report with skipped scenarios still serves as a baseline.
    let out = harness()
        .args(["run", "-q"])
        .args(mixed_glob())
        .arg("--baseline")
        .arg(&json)
        .args(["--max-regression", "99%"])
        .output()
        .unwrap();
    // Read and compared (exit 0, or 1 if a loaded machine made a figure regress: the
    // comparison itself is wall-clock and not this test's business), never refused (2).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    assert!(!err.contains(&*json.to_string_lossy()), "{err}");
    assert!(!err.contains("no baseline for"), "{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("skipped=\"1\""), "{xml}");
    assert!(
        xml.contains("<testcase classname=\"needs-loss\" name=\"run\">\n      <skipped message=\"the inprocess backend cannot run it"),
        "{xml}"
    );
}

#[test]
fn strict_or_a_single_file_refuses_what_the_backend_cannot_run() {
    let out = harness()
        .args(["run", "-q", "--strict"])
        .args(mixed_glob())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "something ran");
    let err = String::from_utf8(out.stderr)
        .unwrap()
        .replace(concat!(env!("CARGO_MANIFEST_DIR"), "/"), "harness/");
    insta::assert_snapshot!(err);
    // Every file skipped: nothing ran, which is no success.
    let lossy = mixed_glob().pop().unwrap();
    let out = harness()
        .args(["run", "-q", "--backend", "process"])
        .args([&lossy, &lossy])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no scenario given can run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plan_refuses_what_its_backend_cannot_run_and_names_the_backends_that_can() {
    let mut all = String::new();
    for (file, backend) in [
        ("arch3-lossy-links", None),
        ("arch3-primary-isolated", Some("process")),
        ("arch3-million", Some("sim")),
        ("arch3-tls-roles", Some("sim")),
    ] {
        let mut cmd = harness();
        cmd.args(["plan", &format!("scenarios/{file}.toml")]);
        if let Some(b) = backend {
            cmd.args(["--backend", b]);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{file} on {backend:?}");
        assert!(out.stdout.is_empty(), "{file}: a plan was printed");
        all.push_str(&String::from_utf8(out.stderr).unwrap());
    }
    insta::assert_snapshot!(all);
    // The backend that can run it gets its plan.
    let out = harness()
        .args([
            "plan",
            "scenarios/arch3-lossy-links.toml",
            "--backend",
            "sim",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("backend sim"));
}

#[test]
fn values_are_read_as_users_write_them() {
    let mut all = String::new();
    for args in [
        // A bare number of seconds: the hint is "3s", as every file writes it.
        vec!["load", "--target", "127.0.0.1:9", "--duration", "3"],
        vec![
            "flood",
            "--target",
            "127.0.0.1:9",
            "--duration",
            "5 parsecs",
        ],
        // A margin beyond the range is refused saying what the range is.
        vec!["run", "scenarios/ci-smoke.toml", "--max-regression", "150"],
    ] {
        let out = harness().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        all.push_str(&format!("$ harness {}\n", args.join(" ")));
        all.push_str(&String::from_utf8(out.stderr).unwrap());
    }
    insta::assert_snapshot!(all);
    // `--max-regression 10` means 10%: accepted (the run then stops at the missing
    // baseline file, not at the margin).
    let out = harness()
        .args([
            "run",
            "-q",
            "scenarios/ci-smoke.toml",
            "--max-regression",
            "10",
        ])
        .args(["--baseline", "no-such-baseline.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no-such-baseline.json: cannot read") && !err.contains("max-regression"),
        "{err}"
    );
}

#[test]
fn load_refuses_an_option_of_the_other_protocol_by_name() {
    // Refused before anything is dialled: nothing listens on these addresses.
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "load",
                "--protocol",
                "opcua",
                "--target",
                "opc.tcp://127.0.0.1:9/",
                "--connections",
                "4",
            ],
            "--connections is a Modbus option",
        ),
        (
            &[
                "load",
                "--protocol",
                "opcua",
                "--target",
                "opc.tcp://127.0.0.1:9/",
                "--quantity",
                "10",
            ],
            "--quantity is a Modbus option",
        ),
        (
            &["load", "--target", "127.0.0.1:9", "--items", "10"],
            "--items is an OPC UA option",
        ),
    ];
    for (args, says) in cases {
        let out = harness().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
