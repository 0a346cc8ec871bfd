//! Running a scenario on the backend it asks for: the one place that chooses a backend
//! (docs/design.md §10). The runner itself (`runner::drive`) only knows the `Backend` seam.

use crate::backend::Deployment;
use crate::netns::NetnsDeployment;
use crate::report::Report;
use crate::runner::drive;
use crate::scenario::{BackendKind, Scenario};
use crate::seam::Backend;
use crate::topology::Topology;
use anyhow::{Context as _, Result};

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub backend: BackendKind,
    pub quiet: bool,
    /// Keep the run directory (generated configs, component logs) even when the run
    /// passed; a failed run always keeps it.
    pub keep_logs: bool,
}

/// The run was interrupted (Ctrl-C); everything was shut down.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Runs `s` and returns its report (expectations judged).
pub async fn run_scenario(s: &Scenario, opts: RunOptions) -> Result<Report> {
    if opts.backend == BackendKind::Sim {
        // The simulation drives runtimes of its own: it runs on a thread outside tokio.
        let (s, quiet) = (s.clone(), opts.quiet);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sim".into())
            .spawn(move || {
                let _ = tx.send(crate::sim::run_scenario(&s, quiet));
            })
            .context("starting the simulation thread")?;
        return rx.await.context("the simulation thread panicked")?;
    }
    let topology = s.topology();
    match opts.backend {
        BackendKind::Netns => {
            run_on(s, &topology, opts, NetnsDeployment::start(s, &topology)).await
        }
        b => run_on(s, &topology, opts, Deployment::start(s, &topology, b)).await,
    }
}

/// Deploys, drives and shuts down, also when interrupted.
async fn run_on<B: Backend>(
    s: &Scenario,
    topology: &Topology,
    opts: RunOptions,
    deploy: impl Future<Output = Result<B>>,
) -> Result<Report> {
    // Listening for Ctrl-C from the start: SIGINT then no longer kills the harness, so a
    // half-built deployment is dropped (children killed, namespaces removed) rather than
    // orphaned.
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut deployment = tokio::select! {
        d = deploy => {
            d.with_context(|| format!("deploying {} ({} backend)", s.name, opts.backend.as_str()))?
        }
        _ = &mut interrupt => return Err(Interrupted.into()),
    };
    let result = tokio::select! {
        r = drive(s, topology, &mut deployment, opts.quiet) => r,
        _ = &mut interrupt => Err(Interrupted.into()),
    };
    let keep_logs = opts.keep_logs || !matches!(&result, Ok(r) if r.passed);
    if keep_logs && let Some(dir) = deployment.run_dir() {
        eprintln!(
            "harness: configs and logs of {} are in {}",
            s.name,
            dir.display()
        );
    }
    deployment.shutdown(keep_logs).await;
    result
}
