//! `harness explore`: random fault schedules in the simulation, a progress bar, the summary.

use anyhow::{Context as _, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
#[derive(Debug, clap::Args)]
pub struct ExploreArgs {
    /// 2 or 3.
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub architecture: u8,
    /// Seeds to run, both ends included: `1..1000`.
    #[arg(long, value_parser = harness::explore::parse_seeds)]
    pub seeds: std::ops::RangeInclusive<u64>,
    /// Run every N-th seed of the range, starting with the K-th (a CI matrix of N jobs).
    #[arg(long, default_value = "1/1", value_parser = harness::explore::parse_shard)]
    pub shard: (u64, u64),
    /// Virtual length of each run.
    #[arg(long, default_value = "60s", value_parser = po_runtime::cli::parse_duration)]
    pub duration: Duration,
    /// Write the summary (seeds run, held, failing seeds with replay commands) as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the scenario files of failing seeds are written.
    #[arg(long, default_value = "explore-failures")]
    pub out: PathBuf,
    /// Simulations at once (each single-threaded); default: the number of cores.
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// `harness explore`.
pub fn cmd_explore(a: ExploreArgs) -> Result<ExitCode> {
    let ExploreArgs {
        architecture,
        seeds,
        shard,
        duration,
        json,
        out,
        jobs,
    } = a;
    let spec = harness::explore::ExploreSpec {
        architecture,
        seeds,
        shard,
        duration,
        out_dir: out,
        jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
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
            eprintln!("explore arch {architecture}: {done}/{total} seeds, {failed} failing");
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
