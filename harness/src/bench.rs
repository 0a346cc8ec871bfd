//! `harness bench`: for each architecture, raise the update rate (tags × scan rate), then
//! the number of third-party connections, until an expectation breaks; report the highest
//! sustained figures with each component's CPU and memory, and the connector's Modbus
//! throughput as a ratio of a bare tokio-modbus server under the same load.

use crate::launch::{RunOptions, launch, run_scenario};
use crate::report::Report;
use crate::scenario::{
    BackendKind, ConnectorSection, Expect, RedundancySection, Scenario, SiteSection,
    ThirdPartyKind, ThirdPartySection,
};
use crate::seam::Backend as _;
use anyhow::{Context as _, Result};
use po_simulator::{FieldModel, SiteSpec};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::Duration;

/// Tags one connector can map automatically (2 registers each below 65 536).
const MAX_TAGS: u32 = 30_000;
const TAGS_PER_DEVICE: u32 = 50;
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub backend: BackendKind,
    pub duration: Duration,
    pub architectures: Vec<u8>,
    /// Nominal tag samples per second to try, ascending.
    pub rates: Vec<u32>,
    /// Third-party connection counts to try (at the first rate), ascending.
    pub clients: Vec<usize>,
    /// Site sizes (tags, scanned every second) to run in architecture 3, ascending:
    /// the §8 scale target, served over unit-id banks.
    pub sizes: Vec<u32>,
    pub modbus_duration: Duration,
    /// Runtime threads of the connector processes; `None`: the connector's own choice
    /// (what a user who gives no `--threads` gets).
    pub connector_threads: Option<usize>,
    /// Nominal samples/s of the TLS ingest comparison (architecture 3, plaintext then
    /// TLS); 0 skips the TLS comparisons.
    pub tls_rate: u32,
    /// The OPC UA step (connector against node-opcua's server); `None` skips it.
    pub opcua: Option<OpcUaStep>,
    /// Run the OPC UA step alone (no sweeps, sizes, Modbus or TLS comparison).
    pub opcua_only: bool,
}

/// The OPC UA step's load: `sessions` sessions, each subscribed to one of `items` per
/// session (ascending: each server runs until one breaks).
#[derive(Debug, Clone)]
pub struct OpcUaStep {
    pub sessions: usize,
    pub items: Vec<usize>,
    pub publishing: Duration,
    pub duration: Duration,
}

