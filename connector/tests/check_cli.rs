//! `smart-connector check` and `--help`, run as the real binary.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smart-connector"))
}

#[test]
fn check_reports_every_problem_with_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("sc-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.toml");
    std::fs::write(
        &path,
        r#"name = "sc-a"

[[source]]
name = "po-a"
adress = "127.0.1.1:23500"

[[source]]
name = "po-b"
address = "127.0.2.1"

[modbus]
listen = "127.0.3.1:1502"

[map]
mode = "explicit"

[[map.point]]
tag = "Feeder01.Meter1.kW"
address = 100

[[map.point]]
tag = "Feeder01.Meter1.kVAr"
address = 100
"#,
    )
    .unwrap();
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&*dir.to_string_lossy(), "<dir>");
    insta::assert_snapshot!(stderr);
}

#[test]
fn check_accepts_the_shipped_examples() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    for f in [
        "arch1/connector.toml",
        "arch2/connector-a.toml",
        "arch2/connector-b.toml",
        "arch3/connector-a.toml",
        "arch3/connector-b.toml",
    ] {
        let out = bin()
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

#[test]
fn help_text() {
    let out = bin().arg("--help").output().unwrap();
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
    for sub in ["run", "check", "points"] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        insta::assert_snapshot!(
            format!("help_{sub}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}
