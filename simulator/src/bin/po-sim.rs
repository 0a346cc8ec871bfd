//! `po-sim`: run simulated Power Operation servers and inspect their field model.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use po_protocol::{TagId, Timestamp};
use po_runtime::cli::LogFormat;
use po_simulator::config::{DEFAULT_CLIENT_PORT, DEFAULT_SYNC_PORT};
use po_simulator::pair::{PairHandle, PairSpec};
use po_simulator::{FieldModel, ServerConfig, ServerHandle, SiteSpec};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// Simulated redundant Power Operation servers for the Smart Connector.
///
/// Every value a simulated server publishes is a pure function of the seed, the tag and
/// the tick, so any value can be recomputed (see `po-sim value`).
#[derive(Debug, Parser)]
#[command(name = "po-sim", version = po_runtime::cli::VERSION, propagate_version = true)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `po_simulator=debug`.
    #[arg(long, global = true, default_value = "info", env = "PO_SIM_LOG")]
    log: String,
    /// Log line format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "PO_SIM_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one server from a configuration file.
    ///
    /// Signals: SIGINT/SIGTERM stop gracefully (clients are told), SIGKILL is a crash,
    /// SIGSTOP/SIGCONT pause and resume (a silent failure), SIGUSR1 cuts this server's
    /// sync link and SIGUSR2 heals it.
    Serve {
        /// The server's TOML configuration (see docs/simulator.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a redundant pair in one process, with fault commands on standard input.
    ///
    /// Commands: `crash a|b`, `restart a|b`, `pause a|b`, `resume a|b`, `cut`, `heal`,
    /// `status`, `help`, `quit`.
    Pair(PairArgs),
    /// Check a configuration file and print what it would run.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the tag catalogue of a site.
    Tags {
        #[command(flatten)]
        site: SiteArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print the value of one tag at a tick (or at a time), as a server would serve it.
    Value {
        #[command(flatten)]
        site: SiteArgs,
        /// Tag id.
        #[arg(long)]
        tag: u32,
        /// Tick number; defaults to the tick in force now.
        #[arg(long)]
        tick: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct SiteArgs {
    /// Take seed and site from this server configuration instead.
    #[arg(long, short, conflicts_with_all = ["seed", "devices", "tags_per_device", "scan_period"])]
    config: Option<PathBuf>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 20)]
    devices: u32,
    #[arg(long, default_value_t = 16)]
    tags_per_device: u32,
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    scan_period: Duration,
}

impl SiteArgs {
    fn model(&self) -> Result<FieldModel> {
        if let Some(path) = &self.config {
            let config = ServerConfig::load(path)?;
            return Ok(config.field_model()?);
        }
        Ok(FieldModel::new(
            self.seed,
            SiteSpec {
                devices: self.devices,
                tags_per_device: self.tags_per_device,
                scan_period: self.scan_period,
            },
        )?)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
struct PairArgs {
    /// Seed of the field model (both servers share it).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Number of field devices (power meters).
    #[arg(long, default_value_t = 20)]
    devices: u32,
    /// Tags per device.
    #[arg(long, default_value_t = 16)]
    tags_per_device: u32,
    /// Scan period: one update batch per period.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    scan_period: Duration,
    /// Host address of server a (client access on port 23500, sync link on 23501).
    #[arg(long, default_value = "127.0.1.1")]
    a: IpAddr,
    /// Host address of server b.
    #[arg(long, default_value = "127.0.2.1")]
    b: IpAddr,
    /// Heartbeat period towards clients and the peer.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Silence after which the Standby promotes itself.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    failover_timeout: Duration,
    /// Let a returning preferred Primary (a) take the role back.
    #[arg(long)]
    failback: bool,
    /// Installed Client Access licence (repeat for more).
    #[arg(long = "licence", default_values_t = ["CA-1".to_string(), "CA-2".to_string()])]
    licences: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    po_runtime::cli::init_logging(cli.log_format, &cli.log, "info");
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("po-sim: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tags { site, format } => print_tags(&site.model()?, format),
        Command::Value { site, tag, tick } => {
            let model = site.model()?;
            let tick = tick.unwrap_or_else(|| model.tick_at(Timestamp::now()));
            let value = model.value(TagId(tag), tick).with_context(|| {
                format!("tag {tag} does not exist ({} tags)", model.tag_count())
            })?;
            let info = &model.catalog()[tag as usize];
            println!(
                "{} tick {tick} ({} µs): {value} {}",
                info.name,
                model.tick_time(tick).0,
                info.unit
            );
            Ok(())
        }
        Command::Check { config } => {
            let c = ServerConfig::load(&config)?;
            println!(
                "{}: server {} on {}, {} tags ({} devices x {}), scan {}, {} licence(s), {}",
                config.display(),
                c.name,
                c.listen,
                u64::from(c.site.devices) * u64::from(c.site.tags_per_device),
                c.site.devices,
                c.site.tags_per_device,
                humantime::format_duration(c.site.scan_period),
                c.licences.len(),
                match &c.redundancy {
                    Some(r) => format!("redundant (index {}, peer {})", r.index, r.peer),
                    None => "standalone".to_string(),
                }
            );
            if let Some(t) = &c.tls {
                // Read as start-up would: a missing or mismatched file fails the check.
                po_simulator::server::check_tls_files(&t.files())?;
                println!(
                    "  TLS 1.3 on client access and sync link: certificate {}, peers verified against {}, licences bound to {}",
                    t.cert.display(),
                    t.ca.display(),
                    t.licence_holders
                        .iter()
                        .map(|(l, h)| format!("{l} → CN={h}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            } else if !c.listen.ip().is_loopback() {
                println!(
                    "  plaintext client access on a non-loopback address (configure [tls]; docs/security.md)"
                );
            }
            let budget = c.descriptor_budget();
            let (_, hard) = po_runtime::descriptors::raise_nofile_limit()?;
            println!(
                "  file descriptors: at most {} ({budget}) of {hard} allowed",
                budget.total()
            );
            budget
                .fits(hard)
                .map_err(|why| anyhow::anyhow!("{}: {why}", config.display()))?;
            Ok(())
        }
        Command::Serve { config: path } => {
            let config = ServerConfig::load(&path)?;
            // Every descriptor the hard limit allows, and a configuration that fits.
            let (soft, _) = po_runtime::descriptors::raise_nofile_limit()?;
            config
                .descriptor_budget()
                .fits(soft)
                .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
            runtime()?.block_on(serve(config))
        }
        Command::Pair(args) => runtime()?.block_on(pair(args)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn serve(config: ServerConfig) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let server = ServerHandle::start(config).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    // SIGHUP: read the certificate files again (rotation without a restart).
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => server.tls_ends().handle_reload_signal(server.name()),
            _ = usr1.recv() => server.cut_sync(),
            _ = usr2.recv() => server.heal_sync(),
        }
    }
    server.shutdown().await;
    Ok(())
}

async fn pair(args: PairArgs) -> Result<()> {
    let spec = PairSpec {
        names: ["po-a".into(), "po-b".into()],
        seed: args.seed,
        site: SiteSpec {
            devices: args.devices,
            tags_per_device: args.tags_per_device,
            scan_period: args.scan_period,
        },
        heartbeat: args.heartbeat,
        failover_timeout: args.failover_timeout,
        failback: args.failback,
        licences: args.licences,
        listen: [
            SocketAddr::new(args.a, DEFAULT_CLIENT_PORT),
            SocketAddr::new(args.b, DEFAULT_CLIENT_PORT),
        ],
        sync_listen: [
            SocketAddr::new(args.a, DEFAULT_SYNC_PORT),
            SocketAddr::new(args.b, DEFAULT_SYNC_PORT),
        ],
        client_queue: 256,
    };
    for c in spec.server_configs() {
        c.validate().map_err(anyhow::Error::msg)?;
    }
    let pair = PairHandle::start(&spec).await?;
    eprintln!(
        "po-a on {}, po-b on {}; type `help` for fault commands",
        pair.a.client_addr(),
        pair.b.client_addr()
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let target = |w: Option<&&str>| -> Result<&ServerHandle> {
            match w.copied() {
                Some("a") => Ok(&pair.a),
                Some("b") => Ok(&pair.b),
                other => bail!("name a server: a or b (got {other:?})"),
            }
        };
        let outcome: Result<()> = match words.first().copied() {
            None => Ok(()),
            Some("crash") => target(words.get(1)).map(|s| s.crash()),
            Some("restart") => match target(words.get(1)) {
                Ok(s) => s.restart().await.map_err(Into::into),
                Err(e) => Err(e),
            },
            Some("pause") => target(words.get(1)).map(|s| s.pause()),
            Some("resume") => target(words.get(1)).map(|s| s.resume()),
            Some("cut") => {
                pair.cut_sync();
                Ok(())
            }
            Some("heal") => {
                pair.heal_sync();
                Ok(())
            }
            Some("status") => {
                for s in pair.servers() {
                    match s.status() {
                        Some(st) => println!(
                            "{}: {} epoch {}{} ({} clients)",
                            s.name(),
                            st.role,
                            st.epoch,
                            if s.is_paused() { ", paused" } else { "" },
                            s.session_count()
                        ),
                        None => println!("{}: crashed", s.name()),
                    }
                }
                Ok(())
            }
            Some("quit" | "exit") => break,
            Some("help") => {
                println!("crash a|b, restart a|b, pause a|b, resume a|b, cut, heal, status, quit");
                Ok(())
            }
            Some(other) => Err(anyhow::anyhow!("unknown command `{other}`; type `help`")),
        };
        if let Err(e) = outcome {
            eprintln!("po-sim: {e:#}");
        }
    }
    pair.shutdown().await;
    Ok(())
}

fn print_tags(model: &FieldModel, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&catalog_json(model))?),
        Format::Csv => {
            println!("id,name,unit,kind,writable,probe");
            for t in model.catalog() {
                println!(
                    "{},{},{},{},{},{}",
                    t.id.0,
                    t.name,
                    t.unit,
                    t.kind.as_str(),
                    t.writable,
                    model.is_probe(t.id)
                );
            }
        }
        Format::Table => {
            println!(
                "{:>7}  {:<36} {:<6} {:<8} access",
                "id", "name", "unit", "kind"
            );
            for t in model.catalog() {
                let access = match (t.writable, model.is_probe(t.id)) {
                    (true, _) => "read/write",
                    (false, true) => "read (probe)",
                    (false, false) => "read",
                };
                println!(
                    "{:>7}  {:<36} {:<6} {:<8} {access}",
                    t.id.0,
                    t.name,
                    t.unit,
                    t.kind.as_str()
                );
            }
        }
    }
    Ok(())
}

fn catalog_json(model: &FieldModel) -> serde_json::Value {
    serde_json::Value::Array(
        model
            .catalog()
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id.0, "name": t.name, "unit": t.unit, "kind": t.kind.as_str(),
                    "writable": t.writable, "probe": model.is_probe(t.id),
                })
            })
            .collect(),
    )
}
