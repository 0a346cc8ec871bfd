//! `po-sim serve` as a process: a graceful stop on SIGTERM (a drain), a second SIGTERM,
//! exit codes, and the highest known epoch kept in `state_dir` across process restarts.

mod common;

use common::{PATIENCE, TestClient};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use po_protocol::{Access, ErrorCode, Frame, Role};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

/// A running `po-sim serve`, its log lines as they come, killed and reaped if a test
/// fails before it exits.
struct Serve {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Serve {
    fn start(config: &Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_po-sim"))
            .args(["--log", "info", "serve", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve {
            child: Some(child),
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `what`; `None` if the process ends first.
    fn wait_line(&mut self, what: &str) -> Option<String> {
        loop {
            let line = match self.lines.recv_timeout(PATIENCE) {
                Ok(l) => l,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "no log line with {what:?} within {PATIENCE:?}: {:#?}",
                        self.log
                    )
                }
            };
            self.log.push(line.clone());
            if line.contains(what) {
                return Some(line);
            }
        }
    }

    /// The client-access address, from the `server started` line.
    fn client_addr(&mut self) -> SocketAddr {
        let line = self
            .wait_line("server started")
            .unwrap_or_else(|| panic!("po-sim did not start: {:#?}", self.log));
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .expect("addr= in the start line");
        addr.parse().unwrap()
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.as_ref().unwrap().id();
        kill(Pid::from_raw(pid as i32), signal).unwrap();
    }

    /// Waits for the process to exit; returns its status and the whole log.
    fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.take().unwrap().wait().unwrap();
        while let Ok(line) = self.lines.recv() {
            self.log.push(line);
        }
        (status, std::mem::take(&mut self.log).join("\n"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("po-sim-serve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn standalone_config(dir: &Path, listen: &str, extra: &str) -> PathBuf {
    let path = dir.join("po.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"po-server\"\nlisten = \"{listen}\"\nlicences = [\"CA-1\"]\nseed = 7\nheartbeat = \"50ms\"\n[site]\ndevices = 1\ntags_per_device = 16\nscan_period = \"100ms\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

async fn connected_client(addr: SocketAddr) -> TestClient {
    let mut c = TestClient::connect(addr).await;
    let answer = c
        .hello(
            "sc-test",
            Access::ClientAccess {
                licence: "CA-1".into(),
            },
        )
        .await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
    c
}

fn assert_shutting_down(frame: Option<Frame>) {
    match frame {
        Some(Frame::Error {
            code: ErrorCode::ShuttingDown,
            message,
        }) => assert_eq!(message, "server po-server is shutting down"),
        other => panic!("expected Error{{ShuttingDown}}, got {other:?}"),
    }
}

#[tokio::test]
async fn sigterm_drains_tells_clients_shutting_down_and_exits_0() {
    let dir = temp_dir("drain");
    let mut serve = Serve::start(&standalone_config(&dir, "127.0.0.1:0", ""));
    let addr = serve.client_addr();
    let mut client = connected_client(addr).await;
    serve.signal(Signal::SIGTERM);
    assert_shutting_down(client.recv_non_heartbeat().await);
    assert_eq!(
        client.recv().await,
        None,
        "the server closes after the goodbye"
    );
    // The listener was closed before clients were told: nobody new comes in.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a draining server accepts no new connection"
    );
    // The drain ends when the told client has closed its end.
    drop(client);
    let (status, log) = tokio::task::spawn_blocking(move || serve.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("stopping: no new clients"), "{log}");
    assert!(
        log.contains(" stopped"),
        "a clean stop is logged as one: {log}"
    );
    assert!(!log.contains("crash"), "a clean stop is no crash: {log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_second_sigterm_stops_at_once() {
    let dir = temp_dir("second");
    // A drain that would wait for ever for a client that does not close.
    let config = standalone_config(&dir, "127.0.0.1:0", "[limits]\ndrain_timeout = \"1h\"\n");
    let mut serve = Serve::start(&config);
    let addr = serve.client_addr();
    let mut client = connected_client(addr).await;
    serve.signal(Signal::SIGTERM);
    assert_shutting_down(client.recv_non_heartbeat().await);
    assert_eq!(client.recv().await, None);
    serve.wait_line("stopping: no new clients").unwrap();
    // The client keeps its end open: the drain is still waiting for it.
    serve.signal(Signal::SIGTERM);
    let (status, log) = tokio::task::spawn_blocking(move || serve.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("po-sim: error: second signal: stopped at once"),
        "{log}"
    );
    drop(client);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_port_in_use_exits_1_and_says_why_once() {
    let dir = temp_dir("port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = standalone_config(&dir, &addr.to_string(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_po-sim"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "a runtime failure: {err}");
    let last = err.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "po-sim: error: cannot listen on {addr} (client access): Address already in use (os error 98)"
        )
    );
    drop(taken);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn redundant_config(dir: &Path, state_dir: Option<&Path>) -> PathBuf {
    let path = dir.join("po-a.toml");
    let state = state_dir.map_or(String::new(), |d| {
        format!("state_dir = \"{}\"\n", d.display())
    });
    // The peer's port is closed: the server is alone, and promotes after the failover
    // timeout.
    std::fs::write(
        &path,
        format!(
            "name = \"po-a\"\nlisten = \"127.0.0.1:0\"\nseed = 7\nheartbeat = \"20ms\"\n{state}[site]\ndevices = 1\ntags_per_device = 16\nscan_period = \"100ms\"\n[redundancy]\nindex = 0\nsync_listen = \"127.0.0.1:0\"\npeer = \"127.0.0.1:1\"\nfailover_timeout = \"100ms\"\n"
        ),
    )
    .unwrap();
    path
}

/// Runs the server until it is Primary, stops it with SIGTERM, returns its epoch.
async fn primary_epoch_of_one_run(config: &Path) -> u64 {
    let mut serve = Serve::start(config);
    let addr = serve.client_addr();
    let mut client = TestClient::connect(addr).await;
    let mut seen = client.hello("sc-test", Access::Local).await;
    let epoch = loop {
        match seen {
            Frame::Welcome {
                role: Role::Primary,
                epoch,
                ..
            }
            | Frame::Heartbeat {
                role: Role::Primary,
                epoch,
                ..
            } => break epoch,
            Frame::Welcome { .. } | Frame::Heartbeat { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        seen = client.recv().await.expect("the server stays up");
    };
    serve.signal(Signal::SIGTERM);
    client.drain().await;
    drop(client);
    let (status, log) = tokio::task::spawn_blocking(move || serve.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    epoch
}

#[tokio::test]
async fn a_restarted_process_with_state_dir_never_reuses_an_epoch() {
    let dir = temp_dir("state");
    let state = dir.join("state");
    let config = redundant_config(&dir, Some(&state));
    let mut epochs = Vec::new();
    for _ in 0..3 {
        epochs.push(primary_epoch_of_one_run(&config).await);
    }
    // Index 0 promotes to odd epochs, each above every epoch it has known.
    assert_eq!(epochs, [1, 3, 5]);
    assert_eq!(
        std::fs::read_to_string(state.join("po-a.epoch")).unwrap(),
        "highest_epoch = 5\n"
    );
    // `check` reads it as start-up would.
    let out = Command::new(env!("CARGO_BIN_EXE_po-sim"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "state in {}: highest known epoch 5",
            state.join("po-a.epoch").display()
        )),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn without_state_dir_a_process_restart_starts_over() {
    let dir = temp_dir("nostate");
    let config = redundant_config(&dir, None);
    let first = primary_epoch_of_one_run(&config).await;
    let second = primary_epoch_of_one_run(&config).await;
    assert_eq!((first, second), (1, 1), "documented: memory only");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_state_file_is_refused_naming_the_file() {
    let dir = temp_dir("badstate");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let file = state.join("po-a.epoch");
    std::fs::write(&file, "highest_epoch = -3\n").unwrap();
    let config = redundant_config(&dir, Some(&state));
    for command in ["serve", "check"] {
        let out = Command::new(env!("CARGO_BIN_EXE_po-sim"))
            .args([command, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains(&format!(
                "po-sim: error: {}: not a valid state file (",
                file.display()
            )),
            "{command}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
