//! The OPC UA face with a client nobody here wrote (python asyncua, pinned in .ci/run):
//! browse, read, subscribe and write without security and over Basic256Sha256
//! SignAndEncrypt with UserName and X509 users whose roles are Modbus/TCP Security's; writes
//! applied by the Primary before `Good`; a write with no Primary refused; hostile input on
//! the OPC UA port refused while an OPC UA client and a Modbus master keep being served
//! (docs/opcua.md).

mod common;

use po_simulator::ServerHandle;
use serde_json::Value as Json;
use smart_connector::config::{AccessKind, ConnectorConfig, SourceConfig};
use smart_connector::connector::{ConnectorHandle, start};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::prelude::*;

const PATIENCE: Duration = Duration::from_secs(15);
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/opcua_asyncua_client.py"
);

/// Whether asyncua is installed; under CI (`.ci/run` installs it) a missing one fails.
fn asyncua_ready() -> bool {
    common::python_module_ready("asyncua", "pip install asyncua==1.1.8")
}

fn source(s: &ServerHandle) -> SourceConfig {
    SourceConfig {
        name: s.name().to_string(),
        address: s.client_addr(),
        access: AccessKind::Local,
        licence: None,
        server_name: None,
    }
}

fn config(server: &ServerHandle, opcua: &str) -> ConnectorConfig {
    let mut c: ConnectorConfig = toml::from_str(&format!(
        "name = \"sc-ua\"\n[policy]\nsource_timeout = \"300ms\"\nstale_after = \"1s\"\nwrite_timeout = \"1s\"\n\
         [modbus]\nlisten = \"127.0.0.1:0\"\n\
         [[modbus.role]]\nname = \"operator\"\nread = true\nwrite = true\n\
         [[modbus.role]]\nname = \"viewer\"\nread = true\nwrite = false\n\
         [opcua]\nlisten = \"127.0.0.1:0\"\n{opcua}"
    ))
    .unwrap();
    c.sources = vec![source(server)];
    let problems = c.validate();
    assert!(problems.is_empty(), "{problems:?}");
    c
}

fn url(sc: &ConnectorHandle) -> String {
    format!(
        "opc.tcp://{}/",
        sc.opcua.as_ref().expect("OPC UA is on").addr
    )
}

