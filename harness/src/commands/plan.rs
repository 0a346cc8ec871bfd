//! `harness plan`: validate one scenario for a backend and print its plan.

use super::load_all;
use anyhow::Result;
use harness::scenario::BackendKind;
use std::path::PathBuf;
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The scenario file to validate and show (see docs/scenarios.md).
    pub file: PathBuf,
    /// Validate and show the plan for this backend instead of the scenario's own
    /// (default: the file's `backend`, else inprocess).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
}

/// `harness plan`.
pub fn cmd_plan(a: PlanArgs) -> Result<ExitCode> {
    let PlanArgs { file, backend } = a;
    let s = match load_all(std::slice::from_ref(&file)) {
        Ok(mut v) => v.remove(0),
        Err(code) => return Ok(code),
    };
    let backend = s.backend_or(backend);
    // The same refusal as `run`: a plan is only approved where it would run.
    let refusal = harness::launch::refusal(&s, &file.display().to_string(), backend);
    if !refusal.is_empty() {
        for line in refusal {
            eprintln!("{line}");
        }
        return Ok(ExitCode::from(2));
    }
    let t = s.topology();
    let wiring = harness::wiring::Wiring::preview(&s, &t, backend)?;
    print!("{}", harness::plan::render_plan(&t, &s, &wiring));
    Ok(ExitCode::SUCCESS)
}
