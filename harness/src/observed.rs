//! What the simulated hosts publish about their components while a run goes on: the
//! servers' handles (role and epoch at any instant) and each connector's counters and
//! register image. The runner reads counters from it, the invariant checker everything.

use po_simulator::ServerHandle;
use smart_connector::http::HttpState;
use smart_connector::image::RegisterImage;
use smart_connector::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the hosts publish for the runner and the explorer to observe.
#[derive(Debug, Default)]
pub struct Observed {
    /// Every server ever started, by name (status readable at any time).
    pub servers: BTreeMap<String, ServerHandle>,
    /// Each connector's counters and image while it runs.
    pub connectors: BTreeMap<String, Option<RunningConnector>>,
    /// Each fault as applied: the simulation's elapsed time and the fault's label.
    pub faults: Vec<(std::time::Duration, String)>,
}

/// A running connector's counters, register image and status (what `/api/status`
/// answers).
#[derive(Debug, Clone)]
pub struct RunningConnector {
    pub metrics: Arc<Metrics>,
    pub image: Arc<RegisterImage>,
    pub status: HttpState,
}
