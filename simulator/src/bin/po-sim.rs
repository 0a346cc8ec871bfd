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
    /// Signals: SIGINT/SIGTERM stop gracefully (a drain: no new clients, connected ones
    /// are told ShuttingDown, exit 0 once they closed or `limits.drain_timeout` passed;
    /// a second one stops at once, exit 1), SIGKILL is a crash, SIGSTOP/SIGCONT pause and
    /// resume (a silent failure), SIGUSR1 cuts this server's sync link and SIGUSR2 heals
    /// it, SIGHUP reads the `[tls]` files again.
    ///
    /// Exit codes: 0 stopped gracefully, 1 a failure while running (a port in use, say),
    /// 2 bad usage or configuration.
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
        /// The server's TOML configuration to check (see docs/simulator.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the tag catalogue of a site.
    Tags {
        #[command(flatten)]
        site: SiteArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print the value of one tag at a tick (or at a time), as a server would serve it.
    Value {
        #[command(flatten)]
        site: SiteArgs,
        /// Tag id (`7`) or name (`Feeder01.Meter1.kW`), as `po-sim tags` lists them.
        #[arg(long)]
        tag: String,
        /// Tick number; defaults to the tick in force now (or at `--at`).
        #[arg(long, conflicts_with = "at")]
        tick: Option<u64>,
        /// A time instead of a tick: the tick in force then (RFC 3339, e.g.
        /// `2026-12-04T15:00:00Z`).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        at: Option<std::time::SystemTime>,
    },
}

#[derive(Debug, Args)]
struct SiteArgs {
    /// Take seed and site from this server configuration instead.
    #[arg(long, short, conflicts_with_all = ["seed", "devices", "tags_per_device", "scan_period"])]
    config: Option<PathBuf>,
    /// Seed of the field model.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Number of field devices (power meters).
    #[arg(long, default_value_t = 20)]
    devices: u32,
    /// Tags per device.
    #[arg(long, default_value_t = 16)]
    tags_per_device: u32,
    /// Scan period: one update batch per period.
    #[arg(long, default_value = "100ms", value_parser = po_runtime::cli::parse_duration)]
    scan_period: Duration,
}

