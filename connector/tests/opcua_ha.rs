//! Interop (docs/testing.md): asyncua's `HaClient` in warm mode, a redundancy-aware OPC UA
//! client nobody here wrote, subscribed through both connectors of architecture 3, keeps
//! receiving correct values while the Primary server crashes and while the connector it
//! is on is killed. The failover gaps it saw are printed (they are measurements, not
//! assertions: the machine is shared).

mod common;

use po_protocol::{Role, Timestamp, Value};
use po_simulator::FieldModel;
use po_simulator::pair::{PairHandle, PairSpec};
use po_simulator::{ServerHandle, SiteSpec};
use serde_json::Value as Json;
use smart_connector::config::{AccessKind, ConnectorConfig, SourceConfig};
use smart_connector::connector::{ConnectorHandle, start};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(15);
/// Only there to fail rather than hang: each wait for the client gets this long.
const HANG: Duration = Duration::from_secs(60);
/// Fresh values that must arrive after a fault before the next step.
const FLOWING: usize = 10;
/// The tags the client subscribes to: a probe (its value is its sample time in ms), an
/// energy counter (rises every scan), an analog with noise.
const TAGS: [&str; 3] = [
    "Feeder01.Meter1.SampleTime",
    "Feeder01.Meter1.kWh",
    "Feeder01.Meter2.kW",
];

fn config(name: &str, peer: &str, licence: &str, pair: &PairHandle) -> ConnectorConfig {
    let mut c: ConnectorConfig = toml::from_str(&format!(
        r#"
name = "{name}"
[policy]
source_timeout = "300ms"
stale_after = "1s"
[modbus]
listen = "127.0.0.1:0"
[opcua]
listen = "127.0.0.1:0"
anonymous = true
security = ["none"]
[opcua.redundancy]
support = "warm"
peers = ["urn:smart-connector:{peer}"]
"#
    ))
    .unwrap();
    // Architecture 3: each connector has both servers as sources, with its own licence.
    c.sources = pair
        .servers()
        .iter()
        .map(|s| SourceConfig {
            name: s.name().to_string(),
            address: s.client_addr(),
            access: AccessKind::ClientAccess,
            licence: Some(licence.into()),
            server_name: None,
        })
        .collect();
    c
}

fn url(sc: &ConnectorHandle) -> String {
    format!("opc.tcp://{}", sc.opcua.as_ref().expect("OPC UA on").addr)
}

