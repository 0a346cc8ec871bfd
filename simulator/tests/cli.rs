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
