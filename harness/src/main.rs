//! `harness`: run scenarios, print their plan, and generate Modbus and OPC UA load.

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use harness::launch::{Interrupted, RunOptions, run_scenario};
use harness::load::{LoadSpec, run_load, serve_bare};
use harness::report::{Report, Skipped, junit};
use harness::scenario::{BackendKind, Scenario};
use po_runtime::cli::LogFormat;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Scenario runner for the three Smart Connector architectures.
#[derive(Debug, Parser)]
#[command(name = "harness", version = po_runtime::cli::VERSION, propagate_version = true)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax). In-process servers and connectors log
    /// through it too, e.g. `harness=info,smart_connector=info`.
    #[arg(
        long,
        global = true,
        default_value = "harness=warn",
        env = "HARNESS_LOG"
    )]
    log: String,
    /// Log line format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "HARNESS_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios; exit 0 when every expectation held, 1 when one failed, 2 for invalid
    /// input (the message names file, line and key).
    Run {
        /// Scenario files (see docs/scenarios.md).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override the scenarios' `backend`.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
        /// Write the reports as JSON (one object, or an array for several scenarios).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a JUnit XML report: one test case per expectation.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write a self-contained HTML report (inline SVG charts and CSS, nothing fetched):
        /// per scenario the rates, freshness, roles and sources of every server and
        /// connector over time with the faults marked, write outcomes, the expectations
        /// and the figures. One file, a section per scenario.
        #[arg(long)]
        html: Option<PathBuf>,
        /// No progress bar (it is also hidden when stderr is not a terminal).
        #[arg(long, short)]
        quiet: bool,
        /// Worker threads of the harness runtime (in-process components share it).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// A previous `--json` report: fail (exit 1) when throughput fell or latency rose
        /// by more than `--max-regression` against it (same scenario and backend).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Keep each run's directory (generated configs and component logs of the
        /// process and netns backends) also when it passed.
        #[arg(long)]
        keep_logs: bool,
        /// Tolerated regression against `--baseline`, in percent: `10%` (a bare `10` is
        /// read as 10% too).
        #[arg(long, default_value = "10%", value_parser = harness::report::parse_margin)]
        max_regression: f64,
        /// Refuse (exit 2, nothing run) when the backend cannot run one of several
        /// files, instead of skipping it. A single file is always refused.
        #[arg(long)]
        strict: bool,
    },
    /// Random fault schedules in the simulation backend, one per seed, with the
    /// invariants of docs/design.md §11 checked on every run. A failing seed is shrunk to the
    /// fewest fault episodes that still fail and written as a scenario file; the command
    /// that replays it is printed. Exit 0 when every seed held, 1 when one failed.
    Explore {
        /// 2 or 3.
        #[arg(long, value_parser = clap::value_parser!(u8).range(2..=3))]
        architecture: u8,
        /// Seeds to run, both ends included: `1..1000`.
        #[arg(long, value_parser = harness::explore::parse_seeds)]
        seeds: std::ops::RangeInclusive<u64>,
        /// Run every N-th seed of the range, starting with the K-th (a CI matrix of N jobs).
        #[arg(long, default_value = "1/1", value_parser = harness::explore::parse_shard)]
        shard: (u64, u64),
        /// Virtual length of each run.
        #[arg(long, default_value = "60s", value_parser = po_runtime::cli::parse_duration)]
        duration: Duration,
        /// Write the summary (seeds run, held, failing seeds with replay commands) as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where the scenario files of failing seeds are written.
        #[arg(long, default_value = "explore-failures")]
        out: PathBuf,
        /// Simulations at once (each single-threaded); default: the number of cores.
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Validate a scenario and print its hosts, components, addresses, links, licences,
    /// faults and expectations, without running it.
    Plan {
        /// The scenario file to validate and show (see docs/scenarios.md).
        file: PathBuf,
        /// Validate and show the plan for this backend instead of the scenario's own
        /// (default: the file's `backend`, else inprocess).
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
    },
    /// Throughput sweep: per architecture, raise the update rate, then the number of
    /// third-party connections, until an expectation breaks; report the highest sustained
    /// figures with CPU and memory per component, the connector's Modbus throughput as a
    /// ratio of a bare tokio-modbus server, and its OPC UA notifications/s as a ratio of
    /// node-opcua's server.
    Bench {
        /// `process` (default) measures each component's CPU and memory separately.
        #[arg(long, value_enum, default_value = "process")]
        backend: BackendKind,
        /// Length of each step.
        #[arg(long, default_value = "6s", value_parser = po_runtime::cli::parse_duration)]
        duration: Duration,
        /// Architectures to sweep.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        architectures: Vec<u8>,
        /// Tag samples per second to try, ascending (the first is also the rate of the
        /// connection sweep).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "100000,400000,1200000,3000000,6000000,12000000"
        )]
        rates: Vec<u32>,
        /// Third-party connection counts to try, ascending.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
        clients: Vec<usize>,
        /// Site sizes to run in architecture 3 (tags, scanned every second; sites above
        /// one Modbus unit are served over unit-id banks); `--sizes 0` skips them.
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        sizes: Vec<u32>,
        /// Length of each Modbus load measurement (connector, then bare server).
        #[arg(long, default_value = "5s", value_parser = po_runtime::cli::parse_duration)]
        modbus_duration: Duration,
        /// Nominal samples/s of the TLS ingest comparison (architecture 3, plaintext then
        /// TLS on every link, same run); the Modbus/TCP Security comparison runs with it.
        /// 0 skips both.
        #[arg(long, default_value_t = 2_000_000)]
        tls_rate: u32,
        /// Sessions of the OPC UA step (the connector against node-opcua's server, both
        /// loaded by `harness load --protocol opcua`); 0 skips the step.
        #[arg(long, default_value_t = 4)]
        opcua_sessions: usize,
        /// Monitored items per session of the OPC UA step, ascending: each server runs
        /// until one breaks (delivered < 99 % or latency p99 > publishing + 50 ms); the
        /// highest sustained notifications/s are compared.
        #[arg(long, value_delimiter = ',', default_value = "25000,50000")]
        opcua_items: Vec<usize>,
        /// Publishing interval of the OPC UA step's subscriptions.
        #[arg(long, default_value = "100ms", value_parser = po_runtime::cli::parse_duration)]
        opcua_publishing: Duration,
        /// Length of each OPC UA load measurement.
        #[arg(long, default_value = "20s", value_parser = po_runtime::cli::parse_duration)]
        opcua_duration: Duration,
        /// Run only the OPC UA step (no sweeps, sizes, Modbus or TLS comparison).
        #[arg(long)]
        opcua_only: bool,
        /// Pin the connectors' runtime threads (`--threads N`); without it they choose
        /// from the host, as with a default configuration.
        #[arg(long)]
        connector_threads: Option<usize>,
        /// Write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a self-contained HTML report: sustained ingest against offered rate per
        /// architecture, CPU and memory per component, the Modbus ratio.
        #[arg(long)]
        html: Option<PathBuf>,
        /// A previous `bench --json`: the HTML report draws its figures beside the new
        /// ones.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
    /// Load a Modbus TCP or OPC UA server and print what it sustained (JSON).
    ///
    /// Modbus: read one block of holding registers from many connections as fast as the
    /// server answers (requests/s). OPC UA: open sessions, each subscribed to --items Variable nodes found
    /// by browsing down from Objects (the Server object skipped), and count what arrives
    /// (notifications/s, latency from SourceTimestamp to receipt, errors).
    Load {
        /// What to speak.
        #[arg(long, value_enum, default_value_t = LoadProtocol::Modbus)]
        protocol: LoadProtocol,
        /// The server to load: HOST:PORT (Modbus TCP) or opc.tcp://HOST:PORT (OPC UA).
        #[arg(long)]
        target: String,
        /// OPC UA: sessions to open [default: 1].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        sessions: Option<u64>,
        /// OPC UA: monitored items per session (one subscription each); sessions take
        /// different variables while the server has enough [default: 1000].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        items: Option<u64>,
        /// OPC UA: publishing interval of each subscription [default: 100ms].
        #[arg(long, value_parser = po_runtime::cli::parse_duration)]
        publishing: Option<Duration>,
        /// OPC UA: sampling interval asked for each item; 0: every change the server sees
        /// [default: 0ms].
        #[arg(long, value_parser = po_runtime::cli::parse_duration)]
        sampling: Option<Duration>,
        /// OPC UA: `none` or POLICY/MODE as in the connector's `[opcua] security`
        /// (e.g. basic256sha256/sign-and-encrypt) [default: none].
        #[arg(long)]
        security: Option<String>,
        /// OPC UA: the client's certificate directory (own/cert.der, private/private.pem,
        /// as `smart-connector certs opcua-client` writes them; the server must trust
        /// it). Default: a throwaway key pair, enough for `none`.
        #[arg(long)]
        pki_dir: Option<PathBuf>,
        /// Also write the JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// OPC UA: no progress lines on stderr (one every 5 s otherwise).
        #[arg(long, short)]
        quiet: bool,
        // The Modbus-only options have no clap default, so that one given with
        // `--protocol opcua` is refused instead of silently ignored; their defaults are
        // applied in the Modbus arm.
        /// Modbus: concurrent connections (one request in flight on each) [default: 8].
        #[arg(long)]
        connections: Option<usize>,
        /// Modbus: first register of the block [default: 100].
        #[arg(long)]
        address: Option<u16>,
        /// Modbus: registers per request (1..=125) [default: 125].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=125))]
        quantity: Option<u16>,
        /// Modbus: unit id to address [default: 1].
        #[arg(long)]
        unit: Option<u8>,
        /// How long to load the server.
        #[arg(long, default_value = "10s", value_parser = po_runtime::cli::parse_duration)]
        duration: Duration,
        /// Worker threads of the load generator's runtime.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Meanwhile fetch this page every 100 ms (e.g. a connector's status page,
        /// `127.0.0.1:9100/`) and report its latency next to the Modbus figures.
        #[arg(long, value_name = "HOST:PORT/PATH")]
        probe_http: Option<String>,
        /// Modbus/TCP Security: this master's certificate (PEM; its role must allow
        /// reading); needs --tls-key and --tls-ca.
        #[arg(long, requires_all = ["tls_key", "tls_ca"])]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The CA that signs the server's certificate (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_ca: Option<PathBuf>,
    },
    /// Hold many connections to one listener (a connection flood) for a while, the way
    /// scanners and attackers do, and print what the listener did with them (JSON).
    /// Traffic goes only where --target says: use it on your own lab.
    Flood {
        /// The listener to flood (host:port).
        #[arg(long)]
        target: SocketAddr,
        /// Connections to hold open at once.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// How each connection behaves once open.
        #[arg(long, value_enum, default_value_t = harness::flood::FloodMode::Idle)]
        mode: harness::flood::FloodMode,
        /// How long to flood; the flood always ends by itself.
        #[arg(long, default_value = "30s", value_parser = po_runtime::cli::parse_duration)]
        duration: Duration,
        /// Source address of the connections (bind before connect).
        #[arg(long)]
        from: Option<std::net::IpAddr>,
        /// Wait this long before reopening a connection the listener closed or refused.
        #[arg(long, default_value = "1s", value_parser = po_runtime::cli::parse_duration)]
        reconnect_delay: Duration,
        /// No progress lines on stderr.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Serve a static slice with the stock tokio-modbus server: the reference the
    /// connector's Modbus throughput is compared with.
    BareModbus {
        /// Address to serve Modbus TCP on (host:port).
        #[arg(long, default_value = "127.0.0.1:1503")]
        listen: SocketAddr,
        /// Worker threads of the server's runtime.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Floods, loads and many third parties hold many sockets: every descriptor the hard
    // limit allows.
    let _ = po_runtime::descriptors::raise_nofile_limit();
    po_runtime::cli::init_logging_with_timer(
        cli.log_format,
        &cli.log,
        "warn",
        harness::sim::LogTimer,
    );
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Loads every scenario first so that an invalid file stops the run before anything starts.
fn load_all(files: &[PathBuf]) -> Result<Vec<Scenario>, ExitCode> {
    let mut out = Vec::new();
    let mut failed = false;
    for f in files {
        match Scenario::load(f) {
            Ok(s) => out.push(s),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        Err(ExitCode::from(2))
    } else {
        Ok(out)
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Explore {
            architecture,
            seeds,
            shard,
            duration,
            json,
            out,
            jobs,
        } => {
            let spec = harness::explore::ExploreSpec {
                architecture,
                seeds,
                shard,
                duration,
                out_dir: out,
                jobs: jobs
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            };
            let total = spec
                .seeds
                .clone()
                .enumerate()
                .filter(|(i, _)| *i as u64 % shard.1 == shard.0 - 1)
                .count();
            let pb = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new(total as u64)
            } else {
                indicatif::ProgressBar::hidden()
            };
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "explore arch {prefix} [{bar:30}] {pos}/{len} seeds · {per_sec} · {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            pb.set_prefix(architecture.to_string());
            let summary = harness::explore::explore(&spec, &|done, failed| {
                pb.set_position(done as u64);
                pb.set_message(format!("{failed} failing"));
                if !pb.is_hidden() {
                    return;
                }
                // Not a terminal (CI): a line every 50 seeds.
                if done % 50 == 0 || done == total {
                    eprintln!(
                        "explore arch {architecture}: {done}/{total} seeds, {failed} failing"
                    );
                }
            })?;
            pb.finish_and_clear();
            println!(
                "explore arch {}: {} seeds, {} held, {} failed · {:.1} seeds/s · {:.0} s virtual in {:.1} s ({:.0}× real time)",
                summary.architecture,
                summary.seeds_run,
                summary.held,
                summary.failed.len(),
                summary.seeds_per_s,
                summary.virtual_s,
                summary.wall_s,
                summary.speedup
            );
            for f in &summary.failed {
                println!(
                    "  seed {} failed ({} of {} episodes kept): {}",
                    f.seed,
                    f.shrunk_to,
                    f.episodes,
                    f.violations.join("; ")
                );
                println!("    replay: {}", f.replay);
            }
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Plan { file, backend } => {
            let s = match load_all(std::slice::from_ref(&file)) {
                Ok(mut v) => v.remove(0),
                Err(code) => return Ok(code),
            };
            let backend = backend.or(s.backend).unwrap_or(BackendKind::Inprocess);
            // The same refusal as `run`: a plan is only approved where it would run.
            let refusal = s.refusal(&file.display().to_string(), backend);
            if !refusal.is_empty() {
                for line in refusal {
                    eprintln!("{line}");
                }
                return Ok(ExitCode::from(2));
            }
            print!("{}", harness::plan::render_plan(&s.topology(), &s, backend));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            files,
            backend,
            json,
            junit: junit_path,
            html,
            quiet,
            threads,
            baseline,
            max_regression,
            keep_logs,
            strict,
        } => {
            let scenarios = match load_all(&files) {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            if let Some(Err(why)) = html.as_deref().map(harness::html::check_writable) {
                eprintln!("harness: {why}");
                return Ok(ExitCode::from(2));
            }
            let baseline = match baseline
                .as_deref()
                .map(harness::report::load_baseline)
                .transpose()
            {
                Ok(b) => b.unwrap_or_default(),
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            // A scenario the backend cannot run: with several files (a glob) it is
            // skipped and reported, so `scenarios/*.toml` runs everything it can; with one
            // file, or --strict, the whole run is refused as invalid input.
            let refuse = strict || files.len() == 1;
            let mut refused = false;
            let mut skipped: Vec<Skipped> = Vec::new();
            let mut runnable: Vec<&Scenario> = Vec::new();
            for (file, s) in files.iter().zip(&scenarios) {
                let b = backend.or(s.backend).unwrap_or(BackendKind::Inprocess);
                let reasons = s.unsupported_by(b);
                if reasons.is_empty() {
                    runnable.push(s);
                } else if refuse {
                    for line in s.refusal(&file.display().to_string(), b) {
                        eprintln!("{line}");
                    }
                    refused = true;
                } else {
                    skipped.push(Skipped {
                        scenario: s.name.clone(),
                        file: file.display().to_string(),
                        backend: b.as_str().to_string(),
                        skipped: reasons
                            .into_iter()
                            .map(|(key, why)| format!("{key}: {why}"))
                            .collect(),
                        runnable_on: s
                            .runnable_on()
                            .into_iter()
                            .map(|b| b.as_str().to_string())
                            .collect(),
                    });
                }
            }
            if refused {
                if files.len() > 1 {
                    eprintln!(
                        "harness: --strict: nothing was run (without --strict these scenarios are skipped)"
                    );
                }
                return Ok(ExitCode::from(2));
            }
            if runnable.is_empty() {
                for sk in &skipped {
                    eprint!("{}", sk.render());
                }
                eprintln!("harness: no scenario given can run on the chosen backend");
                return Ok(ExitCode::from(2));
            }
            let scenarios = runnable;
            let needs_netns = scenarios
                .iter()
                .any(|s| backend.or(s.backend) == Some(BackendKind::Netns));
            if needs_netns && let Err(why) = harness::netns::namespaces::check_privileges() {
                eprintln!("harness: {why}");
                return Ok(ExitCode::from(2));
            }
            let quiet = quiet || !std::io::stderr().is_terminal();
            let rt = runtime(threads)?;
            let mut reports: Vec<Report> = Vec::new();
            for s in scenarios {
                let b = backend.or(s.backend).unwrap_or(BackendKind::Inprocess);
                if !quiet {
                    eprintln!(
                        "running {} (architecture {}, {} backend, {})",
                        s.name,
                        s.architecture,
                        b.as_str(),
                        humantime::format_duration(s.duration)
                    );
                }
                match rt.block_on(run_scenario(
                    s,
                    RunOptions {
                        backend: b,
                        quiet,
                        keep_logs,
                    },
                )) {
                    Ok(mut r) => {
                        if let Some(old) = baseline
                            .iter()
                            .find(|o| o.scenario == r.scenario && o.backend == r.backend)
                        {
                            harness::report::check_regression(&mut r, old, max_regression);
                        } else if !baseline.is_empty() {
                            eprintln!(
                                "harness: no baseline for {} ({} backend)",
                                r.scenario, r.backend
                            );
                        }
                        print!("{}", r.render_table());
                        reports.push(r);
                    }
                    Err(e) if e.is::<Interrupted>() => {
                        eprintln!("harness: interrupted; every component was stopped");
                        return Ok(ExitCode::from(130));
                    }
                    Err(e) if e.is::<harness::netns::NotPermitted>() => {
                        eprintln!("harness: {e}");
                        return Ok(ExitCode::from(2));
                    }
                    Err(e) => return Err(e),
                }
            }
            for sk in &skipped {
                print!("{}", sk.render());
            }
            let failed = reports.iter().filter(|r| !r.passed).count();
            if files.len() > 1 {
                println!(
                    "{} scenarios: {} passed, {failed} failed, {} skipped",
                    reports.len() + skipped.len(),
                    reports.len() - failed,
                    skipped.len()
                );
            }
            if let Some(path) = json {
                // One object for one scenario; otherwise an array with the skipped
                // scenarios as objects of their own (`"skipped": [reasons]`).
                let mut items: Vec<serde_json::Value> = reports
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?;
                for sk in &skipped {
                    items.push(serde_json::to_value(sk)?);
                }
                let text = if items.len() == 1 {
                    serde_json::to_string_pretty(&items[0])?
                } else {
                    serde_json::to_string_pretty(&items)?
                };
                std::fs::write(&path, text + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("JSON report written to {}", path.display());
            }
            if let Some(path) = junit_path {
                std::fs::write(&path, junit(&reports, &skipped))
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("JUnit report written to {}", path.display());
            }
            if let Some(path) = html {
                harness::html::write(&path, &harness::html::run_page(&reports)?)?;
                println!("HTML report written to {}", path.display());
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            backend,
            duration,
            architectures,
            rates,
            clients,
            sizes,
            modbus_duration,
            connector_threads,
            tls_rate,
            opcua_sessions,
            opcua_items,
            opcua_publishing,
            opcua_duration,
            opcua_only,
            json,
            html,
            baseline,
        } => {
            if opcua_only && opcua_sessions == 0 {
                eprintln!("harness: --opcua-only with --opcua-sessions 0 runs nothing");
                return Ok(ExitCode::from(2));
            }
            if opcua_sessions > 0 && (opcua_items.is_empty() || opcua_items.contains(&0)) {
                eprintln!(
                    "harness: --opcua-items: give item counts above 0 (or --opcua-sessions 0 to skip the step)"
                );
                return Ok(ExitCode::from(2));
            }
            if let Some(a) = architectures.iter().find(|a| !(1..=3).contains(*a)) {
                eprintln!("harness: --architectures: {a} is not an architecture (1, 2 or 3)");
                return Ok(ExitCode::from(2));
            }
            if let Some(t) = sizes
                .iter()
                .find(|t| u64::from(**t) > po_simulator::field::MAX_TAGS)
            {
                eprintln!(
                    "harness: --sizes: {t} tags is more than the simulator builds ({})",
                    po_simulator::field::MAX_TAGS
                );
                return Ok(ExitCode::from(2));
            }
            if !matches!(backend, BackendKind::Inprocess | BackendKind::Process) {
                eprintln!(
                    "harness: bench --backend {}: the sweep and the Modbus comparison run on the inprocess or process backend",
                    backend.as_str()
                );
                return Ok(ExitCode::from(2));
            }
            if let Some(Err(why)) = html.as_deref().map(harness::html::check_writable) {
                eprintln!("harness: {why}");
                return Ok(ExitCode::from(2));
            }
            let baseline = match baseline
                .as_deref()
                .map(harness::bench::BenchReport::load)
                .transpose()
            {
                Ok(b) => b,
                Err(why) => {
                    eprintln!("harness: --baseline {why}");
                    return Ok(ExitCode::from(2));
                }
            };
            if baseline.is_some() && html.is_none() {
                eprintln!(
                    "harness: bench --baseline is drawn in the --html report: give --html too"
                );
                return Ok(ExitCode::from(2));
            }
            let opts = harness::bench::BenchOptions {
                backend,
                duration,
                architectures,
                rates,
                clients,
                sizes,
                modbus_duration,
                connector_threads,
                tls_rate,
                opcua: (opcua_sessions > 0).then_some(harness::bench::OpcUaStep {
                    sessions: opcua_sessions,
                    items: opcua_items,
                    publishing: opcua_publishing,
                    duration: opcua_duration,
                }),
                opcua_only,
            };
            let report = runtime(2)?.block_on(harness::bench::run_bench(&opts, &|line| {
                eprintln!("  {line}")
            }))?;
            print!("{}", report.render());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("JSON report written to {}", path.display());
            }
            if let Some(path) = html {
                harness::html::write(
                    &path,
                    &harness::html::bench_page(&report, baseline.as_ref())?,
                )?;
                println!("HTML report written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Flood {
            target,
            connections,
            mode,
            duration,
            from,
            reconnect_delay,
            quiet,
        } => {
            if connections == 0 {
                eprintln!("harness: --connections must be at least 1");
                return Ok(ExitCode::from(2));
            }
            let (soft, _) =
                po_runtime::descriptors::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
            let room = soft.saturating_sub(po_runtime::descriptors::RESERVED);
            if connections as u64 > room {
                eprintln!(
                    "harness: --connections {connections} needs more descriptors than this process may open ({soft}); raise the limit (ulimit -n) or lower --connections"
                );
                return Ok(ExitCode::from(2));
            }
            let spec = harness::flood::FloodSpec {
                target,
                connections,
                mode,
                from,
                reconnect_delay,
                net: std::sync::Arc::new(po_runtime::TokioNet),
            };
            let stats = std::sync::Arc::new(harness::flood::FloodStats::default());
            let rt = runtime(2)?;
            let summary = rt.block_on(async {
                let progress = {
                    let stats = stats.clone();
                    async move {
                        let mut tick = tokio::time::interval(Duration::from_secs(1));
                        loop {
                            tick.tick().await;
                            if !quiet {
                                use std::sync::atomic::Ordering::Relaxed;
                                eprintln!(
                                    "flood {target}: {} open (max {}), {} connected, {} failed, {} closed by the listener",
                                    stats.open.load(Relaxed),
                                    stats.max_open.load(Relaxed),
                                    stats.connected.load(Relaxed),
                                    stats.connect_failed.load(Relaxed),
                                    stats.closed_by_peer.load(Relaxed)
                                );
                            }
                        }
                    }
                };
                let stop = async {
                    tokio::select! {
                        _ = tokio::time::sleep(duration) => {}
                        _ = tokio::signal::ctrl_c() => {}
                        _ = progress => {}
                    }
                };
                harness::flood::run_flood(spec.clone(), stats.clone(), stop).await;
                stats.summary(&target.to_string(), &spec)
            });
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            protocol: LoadProtocol::Opcua,
            target,
            sessions,
            items,
            publishing,
            sampling,
            security,
            pki_dir,
            json,
            quiet,
            duration,
            threads,
            probe_http,
            tls_cert,
            connections,
            address,
            quantity,
            unit,
            ..
        } => {
            let modbus_only = [
                ("--connections", connections.is_some()),
                ("--address", address.is_some()),
                ("--quantity", quantity.is_some()),
                ("--unit", unit.is_some()),
                ("--probe-http", probe_http.is_some()),
                ("--tls-cert", tls_cert.is_some()),
            ];
            if let Some((flag, _)) = modbus_only.iter().find(|(_, given)| *given) {
                eprintln!(
                    "harness: {flag} is a Modbus option; OPC UA takes --sessions, --items, --publishing, --sampling, --security and --pki-dir"
                );
                return Ok(ExitCode::from(2));
            }
            let target = match harness::opcua_load::parse_target(&target) {
                Ok(t) => t,
                Err(why) => {
                    eprintln!("harness: --target {why}");
                    return Ok(ExitCode::from(2));
                }
            };
            let security = match security
                .as_deref()
                .map(harness::opcua_load::parse_security)
                .transpose()
            {
                Ok(s) => s.unwrap_or(harness::opcua_load::Security::NONE),
                Err(why) => {
                    eprintln!("harness: --security {why}");
                    return Ok(ExitCode::from(2));
                }
            };
            let spec = harness::opcua_load::OpcUaLoadSpec {
                target,
                sessions: sessions.unwrap_or(1) as usize,
                items: items.unwrap_or(1000) as usize,
                publishing: publishing.unwrap_or(Duration::from_millis(100)),
                sampling: sampling.unwrap_or(Duration::ZERO),
                security,
                pki_dir,
                duration,
                only: None,
                progress: (!quiet).then_some(Duration::from_secs(5)),
            };
            let r = runtime(threads)?.block_on(harness::opcua_load::run_opcua_load(&spec))?;
            print_load_json(&r, json.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            protocol: LoadProtocol::Modbus,
            target,
            sessions,
            items,
            publishing,
            sampling,
            security,
            pki_dir,
            json,
            quiet: _,
            connections,
            address,
            quantity,
            unit,
            duration,
            threads,
            probe_http,
            tls_cert,
            tls_key,
            tls_ca,
        } => {
            let opcua_only = [
                ("--sessions", sessions.is_some()),
                ("--items", items.is_some()),
                ("--publishing", publishing.is_some()),
                ("--sampling", sampling.is_some()),
                ("--security", security.is_some()),
                ("--pki-dir", pki_dir.is_some()),
            ];
            if let Some((flag, _)) = opcua_only.iter().find(|(_, given)| *given) {
                eprintln!("harness: {flag} is an OPC UA option: give --protocol opcua");
                return Ok(ExitCode::from(2));
            }
            let target: SocketAddr = match target.parse() {
                Ok(t) => t,
                Err(_) => {
                    eprintln!(
                        "harness: --target `{target}` is not HOST:PORT (an IP address and port; OPC UA wants --protocol opcua)"
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            let tls = match (tls_cert, tls_key, tls_ca) {
                (Some(cert), Some(key), Some(ca)) => {
                    let files = po_runtime::tls::TlsFiles { cert, key, ca };
                    match po_runtime::tls::TlsClient::load(
                        &files,
                        po_runtime::tls::TlsVersions::Tls12And13,
                    ) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            eprintln!("harness: {e}");
                            return Ok(ExitCode::from(2));
                        }
                    }
                }
                _ => None,
            };
            let spec = LoadSpec {
                target,
                connections: connections.unwrap_or(8),
                address: address.unwrap_or(100),
                quantity: quantity.unwrap_or(125),
                duration,
                unit: unit.unwrap_or(1),
                tls,
            };
            let probe = match probe_http.as_deref().map(parse_probe).transpose() {
                Ok(p) => p,
                Err(why) => {
                    eprintln!("harness: --probe-http: {why}");
                    return Ok(ExitCode::from(2));
                }
            };
            let out = runtime(threads)?.block_on(async {
                match probe {
                    None => run_load(&spec).await.map(|r| serde_json::json!(r)),
                    Some((addr, path)) => {
                        let env = po_runtime::Env::tokio();
                        let (r, page) = harness::page_probe::probe_during(
                            &*env.net,
                            addr,
                            &path,
                            Duration::from_millis(100),
                            run_load(&spec),
                        )
                        .await;
                        Ok(serde_json::json!({ "modbus": r?, "page": page }))
                    }
                }
            })?;
            print_load_json(&out, json.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BareModbus { listen, threads } => {
            runtime(threads)?.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                eprintln!("bare tokio-modbus server on {listen}");
                tokio::select! {
                    r = serve_bare(listener) => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `harness load` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LoadProtocol {
    Modbus,
    Opcua,
}

/// `harness load`'s result on stdout, and into `--json PATH` when given.
fn print_load_json(out: &impl serde::Serialize, json: Option<&std::path::Path>) -> Result<()> {
    let text = serde_json::to_string_pretty(out)?;
    println!("{text}");
    if let Some(path) = json {
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `HOST:PORT/PATH` (an `http://` prefix is allowed) as an address and a path.
fn parse_probe(s: &str) -> Result<(std::net::SocketAddr, String), String> {
    let rest = s.strip_prefix("http://").unwrap_or(s);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .parse()
        .map_err(|_| format!("`{host}` is not an IP:port (e.g. 127.0.0.1:9100/)"))?;
    Ok((addr, path.to_string()))
}