impl SiteArgs {
    fn model(&self) -> Result<FieldModel> {
        if let Some(path) = &self.config {
            let config = ServerConfig::load(path).map_err(bad_input)?;
            return config.field_model().map_err(bad_input);
        }
        FieldModel::new(
            self.seed,
            SiteSpec {
                devices: self.devices,
                tags_per_device: self.tags_per_device,
                scan_period: self.scan_period,
            },
        )
        .map_err(bad_input)
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
    #[arg(long, default_value = "100ms", value_parser = po_runtime::cli::parse_duration)]
    scan_period: Duration,
    /// Host address of server a (client access on port 23500, sync link on 23501).
    #[arg(long, default_value = "127.0.1.1")]
    a: IpAddr,
    /// Host address of server b.
    #[arg(long, default_value = "127.0.2.1")]
    b: IpAddr,
    /// Heartbeat period towards clients and the peer.
    #[arg(long, default_value = "100ms", value_parser = po_runtime::cli::parse_duration)]
    heartbeat: Duration,
    /// Silence after which the Standby promotes itself.
    #[arg(long, default_value = "500ms", value_parser = po_runtime::cli::parse_duration)]
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
            eprintln!("po-sim: error: {}", report(&e));
            // As `smart-connector`: 2 for what the user must fix in the command line or
            // the configuration, 1 for everything that went wrong while running.
            let usage = e.chain().any(|c| c.is::<BadInput>());
            std::process::ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// A bad command line or configuration (exit code 2, as clap's usage errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn bad_input(e: impl std::fmt::Display) -> anyhow::Error {
    BadInput(e.to_string()).into()
}

/// An error and its causes on one line, each said once: many errors (ours and our
/// dependencies') put their source in their own message as well as in `source()`, and
/// `{:#}` would print it twice.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The catalogue entry named by `--tag`: an id, or a name (with close names suggested
/// when there is no such tag).
fn find_tag(model: &FieldModel, tag: &str) -> Result<TagId> {
    if let Ok(id) = tag.parse::<u32>() {
        if (id as usize) < model.tag_count() {
            return Ok(TagId(id));
        }
        return Err(bad_input(format!(
            "--tag {id}: no tag with this id; ids run from 0 to {} (`po-sim tags` lists them)",
            model.tag_count().saturating_sub(1)
        )));
    }
    if let Some(t) = model.catalog().iter().find(|t| t.name == tag) {
        return Ok(t.id);
    }
    let mut near: Vec<(usize, &str)> = model
        .catalog()
        .iter()
        .map(|t| (strsim::levenshtein(tag, &t.name), t.name.as_str()))
        .filter(|(d, _)| *d <= 3)
        .collect();
    near.sort();
    let hint = match &near[..] {
        [] => " (`po-sim tags` lists them)".to_string(),
        some => format!(
            "; did you mean {}?",
            some.iter()
                .take(3)
                .map(|(_, n)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(bad_input(format!(
        "--tag {tag}: no tag of this name among the {} tags{hint}",
        model.tag_count()
    )))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tags { site, format } => print_tags(&site.model()?, format),
        Command::Value {
            site,
            tag,
            tick,
            at,
        } => {
            let model = site.model()?;
            let id = find_tag(&model, &tag)?;
            let tick = match (tick, at) {
                (Some(t), _) => t,
                (None, Some(at)) => {
                    let since = at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_err(|_| bad_input("--at: a time before 1970 has no tick"))?;
                    model.tick_at(Timestamp(since.as_micros() as u64))
                }
                (None, None) => model.tick_at(Timestamp::now()),
            };
            let value = model
                .value(id, tick)
                .with_context(|| format!("tag {} has no value", id.0))?;
            let info = &model.catalog()[id.0 as usize];
            println!(
                "{} tick {tick} ({} µs): {value} {}",
                info.name,
                model.tick_time(tick).0,
                info.unit
            );
            Ok(())
        }
        Command::Check { config } => {
            let c = ServerConfig::load(&config).map_err(bad_input)?;
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
                po_simulator::server::check_tls_files(&t.files()).map_err(bad_input)?;
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
                .map_err(|why| bad_input(format!("{}: {why}", config.display())))?;
            if let Some(file) = c.state_file() {
                // Read as start-up would: a bad state file fails the check.
                let epoch = file.read().map_err(bad_input)?;
                println!(
                    "  state in {}: highest known epoch {epoch}",
                    file.path().display()
                );
            }
            Ok(())
        }
        Command::Serve { config: path } => {
            let config = ServerConfig::load(&path).map_err(bad_input)?;
            // Every descriptor the hard limit allows, and a configuration that fits.
            let (soft, _) = po_runtime::descriptors::raise_nofile_limit()?;
            config
                .descriptor_budget()
                .fits(soft)
                .map_err(|why| bad_input(format!("{}: {why}", path.display())))?;
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
    use po_simulator::ServerError;
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a signal that comes once the server is up (its `server started`
    // line) must find them, not the default action that kills the process.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    // SIGHUP: read the certificate files again (rotation without a restart).
    let mut hup = signal(SignalKind::hangup())?;
    let server = ServerHandle::start(config).await.map_err(|e| match e {
        // What the configuration names is wrong (bad state or certificate files): the
        // user's to fix, as a bad configuration file is. A port in use is a runtime
        // failure, as it is for `smart-connector`.
        ServerError::Config(_) | ServerError::Tls(_) | ServerError::State(_) => bad_input(e),
        other => other.into(),
    })?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => server.tls_ends().handle_reload_signal(server.name()),
            _ = usr1.recv() => server.cut_sync(),
            _ = usr2.recv() => server.heal_sync(),
        }
    }
    // A drain waits for clients (up to `limits.drain_timeout`); whoever sends a second
    // signal does not want to wait.
    tokio::select! {
        _ = server.shutdown() => Ok(()),
        _ = term.recv() => bail!("second signal: stopped at once, without waiting for the clients to close"),
        _ = int.recv() => bail!("second signal: stopped at once, without waiting for the clients to close"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every subcommand says what it is for (`--help` shows no bare
    /// flags).
    #[test]
    fn every_argument_has_help() {
        fn visit(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                visit(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let mut cmd = Cli::command();
        cmd.build();
        visit(&cmd, "po-sim", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(po_simulator::config::ConfigError::Read {
            path: "po.toml".into(),
            source: io,
        });
        assert_eq!(report(&e), "po.toml: cannot read: entity not found");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(report(&e), "outer: inner");
    }
}
