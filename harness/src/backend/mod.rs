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

pub mod inprocess;
pub mod process;
pub mod proxies;

use crate::scenario::Fault;
use crate::topology::{ComponentKind, Topology};

/// The components a lifecycle fault (crash, restart, pause, resume) acts on: those of
/// the host or the component it names.
pub(crate) fn lifecycle_targets(t: &Topology, f: &Fault) -> Vec<(String, ComponentKind)> {
    t.components_of_target(&f.target)
        .iter()
        .map(|c| (c.name.clone(), c.kind))
        .collect()
}
