//! The backends that reach their components through fault proxies of the harness: every
//! host is its own loopback address 127.0.H.1, every link between hosts goes through a
//! [`crate::proxy::FaultProxy`] (the wiring says which, where, to what).
//! - `inprocess` ([`inprocess::InprocessDeployment`]): servers and connectors are tokio
//!   tasks of the harness (fast, for CI); a connector "crash" is an immediate shutdown of
//!   its tasks and sockets.
//! - `process` ([`process::ProcessDeployment`]): the real `po-sim` and `smart-connector`
//!   binaries with the generated config files; crash = SIGKILL, pause = SIGSTOP, resume =
//!   SIGCONT, restart = respawn. Children are killed when the deployment is shut down or
//!   dropped.

pub mod children;
pub mod inprocess;
pub mod process;
pub mod proxies;

use crate::scenario::{Fault, FaultAction};
use crate::topology::{ComponentKind, Topology};
use anyhow::{Result, bail};

/// Where a proxy backend applies a fault.
pub(crate) enum FaultRoute {
    /// Cut, heal or delay of a link: at its fault proxies.
    Link,
    /// Crash, restart, pause or resume of these components (those of the host or the
    /// component the fault names).
    Lifecycle(Vec<(String, ComponentKind)>),
}

/// Where backend `name` (inprocess or process) applies `f`; an error for what it cannot
/// apply (refused before the start; this is the last guard).
pub(crate) fn route(name: &str, t: &Topology, f: &Fault) -> Result<FaultRoute> {
    Ok(match f.action {
        FaultAction::Cut | FaultAction::Heal | FaultAction::Delay
            if t.link(&f.target).is_some() =>
        {
            FaultRoute::Link
        }
        FaultAction::Crash | FaultAction::Restart | FaultAction::Pause | FaultAction::Resume => {
            FaultRoute::Lifecycle(
                t.components_of_target(&f.target)
                    .iter()
                    .map(|c| (c.name.clone(), c.kind))
                    .collect(),
            )
        }
        a => bail!(
            "the {name} backend cannot apply `{}` to {}",
            a.as_str(),
            f.target
        ),
    })
}
