//! `harness load`: load a Modbus TCP or OPC UA server and print what it sustained.

use super::runtime;
use anyhow::{Context as _, Result};
use harness::load::{LoadSpec, run_load};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// What to speak.
    #[arg(long, value_enum, default_value_t = LoadProtocol::Modbus)]
    pub protocol: LoadProtocol,
    /// The server to load: HOST:PORT (Modbus TCP) or opc.tcp://HOST:PORT (OPC UA).
    #[arg(long)]
    pub target: String,
    /// OPC UA: sessions to open [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub sessions: Option<u64>,
    /// OPC UA: monitored items per session (one subscription each); sessions take
    /// different variables while the server has enough [default: 1000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub items: Option<u64>,
    /// OPC UA: publishing interval of each subscription [default: 100ms].
    #[arg(long, value_parser = po_runtime::cli::parse_duration)]
    pub publishing: Option<Duration>,
    /// OPC UA: sampling interval asked for each item; 0: every change the server sees
    /// [default: 0ms].
    #[arg(long, value_parser = po_runtime::cli::parse_duration)]
    pub sampling: Option<Duration>,
    /// OPC UA: `none` or POLICY/MODE as in the connector's `[opcua] security`
    /// (e.g. basic256sha256/sign-and-encrypt) [default: none].
    #[arg(long)]
    pub security: Option<String>,
    /// OPC UA: the client's certificate directory (own/cert.der, private/private.pem,
    /// as `smart-connector certs opcua-client` writes them; the server must trust
    /// it). Default: a throwaway key pair, enough for `none`.
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    /// OPC UA: subscribe only to Variables whose string NodeId identifier (a connector's
    /// tag name) is listed in this file, one per line (`#` comments); default: any
    /// Variable found below Objects.
    #[arg(long, value_name = "FILE")]
    pub tags: Option<PathBuf>,
    /// Also write the JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// OPC UA: no progress lines on stderr (one every 5 s otherwise).
    #[arg(long, short)]
    pub quiet: bool,
    // The Modbus-only options have no clap default, so that one given with
    // `--protocol opcua` is refused instead of silently ignored; their defaults are
    // applied in the Modbus arm.
    /// Modbus: concurrent connections (one request in flight on each) [default: 8].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Modbus: first register of the block [default: 100].
    #[arg(long)]
    pub address: Option<u16>,
    /// Modbus: registers per request (1..=125) [default: 125].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=125))]
    pub quantity: Option<u16>,
    /// Modbus: unit id to address [default: 1].
    #[arg(long)]
    pub unit: Option<u8>,
    /// How long to load the server.
    #[arg(long, default_value = "10s", value_parser = po_runtime::cli::parse_duration)]
    pub duration: Duration,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Meanwhile fetch this page every 100 ms (e.g. a connector's status page,
    /// `127.0.0.1:9100/`) and report its latency next to the Modbus figures.
    #[arg(long, value_name = "HOST:PORT/PATH")]
    pub probe_http: Option<String>,
    /// Modbus/TCP Security: this master's certificate (PEM; its role must allow
    /// reading); needs --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signs the server's certificate (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

/// `harness load`: the Modbus and OPC UA options are refused by name for the other protocol.
pub fn cmd_load(a: LoadArgs) -> Result<ExitCode> {
    match a.protocol {
        LoadProtocol::Opcua => load_opcua(a),
        LoadProtocol::Modbus => load_modbus(a),
    }
}

fn load_opcua(a: LoadArgs) -> Result<ExitCode> {
    let LoadArgs {
        protocol: _,
        target,
        sessions,
        items,
        publishing,
        sampling,
        security,
        pki_dir,
        tags,
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
    } = a;
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
    let only = match tags
        .as_deref()
        .map(harness::opcua_load::read_tag_list)
        .transpose()
    {
        Ok(names) => names.map(std::sync::Arc::new),
        Err(why) => {
            eprintln!("harness: --tags {why}");
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
        only,
        progress: (!quiet).then_some(Duration::from_secs(5)),
    };
    let r = runtime(threads)?.block_on(harness::opcua_load::run_opcua_load(&spec))?;
    print_load_json(&r, json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn load_modbus(a: LoadArgs) -> Result<ExitCode> {
    let LoadArgs {
        protocol: _,
        target,
        sessions,
        items,
        publishing,
        sampling,
        security,
        pki_dir,
        tags,
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
    } = a;
    let opcua_only = [
        ("--sessions", sessions.is_some()),
        ("--items", items.is_some()),
        ("--publishing", publishing.is_some()),
        ("--sampling", sampling.is_some()),
        ("--security", security.is_some()),
        ("--pki-dir", pki_dir.is_some()),
        ("--tags", tags.is_some()),
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
            match po_runtime::tls::TlsClient::load(&files, po_runtime::tls::TlsVersions::Tls12And13)
            {
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

/// What `harness load` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadProtocol {
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