/// What TLS costs, each figure measured against plaintext in the same run (docs/design.md §8).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsComparison {
    /// One connector serving 8 masters flat out (125-register reads) on its plain Modbus
    /// listener, then on its Modbus/TCP Security listener (sessions kept open), while
    /// ingesting 100 k updates/s over TLS.
    /// Medians over the rounds; the ratio is the median of the rounds' ratios.
    pub modbus_plain_requests_per_s: f64,
    pub modbus_tls_requests_per_s: f64,
    pub modbus_ratio: f64,
    /// Each round's (TLS, plaintext) requests/s: on a shared 2-core machine one pair of
    /// measurements varies by ±20 %, so the rounds alternate which goes first.
    #[serde(default)]
    pub modbus_rounds: Vec<(f64, f64)>,
    /// Architecture 3 at `ingest_nominal_samples_per_s`: the same scenario with plaintext
    /// links, then with TLS on every link.
    pub ingest_nominal_samples_per_s: u32,
    pub ingest_plain_updates_per_s: f64,
    pub ingest_tls_updates_per_s: f64,
    pub ingest_ratio: f64,
    /// Both steps whole (expectations, CPU and memory per component).
    pub ingest_steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub architecture: u8,
    pub nominal_samples_per_s: u32,
    pub tags: u32,
    pub scan_ms: f64,
    pub clients: usize,
    pub passed: bool,
    pub ingest_updates_per_s: f64,
    pub delivered_values_per_s: f64,
    pub latency_p99_ms: u64,
    pub values_wrong: u64,
    pub failed: Vec<String>,
    pub resources: Vec<crate::report::Resource>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Best {
    pub architecture: u8,
    /// Highest ingest rate sustained with every expectation holding.
    pub max_ingest_updates_per_s: f64,
    pub at_nominal_samples_per_s: u32,
    /// Most third-party connections served with every expectation holding.
    pub max_clients: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModbusComparison {
    /// The connector's `--threads`, or "auto" (its own choice from the host).
    pub connector_threads: String,
    pub connections: usize,
    pub quantity: u16,
    pub connector_requests_per_s: f64,
    pub bare_requests_per_s: f64,
    pub ratio: f64,
    pub ingest_during_load_updates_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub backend: String,
    pub cores: usize,
    pub steps: Vec<Step>,
    pub best: Vec<Best>,
    pub modbus: Option<ModbusComparison>,
    /// The size sweep: architecture 3 at each `--sizes` tag count, scan 1 s.
    #[serde(default)]
    pub sizes: Vec<Step>,
    /// TLS against plaintext, same run.
    #[serde(default)]
    pub tls: Option<TlsComparison>,
    /// The connector's OPC UA face against node-opcua's server, same run.
    #[serde(default)]
    pub opcua: Option<crate::opcua_load::bench::OpcUaComparison>,
}

/// Scan period and tag count giving `rate` samples/s within the register space.
fn site_for(rate: u32) -> (u32, Duration) {
    for us in [
        100_000u64, 50_000, 25_000, 20_000, 10_000, 5_000, 2_000, 1_000,
    ] {
        let tags = (u64::from(rate) * us / 1_000_000) as u32;
        if tags <= MAX_TAGS {
            let tags = (tags / TAGS_PER_DEVICE).max(1) * TAGS_PER_DEVICE;
            return (tags, Duration::from_micros(us));
        }
    }
    (MAX_TAGS, Duration::from_millis(1))
}

/// Fraction of tags whose value changes from one tick to the next (only changes are
/// sent): what "ingest keeping up" is measured against.
fn change_fraction(tags: u32, scan: Duration) -> f64 {
    let model = FieldModel::new(
        7,
        SiteSpec {
            devices: tags / TAGS_PER_DEVICE,
            tags_per_device: TAGS_PER_DEVICE,
            scan_period: scan,
        },
    );
    let Ok(model) = model else { return 1.0 };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut changed, mut total) = (0usize, 0usize);
    for t in 1000..1010 {
        model.values_at(t, &mut a);
        model.values_at(t + 1, &mut b);
        changed += a.iter().zip(&b).filter(|(x, y)| x != y).count();
        total += a.len();
    }
    changed as f64 / total.max(1) as f64
}

fn scenario(
    arch: u8,
    rate: u32,
    clients: usize,
    duration: Duration,
    connector_threads: Option<usize>,
) -> (Scenario, f64) {
    let (tags, scan) = site_for(rate);
    let expected_ingest = f64::from(tags) / scan.as_secs_f64() * change_fraction(tags, scan);
    let s = Scenario {
        name: format!("bench-arch{arch}-{rate}-x{clients}"),
        architecture: arch,
        backend: None,
        duration,
        seed: 7,
        site: SiteSection {
            devices: tags / TAGS_PER_DEVICE,
            tags_per_device: TAGS_PER_DEVICE,
            scan_period: scan,
        },
        redundancy: RedundancySection::default(),
        connector: ConnectorSection {
            threads: connector_threads,
            ..ConnectorSection::default()
        },
        third_party: ThirdPartySection {
            kind: if arch == 1 {
                ThirdPartyKind::Plain
            } else {
                ThirdPartyKind::Redundant
            },
            clients,
            poll_period: POLL,
            ..ThirdPartySection::default()
        },
        faults: vec![],
        floods: vec![],
        security: Default::default(),
        expect: Expect {
            min_updates_per_s: Some(0.9 * expected_ingest),
            max_latency_p99: Some(POLL + scan + Duration::from_millis(50)),
            max_values_wrong: Some(0),
            ..Expect::default()
        },
    };
    (s, expected_ingest)
}

/// Scan period of the size sweep (docs/design.md §8 "scale": a million tags scanned every second).
const SIZE_SCAN: Duration = Duration::from_secs(1);

/// Architecture 3 at `tags` tags scanned every second, one redundant third party reading
/// every unit once a second; passes when ingest keeps up (≥ 90 % of the changes sent),
/// nothing is wrong, and freshness p99 ≤ scan + 100 ms (§8).
fn size_scenario(
    tags: u32,
    duration: Duration,
    connector_threads: Option<usize>,
) -> (Scenario, f64) {
    let tags = (tags / TAGS_PER_DEVICE).max(1) * TAGS_PER_DEVICE;
    let expected_ingest =
        f64::from(tags) / SIZE_SCAN.as_secs_f64() * change_fraction(tags, SIZE_SCAN);
    let (mut s, _) = scenario(3, tags, 1, duration, connector_threads);
    s.name = format!("bench-size-{tags}");
    s.site.scan_period = SIZE_SCAN;
    s.site.devices = tags / TAGS_PER_DEVICE;
    s.third_party.poll_period = SIZE_SCAN;
    s.expect.min_updates_per_s = Some(0.9 * expected_ingest);
    s.expect.max_latency_p99 = Some(SIZE_SCAN + Duration::from_millis(100));
    (s, expected_ingest)
}

