//! `harness`: run scenarios, print their plan, and generate Modbus load.

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness::load::{LoadSpec, run_load, serve_bare};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Scenario runner for the three Smart Connector architectures.
#[derive(Debug, Parser)]
#[command(name = "harness", version, propagate_version = true)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax) for the harness's own diagnostics.
    #[arg(long, global = true, default_value = "warn", env = "HARNESS_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read one block of holding registers from many connections as fast as the server
    /// answers, and print requests/s (JSON).
    Load {
        /// The Modbus TCP server to load.
        #[arg(long)]
        target: SocketAddr,
        /// Concurrent connections (one request in flight on each).
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// First register of the block.
        #[arg(long, default_value_t = 100)]
        address: u16,
        /// Registers per request (1..=125).
        #[arg(long, default_value_t = 125, value_parser = clap::value_parser!(u16).range(1..=125))]
        quantity: u16,
        /// Unit id to address.
        #[arg(long, default_value_t = 1)]
        unit: u8,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Worker threads of the load generator's runtime.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Serve a static slice with the stock tokio-modbus server: the reference the
    /// connector's Modbus throughput is compared with.
    BareModbus {
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Load {
            target,
            connections,
            address,
            quantity,
            unit,
            duration,
            threads,
        } => {
            let spec = LoadSpec {
                target,
                connections,
                address,
                quantity,
                duration,
                unit,
            };
            let r = runtime(threads)?.block_on(run_load(&spec))?;
            println!("{}", serde_json::to_string_pretty(&r)?);
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
