//! The inprocess backend: servers and connectors are tokio tasks of the harness, links
//! between hosts go through fault proxies.

use crate::capability::{
    Capabilities, Need, Unsupported, invariants_unsupported, proxy_fault_support,
};

/// The inprocess backend (its capabilities).
#[derive(Debug, Clone, Copy)]
pub struct Inprocess;

impl Capabilities for Inprocess {
    fn supports(need: Need) -> Result<(), Unsupported> {
        match need {
            Need::Fault(a) => proxy_fault_support(a),
            Need::Flood => Err(Unsupported::new(
                "a flood measures what a process's descriptors and listeners withstand; the inprocess backend has no component processes",
            )),
            Need::OpcUa => Err(Unsupported::new(
                "the inprocess backend starts its connectors without their OPC UA server (an endpoint URL needs its port before the start; in-process connectors learn theirs at the start)",
            )),
            Need::Invariants => Err(invariants_unsupported("inprocess")),
            Need::Tls | Need::Tags(_) => Ok(()),
        }
    }
}
