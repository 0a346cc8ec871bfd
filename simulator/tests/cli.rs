//! `po-sim` as a user runs it: help text, catalogue, config errors.

use std::process::Command;

fn po_sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_po-sim"))
}

#[test]
fn every_command_has_help() {
    let out = po_sim().arg("--help").output().unwrap();
    assert!(out.status.success());
    insta::assert_snapshot!("help", String::from_utf8(out.stdout).unwrap());
    for sub in ["serve", "pair", "check", "tags", "value"] {
        let out = po_sim().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
        insta::assert_snapshot!(
            format!("help_{sub}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

#[test]
fn tags_prints_the_catalogue() {
    let out = po_sim()
        .args([
            "tags",
            "--devices",
            "1",
            "--tags-per-device",
            "18",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}

#[test]
fn value_is_reproducible_from_the_command_line() {
    let args = ["value", "--seed", "7", "--tag", "7", "--tick", "1000"];
    let a = po_sim().args(args).output().unwrap();
    let b = po_sim().args(args).output().unwrap();
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8(a.stdout).unwrap();
    assert!(
        text.starts_with("Feeder01.Meter1.kW tick 1000 (100000000 µs): "),
        "{text}"
    );
}

#[test]
fn bad_config_files_are_refused_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("po-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "name = \"po-a\"\nlisten = \"127.0.1.1:23500\"\nseed = 7\n[site]\ndevices = 2\ntags_per_devise = 3\nscan_period = \"100ms\"\n",
    )
    .unwrap();
    let out = po_sim()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&*dir.to_string_lossy(), "<dir>");
    insta::assert_snapshot!(err);
    let out = po_sim()
        .args(["check", "--config", "/nonexistent/po.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // The cause is said once, not once from the message and again from `source()`.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "po-sim: error: /nonexistent/po.toml: cannot read: No such file or directory (os error 2)\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every problem of a file is listed, each with its line, column and key: a typo'd key
/// (serde), a bad address in another table (serde, found after the first was removed)
/// and the rules serde cannot express, each independent of the others.
#[test]
fn check_lists_every_problem_of_a_config_with_its_line() {
    let dir = std::env::temp_dir().join(format!("po-sim-cli-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("many.toml");
    std::fs::write(
        &path,
        r#"name = "po-a"
listen = "127.0.1.1:23500"
licences = ["CA-1", "CA-1"]
seed = 7
client_queue = 1

[site]
devices = 0
tags_per_devise = 3
scan_period = "100ms"

[limits]
handshake_timeout = "0s"
drain_timeout = "soon"

[redundancy]
index = 2
sync_listen = "127.0.1.1:23501"
peer = "127.0.2.1:23501"
"#,
    )
    .unwrap();
    let out = po_sim()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&*dir.to_string_lossy(), "<dir>");
    insta::assert_snapshot!(err);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn value_takes_a_tag_name_or_id_and_names_an_unknown_one() {
    let by_name = po_sim()
        .args(["value", "--tag", "Feeder01.Meter1.Va", "--tick", "1000"])
        .output()
        .unwrap();
    let by_id = po_sim()
        .args(["value", "--tag", "1", "--tick", "1000"])
        .output()
        .unwrap();
    assert!(
        by_name.status.success(),
        "{}",
        String::from_utf8_lossy(&by_name.stderr)
    );
    assert_eq!(by_name.stdout, by_id.stdout);
    assert!(String::from_utf8_lossy(&by_name.stdout).starts_with("Feeder01.Meter1.Va tick 1000 "));
    for tag in ["Feeder01.Meter1.Vx", "Nothing.Like.It", "320"] {
        let out = po_sim().args(["value", "--tag", tag]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{tag}: a usage error");
        insta::assert_snapshot!(
            format!("value_unknown_tag_{tag}"),
            String::from_utf8(out.stderr).unwrap()
        );
    }
}

#[test]
fn value_at_a_time_is_the_tick_in_force_then() {
    // Tick 1000 of a 100 ms scan starts 100 s after the field epoch (the Unix epoch).
    let at = po_sim()
        .args(["value", "--tag", "7", "--at", "1970-01-01T00:01:40.05Z"])
        .output()
        .unwrap();
    let tick = po_sim()
        .args(["value", "--tag", "7", "--tick", "1000"])
        .output()
        .unwrap();
    assert!(
        at.status.success(),
        "{}",
        String::from_utf8_lossy(&at.stderr)
    );
    assert_eq!(at.stdout, tick.stdout);
}

#[test]
fn shipped_example_configs_are_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    for f in [
        "arch1/po-server.toml",
        "arch2/po-a.toml",
        "arch2/po-b.toml",
        "arch3/po-a.toml",
        "arch3/po-b.toml",
    ] {
        let out = po_sim()
            .arg("check")
            .arg("--config")
            .arg(format!("{root}/{f}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
    for args in [&["--version"][..], &["serve", "--version"]] {
        let out = po_sim().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        // A subcommand's `--version` names it too (`po-sim-run 0.1.0 …`).
        let text = String::from_utf8(out.stdout).unwrap();
        let want = format!(" {} (commit {commit})\n", env!("CARGO_PKG_VERSION"));
        assert!(
            text.starts_with("po-sim") && text.ends_with(&want),
            "{args:?}: {text:?}"
        );
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    use std::io::BufRead as _;
    let dir = std::env::temp_dir().join(format!("po-sim-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("po.toml");
    std::fs::write(
        &path,
        "name = \"po-json\"\nlisten = \"127.0.0.1:0\"\nseed = 7\nheartbeat = \"100ms\"\n[site]\ndevices = 1\ntags_per_device = 4\nscan_period = \"100ms\"\n",
    )
    .unwrap();
    let mut child = po_sim()
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    // Read until the server says it started (an event, not a delay), then stop it.
    let mut started = false;
    while !started {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        started = line.contains("server started");
        lines.push(line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    lines.extend(rest.lines().map(str::to_string));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(started, "no 'server started' line: {lines:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line.trim_end())
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
        assert!(v.is_object(), "{line:?}");
        assert!(v["timestamp"].is_string(), "{line:?}");
        assert!(v["level"].is_string(), "{line:?}");
    }
    let start: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(start["fields"]["message"], "server started", "{start}");
    assert_eq!(start["fields"]["server"], "po-json", "{start}");
    assert_eq!(start["level"], "INFO", "{start}");
}
