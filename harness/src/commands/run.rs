//! `harness run`: load every scenario, refuse or skip what the chosen backend cannot run,
//! run the rest one after the other, print and write the reports.

use super::{load_all, runtime};
use anyhow::{Context as _, Result};
use harness::launch::{Interrupted, RunOptions, run_scenario};
use harness::report::{Report, Skipped, junit};
use harness::scenario::{BackendKind, Scenario};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario files (see docs/scenarios.md).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Override the scenarios' `backend`.
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Write the reports as JSON (one object, or an array for several scenarios).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report: one test case per expectation.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML report (inline SVG charts and CSS, nothing fetched):
    /// per scenario the rates, freshness, roles and sources of every server and
    /// connector over time with the faults marked, write outcomes, the expectations
    /// and the figures. One file, a section per scenario.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// Worker threads of the harness runtime (in-process components share it).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// A previous `--json` report: fail (exit 1) when throughput fell or latency rose
    /// by more than `--max-regression` against it (same scenario and backend).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Keep each run's directory (generated configs and component logs of the
    /// process and netns backends) also when it passed.
    #[arg(long)]
    pub keep_logs: bool,
    /// Tolerated regression against `--baseline`, in percent: `10%` (a bare `10` is
    /// read as 10% too).
    #[arg(long, default_value = "10%", value_parser = harness::report::parse_margin)]
    pub max_regression: f64,
    /// Refuse (exit 2, nothing run) when the backend cannot run one of several
    /// files, instead of skipping it. A single file is always refused.
    #[arg(long)]
    pub strict: bool,
}

/// `harness run`.
pub fn cmd_run(a: RunArgs) -> Result<ExitCode> {
    let RunArgs {
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
    } = a;
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
    let mut runnable: Vec<(&Scenario, BackendKind)> = Vec::new();
    for (file, s) in files.iter().zip(&scenarios) {
        // The one place the backend of each scenario is chosen.
        let b = s.backend_or(backend);
        let reasons = harness::launch::unsupported_by(s, b);
        if reasons.is_empty() {
            runnable.push((s, b));
        } else if refuse {
            for line in harness::launch::refusal(s, &file.display().to_string(), b) {
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
                runnable_on: harness::launch::runnable_on(s)
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
    let needs_netns = scenarios.iter().any(|(_, b)| *b == BackendKind::Netns);
    if needs_netns && let Err(why) = harness::netns::namespaces::check_privileges() {
        eprintln!("harness: {why}");
        return Ok(ExitCode::from(2));
    }
    let quiet = quiet || !std::io::stderr().is_terminal();
    let rt = runtime(threads)?;
    let mut reports: Vec<Report> = Vec::new();
    for (s, b) in scenarios {
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
