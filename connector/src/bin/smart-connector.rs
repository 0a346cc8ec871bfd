//! `smart-connector`: run, check and document a Smart Connector configuration.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use po_runtime::cli::LogFormat;
use smart_connector::config::{ConnectorConfig, MapMode};
use smart_connector::map::RegisterMap;
use smart_connector::points;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Streams a redundant Power Operation server pair to third parties over Modbus TCP.
#[derive(Debug, Parser)]
#[command(
    name = "smart-connector",
    version = po_runtime::cli::VERSION,
    propagate_version = true
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `smart_connector=debug`.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "SMART_CONNECTOR_LOG"
    )]
    log: String,
    /// Log line format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "SMART_CONNECTOR_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the connector until SIGINT or SIGTERM.
    Run {
        /// The connector's TOML configuration (see docs/connector.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Runtime worker threads (Modbus serving, ingest, metrics). Default: chosen from
        /// the host (1, everything on one thread, on hosts with 2 cores or fewer, where the
        /// connector shares the cores with its neighbours; else half the cores, at most 4).
        /// With `[opcua]` on, the OPC UA stack has one more thread of its own.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Validate a configuration and print a summary; exit 2 if it has problems.
    Check {
        /// The connector's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the points list (tag, register, type, word order, unit) a SCADA engineer
    /// enters in the third-party system. Needs the catalogue: asks the configured servers
    /// (`--config`), or reads it from a running connector's status API (`--from`).
    #[command(group(clap::ArgGroup::new("catalogue").required(true).args(["config", "from"])))]
    Points {
        /// The connector's TOML configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A running connector's metrics address, e.g. `http://127.0.0.1:9100`: reads
        /// `/api/points` page by page (needs no licence, works while the connector runs).
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// `csv` for spreadsheets and SCADA import tools, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// How long to try the servers for the catalogue (with `--from`: each request).
        #[arg(long, default_value = "10s", value_parser = po_runtime::cli::parse_duration)]
        timeout: Duration,
    },
    /// Print the Argon2 hash of a password for `[[opcua.user]] password_hash`: reads the
    /// password from standard input (one line), so it never appears in the shell history.
    OpcuaPassword,
    /// Make lab certificates for TLS and Modbus/TCP Security (docs/security.md), and the
    /// OPC UA application instance certificate (docs/opcua.md).
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Write a lab CA and a server certificate: DIR/ca.crt, ca.key, server.crt, server.key
    /// (keys mode 0600). For labs and tests; a production site uses its own PKI.
    Init {
        /// Where to write them (created when missing).
        #[arg(long)]
        dir: PathBuf,
        /// A DNS name of the server certificate (repeatable; `localhost` is always added).
        #[arg(long = "dns", value_name = "NAME")]
        names: Vec<String>,
        /// An IP address of the server certificate (repeatable), e.g. 127.0.3.1.
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<std::net::IpAddr>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Write a client certificate DIR/NAME.crt and DIR/NAME.key signed by DIR's CA.
    Client {
        /// The directory `certs init` wrote.
        #[arg(long)]
        dir: PathBuf,
        /// The client's name: its certificate's common name (the identity a server binds a
        /// Client Access licence to) and the files' name.
        #[arg(long)]
        name: String,
        /// Modbus/TCP Security role (X.509v3 extension 1.3.6.1.4.1.50316.802.1), e.g.
        /// `operator` or `viewer`.
        #[arg(long)]
        role: Option<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Write one more server certificate DIR/NAME.crt and DIR/NAME.key signed by DIR's CA
    /// (server authentication only), e.g. for a connector's Modbus/TCP Security port.
    Server {
        /// The directory `certs init` wrote.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate's common name and the files' name (also a DNS name of it).
        #[arg(long)]
        name: String,
        /// A further DNS name (repeatable).
        #[arg(long = "dns", value_name = "NAME")]
        names: Vec<String>,
        /// An IP address the listener is reached at (repeatable), e.g. 127.0.3.1.
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<std::net::IpAddr>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Write the OPC UA application instance certificate and trust list into DIR (the
    /// `[opcua] pki_dir`): own/cert.der, private/private.pem (mode 0600), trusted/,
    /// rejected/. RSA 2048; the application URI is the certificate's SAN URI.
    Opcua {
        #[arg(long)]
        dir: PathBuf,
        /// The connector's application URI (`[opcua] application_uri`, default
        /// `urn:smart-connector:<name>`).
        #[arg(long)]
        uri: String,
        /// A DNS name clients reach the server by (repeatable; `localhost` is added).
        #[arg(long = "dns", value_name = "NAME")]
        names: Vec<String>,
        /// An IP address clients reach the server at (repeatable).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<std::net::IpAddr>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Write an OPC UA client certificate and key (DIR/clients/NAME.der, NAME.pem) for a
    /// client that cannot make its own, and trust it (DIR/trusted/"NAME [thumbprint].der", the name under which the server files an unknown certificate in DIR/rejected/: moving one from rejected/ to trusted/ trusts it).
    OpcuaClient {
        /// The server's `pki_dir` (`certs opcua --dir`).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// The client's application URI (it must send the same one).
        #[arg(long)]
        uri: String,
        /// A `[[modbus.role]]`: the certificate then also identifies a user (an X509 user
        /// token, with `[opcua] x509_users = true`) with that role's rights (the
        /// Modbus/TCP Security role extension).
        #[arg(long)]
        role: Option<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    po_runtime::cli::init_logging(cli.log_format, &cli.log, "info");
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smart-connector: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The runtime threads for this host, and the cores seen: one thread on 2 cores or fewer
/// (measured: one thread serves Modbus at ≥ 1.0× a bare tokio-modbus server there, two
/// at 0.82×, docs/performance.md "Runtime threads"), else half the cores, at most 4.
fn auto_threads() -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if cores <= 2 { 1 } else { (cores / 2).min(4) };
    (threads, cores)
}

fn load(path: &std::path::Path) -> Result<ConnectorConfig, ExitCode> {
    ConnectorConfig::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// Loads every certificate and key the configuration names, as start-up would.
fn check_tls_files(c: &ConnectorConfig) -> Result<(), po_runtime::tls::TlsSetupError> {
    use po_runtime::tls::{TlsClient, TlsServer, TlsVersions};
    if let Some(t) = &c.tls {
        TlsClient::load(t, TlsVersions::Tls13)?;
    }
    if let Some(t) = &c.modbus.tls {
        TlsServer::load(&t.files(), TlsVersions::Tls12And13)?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { config } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            // Certificates are read as the connector would read them at start-up.
            if let Err(e) = check_tls_files(&c) {
                eprintln!("{}: {e}", config.display());
                return Ok(ExitCode::from(2));
            }
            println!("{}: ok", config.display());
            println!("  connector {}", c.name);
            for (i, s) in c.sources.iter().enumerate() {
                println!(
                    "  source {}: {} at {} ({})",
                    i + 1,
                    s.name,
                    s.address,
                    match &s.licence {
                        Some(l) => format!("client access, licence {l}"),
                        None => "local".into(),
                    }
                );
            }
            if let Some(t) = &c.tls {
                println!(
                    "  client access: TLS 1.3, certificate {}, servers verified against {}",
                    t.cert.display(),
                    t.ca.display()
                );
            }
            let m = &c.modbus;
            println!(
                "  modbus: {} unit ids {}, {} max connections, idle {}, {}, word order {:?}, data from {}",
                if m.plain {
                    m.listen.to_string()
                } else {
                    "plain Modbus off,".to_string()
                },
                if m.unit_ids.is_empty() {
                    // What `/api/status` will list: 1, and more banks for a large site.
                    "automatic (1, then 2, 3, … as the site needs)".to_string()
                } else {
                    format!("{:?}", m.unit_ids)
                },
                m.max_connections,
                humantime::format_duration(m.idle_timeout),
                if m.read_only {
                    "read-only"
                } else {
                    "read-write"
                },
                m.word_order,
                m.data_base
            );
            if let Some(t) = &m.tls {
                let roles: Vec<String> = m
                    .roles
                    .iter()
                    .map(|r| {
                        let rights = match (r.read, r.write) {
                            (true, true) => "read, write",
                            (true, false) => "read",
                            (false, true) => "write",
                            (false, false) => "nothing",
                        };
                        let scope = if r.tags.is_empty() && r.registers.is_empty() {
                            String::new()
                        } else {
                            format!(" of tags {:?} registers {:?}", r.tags, r.registers)
                        };
                        format!("{} ({rights}{scope})", r.name)
                    })
                    .collect();
                println!(
                    "  modbus/tcp security: {}, TLS 1.2/1.3, handshake timeout {}, roles: {}; no role: {}",
                    t.listen_on(m.listen),
                    humantime::format_duration(t.handshake_timeout),
                    if roles.is_empty() {
                        "none".to_string()
                    } else {
                        roles.join(", ")
                    },
                    t.default_role
                        .as_deref()
                        .map_or("nothing allowed".to_string(), |d| format!("role {d}"))
                );
            }
            println!(
                "  map: {}",
                match c.map.mode {
                    MapMode::Auto => "automatic (every tag in catalogue order)".to_string(),
                    MapMode::Explicit => format!("explicit, {} points", c.map.points.len()),
                    MapMode::Device => "per device (one unit id per device)".to_string(),
                }
            );
            if let Some(h) = &c.metrics {
                println!(
                    "  metrics: http://{}/metrics, {} max connections, read timeout {}",
                    h.listen,
                    h.max_connections,
                    humantime::format_duration(h.read_timeout)
                );
            }
            if let Some(o) = &c.opcua {
                println!(
                    "  opcua: opc.tcp://{}/ as {}, endpoints {}, users {}{}, redundancy {:?} with {} peer(s), {} max sessions",
                    o.listen,
                    o.application_uri(&c.name),
                    o.security.join(", "),
                    o.users.len(),
                    if o.anonymous { " + anonymous" } else { "" },
                    o.redundancy.support,
                    o.redundancy.peers.len(),
                    o.max_sessions
                );
            }
            let budget = c.descriptor_budget();
            let (_, hard) =
                po_runtime::descriptors::raise_nofile_limit().context("reading RLIMIT_NOFILE")?;
            println!(
                "  file descriptors: at most {} ({budget}) of {hard} allowed",
                budget.total()
            );
            if let Err(why) = budget.fits(hard) {
                eprintln!("{}: {why}", config.display());
                return Ok(ExitCode::from(2));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Points {
            config,
            from,
            format,
            timeout,
        } => {
            let rows = match (config, from) {
                (_, Some(url)) => smart_connector::points_client::fetch_rows(&url, timeout)?,
                (Some(config), None) => {
                    let c = match load(&config) {
                        Ok(c) => c,
                        Err(code) => return Ok(code),
                    };
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let catalog = rt
                        .block_on(smart_connector::catalog::fetch(&c, timeout))
                        .context("fetching the catalogue")?;
                    let map = RegisterMap::build(&catalog, &c.modbus, &c.map)?;
                    points::rows(&map)
                }
                (None, None) => unreachable!("clap requires --config or --from"),
            };
            let text = match format {
                Format::Csv => points::to_csv(&rows),
                Format::Json => serde_json::to_string_pretty(&rows)? + "\n",
            };
            write_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::OpcuaPassword => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                eprintln!(
                    "smart-connector: opcua-password: the password on standard input is empty"
                );
                return Ok(ExitCode::from(2));
            }
            let hash = smart_connector::opcua::auth::hash_password(password)
                .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs {
            command:
                CertsCommand::Opcua {
                    dir,
                    uri,
                    names,
                    ips,
                    force,
                },
        } => opcua_written(smart_connector::certs_opcua::server(
            &dir, &uri, &names, &ips, force,
        )),
        Command::Certs {
            command:
                CertsCommand::OpcuaClient {
                    dir,
                    name,
                    uri,
                    role,
                    force,
                },
        } => opcua_written(smart_connector::certs_opcua::client(
            &dir,
            &name,
            &uri,
            role.as_deref(),
            force,
        )),
        Command::Certs { command } => {
            let written = match command {
                CertsCommand::Init {
                    dir,
                    names,
                    ips,
                    force,
                } => smart_connector::certs::init(&smart_connector::certs::InitOptions {
                    dir,
                    names,
                    ips,
                    force,
                }),
                CertsCommand::Client {
                    dir,
                    name,
                    role,
                    force,
                } => smart_connector::certs::client(&dir, &name, role.as_deref(), force),
                CertsCommand::Server {
                    dir,
                    name,
                    names,
                    ips,
                    force,
                } => smart_connector::certs::server(&dir, &name, &names, &ips, force),
                CertsCommand::Opcua { .. } | CertsCommand::OpcuaClient { .. } => {
                    unreachable!("handled above")
                }
            };
            match written {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("smart-connector: certs: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Run { config, threads } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            // Every descriptor the hard limit allows, and a configuration that fits in
            // them: a flood on one listener then never starves the others.
            let (soft, _) =
                po_runtime::descriptors::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
            if let Err(why) = c.descriptor_budget().fits(soft) {
                eprintln!("{}: {why}", config.display());
                return Ok(ExitCode::from(2));
            }
            let threads = match threads {
                Some(n) => n.max(1),
                None => {
                    let (n, cores) = auto_threads();
                    tracing::info!(
                        threads = n,
                        cores,
                        "runtime threads chosen from the host (--threads pins them)"
                    );
                    n
                }
            };
            // One thread: a current-thread runtime, which spares the cross-thread wake-ups
            // of a one-worker multi-thread runtime (measured in docs/performance.md).
            let rt = if threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()?
            };
            rt.block_on(serve(c))
        }
    }
}

/// Runs a configured connector until SIGTERM or SIGINT, then drains it
/// (docs/service.md): exit 0 once drained; a second signal exits at once with 1.
async fn serve(c: ConnectorConfig) -> Result<ExitCode> {
    use smart_connector::service_manager::{self as sm, Notices};
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let starting = smart_connector::connector::listen(c, po_runtime::Env::tokio()).await?;
    let control = starting.control().clone();
    let status = starting.status_state();
    // The service manager hears from a task of its own, from the first moment on.
    let manager = sm::tick_plan(
        std::env::var_os("NOTIFY_SOCKET").is_some(),
        sm::watchdog_usec(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        ),
    )
    .map(|(every, watchdog)| {
        let (control, status) = (control.clone(), status.clone());
        tokio::spawn(async move {
            let mut notices = Notices::default();
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if control.is_draining() {
                    return;
                }
                let doc = smart_connector::http::status_doc(&status);
                let alive = status.liveness.stuck().is_none();
                notify(&notices.handle_tick(&doc, alive, watchdog));
            }
        })
    });
    let serving = starting.serve(None);
    tokio::pin!(serving);
    let mut handle = None;
    loop {
        tokio::select! {
            h = &mut serving, if handle.is_none() => handle = Some(h?),
            _ = hup.recv() => match &handle {
                Some(h) => h.tls.handle_reload_signal(&h.name),
                None => tracing::info!("SIGHUP before the catalogue: certificates are read when it arrives"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: draining (a second SIGTERM or SIGINT stops at once)");
    notify(&Notices::default().handle_stop());
    if let Some(m) = manager {
        m.abort();
    }
    let drain = control.drain();
    tokio::select! {
        left = drain => {
            if left > 0 {
                tracing::warn!(requests = left, "drain ended with requests still unanswered");
            }
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        _ = term.recv() => {
            tracing::warn!("second signal: stopping at once");
            Ok(ExitCode::from(1))
        }
        _ = int.recv() => {
            tracing::warn!("second signal: stopping at once");
            Ok(ExitCode::from(1))
        }
    }
}

/// Sends notices to the service manager (`NOTIFY_SOCKET`); a manager that went away is
/// logged, not fatal.
fn notify(notices: &[smart_connector::service_manager::Notice]) {
    use sd_notify::NotifyState;
    use smart_connector::service_manager::Notice;
    if notices.is_empty() {
        return;
    }
    let states: Vec<NotifyState<'_>> = notices
        .iter()
        .map(|n| match n {
            Notice::Ready => NotifyState::Ready,
            Notice::Watchdog => NotifyState::Watchdog,
            Notice::Stopping => NotifyState::Stopping,
            Notice::Status(s) => NotifyState::Status(s),
        })
        .collect();
    if let Err(e) = sd_notify::notify(false, &states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Writes to standard output; a reader that went away (`points | head`) ends the output
/// quietly instead of panicking as `print!` does.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// What `certs opcua` and `certs opcua-client` print: each file written, or the error
/// (exit 2).
fn opcua_written(
    written: Result<Vec<PathBuf>, smart_connector::certs_opcua::OpcUaCertsError>,
) -> anyhow::Result<ExitCode> {
    match written {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("smart-connector: certs: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
