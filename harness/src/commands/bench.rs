//! `harness bench`: check the options, run the throughput sweep, write its reports.

use super::runtime;
use anyhow::{Context as _, Result};
use harness::scenario::BackendKind;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// `process` (default) measures each component's CPU and memory separately.
    #[arg(long, value_enum, default_value = "process")]
    pub backend: BackendKind,
    /// Length of each step.
    #[arg(long, default_value = "6s", value_parser = po_runtime::cli::parse_duration)]
    pub duration: Duration,
    /// Architectures to sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub architectures: Vec<u8>,
    /// Tag samples per second to try, ascending (the first is also the rate of the
    /// connection sweep).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000,400000,1200000,3000000,6000000,12000000"
    )]
    pub rates: Vec<u32>,
    /// Third-party connection counts to try, ascending.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub clients: Vec<usize>,
    /// Site sizes to run in architecture 3 (tags, scanned every second; sites above
    /// one Modbus unit are served over unit-id banks); `--sizes 0` skips them.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub sizes: Vec<u32>,
    /// Length of each Modbus load measurement (connector, then bare server).
    #[arg(long, default_value = "5s", value_parser = po_runtime::cli::parse_duration)]
    pub modbus_duration: Duration,
    /// Nominal samples/s of the TLS ingest comparison (architecture 3, plaintext then
    /// TLS on every link, same run); the Modbus/TCP Security comparison runs with it.
    /// 0 skips both.
    #[arg(long, default_value_t = 2_000_000)]
    pub tls_rate: u32,
    /// Sessions of the OPC UA step (the connector against node-opcua's server, both
    /// loaded by `harness load --protocol opcua`); 0 skips the step.
    #[arg(long, default_value_t = 4)]
    pub opcua_sessions: usize,
    /// Monitored items per session of the OPC UA step, ascending: each server runs
    /// until one breaks (delivered < 99 % or latency p99 > publishing + 50 ms); the
    /// highest sustained notifications/s are compared.
    #[arg(long, value_delimiter = ',', default_value = "25000,50000")]
    pub opcua_items: Vec<usize>,
    /// Publishing interval of the OPC UA step's subscriptions.
    #[arg(long, default_value = "100ms", value_parser = po_runtime::cli::parse_duration)]
    pub opcua_publishing: Duration,
    /// Length of each OPC UA load measurement.
    #[arg(long, default_value = "20s", value_parser = po_runtime::cli::parse_duration)]
    pub opcua_duration: Duration,
    /// Run only the OPC UA step (no sweeps, sizes, Modbus or TLS comparison).
    #[arg(long)]
    pub opcua_only: bool,
    /// Pin the connectors' runtime threads (`--threads N`); without it they choose
    /// from the host, as with a default configuration.
    #[arg(long)]
    pub connector_threads: Option<usize>,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report: sustained ingest against offered rate per
    /// architecture, CPU and memory per component, the Modbus ratio.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// A previous `bench --json`: the HTML report draws its figures beside the new
    /// ones.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
}

/// `harness bench`.
pub fn cmd_bench(a: BenchArgs) -> Result<ExitCode> {
    let BenchArgs {
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
    } = a;
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
        eprintln!("harness: bench --baseline is drawn in the --html report: give --html too");
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
