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
        // What the Debian package installs as /etc/smart-connector/connector.toml.
        "../deploy/debian/connector.toml",
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
fn check_refuses_caps_that_cannot_fit_in_the_descriptor_limit() {
    let dir = std::env::temp_dir().join(format!("check-fd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("big.toml");
    std::fs::write(
        &config,
        r#"name = "sc-big"
[[source]]
name = "po-a"
address = "127.0.0.1:23500"
[modbus]
listen = "127.0.0.1:1502"
max_connections = 2000
[metrics]
listen = "127.0.0.1:9102"
"#,
    )
    .unwrap();
    let under = |limit: u32| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n {limit} 2>/dev/null || exit 77; exec '{}' check --config '{}'",
                env!("CARGO_BIN_EXE_smart-connector"),
                config.display()
            ))
            .output()
            .unwrap()
    };
    // Under the common service limit the caps cannot fit: exit 2, naming each part.
    let out = under(1024);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for part in [
        "big.toml",
        "modbus.max_connections 2000",
        "metrics.max_connections 16",
        "sources (2 each) 2",
        "only 1024",
    ] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
    // With room for them it passes, and says how many it may use.
    let out = under(4096);
    if out.status.code() == Some(77) {
        eprintln!("second half skipped: this machine's hard limit is below 4096 descriptors");
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("file descriptors: at most 2082") && text.contains("of 4096 allowed"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_text() {
    let out = bin().arg("--help").output().unwrap();
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
    for sub in ["run", "check", "points", "certs"] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        insta::assert_snapshot!(
            format!("help_{sub}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

mod common;

fn solo_config(
    dir: &std::path::Path,
    server: std::net::SocketAddr,
    modbus_port: u16,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("sc.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"sc-cli\"\n[[source]]\nname = \"po-solo\"\naddress = \"{server}\"\n[modbus]\nlisten = \"127.0.0.1:{modbus_port}\"\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_asks_the_server_for_the_catalogue() {
    let server = common::solo_server(1).await;
    let dir = std::env::temp_dir().join(format!("sc-points-{}", std::process::id()));
    let path = solo_config(&dir, server.client_addr(), 0);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smart-connector"))
        .args(["points", "--format", "csv", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!(csv);
    // docs/register-map.md shows the same list and the same notation as the tool.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/register-map.md"
    ))
    .unwrap();
    let shown: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("Feeder01.Meter1.") || l.starts_with("tag,unit_id"))
        .collect();
    assert!(shown.len() >= 3, "the doc shows the points list");
    for line in shown {
        assert!(
            csv.lines().any(|l| l == line),
            "docs/register-map.md: {line}"
        );
    }
    let first = csv.lines().nth(1).unwrap().split(',').collect::<Vec<_>>();
    let (address, reference) = (first[2], first[3]);
    assert!(
        doc.contains(&format!("register {address} is \"{reference}\"")),
        "docs/register-map.md must say register {address} is \"{reference}\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_into_a_closed_pipe_ends_quietly() {
    // `smart-connector points | head`: the reader is gone before the list is written.
    let server = common::solo_server(1).await;
    let dir = std::env::temp_dir().join(format!("sc-pipe-{}", std::process::id()));
    let path = solo_config(&dir, server.client_addr(), 0);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_smart-connector"))
        .args(["points", "--format", "csv", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // close the read end: every write now fails with EPIPE
    let out = child.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_modbus_and_stops_on_sigterm() {
    use tokio_modbus::prelude::*;
    let server = common::solo_server(1).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("sc-run-{}", std::process::id()));
    let path = solo_config(&dir, server.client_addr(), port);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_smart-connector"))
        .args(["run", "--config"])
        .arg(&path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let state = loop {
        if let Ok(mut ctx) = tcp::connect_slave(addr, Slave(1)).await
            && let Ok(Ok(s)) = ctx.read_holding_registers(1, 1).await
            && s[0] == 1
        {
            break s[0];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never served Primary data"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(state, 1);
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

/// Writes `text` as a configuration file of its own and runs `check` on it.
fn check_text(name: &str, text: &str) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(format!("sc-check-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let clean = |b: Vec<u8>| {
        String::from_utf8(b)
            .unwrap()
            .replace(&*dir.to_string_lossy(), "<dir>")
    };
    (out.status.code(), clean(out.stdout), clean(out.stderr))
}

#[test]
fn check_refuses_two_listeners_on_one_port_and_a_server_listed_twice() {
    let (code, _, stderr) = check_text(
        "clash",
        r#"name = "sc"
[[source]]
name = "po-a"
address = "127.0.1.1:23500"
[[source]]
name = "po-a"
address = "127.0.1.1:23500"
[modbus]
listen = "127.0.3.1:1502"
[metrics]
listen = "127.0.3.1:1502"
"#,
    );
    assert_eq!(code, Some(2), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn check_takes_a_bare_address_in_allow_and_names_a_bad_entry() {
    let base = "name = \"sc\"\n[[source]]\nname = \"po-a\"\naddress = \"127.0.1.1:23500\"\n[modbus]\nlisten = \"127.0.3.1:1502\"\n";
    let (code, stdout, stderr) = check_text(
        "allow-ok",
        &format!("{base}allow = [\"127.0.1.1\", \"::1\", \"127.0.2.0/24\"]\n"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    // No unit ids listed: the summary says what will be served, as /api/status does.
    assert!(
        stdout.contains("unit ids automatic (1, then 2, 3, … as the site needs)"),
        "{stdout}"
    );
    let (code, _, stderr) = check_text(
        "allow-bad",
        &format!("{base}allow = [\"127.0.1.1\", \"127.0.1.300\"]\n"),
    );
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr);
}

#[test]
fn points_without_a_catalogue_source_names_both_ways() {
    let out = bin().arg("points").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--config") && stderr.contains("--from"),
        "{stderr}"
    );
}

#[test]
fn example_mbpoll_commands_poll_once() {
    // mbpoll polls for ever unless told `-1`: a README line a user pastes must end.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut seen = 0;
    for dir in [
        "examples/arch1",
        "examples/arch2",
        "examples/arch3",
        "examples/arch3-tls",
        "docs",
    ] {
        let Ok(entries) = std::fs::read_dir(format!("{root}/{dir}")) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "md") {
                continue;
            }
            for (n, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
                if line.trim_start().starts_with("mbpoll ") {
                    seen += 1;
                    assert!(
                        line.split_whitespace().any(|w| w == "-1"),
                        "{}:{}: mbpoll without -1 polls for ever: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
    assert!(seen >= 3, "the examples show mbpoll");
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
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        // A subcommand's `--version` names it too (`smart-connector-run 0.1.0 …`).
        let text = String::from_utf8(out.stdout).unwrap();
        let want = format!(" {} (commit {commit})\n", env!("CARGO_PKG_VERSION"));
        assert!(
            text.starts_with("smart-connector") && text.ends_with(&want),
            "{args:?}: {text:?}"
        );
    }
}

/// The command reference the Debian package installs as documentation
/// (/usr/share/doc/smart-connector/usage.txt): every command's `--help`, as the binary
/// prints it. `SC_UPDATE_USAGE=1` rewrites the file after a deliberate CLI change.
#[test]
fn the_packaged_usage_text_is_the_binarys_help() {
    let mut text =
        String::from("smart-connector: command reference (the output of each command's --help)\n");
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["points", "--help"],
        &["certs", "--help"],
        &["certs", "init", "--help"],
        &["certs", "client", "--help"],
        &["certs", "server", "--help"],
        &["certs", "opcua", "--help"],
        &["certs", "opcua-client", "--help"],
        &["opcua-password", "--help"],
    ] {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        text.push_str(&format!(
            "\n$ smart-connector {}\n\n{}",
            args.join(" "),
            String::from_utf8(out.stdout).unwrap()
        ));
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/debian/usage.txt");
    if std::env::var_os("SC_UPDATE_USAGE").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let packaged = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        packaged == text,
        "{path} is not the binary's help: rerun with SC_UPDATE_USAGE=1 and review the diff"
    );
}

#[test]
fn durations_without_a_unit_are_told_to_write_s() {
    // On the command line: clap's message carries the project's spelling, not `3sec`.
    let out = bin()
        .args(["points", "--from", "http://127.0.0.1:9", "--timeout", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("\"3\" has no unit: write e.g. \"3s\" or \"3ms\"")
            && !stderr.contains("3sec"),
        "{stderr}"
    );
    // In a configuration file: the same hint, with the file, line and key.
    let (code, _, stderr) = check_text(
        "duration",
        "name = \"sc\"\n[[source]]\nname = \"po-a\"\naddress = \"127.0.1.1:23500\"\n[modbus]\nlisten = \"127.0.3.1:1502\"\n[policy]\nsource_timeout = \"3\"\n",
    );
    assert_eq!(code, Some(2));
    insta::assert_snapshot!(stderr);
}
