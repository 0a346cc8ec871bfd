//! Connection floods never reach the data path (issue: "No listener may starve
//! another"): the real `smart-connector` and `po-sim` binaries under the common service
//! limit of 1 024 descriptors, flooded by `harness flood` processes with thousands of
//! connections, keep serving, writing and reconnecting.

use harness::child::binaries;
use harness::probe::scrape;
use harness::proxy::FaultProxy;
use po_protocol::Value;
use po_runtime::TokioNet;
use po_simulator::{ServerConfig, ServerHandle, SiteSpec};
use smart_connector::config::{MapConfig, ModbusConfig};
use smart_connector::map::RegisterMap;
use smart_connector::registers::{WordOrder, encode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio_modbus::prelude::*;

/// A safety net for every wait below (they await events; this only ends a hung test).
const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("floods-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `program args…` under `ulimit -n 1024` (soft and hard), logging to `log`.
fn limited(program: &Path, args: &[&str], log: &Path) -> Child {
    let mut line = format!("ulimit -n 1024 && exec '{}'", program.display());
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let log = std::fs::File::create(log).unwrap();
    Command::new("sh")
        .args(["-c", &line])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `harness flood` against `target` until killed (or 120 s).
fn flood(target: SocketAddr, connections: usize, mode: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["flood", "--quiet", "--duration", "120s", "--mode", mode])
        .args(["--target", &target.to_string()])
        .args(["--connections", &connections.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until `cond` (an expression that may `.await`) holds, polling; panics with
/// `what` after [`PATIENCE`] (a safety net: the test awaits the event).
macro_rules! wait_for {
    ($what:expr, $cond:expr) => {{
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if $cond {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never: {}", $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

async fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    scrape(&TokioNet, None, addr, name).await
}

/// A counter, read until a scrape gets through: under a flood one may be closed to make
/// room before its request is read (Prometheus, too, gets it at its next scrape).
async fn metric_eventually(addr: SocketAddr, name: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = metric(addr, name).await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scrape of {name} got through"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn server_config(name: &str, listen: SocketAddr, licences: &[&str]) -> ServerConfig {
    ServerConfig {
        limits: Default::default(),
        tls: None,
        name: name.into(),
        listen,
        host_address: None,
        licences: licences.iter().map(|l| l.to_string()).collect(),
        seed: 9,
        field_epoch_us: 0,
        heartbeat: Duration::from_millis(100),
        client_queue: 256,
        site: SiteSpec {
            devices: 20,
            tags_per_device: 16,
            scan_period: Duration::from_millis(100),
        },
        redundancy: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_connector_under_1024_descriptors_keeps_serving_writing_and_reconnecting() {
    let dir = temp_dir("connector");
    let b = binaries().unwrap();
    // The server in-process; the connector's client-access link through a proxy, so the
    // test can kill that connection during the flood.
    let server = ServerHandle::start(server_config(
        "po-solo",
        "127.0.0.1:0".parse().unwrap(),
        &["CA-1"],
    ))
    .await
    .unwrap();
    let link = FaultProxy::start(
        "ca",
        "127.0.0.1".parse().unwrap(),
        None,
        server.client_addr(),
    )
    .await
    .unwrap();
    let modbus: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.join("connector.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "sc-flood"
[[source]]
name = "po-solo"
address = "{}"
access = "client-access"
licence = "CA-1"
[policy]
reconnect_min = "50ms"
reconnect_max = "500ms"
[modbus]
listen = "{modbus}"
[metrics]
listen = "{http}"
"#,
            link.listen
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let connector = limited(
        &b.smart_connector,
        &["run", "--config", &config, "--threads", "1"],
        &dir.join("connector.log"),
    );
    let pid = connector.id().unwrap();

    // A standard Modbus master, connected before the flood, as a SCADA system would be.
    let mut master = None;
    wait_for!("the master connects and sees Primary data", {
        if master.is_none() {
            master = tcp::connect(modbus).await.ok();
        }
        match master.as_mut() {
            Some(m) => matches!(m.read_holding_registers(0, 3).await, Ok(Ok(s)) if s[1] == 1),
            None => false,
        }
    });
    let mut master = master.unwrap();

    let floods = [flood(http, 2000, "idle"), flood(modbus, 2000, "idle")];
    wait_for!("both floods hit their listeners", {
        let evicted_http = metric(
            http,
            "sc_http_connections_total{outcome=\"evicted_unproven\"}",
        )
        .await
        .unwrap_or(0);
        let evicted_modbus = metric(http, "sc_modbus_evicted_total").await.unwrap_or(0);
        evicted_http >= 2000 && evicted_modbus >= 2000
    });

    // 1. Fresh data: the master keeps reading Primary data, and the heartbeat register
    //    moves on.
    let first = master.read_holding_registers(0, 3).await.unwrap().unwrap();
    assert_eq!(
        first[1], 1,
        "serving Primary data during the flood: {first:?}"
    );
    wait_for!("the heartbeat register moves on", {
        let now = master.read_holding_registers(0, 3).await.unwrap().unwrap();
        assert_eq!(now[1], 1, "serving Primary data during the flood: {now:?}");
        now[0] != first[0]
    });

    // 2. A write lands on the server.
    let modbus_config = ModbusConfig::default();
    let map = RegisterMap::build(
        server.model().catalog(),
        &modbus_config,
        &MapConfig::default(),
    )
    .unwrap();
    let point = map.points().iter().find(|p| p.writable).unwrap().clone();
    let value = match point.kind {
        po_protocol::TagKind::Digital => Value::Digital(true),
        po_protocol::TagKind::Counter => Value::Counter(4242),
        po_protocol::TagKind::Analog => Value::Analog(42.5),
    };
    let (words, n) = encode(value, WordOrder::Big);
    master
        .write_multiple_registers(point.address, &words[..n])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.setpoint(point.tag), Some(value));

    // 3. The client-access connection is killed during the flood and comes back: the
    //    connector still has a descriptor for it.
    let connects = metric_eventually(http, "sc_source_connects_total").await;
    let losses = metric_eventually(http, "sc_source_losses_total").await;
    link.cut();
    wait_for!(
        "the connector notices the loss",
        metric(http, "sc_source_losses_total").await.unwrap_or(0) > losses
    );
    link.heal();
    wait_for!(
        "the connector reconnects",
        metric(http, "sc_source_connects_total").await.unwrap_or(0) > connects
    );
    wait_for!(
        "the master sees Primary data again",
        matches!(master.read_holding_registers(0, 3).await, Ok(Ok(s)) if s[1] == 1)
    );

    // The floods cost the connector a few dozen descriptors, never its limit.
    for listener in ["modbus", "http"] {
        let name =
            format!("sc_accept_failures_total{{listener=\"{listener}\",reason=\"fd_exhausted\"}}");
        assert_eq!(metric_eventually(http, &name).await, 0, "{name}");
    }
    let open = fd_count(pid);
    assert!(open < 200, "{open} descriptors open");
    drop(floods);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_server_keeps_its_sync_link_and_its_connectors_sessions() {
    let dir = temp_dir("po-sim");
    let b = binaries().unwrap();
    let addr = |_| -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (client_a, client_b, sync_a, sync_b) = (addr(0), addr(1), addr(2), addr(3));
    let mut children = Vec::new();
    for (name, index, client, sync, peer) in [
        ("po-a", 0u8, client_a, sync_a, sync_b),
        ("po-b", 1, client_b, sync_b, sync_a),
    ] {
        let mut c = server_config(name, client, &["CA-1"]);
        c.redundancy = Some(po_simulator::config::RedundancySection {
            index,
            sync_listen: sync,
            peer,
            failover_timeout: Duration::from_millis(500),
            failback: false,
        });
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
        let path = path.to_string_lossy().into_owned();
        children.push(limited(
            &b.po_sim,
            &["serve", "--config", &path],
            &dir.join(format!("{name}.log")),
        ));
    }
    // An in-process connector with a session to each server.
    let text = format!(
        r#"name = "sc-a"
[[source]]
name = "po-a"
address = "{client_a}"
access = "client-access"
licence = "CA-1"
[[source]]
name = "po-b"
address = "{client_b}"
access = "client-access"
licence = "CA-1"
[modbus]
listen = "127.0.0.1:0"
"#
    );
    let config = smart_connector::config::ConnectorConfig::parse(&text, "sc-a.toml").unwrap();
    let sc = smart_connector::connector::start(config, Some(PATIENCE))
        .await
        .unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    wait_for!(
        "both sessions up, po-a active",
        sc.metrics.source_connects.load(Relaxed) >= 2
            && sc.metrics.active_source.load(Relaxed) == 1
    );
    let switches = sc.metrics.source_switches.load(Relaxed);
    // Connects refused before the servers listened count as losses: the baseline.
    let losses = sc.metrics.source_losses.load(Relaxed);

    // Idle thousands on po-a's client port, garbage on po-b's, and strangers on po-a's
    // sync port: for a few seconds (the flood processes' own duration).
    let run = |target: SocketAddr, n: usize, mode: &str| {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["flood", "--quiet", "--duration", "6s", "--mode", mode])
            .args(["--target", &target.to_string()])
            .args(["--connections", &n.to_string()])
            .output()
    };
    let (a, b_, s) = tokio::join!(
        run(client_a, 2000, "idle"),
        run(client_b, 2000, "garbage"),
        run(sync_a, 300, "idle")
    );
    for out in [a.unwrap(), b_.unwrap(), s.unwrap()] {
        assert!(out.status.success());
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            summary["closed_by_peer"].as_u64().unwrap() > 0,
            "the listener's cap acted: {summary}"
        );
    }
    // Nothing broke: the sessions never dropped and no failover happened (a broken sync
    // link would have promoted po-b, and the connector would have followed it).
    assert_eq!(sc.metrics.source_losses.load(Relaxed), losses);
    assert_eq!(sc.metrics.source_switches.load(Relaxed), switches);
    assert_eq!(sc.metrics.active_source.load(Relaxed), 1);
    for child in &children {
        let open = fd_count(child.id().unwrap());
        assert!(open < 200, "{open} descriptors open in po-sim");
    }
    let log_b = std::fs::read_to_string(dir.join("po-b.log")).unwrap();
    assert!(!log_b.contains("PeerSilent"), "po-b promoted:\n{log_b}");
    sc.shutdown().await;
    drop(children);
    let _ = std::fs::remove_dir_all(&dir);
}
