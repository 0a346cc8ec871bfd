//! Running a scenario on the backend it asks for: the one place that chooses a backend
//! (docs/design.md §10). The runner itself (`runner::drive`) only knows the `Backend` seam.

use crate::backend::inprocess::InprocessDeployment;
use crate::backend::process::ProcessDeployment;
use crate::capability::{Capabilities, Need, Unsupported};
use crate::netns::NetnsDeployment;
use crate::report::Report;
use crate::runner::drive;
use crate::scenario::Fault;
use crate::scenario::{BackendKind, Scenario};
use crate::seam::Backend;
use crate::sim::SimDeployment;
use crate::topology::Topology;
use crate::wiring::Wiring;
use anyhow::{Context as _, Result, bail};
use po_protocol::Role;
use po_runtime::Env;
use std::path::Path;

/// Whether backend `kind` meets `need`: the backend answers for itself.
pub fn supports(kind: BackendKind, need: Need) -> Result<(), Unsupported> {
    match kind {
        BackendKind::Inprocess => InprocessDeployment::supports(need),
        BackendKind::Process => ProcessDeployment::supports(need),
        BackendKind::Sim => SimDeployment::supports(need),
        BackendKind::Netns => NetnsDeployment::supports(need),
    }
}

/// What `backend` cannot do of scenario `s`, as (key, message), each message naming the
/// backends that can: such a file is invalid for that backend (exit 2 before anything
/// starts). The table is in `docs/scenarios.md` (faults by backend).
pub fn unsupported_by(s: &Scenario, backend: BackendKind) -> Vec<(String, String)> {
    s.needs()
        .into_iter()
        .filter_map(|(key, need)| {
            let why = supports(backend, need).err()?;
            let able: Vec<BackendKind> = BackendKind::ALL
                .into_iter()
                .filter(|b| supports(*b, need).is_ok())
                .collect();
            let hint = match able.as_slice() {
                [] => "no backend can".to_string(),
                [one] => format!("--backend {}", one.as_str()),
                [init @ .., last] => {
                    format!("--backend {} or {}", backend_list(init), last.as_str())
                }
            };
            let message = match need {
                Need::Fault(action) => format!(
                    "`{}` cannot be applied by the {} backend ({why}: {hint})",
                    action.as_str(),
                    backend.as_str()
                ),
                _ => format!("{why}: {hint}"),
            };
            Some((key, message))
        })
        .collect()
}

/// The backends that can run `s` (none of [`unsupported_by`]).
pub fn runnable_on(s: &Scenario) -> Vec<BackendKind> {
    BackendKind::ALL
        .into_iter()
        .filter(|b| unsupported_by(s, *b).is_empty())
        .collect()
}

/// Why `backend` cannot run `s`, one line per reason as `run` and `plan` print them
/// (`FILE: KEY: WHY`), then the backends that can; empty when it can.
pub fn refusal(s: &Scenario, file: &str, backend: BackendKind) -> Vec<String> {
    let reasons = unsupported_by(s, backend);
    if reasons.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = reasons
        .iter()
        .map(|(key, why)| format!("{file}: {key}: {why}"))
        .collect();
    out.push(format!(
        "{file}: backends that can run it: {}",
        backend_list(&runnable_on(s))
    ));
    out
}

