//! The process backend: the real `po-sim` and `smart-connector` binaries with generated
//! configuration files, links between hosts through fault proxies.

use crate::capability::{
    Capabilities, Need, Unsupported, invariants_unsupported, proxy_fault_support,
};

/// The process backend (its capabilities).
#[derive(Debug, Clone, Copy)]
pub struct Process;

impl Capabilities for Process {
    fn supports(need: Need) -> Result<(), Unsupported> {
        match need {
            Need::Fault(a) => proxy_fault_support(a),
            Need::Invariants => Err(invariants_unsupported("process")),
            Need::Flood | Need::OpcUa | Need::Tls | Need::Tags(_) => Ok(()),
        }
    }
}
