//! The one interface every backend implements (docs/design.md §10). The runner (fault timeline,
//! sampling, measurements, verdicts, reports) is written once against it.

use crate::opcua::client::UaTarget;
use crate::opcua::setup::UaSetup;
use crate::scenario::Fault;
use crate::topology::{ListenerKind, Topology};
use anyhow::Result;
use po_protocol::Role;
use po_runtime::Env;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// A running deployment of a topology: its components on their hosts, and the controls
/// the runner needs. Implemented by the inprocess and process backends (`Deployment` in
/// `backend.rs`), the simulation backend (`SimDeployment` in `sim/`) and the netns
/// backend (`NetnsDeployment` in `netns/`).
#[allow(async_fn_in_trait)] // used with static dispatch only
pub trait Backend {
    /// The backend's name as reports give it (`inprocess`, `process`, `sim`, `netns`).
    fn name(&self) -> &'static str;
    /// The network and clocks the harness's own clients (third parties, probes,
    /// read-back) use, as seen from the third-party host.
    fn env(&self) -> Env;
    /// The third-party host's address: its connections leave from it.
    fn third_party_ip(&self) -> IpAddr;
    /// Each connector's Modbus address as the third parties reach it.
    fn modbus_targets(&self) -> Vec<SocketAddr>;
    /// The TLS client end of third-party master `index`: `None` for plain Modbus (every
    /// backend without `[security] tls`).
    fn master_tls(&self, _index: usize) -> anyhow::Result<Option<po_runtime::tls::TlsClient>> {
        Ok(None)
    }
    /// Each connector's OPC UA endpoint as the third-party host reaches it, and the run's
    /// OPC UA set-up (identities); `None` without `[third_party.opcua]`.
    fn opcua(&self) -> Option<(Vec<UaTarget>, &UaSetup)> {
        None
    }
    /// Each connector's own Modbus address (readiness checks, read-back).
    fn modbus_direct(&self) -> Vec<SocketAddr>;
    /// The connectors, in topology order.
    fn connector_names(&self) -> Vec<String>;
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
    /// Where a component's listener is reachable from the third-party host (flood
    /// targets); `None` where the backend has no such listener to flood.
    fn listener_addr(&self, component: &str, listener: ListenerKind) -> Option<SocketAddr>;
    /// Process ids to measure CPU and memory of (empty where components are not
    /// processes of their own).
    fn component_pids(&self) -> Vec<(String, u32)>;
    /// Where the generated configs and the components' logs are, if the backend writes
    /// any (kept when a run fails).
    fn run_dir(&self) -> Option<&Path>;
    /// Stops every component and removes what the backend built; the run directory is
    /// removed unless `keep_logs`.
    async fn shutdown(self, keep_logs: bool)
    where
        Self: Sized;
}