/// `sim, netns`, or `none` (a scenario no backend runs cannot be valid, but say so).
pub fn backend_list(backends: &[BackendKind]) -> String {
    if backends.is_empty() {
        return "none".into();
    }
    backends
        .iter()
        .map(|b| b.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

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

/// A started deployment of one of the backends that run on the harness's tokio runtime.
#[derive(Debug)]
pub enum Deployed {
    Inprocess(InprocessDeployment),
    Process(ProcessDeployment),
    Netns(NetnsDeployment),
}

impl Deployed {
    /// Starts the components of `s` on `t` as wiring `w` says, on its backend.
    async fn start(s: &Scenario, t: &Topology, w: &Wiring) -> Result<Deployed> {
        Ok(match w.backend {
            BackendKind::Inprocess => Deployed::Inprocess(InprocessDeployment::start(t, w).await?),
            BackendKind::Process => Deployed::Process(ProcessDeployment::start(s, t, w).await?),
            BackendKind::Netns => Deployed::Netns(NetnsDeployment::start(s, t, w).await?),
            BackendKind::Sim => bail!("the sim backend runs inside its simulation (run_scenario)"),
        })
    }
}

impl Backend for Deployed {
    fn env(&self) -> Env {
        match self {
            Deployed::Inprocess(d) => d.env(),
            Deployed::Process(d) => d.env(),
            Deployed::Netns(d) => d.env(),
        }
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        match self {
            Deployed::Inprocess(d) => d.apply(t, f).await,
            Deployed::Process(d) => d.apply(t, f).await,
            Deployed::Netns(d) => d.apply(t, f).await,
        }
    }

    async fn ingest_counters(&self) -> Vec<Option<u64>> {
        match self {
            Deployed::Inprocess(d) => d.ingest_counters().await,
            Deployed::Process(d) => d.ingest_counters().await,
            Deployed::Netns(d) => d.ingest_counters().await,
        }
    }

    fn server_status(&self) -> Vec<(String, Option<(Role, u64)>)> {
        match self {
            Deployed::Inprocess(d) => d.server_status(),
            Deployed::Process(d) => d.server_status(),
            Deployed::Netns(d) => d.server_status(),
        }
    }

    fn component_pids(&self) -> Vec<(String, u32)> {
        match self {
            Deployed::Inprocess(d) => d.component_pids(),
            Deployed::Process(d) => d.component_pids(),
            Deployed::Netns(d) => d.component_pids(),
        }
    }

    fn run_dir(&self) -> Option<&Path> {
        match self {
            Deployed::Inprocess(d) => d.run_dir(),
            Deployed::Process(d) => d.run_dir(),
            Deployed::Netns(d) => d.run_dir(),
        }
    }

    async fn shutdown(self, keep_logs: bool) {
        match self {
            Deployed::Inprocess(d) => d.shutdown(keep_logs).await,
            Deployed::Process(d) => d.shutdown(keep_logs).await,
            Deployed::Netns(d) => d.shutdown(keep_logs).await,
        }
    }
}

/// Runs `s` and returns its report (expectations judged).
pub async fn run_scenario(s: &Scenario, opts: RunOptions) -> Result<Report> {
    if opts.backend == BackendKind::Sim {
        // The simulation drives runtimes of its own: it runs on a thread outside tokio,
        // its deployment inside it (nothing outside to tear down, no run directory).
        // Ctrl-C ends the run as on every backend.
        let (s, quiet) = (s.clone(), opts.quiet);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sim".into())
            .spawn(move || {
                let _ = tx.send(crate::sim::run_scenario(&s, quiet));
            })
            .context("starting the simulation thread")?;
        return tokio::select! {
            r = rx => r.context("the simulation thread panicked")?,
            _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
        };
    }
    let quiet = opts.quiet;
    launch(
        s,
        opts,
        |r: &Report| r.passed,
        async |t, w, d| drive(s, t, w, d, quiet).await,
    )
    .await
}

/// The one launch path of `run`, `bench` and the OPC UA bench step: computes the wiring
/// of `s` on `opts.backend`, starts the deployment, runs `body` with it and tears it down
/// — also when Ctrl-C interrupts (listened for from the start, so a half-built deployment
/// is dropped, children killed and namespaces removed, rather than orphaned). The run
/// directory (generated configs, component logs) is kept with `opts.keep_logs` or when
/// `body` failed or its result did not `pass`, and its place is printed.
pub async fn launch<R>(
    s: &Scenario,
    opts: RunOptions,
    passed: impl Fn(&R) -> bool,
    body: impl AsyncFnOnce(&Topology, &Wiring, &mut Deployed) -> Result<R>,
) -> Result<R> {
    let topology = s.topology();
    let wiring = Wiring::compute(s, &topology, opts.backend)
        .with_context(|| format!("wiring {} ({} backend)", s.name, opts.backend.as_str()))?;
    launch_wired(s, &topology, &wiring, opts, passed, body).await
}

/// As [`launch`], on a wiring computed (and possibly adjusted: the OPC UA bench step raises
/// the connector's session limits) by the caller; `wiring.backend` is the backend.
pub async fn launch_wired<R>(
    s: &Scenario,
    topology: &Topology,
    wiring: &Wiring,
    opts: RunOptions,
    passed: impl Fn(&R) -> bool,
    body: impl AsyncFnOnce(&Topology, &Wiring, &mut Deployed) -> Result<R>,
) -> Result<R> {
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut deployment = tokio::select! {
        d = Deployed::start(s, topology, wiring) => {
            d.with_context(|| format!("deploying {} ({} backend)", s.name, opts.backend.as_str()))?
        }
        _ = &mut interrupt => return Err(Interrupted.into()),
    };
    let result = tokio::select! {
        r = body(topology, wiring, &mut deployment) => r,
        _ = &mut interrupt => Err(Interrupted.into()),
    };
    let keep_logs = opts.keep_logs || !matches!(&result, Ok(r) if passed(r));
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\narchitecture = 3\nduration = \"2s\"\n";

    #[test]
    fn backends_that_can_run_a_scenario_are_named() {
        let loss = format!(
            "{MINIMAL}[[fault]]\nat = \"1s\"\naction = \"loss\"\ntarget = \"tp->sc-a\"\nfraction = 0.05\n"
        );
        let s = Scenario::parse(&loss, "t.toml").unwrap();
        assert_eq!(runnable_on(&s), vec![BackendKind::Sim, BackendKind::Netns]);
        assert!(refusal(&s, "t.toml", BackendKind::Sim).is_empty());
        let refusal = refusal(&s, "t.toml", BackendKind::Inprocess);
        assert_eq!(
            refusal.last().map(String::as_str),
            Some("t.toml: backends that can run it: sim, netns")
        );
        assert!(
            refusal[0].starts_with(
                "t.toml: fault[0].action: `loss` cannot be applied by the inprocess backend"
            ),
            "{refusal:?}"
        );
        assert_eq!(backend_list(&[]), "none");
        let tls = Scenario::parse(&format!("{MINIMAL}[security]\ntls = true\n"), "t.toml").unwrap();
        assert_eq!(
            runnable_on(&tls),
            vec![
                BackendKind::Inprocess,
                BackendKind::Process,
                BackendKind::Netns
            ]
        );
    }
}
