//! `harness flood`: hold many connections to one listener and report what it did.

use super::runtime;
use anyhow::{Context as _, Result};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
#[derive(Debug, clap::Args)]
pub struct FloodArgs {
    /// The listener to flood (host:port).
    #[arg(long)]
    pub target: SocketAddr,
    /// Connections to hold open at once.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// How each connection behaves once open.
    #[arg(long, value_enum, default_value_t = harness::flood::FloodMode::Idle)]
    pub mode: harness::flood::FloodMode,
    /// How long to flood; the flood always ends by itself.
    #[arg(long, default_value = "30s", value_parser = po_runtime::cli::parse_duration)]
    pub duration: Duration,
    /// Source address of the connections (bind before connect).
    #[arg(long)]
    pub from: Option<std::net::IpAddr>,
    /// Wait this long before reopening a connection the listener closed or refused.
    #[arg(long, default_value = "1s", value_parser = po_runtime::cli::parse_duration)]
    pub reconnect_delay: Duration,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `harness flood`.
pub fn cmd_flood(a: FloodArgs) -> Result<ExitCode> {
    let FloodArgs {
        target,
        connections,
        mode,
        duration,
        from,
        reconnect_delay,
        quiet,
    } = a;
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