/// Runs the asyncua client with `args`; its JSON answer.
async fn asyncua(url: &str, args: &[&str]) -> Json {
    let out = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .args(["--url", url])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "asyncua {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the asyncua client over Basic256Sha256 SignAndEncrypt as the client certificate
/// `name` that `certs opcua-client` wrote into `pki` (application URI
/// `urn:example:<name>`), with `args`.
async fn asyncua_as(url: &str, pki: &Path, name: &str, args: Vec<&str>) -> Json {
    let cert = pki.join(format!("clients/{name}.der"));
    let key = pki.join(format!("clients/{name}.pem"));
    let uri = format!("urn:example:{name}");
    let mut all = vec![
        "--policy",
        "basic256sha256",
        "--mode",
        "sign-and-encrypt",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--uri",
        &uri,
    ];
    all.extend(args);
    asyncua(url, &all).await
}

/// The tag id (for the server's setpoint) of a tag name.
fn tag_id(sc: &ConnectorHandle, name: &str) -> po_protocol::TagId {
    let map = sc.image.map();
    let p = (0..map.points().len() as u32)
        .find(|&p| map.name(p) == name)
        .unwrap_or_else(|| panic!("{name} is served"));
    map.point(p).tag
}

async fn serving(sc: &ConnectorHandle) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while sc.image.service_level() != 255 {
        assert!(std::time::Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const BREAKER: &str = "Feeder01.Meter1.BreakerCmd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncua_browses_reads_subscribes_and_writes_without_security() {
    if !asyncua_ready() {
        return;
    }
    let server = common::solo_server(2).await;
    let sc = start(
        config(&server, "anonymous = true\nanonymous_role = \"operator\"\n"),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    serving(&sc).await;
    let got = asyncua(
        &url(&sc),
        &[
            "--browse",
            "--service-level",
            "--read",
            "Feeder01.Meter1.kW",
            "--read",
            "Feeder01.Meter1.kWh",
            "--read",
            "Feeder01.Meter1.BreakerClosed",
            "--subscribe",
            "Feeder01.Meter1.kW:3",
            "--write",
            &format!("{BREAKER}=true"),
        ],
    )
    .await;
    // Folders follow the dotted names, under Objects.
    assert_eq!(got["browse"]["path"][0], "Tags", "{got}");
    assert_eq!(got["browse"]["path"][1], "Feeder01", "{got}");
    assert_eq!(got["browse"]["path"][2], "Meter1", "{got}");
    assert_eq!(got["service_level"], 255, "{got}");
    // Types of the design: Double, UInt64 (i=9), Boolean (i=1); Good and timestamped.
    let r = &got["read"];
    assert_eq!(r["Feeder01.Meter1.kW"]["data_type"], "i=11", "{got}");
    assert_eq!(r["Feeder01.Meter1.kWh"]["data_type"], "i=9", "{got}");
    assert_eq!(
        r["Feeder01.Meter1.BreakerClosed"]["data_type"], "i=1",
        "{got}"
    );
    for tag in ["Feeder01.Meter1.kW", "Feeder01.Meter1.kWh"] {
        assert_eq!(r[tag]["status"], "Good", "{got}");
        assert!(r[tag]["source_timestamp"].as_f64().is_some(), "{got}");
    }
    // Every change the connector ingests, in order.
    let changes = got["subscribe"].as_array().unwrap();
    assert!(changes.len() >= 3, "{got}");
    let stamps: Vec<f64> = changes
        .iter()
        .map(|c| c["source_timestamp"].as_f64().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    // The write is `Good` only once the Primary applied it.
    assert_eq!(got["write"][BREAKER]["status"], "Good", "{got}");
    assert_eq!(
        server.setpoint(tag_id(&sc, BREAKER)),
        Some(po_protocol::Value::Digital(true))
    );
    sc.shutdown().await;
    server.shutdown().await;
}

fn connector_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smart-connector"))
}

fn run_bin(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new(connector_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pki(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let d = dir.to_str().unwrap();
    run_bin(
        &[
            "certs",
            "opcua",
            "--dir",
            d,
            "--uri",
            "urn:smart-connector:sc-ua",
            "--ip",
            "127.0.0.1",
        ],
        None,
    );
    run_bin(
        &[
            "certs",
            "opcua-client",
            "--dir",
            d,
            "--name",
            "hmi",
            "--uri",
            "urn:example:hmi",
        ],
        None,
    );
    // Users identified by their certificate's role (X509 user tokens).
    for (name, role) in [("hmi-operator", "operator"), ("hmi-viewer", "viewer")] {
        let uri = format!("urn:example:{name}");
        run_bin(
            &[
                "certs",
                "opcua-client",
                "--dir",
                d,
                "--name",
                name,
                "--uri",
                &uri,
                "--role",
                role,
            ],
            None,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic256sha256_sign_and_encrypt_with_usernames_an_operator_writes_a_viewer_may_not() {
    if !asyncua_ready() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sc-opcua-pki-{}", std::process::id()));
    pki(&dir);
    // Hashes made by the shipped command, as an engineer would.
    let operator = run_bin(&["opcua-password"], Some("op-secret\n"));
    let viewer = run_bin(&["opcua-password"], Some("view-secret\n"));
    let server = common::solo_server(2).await;
    let sc = start(
        config(
            &server,
            &format!(
                "security = [\"basic256sha256/sign-and-encrypt\"]\npki_dir = \"{}\"\nx509_users = true\n\
                 [[opcua.user]]\nname = \"olga\"\npassword_hash = \"{}\"\nrole = \"operator\"\n\
                 [[opcua.user]]\nname = \"vic\"\npassword_hash = \"{}\"\nrole = \"viewer\"\n",
                dir.display(),
                operator.trim(),
                viewer.trim()
            ),
        ),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    serving(&sc).await;
    let url = url(&sc);
    let user_args = |user: &'static str, password: &'static str| {
        [
            "--user",
            user,
            "--password",
            password,
            "--read",
            "Feeder01.Meter1.kW",
        ]
    };
    let write_true = format!("{BREAKER}=true");
    let secure = |user, password| {
        let mut args = user_args(user, password).to_vec();
        args.extend(["--write", write_true.as_str()]);
        asyncua_as(&url, &dir, "hmi", args)
    };
    let v = secure("vic", "view-secret").await;
    assert_eq!(v["read"]["Feeder01.Meter1.kW"]["status"], "Good", "{v}");
    assert_eq!(v["write"][BREAKER]["status"], "BadUserAccessDenied", "{v}");
    assert_eq!(
        server.setpoint(tag_id(&sc, BREAKER)),
        None,
        "nothing written"
    );
    let o = secure("olga", "op-secret").await;
    assert_eq!(o["write"][BREAKER]["status"], "Good", "{o}");
    assert_eq!(
        server.setpoint(tag_id(&sc, BREAKER)),
        Some(po_protocol::Value::Digital(true)),
        "applied by the Primary before Good came back"
    );
    // X509 user tokens: the role comes from the certificate's role extension.
    let write_false = format!("{BREAKER}=false");
    let x509 = |name| {
        asyncua_as(
            &url,
            &dir,
            name,
            vec!["--x509-user", "--write", &write_false],
        )
    };
    let xv = x509("hmi-viewer").await;
    assert_eq!(
        xv["write"][BREAKER]["status"], "BadUserAccessDenied",
        "{xv}"
    );
    let xo = x509("hmi-operator").await;
    assert_eq!(xo["write"][BREAKER]["status"], "Good", "{xo}");
    assert_eq!(
        server.setpoint(tag_id(&sc, BREAKER)),
        Some(po_protocol::Value::Digital(false)),
        "the X509 operator's write applied"
    );
    sc.shutdown().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_no_primary_gets_a_bad_code() {
    if !asyncua_ready() {
        return;
    }
    let server = common::solo_server(1).await;
    let sc = start(
        config(&server, "anonymous = true\nanonymous_role = \"operator\"\n"),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    serving(&sc).await;
    server.crash_and_wait().await;
    let got = asyncua(&url(&sc), &["--write", &format!("{BREAKER}=true")]).await;
    let status = got["write"][BREAKER]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        status == "BadNoCommunication" || status == "BadTimeout",
        "{got}"
    );
    // The time it took (write_timeout is 1 s), for the record.
    eprintln!(
        "write with no Primary: {status} after {} s",
        got["write"][BREAKER]["seconds"]
    );
    sc.shutdown().await;
}

/// One read of the status block: the Modbus master is still served.
async fn modbus_serves(sc: &ConnectorHandle) {
    let mut ctx = tcp::connect_slave(sc.modbus_addr, Slave(1)).await.unwrap();
    let r = ctx.read_holding_registers(14, 1).await.unwrap().unwrap();
    assert_eq!(r, vec![255]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_on_the_opcua_port_is_refused_and_everyone_else_keeps_being_served() {
    if !asyncua_ready() {
        return;
    }
    let server = common::solo_server(2).await;
    let sc = start(
        config(
            &server,
            "anonymous = true\nmax_monitored_items_per_subscription = 1000\nmax_connections = 8\n",
        ),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    serving(&sc).await;
    let addr = sc.opcua.as_ref().unwrap().addr;
    // Garbage: closed, not served.
    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0xde; 4096]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(PATIENCE, garbage.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(_)) | Ok(Err(_))),
        "garbage gets an error message or a close, not silence"
    );
    // A Hello asking for absurd buffer sizes and message size.
    let mut hello = Vec::new();
    let url = format!("opc.tcp://{addr}/");
    hello.extend_from_slice(b"HELF");
    let body_len = 4 * 5 + 4 + url.len();
    hello.extend_from_slice(&((8 + body_len) as u32).to_le_bytes());
    for v in [0u32, u32::MAX, u32::MAX, u32::MAX, u32::MAX] {
        hello.extend_from_slice(&v.to_le_bytes());
    }
    hello.extend_from_slice(&(url.len() as i32).to_le_bytes());
    hello.extend_from_slice(url.as_bytes());
    let mut absurd = tokio::net::TcpStream::connect(addr).await.unwrap();
    absurd.write_all(&hello).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, absurd.read_to_end(&mut answer)).await;
    // The stack answers ACK with its own (revised) limits or an ERR; either way it never
    // took the client's sizes.
    if answer.len() >= 28 && &answer[..4] == b"ACKF" {
        let recv = u32::from_le_bytes(answer[12..16].try_into().unwrap());
        assert!(recv < 1 << 24, "revised receive buffer {recv}");
    }
    // Slowloris: half a header, then nothing, on more connections than the cap.
    let mut slow = Vec::new();
    for _ in 0..12 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            let _ = s.write_all(b"HEL").await;
            slow.push(s);
        }
    }
    // With the slow ones still open: a well-behaved client and a Modbus master are served.
    modbus_serves(&sc).await;
    let ok = asyncua(&url, &["--service-level", "--many-items", "10000"]).await;
    assert_eq!(ok["service_level"], 255, "{ok}");
    // Over the cap: refused per item or as a whole, never 10 000 created.
    let counts = ok["many_items"].as_object().unwrap();
    let good = counts.get("Good").and_then(Json::as_u64).unwrap_or(0);
    assert!(good <= 1000, "{ok}");
    assert!(counts.keys().any(|k| k.starts_with("Bad")), "{ok}");
    let again = asyncua(&url, &["--read", "Feeder01.Meter1.kW"]).await;
    assert_eq!(
        again["read"]["Feeder01.Meter1.kW"]["status"], "Good",
        "{again}"
    );
    modbus_serves(&sc).await;
    drop(slow);
    sc.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_subscriptions_and_the_service_level_are_seen_in_the_api_page_and_metrics() {
    if !asyncua_ready() {
        return;
    }
    let server = common::solo_server(1).await;
    let sc = start(
        config(&server, "anonymous = true\nanonymous_role = \"viewer\"\n"),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    serving(&sc).await;
    // A client that stays: subscribed until it is killed.
    let mut client = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .args([
            "--url",
            &url(&sc),
            "--subscribe",
            "Feeder01.Meter1.kW:1000000",
        ])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let ua = loop {
        let doc = sc.status_doc();
        let ua = doc.opcua.clone().expect("OPC UA is on");
        let gauge = sc
            .metrics
            .render()
            .contains("\nsc_opcua_monitored_items 1\n");
        if ua.monitored_items == 1 && gauge && ua.notifications_total > 0 {
            break ua;
        }
        assert!(std::time::Instant::now() < deadline, "{ua:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ua.sessions.len(), 1, "{ua:?}");
    let s = &ua.sessions[0];
    assert_eq!(
        (s.user.as_str(), s.role.as_str()),
        ("(anonymous)", "viewer"),
        "{ua:?}"
    );
    assert_eq!(s.security_mode, "None");
    assert_eq!(s.subscriptions, 1);
    assert_eq!(ua.service_level, 255);
    assert!(sc.metrics.render().contains("\nsc_opcua_sessions 1\n"));
    let page = smart_connector::status_page::render_page(
        &sc.status_doc(),
        &smart_connector::api::PointsPage {
            total: 0,
            offset: 0,
            limit: 0,
            next_offset: None,
            points: vec![],
        },
        &Default::default(),
    );
    assert!(
        page.contains("OPC UA clients (1 sessions, 1 subscriptions, 1 monitored items)"),
        "{page}"
    );
    client.kill().await.unwrap();
    sc.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_of_service_level_is_told_0_at_once_when_the_connector_drains() {
    if !asyncua_ready() {
        return;
    }
    use tokio::io::AsyncBufReadExt;
    let server = common::solo_server(1).await;
    let sc = start(config(&server, "anonymous = true\n"), Some(PATIENCE))
        .await
        .unwrap();
    serving(&sc).await;
    let mut watcher = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .args(["--url", &url(&sc), "--watch-service-level"])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut next = async || -> u64 {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("a ServiceLevel notification")
            .unwrap()
            .expect("the watcher runs");
        let v: Json = serde_json::from_str(&line).unwrap();
        v["service_level"].as_u64().unwrap()
    };
    assert_eq!(next().await, 255, "the first notification: serving");
    // SIGTERM's drain, as the binary does it.
    let control = sc.control.clone();
    let drain = tokio::spawn(async move { control.drain().await });
    assert_eq!(
        next().await,
        0,
        "draining: maintenance, published to subscribers"
    );
    drain.await.unwrap();
    watcher.kill().await.unwrap();
    sc.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadband_monitoring_mode_and_publishing_mode_are_honoured() {
    if !asyncua_ready() {
        return;
    }
    let server = common::solo_server(1).await;
    let sc = start(config(&server, "anonymous = true\n"), Some(PATIENCE))
        .await
        .unwrap();
    serving(&sc).await;
    // kW changes with every 50 ms scan of the simulated meter.
    let got = asyncua(&url(&sc), &["--modes", "Feeder01.Meter1.kW"]).await;
    let m = &got["modes"];
    let n = |k: &str| m[k].as_u64().unwrap();
    assert_eq!(
        n("deadband_1e12"),
        0,
        "no change exceeds the deadband: {got}"
    );
    assert!(n("reporting") >= 3, "{got}");
    assert_eq!(
        n("disabled"),
        0,
        "SetMonitoringMode(Disabled) stops them: {got}"
    );
    assert!(n("reporting_again") >= 3, "{got}");
    assert_eq!(
        n("publishing_off"),
        0,
        "SetPublishingMode(false) holds them: {got}"
    );
    assert!(n("publishing_on") >= 1, "{got}");
    sc.shutdown().await;
    server.shutdown().await;
}
