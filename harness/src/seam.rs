//! The one interface every backend implements (docs/design.md §10). The runner (fault timeline,
//! sampling, measurements, verdicts, reports) is written once against it and the run's
//! [`crate::wiring::Wiring`], which holds the addressing (what third parties, observers
//! and floods dial, TLS and OPC UA identities): a backend only controls, observes and
//! tears down what it started.

use crate::scenario::Fault;
use crate::topology::Topology;
use anyhow::Result;
use po_protocol::Role;
use po_runtime::Env;
use std::path::Path;

/// A running deployment of a topology: its components on their hosts, and the controls
/// the runner needs. Implemented by the inprocess and process backends
/// (`InprocessDeployment`, `ProcessDeployment` in `backend/`), the simulation backend
/// (`SimDeployment` in `sim/`) and the netns backend (`NetnsDeployment` in `netns/`).
#[allow(async_fn_in_trait)] // used with static dispatch only
pub trait Backend {
    /// The network and clocks the harness's own clients (third parties, probes,
    /// read-back) use, as seen from the third-party host.
    fn env(&self) -> Env;
    /// Applies one fault of the scenario: a lifecycle fault to the components of a host
    /// or a component, a link fault, or a host's isolation. Returns how the backend
    /// applied it (the mechanism the report shows beside the fault).
    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String>;
    /// Each connector's ingest counter (tag updates accepted), `None` while it is down.
    async fn ingest_counters(&self) -> Vec<Option<u64>>;
    /// Each server by name with its role and epoch as it sees them itself (`None` while
    /// it is down or its status is unknown). Cheap: the runner samples it for the
    /// timeline every interval.
    fn server_status(&self) -> Vec<(String, Option<(Role, u64)>)>;
    /// Process ids to measure CPU and memory of (empty where components are not
    /// processes of their own).
    fn component_pids(&self) -> Vec<(String, u32)>;
    /// Where the generated configs and the components' logs are, if the backend wrote
    /// any (kept when a run fails).
    fn run_dir(&self) -> Option<&Path>;
    /// Stops every component and removes what the backend built; the run directory is
    /// removed unless `keep_logs`.
    async fn shutdown(self, keep_logs: bool)
    where
        Self: Sized;
}