fn step_of(arch: u8, rate: u32, clients: usize, r: &Report) -> Step {
    let (tags, scan) = site_for(rate);
    Step {
        architecture: arch,
        nominal_samples_per_s: rate,
        tags,
        scan_ms: scan.as_secs_f64() * 1000.0,
        clients,
        passed: r.passed,
        ingest_updates_per_s: r.ingest.updates_per_s,
        delivered_values_per_s: r.modbus.values_per_s,
        latency_p99_ms: r.latency_ms.p99,
        values_wrong: r.integrity.values_wrong,
        failed: r
            .expectations
            .iter()
            .filter(|e| !e.passed)
            .map(|e| format!("{} {} (limit {})", e.name, e.actual, e.limit))
            .collect(),
        resources: r.resources.clone(),
    }
}

/// Runs the sweep. `progress` gets one line per step.
pub async fn run_bench(o: &BenchOptions, progress: &dyn Fn(&str)) -> Result<BenchReport> {
    if o.opcua_only {
        return Ok(BenchReport {
            backend: o.backend.as_str().into(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            steps: vec![],
            best: vec![],
            modbus: None,
            sizes: vec![],
            tls: None,
            opcua: opcua_step(o, progress).await?,
        });
    }
    let mut steps = Vec::new();
    let mut best = Vec::new();
    let opts = RunOptions {
        backend: o.backend,
        quiet: true,
        keep_logs: false,
    };
    for &arch in &o.architectures {
        let mut b = Best {
            architecture: arch,
            max_ingest_updates_per_s: 0.0,
            at_nominal_samples_per_s: 0,
            max_clients: 0,
        };
        let base_clients = o.clients.first().copied().unwrap_or(1);
        for &rate in &o.rates {
            let (s, _) = scenario(arch, rate, base_clients, o.duration, o.connector_threads);
            let r = run_scenario(&s, opts)
                .await
                .with_context(|| format!("bench step {}", s.name))?;
            let step = step_of(arch, rate, base_clients, &r);
            progress(&render_step(&step));
            let passed = step.passed;
            if passed && step.ingest_updates_per_s > b.max_ingest_updates_per_s {
                b.max_ingest_updates_per_s = step.ingest_updates_per_s;
                b.at_nominal_samples_per_s = rate;
            }
            steps.push(step);
            if !passed {
                break;
            }
        }
        let rate = o.rates.first().copied().unwrap_or(100_000);
        for &clients in &o.clients {
            let (s, _) = scenario(arch, rate, clients, o.duration, o.connector_threads);
            let r = run_scenario(&s, opts)
                .await
                .with_context(|| format!("bench step {}", s.name))?;
            let step = step_of(arch, rate, clients, &r);
            progress(&render_step(&step));
            let passed = step.passed;
            steps.push(step);
            if !passed {
                break;
            }
            b.max_clients = clients;
        }
        best.push(b);
    }
    // Site sizes: every one is run (a large site failing says where, not whether).
    let mut sizes = Vec::new();
    for &tags in o.sizes.iter().filter(|t| **t > 0) {
        let (s, _) = size_scenario(tags, o.duration, o.connector_threads);
        let r = run_scenario(&s, opts)
            .await
            .with_context(|| format!("bench step {}", s.name))?;
        let mut step = step_of(3, s.site.devices * TAGS_PER_DEVICE, 1, &r);
        step.tags = s.site.devices * TAGS_PER_DEVICE;
        step.scan_ms = SIZE_SCAN.as_secs_f64() * 1000.0;
        progress(&format!("size: {}", render_step(&step)));
        sizes.push(step);
    }
    let modbus = modbus_comparison(o, progress).await?;
    let tls = match o.tls_rate {
        0 => None,
        rate => Some(tls_comparison(o, rate, progress).await?),
    };
    let opcua = opcua_step(o, progress).await?;
    Ok(BenchReport {
        backend: o.backend.as_str().into(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        steps,
        best,
        modbus: Some(modbus),
        sizes,
        tls,
        opcua,
    })
}

/// The OPC UA step, when asked for.
async fn opcua_step(
    o: &BenchOptions,
    progress: &dyn Fn(&str),
) -> Result<Option<crate::opcua_load::bench::OpcUaComparison>> {
    Ok(match &o.opcua {
        None => None,
        Some(step) => {
            let options = crate::opcua_load::bench::OpcUaBenchOptions {
                sessions: step.sessions,
                items: step.items.clone(),
                publishing: step.publishing,
                duration: step.duration,
                connector_threads: o.connector_threads,
            };
            Some(crate::opcua_load::bench::opcua_comparison(&options, progress).await?)
        }
    })
}

/// Rounds of the Modbus/TCP Security comparison (odd: the median is one of them).
const TLS_ROUNDS: usize = 3;

/// TLS against plaintext in the same run: Modbus/TCP Security against plain Modbus on one
/// connector, then architecture 3 ingest with and without TLS on every link.
async fn tls_comparison(
    o: &BenchOptions,
    rate: u32,
    progress: &dyn Fn(&str),
) -> Result<TlsComparison> {
    let (mut s, _) = scenario(
        1,
        100_000,
        1,
        o.modbus_duration * (2 * TLS_ROUNDS as u32) + Duration::from_secs(5),
        o.connector_threads,
    );
    s.security.tls = true;
    let opts = RunOptions {
        backend: o.backend,
        quiet: true,
        keep_logs: false,
    };
    let rounds = launch(&s, opts, |_| true, async |_, w, d| {
        crate::runner::wait_ready(w, d).await?;
        let certs = w
            .certs_dir()
            .context("the TLS deployment has certificates")?;
        // Both direct (no fault proxy in between), on the same connector.
        let c = w.connectors.first().context("a connector")?;
        let secure = c
            .modbus_secure
            .context("the TLS deployment serves Modbus/TCP Security")?;
        let mut rounds = Vec::new();
        for round in 0..TLS_ROUNDS {
            let run_plain = || load_process(c.modbus, o.modbus_duration, None);
            let run_tls = || load_process(secure, o.modbus_duration, Some(&certs));
            let (tls, plain) = if round % 2 == 0 {
                let p = run_plain().await?;
                (run_tls().await?, p)
            } else {
                let t = run_tls().await?;
                (t, run_plain().await?)
            };
            progress(&format!(
                "tls: round {}: Modbus/TCP Security {:.0} requests/s, plain Modbus {:.0} on the same connector",
                round + 1,
                tls.requests_per_s,
                plain.requests_per_s
            ));
            rounds.push((tls.requests_per_s, plain.requests_per_s));
        }
        anyhow::Ok(rounds)
    })
    .await?;

    let mut steps = Vec::new();
    for secure in [false, true] {
        let (mut s, _) = scenario(3, rate, 1, o.duration, o.connector_threads);
        s.security.tls = secure;
        if secure {
            s.name.push_str("-tls");
        }
        let r = run_scenario(&s, opts)
            .await
            .with_context(|| format!("bench step {}", s.name))?;
        let step = step_of(3, rate, 1, &r);
        progress(&format!(
            "tls: {} {}",
            if secure { "TLS" } else { "plaintext" },
            render_step(&step)
        ));
        steps.push(step);
    }
    let ratio = |a: f64, b: f64| a / b.max(1.0);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Ok(TlsComparison {
        modbus_plain_requests_per_s: median(rounds.iter().map(|r| r.1).collect()),
        modbus_tls_requests_per_s: median(rounds.iter().map(|r| r.0).collect()),
        modbus_ratio: median(rounds.iter().map(|r| ratio(r.0, r.1)).collect()),
        modbus_rounds: rounds,
        ingest_nominal_samples_per_s: rate,
        ingest_plain_updates_per_s: steps[0].ingest_updates_per_s,
        ingest_tls_updates_per_s: steps[1].ingest_updates_per_s,
        ingest_ratio: ratio(steps[1].ingest_updates_per_s, steps[0].ingest_updates_per_s),
        ingest_steps: steps,
    })
}

/// Runs `harness load` as its own single-threaded process against `target`, so the load
/// generator is the same for both servers and does not share the bench's runtime.
async fn load_process(
    target: std::net::SocketAddr,
    duration: Duration,
    tls_certs: Option<&std::path::Path>,
) -> Result<crate::load::LoadResult> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    if let Some(dir) = tls_certs {
        // An operator's certificate from the run's lab PKI (crate::security).
        cmd.arg("load")
            .arg("--tls-cert")
            .arg(dir.join("master-operator.crt"))
            .arg("--tls-key")
            .arg(dir.join("master-operator.key"))
            .arg("--tls-ca")
            .arg(dir.join("ca.crt"));
    } else {
        cmd.arg("load");
    }
    let out = cmd
        .args([
            "--threads",
            "1",
            "--connections",
            "8",
            "--quantity",
            "125",
            "--address",
            "100",
        ])
        .arg("--target")
        .arg(target.to_string())
        .arg("--duration")
        .arg(humantime::format_duration(duration).to_string())
        .kill_on_drop(true)
        .output()
        .await
        .context("running harness load")?;
    anyhow::ensure!(
        out.status.success(),
        "harness load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Architecture 1 at 100 k updates/s; 8 masters (one `harness load` process) read 125
/// registers as fast as they can, first from the connector, then from a bare tokio-modbus
/// server (`harness bare-modbus`, its own process with one thread, like the connector)
/// while the server and connector keep running, so both see the same background load.
async fn modbus_comparison(o: &BenchOptions, progress: &dyn Fn(&str)) -> Result<ModbusComparison> {
    let (s, _) = scenario(
        1,
        100_000,
        1,
        o.modbus_duration * 2 + Duration::from_secs(5),
        o.connector_threads,
    );
    let opts = RunOptions {
        backend: o.backend,
        quiet: true,
        keep_logs: false,
    };
    launch(
        &s,
        opts,
        |_| true,
        async |_, w, d| {
            crate::runner::wait_ready(w, d).await?;
            let target = w.connectors.first().context("a connector")?.modbus;
            let before = d.ingest_counters().await;
            let started = std::time::Instant::now();
            let connector = load_process(target, o.modbus_duration, None).await?;
            let after = d.ingest_counters().await;
            let ingest = match (
                before.first().copied().flatten(),
                after.first().copied().flatten(),
            ) {
                (Some(a), Some(b)) => {
                    (b.saturating_sub(a)) as f64 / started.elapsed().as_secs_f64()
                }
                _ => 0.0,
            };
            progress(&format!(
                "modbus: connector {:.0} requests/s (ingesting {ingest:.0} updates/s)",
                connector.requests_per_s
            ));
            let listen = {
                let l = std::net::TcpListener::bind("127.0.9.1:0")?;
                l.local_addr()?
            };
            // A side-by-side peer, not a deployment: a plain child, started, logged and
            // killed like the components (`ManagedChild`).
            let log = std::env::temp_dir()
                .join(format!("harness-bare-modbus-{}.log", std::process::id()));
            let mut bare = crate::child::ManagedChild::new(
                &std::env::current_exe()?,
                [
                    "bare-modbus",
                    "--threads",
                    "1",
                    "--listen",
                    &listen.to_string(),
                ],
                None,
                log.clone(),
            );
            bare.spawn()
                .await
                .context("starting the bare tokio-modbus server")?;
            let bare_result = async {
                crate::probe::wait_listening(&po_runtime::TokioNet, None, listen)
                    .await
                    .context("the bare tokio-modbus server")?;
                load_process(listen, o.modbus_duration, None).await
            }
            .await;
            bare.kill().await;
            let _ = std::fs::remove_file(&log);
            let bare_result = bare_result?;
            progress(&format!(
                "modbus: bare tokio-modbus {:.0} requests/s",
                bare_result.requests_per_s
            ));
            anyhow::Ok(ModbusComparison {
                connector_threads: o
                    .connector_threads
                    .map_or_else(|| "auto".to_string(), |n| n.to_string()),
                connections: 8,
                quantity: 125,
                connector_requests_per_s: connector.requests_per_s,
                bare_requests_per_s: bare_result.requests_per_s,
                ratio: connector.requests_per_s / bare_result.requests_per_s.max(1.0),
                ingest_during_load_updates_per_s: ingest,
            })
        },
    )
    .await
}

fn render_step(s: &Step) -> String {
    let res: Vec<String> = s
        .resources
        .iter()
        .map(|r| format!("{} {:.0}%/{:.0}MiB", r.component, r.cpu_percent, r.rss_mib))
        .collect();
    format!(
        "arch {} · {:>7} samples/s ({} tags / {} ms) · {} client(s): {} · ingest {:.0}/s · delivered {:.0}/s · p99 {} ms · wrong {}{}{}",
        s.architecture,
        s.nominal_samples_per_s,
        s.tags,
        s.scan_ms,
        s.clients,
        if s.passed { "ok" } else { "BROKE" },
        s.ingest_updates_per_s,
        s.delivered_values_per_s,
        s.latency_p99_ms,
        s.values_wrong,
        if res.is_empty() {
            String::new()
        } else {
            format!(" · {}", res.join(" "))
        },
        if s.failed.is_empty() {
            String::new()
        } else {
            format!(" · failed: {}", s.failed.join("; "))
        },
    )
}

impl BenchReport {
    /// Reads a previous `harness bench --json` (a `--baseline`); the message names the
    /// file.
    pub fn load(path: &std::path::Path) -> Result<BenchReport, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a `harness bench --json` report: {e}",
                path.display()
            )
        })
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "harness bench — {} backend, {} cores",
            self.backend, self.cores
        );
        for s in &self.steps {
            let _ = writeln!(o, "  {}", render_step(s));
        }
        if !self.sizes.is_empty() {
            let _ = writeln!(o, "site sizes (architecture 3, scan 1 s):");
            for s in &self.sizes {
                let _ = writeln!(o, "  {}", render_step(s));
            }
        }
        let _ = writeln!(o, "highest sustained:");
        for b in &self.best {
            let _ = writeln!(
                o,
                "  architecture {}: {:.0} updates/s ingested per connector (at {} samples/s), {} third-party connection(s)",
                b.architecture,
                b.max_ingest_updates_per_s,
                b.at_nominal_samples_per_s,
                b.max_clients
            );
        }
        if let Some(m) = &self.modbus {
            let _ = writeln!(
                o,
                "Modbus, {} connections × {} registers: connector {:.0} requests/s (ingesting {:.0} updates/s), bare tokio-modbus {:.0} requests/s, ratio {:.2}",
                m.connections,
                m.quantity,
                m.connector_requests_per_s,
                m.ingest_during_load_updates_per_s,
                m.bare_requests_per_s,
                m.ratio
            );
        }
        if let Some(t) = &self.tls {
            let _ = writeln!(
                o,
                "TLS, same run: Modbus/TCP Security {:.0} requests/s, plain Modbus {:.0} (median ratio of {} rounds {:.2}); architecture 3 ingest at {} samples/s: TLS {:.0} updates/s, plaintext {:.0} (ratio {:.2})",
                t.modbus_tls_requests_per_s,
                t.modbus_plain_requests_per_s,
                t.modbus_rounds.len(),
                t.modbus_ratio,
                t.ingest_nominal_samples_per_s,
                t.ingest_tls_updates_per_s,
                t.ingest_plain_updates_per_s,
                t.ingest_ratio
            );
            for s in &t.ingest_steps {
                let _ = writeln!(o, "  {}", render_step(s));
            }
        }
        if let Some(u) = &self.opcua {
            use crate::opcua_load::bench::render_run;
            let _ = writeln!(
                o,
                "OPC UA, {} sessions, publishing {} ms: connector {:.0} notifications/s sustained, node-opcua {:.0}, ratio {:.2}{}",
                u.sessions,
                u.publishing_ms,
                u.connector_max_notifications_per_s,
                u.node_opcua_max_notifications_per_s,
                u.ratio,
                u.node_opcua_skipped
                    .as_ref()
                    .map(|why| format!(" (node-opcua not measured: {why})"))
                    .unwrap_or_default()
            );
            for l in &u.levels {
                if let Some(ratio) = l.ratio_same_load {
                    let _ = writeln!(
                        o,
                        "  {} × {} items: connector ÷ node-opcua notifications/s {ratio:.2}",
                        u.sessions, l.items_per_session
                    );
                }
                for (who, r) in [("connector", &l.connector), ("node-opcua", &l.node_opcua)] {
                    if let Some(r) = r {
                        let _ = writeln!(
                            o,
                            "  {who} {}",
                            render_run(u.sessions, l.items_per_session, r)
                        );
                    }
                }
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_fit_the_register_space() {
        assert_eq!(site_for(100_000), (10_000, Duration::from_millis(100)));
        let (tags, scan) = site_for(1_200_000);
        assert!(tags <= MAX_TAGS);
        assert_eq!(scan, Duration::from_millis(25));
        let f = change_fraction(1000, Duration::from_millis(100));
        assert!(f > 0.5 && f <= 1.0, "{f}");
    }
}
