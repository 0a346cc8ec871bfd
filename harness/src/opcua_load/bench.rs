//! The OPC UA step of `harness bench`: the connector (fed by po-sim, every tag scanned each
//! second) against node-opcua's server (benches/opcua/node-server.js, the same number of
//! variables changing each second), both loaded by the same `harness load --protocol
//! opcua` in the same run; reported as notifications/s, delivery, latency, memory and the
//! ratio of the two (docs/performance.md).

use super::OpcUaLoadResult;
use crate::child::{ManagedChild, process_usage};
use crate::launch::{RunOptions, launch_wired};
use crate::scenario::{
    BackendKind, ConnectorSection, Expect, OpcUaClientSection, RedundancySection, Scenario,
    SiteSection, ThirdPartySection,
};
use crate::seam::Backend as _;
use crate::wiring::Wiring;
use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use smart_connector::config::PolicyConfig;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Tags per simulated device (as in the rest of the bench).
const TAGS_PER_DEVICE: u32 = 50;
/// Every tag scanned (po-sim) and every node-opcua variable written once a second.
const CHANGE_PERIOD: Duration = Duration::from_secs(1);
/// Waiting for a server to serve: node-opcua builds 100 000 nodes in tens of seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct OpcUaBenchOptions {
    pub sessions: usize,
    /// Monitored items per session to try, ascending: each server runs until one breaks
    /// (delivered < 99 %).
    pub items: Vec<usize>,
    pub publishing: Duration,
    pub duration: Duration,
    pub connector_threads: Option<usize>,
}

