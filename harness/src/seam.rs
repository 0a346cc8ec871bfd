//! The one interface every backend implements (DESIGN §10). The runner (fault timeline,
//! sampling, measurements, verdicts, reports) is written once against it.

use crate::scenario::Fault;
use crate::topology::Topology;
use anyhow::Result;
use po_runtime::Env;
use std::net::{IpAddr, SocketAddr};

/// A running deployment of a topology: its components on their hosts, and the controls
/// the runner needs. Implemented by the inprocess and process backends (`Deployment` in
/// `backend.rs`) and the simulation backend (`SimDeployment` in `sim.rs`).
#[allow(async_fn_in_trait)] // used with static dispatch only
pub trait Backend {
    /// The backend's name as reports give it (`inprocess`, `process`, `sim`).
    fn name(&self) -> &'static str;
    /// The network and clocks the harness's own clients (third parties, probes,
    /// read-back) use, as seen from the third-party host.
    fn env(&self) -> Env;
    /// The third-party host's address: its connections leave from it.
    fn third_party_ip(&self) -> IpAddr;
    /// Each connector's Modbus address as the third parties reach it.
    fn modbus_targets(&self) -> Vec<SocketAddr>;
    /// Each connector's own Modbus address (readiness checks, read-back).
    fn modbus_direct(&self) -> Vec<SocketAddr>;
    /// The connectors, in topology order.
    fn connector_names(&self) -> Vec<String>;
    /// Applies one fault of the scenario: a lifecycle fault to the components of a host
    /// or a component, or a link fault.
    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<()>;
    /// Each connector's ingest counter (tag updates accepted), `None` while it is down.
    async fn ingest_counters(&self) -> Vec<Option<u64>>;
    /// Process ids to measure CPU and memory of (empty where components are not
    /// processes of their own).
    fn component_pids(&self) -> Vec<(String, u32)>;
}
