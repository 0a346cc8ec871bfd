//! The connector as a service, run as the real binary: reachable before its servers
//! are (status block, `/api/status`, `/readyz`, `/healthz`), the service manager's
//! protocol (READY, WATCHDOG, STOPPING), and a graceful drain on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio_modbus::prelude::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ports {
    modbus: SocketAddr,
    http: SocketAddr,
}

fn config(dir: &Path, server: SocketAddr, extra: &str) -> (PathBuf, Ports) {
    std::fs::create_dir_all(dir).unwrap();
    let ports = Ports {
        modbus: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        http: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    };
    let path = dir.join("sc.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"sc-svc\"\n[[source]]\nname = \"po-solo\"\naddress = \"{server}\"\n\
             [modbus]\nlisten = \"{}\"\n[metrics]\nlisten = \"{}\"\n{extra}",
            ports.modbus, ports.http
        ),
    )
    .unwrap();
    (path, ports)
}

fn spawn(path: &Path, envs: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smart-connector"));
    cmd.args(["run", "--config"])
        .arg(path)
        .env("SMART_CONNECTOR_LOG", "info")
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// One HTTP/1.0 GET: (status code, body); `None` while nothing listens.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// Retries `get` until the listener answers (the process is starting), for 15 s.
async fn get_when_up(addr: SocketAddr, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(r) = get(addr, path).await {
            return r;
        }
        assert!(Instant::now() < deadline, "{addr}{path} never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/api/status` until `pred` holds on its JSON, for 15 s.
async fn status_until(
    http: SocketAddr,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((200, body)) = get(http, "/api/status").await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if pred(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_whose_server_is_down_answers_and_says_why() {
    // A port nothing listens on: the server is down.
    let down: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = std::env::temp_dir().join(format!("sc-svc-down-{}", std::process::id()));
    let (path, ports) = config(&dir, down, "");
    let started = Instant::now();
    let mut child = spawn(&path, &[]);
    let (code, body) = get_when_up(ports.http, "/api/status").await;
    eprintln!("/api/status answered {:?} after start", started.elapsed());
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["state"], "starting");
    let reason = doc["reason"].as_str().expect("a reason while starting");
    assert!(
        reason.contains("no server has delivered a tag catalogue yet")
            && reason.contains("po-solo"),
        "{reason}"
    );
    // The reason names what the source said once it has tried.
    let doc = status_until(ports.http, "the refusal is shown", |v| {
        v["sources"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused"))
    })
    .await;
    assert!(doc["reason"].as_str().unwrap().contains("refused"));
    let (code, body) = get(ports.http, "/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("not ready (starting): no server"),
        "{body}"
    );
    let (code, body) = get(ports.http, "/healthz").await.unwrap();
    assert_eq!((code, body.as_str()), (200, "alive\n"));
    // Modbus: the status block says "starting"; data is not there yet (0B, retry).
    let mut ctx = tcp::connect_slave(ports.modbus, Slave(1)).await.unwrap();
    let block = ctx.read_holding_registers(0, 14).await.unwrap().unwrap();
    assert_eq!(block[1], 0, "state starting");
    assert_eq!((block[6], block[7]), (0xFFFF, 0xFFFF), "no data yet");
    let data = ctx.read_holding_registers(100, 2).await.unwrap();
    assert_eq!(data, Err(ExceptionCode::GatewayTargetDevice));
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_manager_hears_ready_watchdog_and_stopping_in_order() {
    let server = common::solo_server(1).await;
    let dir = std::env::temp_dir().join(format!("sc-svc-notify-{}", std::process::id()));
    let (path, ports) = config(&dir, server.client_addr(), "");
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut child = spawn(
        &path,
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            // 200 ms: a WATCHDOG at least every 100 ms.
            ("WATCHDOG_USEC", "200000".to_string()),
        ],
    );
    let mut heard: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut recv = async || {
        let n = tokio::time::timeout(Duration::from_secs(15), socket.recv(&mut buf))
            .await
            .expect("the service manager hears something within 15 s")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    // READY, then WATCHDOG after it.
    loop {
        let m = recv().await;
        let done = heard.iter().any(|h| h.contains("READY=1")) && m.contains("WATCHDOG=1");
        heard.push(m);
        if done {
            break;
        }
    }
    let ready = heard.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready.contains("STATUS=serving primary data from po-solo"),
        "{ready}"
    );
    // Serving now, so /readyz is 200.
    let (code, body) = get(ports.http, "/readyz").await.unwrap();
    assert_eq!(code, 200, "{body}");
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    loop {
        let m = recv().await;
        let stopping = m.contains("STOPPING=1");
        heard.push(m);
        if stopping {
            break;
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    // Nothing after STOPPING.
    let mut rest = vec![0u8; 4096];
    assert!(
        socket.try_recv(&mut rest).is_err(),
        "a notice after STOPPING"
    );
    let first = |what: &str| heard.iter().position(|m| m.contains(what)).unwrap();
    let last_watchdog = heard
        .iter()
        .rposition(|m| m.contains("WATCHDOG=1"))
        .unwrap();
    assert!(first("READY=1") < last_watchdog && last_watchdog < first("STOPPING=1"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_write_in_flight_then_exits_0() {
    let server = common::solo_server(1).await;
    let dir = std::env::temp_dir().join(format!("sc-svc-drain-{}", std::process::id()));
    // A paused server must not look lost while the write waits for it.
    let (path, ports) = config(
        &dir,
        server.client_addr(),
        "[policy]\nsource_timeout = \"10s\"\nwrite_timeout = \"20s\"\n",
    );
    let mut child = spawn(&path, &[]);
    status_until(ports.http, "serving Primary data", |v| {
        v["state"] == "primary"
    })
    .await;
    let (_, points) = get(ports.http, "/api/points?limit=1000").await.unwrap();
    let points: serde_json::Value = serde_json::from_str(&points).unwrap();
    let setpoint = points["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["access"] == "read-write" && p["type"] == "float32")
        .expect("a writable analog")
        .clone();
    let address = setpoint["address"].as_u64().unwrap() as u16;
    let tag = server
        .model()
        .catalog()
        .iter()
        .find(|t| t.name == setpoint["tag"].as_str().unwrap())
        .unwrap()
        .id;
    // A second master watches the status block through the drain.
    let mut watcher = tcp::connect_slave(ports.modbus, Slave(1)).await.unwrap();
    // The write reaches the Primary, which is paused: it stays in flight.
    server.pause();
    let before =
        status_until(ports.http, "requests counted", |_| true).await["modbus"]["requests_total"]
            .as_u64()
            .unwrap();
    let modbus = ports.modbus;
    let writer = tokio::spawn(async move {
        let mut ctx = tcp::connect_slave(modbus, Slave(1)).await.unwrap();
        let words = {
            let b = 12.5f32.to_bits();
            [(b >> 16) as u16, b as u16]
        };
        ctx.write_multiple_registers(address, &words).await
    });
    status_until(ports.http, "the write is being answered", |v| {
        v["modbus"]["requests_total"].as_u64().unwrap() > before
    })
    .await;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    // The watcher sees "draining" (4) while the write is still in flight...
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let block = watcher
            .read_holding_registers(1, 14)
            .await
            .unwrap()
            .unwrap();
        if block[0] == 4 {
            // Register 14: the service level says "maintenance" (0) at the same time.
            assert_eq!(block[13], 0, "service level while draining");
            break;
        }
        assert!(Instant::now() < deadline, "never said draining");
    }
    assert!(
        !writer.is_finished(),
        "the write was answered before the Primary applied it"
    );
    // ...and no new master is let in.
    let late = tokio::net::TcpStream::connect(ports.modbus).await;
    if let Ok(mut s) = late {
        // Accepted by the kernel before the listener closed: it must be closed unserved.
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("a late connection is closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    // The Primary comes back: the write is applied, then acknowledged.
    server.resume();
    let answer = tokio::time::timeout(Duration::from_secs(25), writer)
        .await
        .expect("the write is answered")
        .unwrap();
    assert_eq!(answer.unwrap(), Ok(()), "acknowledged");
    assert_eq!(
        server.setpoint(tag),
        Some(po_protocol::Value::Analog(12.5)),
        "applied"
    );
    // Then the masters are closed and the process exits 0.
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after the drain")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(watcher.read_holding_registers(1, 1).await.is_err());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_connections_opening_and_closing_are_logged() {
    use tokio::io::AsyncBufReadExt;
    let down: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = std::env::temp_dir().join(format!("sc-svc-log-{}", std::process::id()));
    let (path, ports) = config(&dir, down, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smart-connector"))
        .args(["run", "--config"])
        .arg(&path)
        .env("SMART_CONNECTOR_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut wait_for = async |what: &str| {
        let found = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(what) {
                    return line;
                }
            }
            panic!("the log ended before: {what}");
        };
        tokio::time::timeout(Duration::from_secs(15), found)
            .await
            .unwrap_or_else(|_| panic!("never logged: {what}"))
    };
    wait_for("listening for Modbus TCP").await;
    let ctx = tcp::connect_slave(ports.modbus, Slave(1)).await.unwrap();
    wait_for("Modbus connection accepted").await;
    drop(ctx);
    let closed = wait_for("Modbus connection closed").await;
    assert!(
        closed.contains("INFO") && closed.contains("by the master"),
        "{closed}"
    );
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_while_serving_and_503_once_every_source_is_lost() {
    let server = common::solo_server(1).await;
    let dir = std::env::temp_dir().join(format!("sc-svc-ready-{}", std::process::id()));
    let (path, ports) = config(
        &dir,
        server.client_addr(),
        "[policy]\nsource_timeout = \"300ms\"\nstale_after = \"1s\"\n",
    );
    let mut child = spawn(&path, &[]);
    status_until(ports.http, "serving", |v| v["state"] == "primary").await;
    let (code, body) = get(ports.http, "/readyz").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, "ready: serving primary data\n")
    );
    server.crash_and_wait().await;
    // Lost: not ready at once, then stale; the reason names what the source said.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (code, body) = get(ports.http, "/readyz").await.unwrap();
        if code == 503 && body.starts_with("not ready (stale)") {
            break body;
        }
        assert!(
            code == 200
                || (code == 503 && body.starts_with("not ready (starting): no healthy source")),
            "{code} {body}"
        );
        assert!(Instant::now() < deadline, "never stale: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(body.contains("po-solo"), "{body}");
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert!(child.wait().await.unwrap().success());
}