/// One server at one load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpcUaRun {
    pub load: OpcUaLoadResult,
    /// Notifications/s the changes made call for.
    pub expected_notifications_per_s: f64,
    /// `notifications_per_s` ÷ expected.
    pub delivered: f64,
    pub cpu_percent: f64,
    /// Peak resident memory while loaded.
    pub rss_mib: f64,
    /// delivered ≥ 99 % and latency p99 ≤ publishing interval + 50 ms.
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpcUaLevel {
    pub items_per_session: usize,
    pub connector: Option<OpcUaRun>,
    pub node_opcua: Option<OpcUaRun>,
    /// Connector notifications/s ÷ node-opcua's at this load, whether or not either
    /// passed (`None` unless both ran).
    #[serde(default)]
    pub ratio_same_load: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpcUaComparison {
    pub sessions: usize,
    pub publishing_ms: f64,
    pub levels: Vec<OpcUaLevel>,
    /// Why node-opcua was not measured (node or npm missing, install failed).
    pub node_opcua_skipped: Option<String>,
    /// Highest notifications/s each delivered with the step passing.
    pub connector_max_notifications_per_s: f64,
    pub node_opcua_max_notifications_per_s: f64,
    /// connector ÷ node-opcua, of those maxima (0 without node-opcua).
    pub ratio: f64,
}

/// Runs the step; `progress` gets a line per run.
pub async fn opcua_comparison(
    o: &OpcUaBenchOptions,
    progress: &dyn Fn(&str),
) -> Result<OpcUaComparison> {
    let run_dir = std::env::temp_dir().join(format!("harness-bench-opcua-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let (node, node_skipped) = match node_server_ready() {
        Ok(modules) => (Some(modules), None),
        Err(why) => {
            progress(&format!("opcua: node-opcua not measured: {why:#}"));
            (None, Some(format!("{why:#}")))
        }
    };
    let mut levels = Vec::new();
    let (mut connector_broke, mut node_broke) = (false, node.is_none());
    for &items in &o.items {
        if connector_broke && node_broke {
            break;
        }
        let monitored = o.sessions * items;
        let mut level = OpcUaLevel {
            items_per_session: items,
            connector: None,
            node_opcua: None,
            ratio_same_load: None,
        };
        if !connector_broke {
            let r = connector_run(o, items, &run_dir).await?;
            progress(&format!(
                "opcua: connector {}",
                render_run(o.sessions, items, &r)
            ));
            connector_broke = !r.passed;
            level.connector = Some(r);
        }
        if let (Some(modules), false) = (&node, node_broke) {
            let r = node_run(o, items, monitored, modules, &run_dir).await?;
            progress(&format!(
                "opcua: node-opcua {}",
                render_run(o.sessions, items, &r)
            ));
            node_broke = !r.passed;
            level.node_opcua = Some(r);
        }
        if let (Some(c), Some(n)) = (&level.connector, &level.node_opcua) {
            level.ratio_same_load =
                Some(c.load.notifications_per_s / n.load.notifications_per_s.max(1.0));
        }
        levels.push(level);
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    let max = |pick: fn(&OpcUaLevel) -> Option<&OpcUaRun>| {
        levels
            .iter()
            .filter_map(pick)
            .filter(|r| r.passed)
            .map(|r| r.load.notifications_per_s)
            .fold(0.0, f64::max)
    };
    let connector_max = max(|l| l.connector.as_ref());
    let node_max = max(|l| l.node_opcua.as_ref());
    Ok(OpcUaComparison {
        sessions: o.sessions,
        publishing_ms: o.publishing.as_secs_f64() * 1e3,
        levels,
        node_opcua_skipped: node_skipped,
        connector_max_notifications_per_s: connector_max,
        node_opcua_max_notifications_per_s: node_max,
        ratio: if node_max > 0.0 {
            connector_max / node_max
        } else {
            0.0
        },
    })
}

pub fn render_run(sessions: usize, items: usize, r: &OpcUaRun) -> String {
    format!(
        "{sessions} × {items} items: {} · {:.0} notifications/s ({:.1} % of {:.0}) · latency p50 {:.0} ms p99 {:.0} ms (to the server p99 {:.0} ms) · errors {} bad {} · CPU {:.0}% · RSS {:.0} MiB",
        if r.passed { "ok" } else { "BROKE" },
        r.load.notifications_per_s,
        r.delivered * 100.0,
        r.expected_notifications_per_s,
        r.load.latency.p50_ms,
        r.load.latency.p99_ms,
        r.load.latency_to_server.p99_ms,
        r.load.errors,
        r.load.bad_status,
        r.cpu_percent,
        r.rss_mib,
    )
}

fn tags_for(monitored: usize) -> u32 {
    let t = monitored.max(1) as u32;
    t.div_ceil(TAGS_PER_DEVICE) * TAGS_PER_DEVICE
}

/// The connector's run at `items` per session: architecture 1 on the process backend
/// through the harness's one launch path (Ctrl-C and teardown as every run), every tag
/// scanned each second, and the load subscribed only to tags that change on every scan
/// (`super::changing`): every monitored item changes each second, as node-opcua's do.
async fn connector_run(o: &OpcUaBenchOptions, items: usize, run_dir: &Path) -> Result<OpcUaRun> {
    let monitored = o.sessions * items;
    let site = super::changing::changing_site(7, TAGS_PER_DEVICE, CHANGE_PERIOD, monitored)
        .with_context(|| format!("no po-sim site has {monitored} tags changing on every scan"))?;
    let tags_file = run_dir.join("changing-tags.txt");
    std::fs::write(&tags_file, site.names.join("\n"))
        .with_context(|| format!("writing {}", tags_file.display()))?;
    let s = scenario(o, site.devices * TAGS_PER_DEVICE);
    let t = s.topology();
    let mut wiring = Wiring::compute(&s, &t, BackendKind::Process)?;
    for c in &mut wiring.connectors {
        if let Some(ua) = c.config.opcua.as_mut() {
            ua.max_sessions = o.sessions.max(4);
            ua.max_monitored_items_per_subscription = items.max(1000);
        }
    }
    let opts = RunOptions {
        backend: BackendKind::Process,
        quiet: true,
        keep_logs: false,
    };
    let expected = monitored as f64 / CHANGE_PERIOD.as_secs_f64();
    launch_wired(
        &s,
        &t,
        &wiring,
        opts,
        |_| true,
        async |_, w, d| {
            wait_serving(w).await?;
            let c = w.connectors.first().context("a connector")?;
            let url = c
                .opcua
                .as_ref()
                .context("the connector's OPC UA endpoint")?
                .url();
            let pid = d
                .component_pids()
                .into_iter()
                .find(|(n, _)| *n == c.name)
                .map(|(_, p)| p)
                .context("the connector is not running")?;
            measured_load_pid(o, items, &url, Some(&tags_file), pid, expected, run_dir).await
        },
    )
    .await
    .with_context(|| {
        format!(
            "the connector's OPC UA step ({} × {items} items)",
            o.sessions
        )
    })
}

/// Architecture 1, one server (seed 7, heartbeat 500 ms) with `tags` tags scanned every
/// second, its connector serving OPC UA (anonymous, endpoint `none`); no third party of
/// the runner's (the step loads it with `harness load --protocol opcua`).
fn scenario(o: &OpcUaBenchOptions, tags: u32) -> Scenario {
    Scenario {
        name: format!("bench-opcua-{tags}"),
        architecture: 1,
        backend: Some(BackendKind::Process),
        duration: o.duration,
        seed: 7,
        site: SiteSection {
            devices: tags / TAGS_PER_DEVICE,
            tags_per_device: TAGS_PER_DEVICE,
            scan_period: CHANGE_PERIOD,
        },
        redundancy: RedundancySection {
            heartbeat: Duration::from_millis(500),
            ..RedundancySection::default()
        },
        connector: ConnectorSection {
            threads: o.connector_threads,
            // The connector's own defaults, not the scenarios' fault-hunting 300 ms: with
            // one scan a second and heartbeats every 500 ms, 300 ms of silence is normal
            // here, and a source declared silent is resubscribed (a snapshot re-sent,
            // every value notified again) in the middle of the measurement.
            source_timeout: PolicyConfig::default().source_timeout,
            stale_after: PolicyConfig::default().stale_after,
            ..ConnectorSection::default()
        },
        third_party: ThirdPartySection {
            opcua: Some(OpcUaClientSection::default()),
            ..ThirdPartySection::default()
        },
        faults: vec![],
        floods: vec![],
        security: Default::default(),
        expect: Expect::default(),
    }
}

/// Until the connector serves data (status register 1 says so), as the scenarios wait.
async fn wait_serving(w: &Wiring) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let modbus = w.connectors.first().context("a connector")?.modbus;
    loop {
        let state = crate::runner::status(&po_runtime::TokioNet, w.third_party_ip, modbus).await;
        if matches!(state.as_deref().map(|s| s[1]), Some(1)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("connector not serving data after {READY_TIMEOUT:?} (status {state:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn node_run(
    o: &OpcUaBenchOptions,
    items: usize,
    monitored: usize,
    modules: &Path,
    run_dir: &Path,
) -> Result<OpcUaRun> {
    let port = crate::wiring::free_port(LOOPBACK)?;
    // A side-by-side peer, not a deployment: a plain child, started, logged and killed
    // like the components (`ManagedChild`).
    let mut node = ManagedChild::new(
        Path::new("node"),
        [
            script_dir().join("node-server.js").into_os_string(),
            "--port".into(),
            port.to_string().into(),
            "--variables".into(),
            tags_for(monitored).to_string().into(),
        ],
        None,
        run_dir.join("node-opcua.log"),
    )
    .env("NODE_PATH", modules);
    let result = async {
        node.spawn()
            .await
            .context("starting node-opcua's server (node)")?;
        // The server prints one line once it serves.
        node.wait_for_line("listening", READY_TIMEOUT)
            .await
            .context("node-opcua's server")?;
        let pid = node.pid().context("node's pid")?;
        measured_load_pid(
            o,
            items,
            &format!("opc.tcp://127.0.0.1:{port}/"),
            None,
            pid,
            monitored as f64 / CHANGE_PERIOD.as_secs_f64(),
            run_dir,
        )
        .await
    }
    .await;
    node.kill().await;
    result.with_context(|| format!("node-opcua's OPC UA step ({} × {items} items)", o.sessions))
}

/// Runs `harness load --protocol opcua` as its own process against `url`, sampling the
/// server's CPU and peak memory meanwhile.
async fn measured_load_pid(
    o: &OpcUaBenchOptions,
    items: usize,
    url: &str,
    tags: Option<&Path>,
    pid: u32,
    expected: f64,
    run_dir: &Path,
) -> Result<OpcUaRun> {
    let json = run_dir.join("opcua-load.json");
    let _ = std::fs::remove_file(&json);
    let mut load = tokio::process::Command::new(std::env::current_exe()?)
        .args(["load", "--protocol", "opcua", "--threads", "2"])
        .args(["--target", url])
        .args([
            "--sessions",
            &o.sessions.to_string(),
            "--items",
            &items.to_string(),
        ])
        .arg("--publishing")
        .arg(humantime::format_duration(o.publishing).to_string())
        .arg("--duration")
        .arg(humantime::format_duration(o.duration).to_string())
        .args(
            tags.into_iter()
                .flat_map(|f| [std::ffi::OsStr::new("--tags"), f.as_os_str()]),
        )
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running harness load --protocol opcua")?;
    let (cpu0, _) = process_usage(pid).unwrap_or((0.0, 0));
    let started = Instant::now();
    let mut peak_kib = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let status = loop {
        tokio::select! {
            s = load.wait() => break s?,
            _ = tick.tick() => {
                if let Some((_, rss)) = process_usage(pid) {
                    peak_kib = peak_kib.max(rss);
                }
            }
        }
    };
    let (cpu1, rss) = process_usage(pid).unwrap_or((cpu0, 0));
    peak_kib = peak_kib.max(rss);
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = load.stderr.take() {
            use tokio::io::AsyncReadExt as _;
            let _ = e.read_to_string(&mut err).await;
        }
        bail!(
            "harness load --protocol opcua failed ({status}): {}",
            err.trim()
        );
    }
    let load: OpcUaLoadResult = serde_json::from_str(&std::fs::read_to_string(&json)?)
        .context("reading harness load's JSON")?;
    let delivered = load.notifications_per_s / expected.max(1.0);
    let passed = delivered >= 0.99
        && load.latency.p99_ms <= o.publishing.as_secs_f64() * 1e3 + 50.0
        && load.errors == 0;
    Ok(OpcUaRun {
        load,
        expected_notifications_per_s: expected,
        delivered,
        // Over the whole load run (connect, browse and subscribe included).
        cpu_percent: (cpu1 - cpu0) / started.elapsed().as_secs_f64() * 100.0,
        rss_mib: peak_kib as f64 / 1024.0,
        passed,
    })
}

/// The repository's benches/opcua (the script and its pinned package files).
fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/opcua")
}

/// node-opcua's server installed (npm ci of the pinned lock) under the target directory
/// when missing or installed from another lock; its node_modules.
fn node_server_ready() -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe()?;
            // target/<profile>/harness
            exe.parent()
                .and_then(Path::parent)
                .context("the harness binary is not in a target directory")?
                .to_path_buf()
        }
    };
    let dir = target.join("tmp/node-opcua-server");
    let lock = std::fs::read(script_dir().join("package-lock.json"))
        .context("benches/opcua/package-lock.json")?;
    if std::fs::read(dir.join(".installed")).ok().as_deref() != Some(&lock[..]) {
        for tool in ["node", "npm"] {
            let found = std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                bail!("{tool} is not installed (apt-get install nodejs npm)");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(script_dir().join(f), dir.join(f))?;
        }
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .context("running npm ci")?;
        if !out.status.success() {
            bail!(
                "npm ci in {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::write(dir.join(".installed"), &lock)?;
    }
    Ok(dir.join("node_modules"))
}
