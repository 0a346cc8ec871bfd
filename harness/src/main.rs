//! `harness`: run scenarios, print their plan, and generate Modbus and OPC UA load.

mod commands;

use anyhow::Result;
use clap::{Parser, Subcommand};
use po_runtime::cli::LogFormat;
use std::process::ExitCode;

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
    Run(commands::run::RunArgs),
    /// Random fault schedules in the simulation backend, one per seed, with the
    /// invariants of docs/design.md §11 checked on every run. A failing seed is shrunk to the
    /// fewest fault episodes that still fail and written as a scenario file; the command
    /// that replays it is printed. Exit 0 when every seed held, 1 when one failed.
    Explore(commands::explore::ExploreArgs),
    /// Validate a scenario and print its hosts, components, addresses, links, licences,
    /// faults and expectations, without running it.
    Plan(commands::plan::PlanArgs),
    /// Throughput sweep: per architecture, raise the update rate, then the number of
    /// third-party connections, until an expectation breaks; report the highest sustained
    /// figures with CPU and memory per component, the connector's Modbus throughput as a
    /// ratio of a bare tokio-modbus server, and its OPC UA notifications/s as a ratio of
    /// node-opcua's server.
    Bench(commands::bench::BenchArgs),
    /// Load a Modbus TCP or OPC UA server and print what it sustained (JSON).
    ///
    /// Modbus: read one block of holding registers from many connections as fast as the
    /// server answers (requests/s). OPC UA: open sessions, each subscribed to --items Variable nodes found
    /// by browsing down from Objects (the Server object skipped), and count what arrives
    /// (notifications/s, latency from SourceTimestamp to receipt, errors).
    Load(commands::load::LoadArgs),
    /// Hold many connections to one listener (a connection flood) for a while, the way
    /// scanners and attackers do, and print what the listener did with them (JSON).
    /// Traffic goes only where --target says: use it on your own lab.
    Flood(commands::flood::FloodArgs),
    /// Serve a static slice with the stock tokio-modbus server: the reference the
    /// connector's Modbus throughput is compared with.
    BareModbus(commands::bare_modbus::BareModbusArgs),
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
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One function per subcommand (`commands/`).
fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(a) => commands::run::cmd_run(a),
        Command::Explore(a) => commands::explore::cmd_explore(a),
        Command::Plan(a) => commands::plan::cmd_plan(a),
        Command::Bench(a) => commands::bench::cmd_bench(a),
        Command::Load(a) => commands::load::cmd_load(a),
        Command::Flood(a) => commands::flood::cmd_flood(a),
        Command::BareModbus(a) => commands::bare_modbus::cmd_bare_modbus(a),
    }
}