async fn level_is(sc: &ConnectorHandle, want: u8) {
    let deadline = Instant::now() + PATIENCE;
    while sc.status_doc().service_level != want {
        assert!(
            Instant::now() < deadline,
            "{}: ServiceLevel {} never became {want}",
            sc.name,
            sc.status_doc().service_level
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The HaClient script: its JSON lines, everything seen so far kept in `log`.
struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Json>,
    log: Vec<Json>,
}

impl Script {
    fn spawn(urls: &[String]) -> Script {
        let mut cmd = Command::new("python3");
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/opcua_ha_client.py"
        ));
        for u in urls {
            cmd.args(["--url", u]);
        }
        for t in TAGS {
            cmd.args(["--tag", t]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                let v: Json = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line from the script: {line}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Script {
            child,
            stdin,
            lines,
            log: vec![],
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Reads lines until `done` holds for the log (checked after every line).
    async fn until(&mut self, what: &str, mut done: impl FnMut(&[Json]) -> bool) {
        let deadline = Instant::now() + HANG;
        while !done(&self.log) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => self.log.push(v),
                Ok(None) => panic!("the script ended while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {HANG:?}; last lines: {:#?}",
                    tail(&self.log)
                ),
            }
        }
    }

    /// Writes a mark and waits for its echo: everything after it in the log happened
    /// after the mark; returns its index.
    async fn mark(&mut self, name: &str) -> usize {
        self.send(&format!("mark {name}")).await;
        self.until(&format!("the echo of mark {name}"), |log| {
            log.last()
                .is_some_and(|v| v["ev"] == "mark" && v["name"] == name)
        })
        .await;
        self.log.len() - 1
    }

    fn active(&self) -> Option<String> {
        self.log
            .iter()
            .rev()
            .find(|v| v["ev"] == "active")
            .and_then(|v| v["url"].as_str().map(str::to_string))
    }

    /// Waits until `FLOWING` good data changes newer (by SourceTimestamp, per node) than
    /// anything before `from` arrived through `url` after `from`.
    async fn flowing(&mut self, what: &str, from: usize, url: &str) {
        let mut newest: HashMap<String, u64> = HashMap::new();
        for v in self.log[..from].iter().filter(|v| is_good_dc(v)) {
            let e = newest.entry(node(v)).or_default();
            *e = (*e).max(source_us(v));
        }
        self.until(what, |log| {
            log[from..]
                .iter()
                .filter(|v| {
                    is_good_dc(v)
                        && v["url"] == url
                        && source_us(v) > newest.get(&node(v)).copied().unwrap_or(0)
                })
                .count()
                >= FLOWING
        })
        .await;
    }
}

fn tail(log: &[Json]) -> &[Json] {
    &log[log.len().saturating_sub(12)..]
}

fn is_good_dc(v: &Json) -> bool {
    v["ev"] == "dc" && v["good"] == true
}

fn node(v: &Json) -> String {
    v["node"].as_str().unwrap().to_string()
}

fn source_us(v: &Json) -> u64 {
    v["source_us"].as_u64().unwrap_or(0)
}

fn t(v: &Json) -> f64 {
    v["t"].as_f64().unwrap()
}

/// Every good value is the field's value at its SourceTimestamp (the sample time both
/// servers compute the same way), and per node SourceTimestamps never go backwards.
fn check_values(model: &FieldModel, log: &[Json]) -> usize {
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut checked = 0;
    for v in log.iter().filter(|v| is_good_dc(v)) {
        let name = node(v);
        let info = model
            .catalog()
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the catalogue"));
        let ts = source_us(v);
        let tick = model.tick_at(Timestamp(ts));
        assert_eq!(
            model.tick_time(tick),
            Timestamp(ts),
            "{name}: SourceTimestamp {ts} is not a sample time: {v}"
        );
        let ok = match model.value(info.id, tick).unwrap() {
            Value::Counter(c) => v["value"].as_u64() == Some(c),
            Value::Analog(x) => v["value"]
                .as_f64()
                .is_some_and(|y| (x - y).abs() <= 1e-9 * x.abs().max(1.0)),
            Value::Digital(b) => v["value"].as_bool() == Some(b),
        };
        assert!(
            ok,
            "{name}: {v} is not the field's value {:?} at tick {tick}",
            model.value(info.id, tick)
        );
        let prev = last.insert(name.clone(), ts).unwrap_or(0);
        assert!(
            ts >= prev,
            "{name}: SourceTimestamp went backwards from {prev} to {ts}: {v}"
        );
        checked += 1;
    }
    checked
}

/// The longest time without a good data change after the mark at `from`, up to the next
/// mark (or the end): the failover gap the application saw.
fn gap_after(log: &[Json], from: usize) -> (f64, usize) {
    let end = log[from + 1..]
        .iter()
        .position(|v| v["ev"] == "mark")
        .map_or(log.len(), |i| from + 1 + i);
    let mut prev = t(&log[from]);
    let mut gap: f64 = 0.0;
    let mut n = 0;
    for v in log[from + 1..end].iter().filter(|v| is_good_dc(v)) {
        gap = gap.max(t(v) - prev);
        prev = t(v);
        n += 1;
    }
    (gap, n)
}

fn primary(pair: &PairHandle) -> &ServerHandle {
    pair.servers()
        .into_iter()
        .find(|s| s.status().is_some_and(|st| st.role == Role::Primary))
        .expect("a Primary server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncua_ha_client_follows_server_and_connector_failures() {
    // A redundancy-aware client from another project (asyncua, pinned in .ci/run).
    if !common::python_module_ready("asyncua.client.ha.ha_client", "pip install asyncua==1.1.8") {
        return;
    }
    let site = SiteSpec {
        devices: 2,
        tags_per_device: 16,
        scan_period: Duration::from_millis(50),
    };
    let pair = PairHandle::start(&PairSpec::loopback(41, site))
        .await
        .unwrap();
    assert!(pair.a_is_primary(PATIENCE).await, "po-a never Primary");
    let model = pair.a.model().clone();
    let sc_a = start(config("sc-a", "sc-b", "CA-1", &pair), Some(PATIENCE))
        .await
        .unwrap();
    let sc_b = start(config("sc-b", "sc-a", "CA-2", &pair), Some(PATIENCE))
        .await
        .unwrap();
    level_is(&sc_a, 255).await;
    level_is(&sc_b, 255).await;
    let urls = [url(&sc_a), url(&sc_b)];
    let mut s = Script::spawn(&urls);

    // Steady state: HaClient picks a server with a healthy ServiceLevel and reports
    // through it only; the other's subscription is parked (warm).
    s.until("an active client", |log| {
        log.iter()
            .any(|v| v["ev"] == "active" && v["url"].is_string())
    })
    .await;
    let first = s.active().unwrap();
    s.flowing("values through the active connector", 0, &first)
        .await;
    let before = s.mark("primary-crash").await;
    let parked = s.log[..before]
        .iter()
        .filter(|v| v["ev"] == "dc" && v["url"] != first.as_str())
        .count();
    assert_eq!(
        parked, 0,
        "warm redundancy: the standby connector reported while {first} was active"
    );

    // Fault 1: the Primary server crashes; both connectors follow the promoted Standby.
    let victim = primary(&pair);
    eprintln!("fault 1: crashing the Primary server {}", victim.name());
    victim.crash_and_wait().await;
    let on = s.active().expect("an active client");
    s.flowing("values after the Primary server crashed", before, &on)
        .await;
    // Both connectors lost a source: 200 each, still healthy, so HaClient stays put.
    level_is(&sc_a, 200).await;
    level_is(&sc_b, 200).await;

    // Fault 2: kill the connector HaClient is on. Which one that is, HaClient says
    // itself (its active client, the one it chose by ServiceLevel).
    let on = s.active().expect("an active client");
    let (dead, alive) = if on == urls[0] {
        (&sc_a, &sc_b)
    } else {
        assert_eq!(on, urls[1], "HaClient is on neither connector");
        (&sc_b, &sc_a)
    };
    assert!(
        dead.status_doc().service_level >= alive.status_doc().service_level,
        "HaClient is not on the connector with the highest ServiceLevel"
    );
    let kill = s.mark("connector-kill").await;
    eprintln!(
        "fault 2: killing {} (HaClient's active client {on})",
        dead.name
    );
    dead.shutdown().await;
    let other = url(alive);
    s.until("HaClient failing over to the other connector", |log| {
        log[kill..]
            .iter()
            .any(|v| v["ev"] == "active" && v["url"] == other.as_str())
    })
    .await;
    s.flowing("values after the connector was killed", kill, &other)
        .await;

    s.send("stop").await;
    s.until("HaClient stopping", |log| {
        log.last().is_some_and(|v| v["ev"] == "stopped")
    })
    .await;
    let status = tokio::time::timeout(HANG, s.child.wait())
        .await
        .expect("the script exits")
        .unwrap();
    assert!(status.success(), "the script failed: {status}");

    let checked = check_values(&model, &s.log);
    let switched = s.log[kill..]
        .iter()
        .find(|v| v["ev"] == "active" && v["url"] == other.as_str())
        .map(|v| t(v) - t(&s.log[kill]))
        .unwrap();
    let (g1, n1) = gap_after(&s.log, before);
    let (g2, n2) = gap_after(&s.log, kill);
    eprintln!("{checked} values checked against the field model");
    // The raw StatusCodes, info bits included (async-opcua 0.19 sets the Overflow bit on a
    // queue of one, which Part 4 reserves for longer queues: shown, not asserted).
    let mut codes: Vec<(String, u64, usize)> = vec![];
    for v in s.log.iter().filter(|v| v["ev"] == "dc") {
        let (u, c) = (
            v["url"].as_str().unwrap_or("?"),
            v["code"].as_u64().unwrap(),
        );
        match codes.iter_mut().find(|(cu, cc, _)| cu == u && *cc == c) {
            Some(e) => e.2 += 1,
            None => codes.push((u.to_string(), c, 1)),
        }
    }
    for (u, c, n) in &codes {
        eprintln!("{u}: {n} data changes with StatusCode {c:#010x}");
    }
    eprintln!(
        "failover gap, Primary server crashed: {:.0} ms without a good data change ({n1} after it)",
        g1 * 1e3
    );
    eprintln!(
        "failover gap, connector killed: {:.0} ms without a good data change ({n2} after it); \
         HaClient switched to {other} after {:.0} ms",
        g2 * 1e3,
        switched * 1e3
    );
    alive.shutdown().await;
    pair.shutdown().await;
}
