//! What a scenario asks of a backend, and a backend's answer. Each backend says for
//! itself what it cannot do ([`Capabilities`]); `launch` asks the chosen one before
//! anything starts (`run`, `plan` and the skip list alike).

use crate::fault::FaultAction;

/// One thing a scenario needs from the backend that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A fault of this kind.
    Fault(FaultAction),
    /// A connection flood against a component's listener.
    Flood,
    /// OPC UA clients against each connector's endpoint.
    OpcUa,
    /// TLS on every link (`[security] tls`).
    Tls,
    /// A site of this many tags.
    Tags(u64),
    /// The invariants checked during the run (`expect.invariants`).
    Invariants,
}

/// Why a backend cannot meet a [`Need`] (without the backends that can: the caller
/// adds them, asking each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

impl Unsupported {
    pub fn new(why: impl Into<String>) -> Unsupported {
        Unsupported(why.into())
    }
}

/// What a backend can run, known from its kind alone: the check happens before anything
/// starts.
pub trait Capabilities {
    /// `Ok` when this backend meets `need`; otherwise why not.
    fn supports(need: Need) -> Result<(), Unsupported>;
}

/// The faults a backend whose links are fault proxies (inprocess, process) cannot apply.
pub fn proxy_fault_support(action: FaultAction) -> Result<(), Unsupported> {
    match action {
        FaultAction::Loss => Err(Unsupported::new("it needs a network that can lose packets")),
        FaultAction::Isolate => Err(Unsupported::new(
            "its fault proxies close connections; a pulled cable is silent",
        )),
        FaultAction::Reject => Err(Unsupported::new(
            "it needs a kernel that answers with TCP resets",
        )),
        FaultAction::Bandwidth => Err(Unsupported::new("it needs a kernel traffic shaper")),
        _ => Ok(()),
    }
}

/// The refusal of `expect.invariants` by every backend but the simulation.
pub fn invariants_unsupported(backend: &str) -> Unsupported {
    Unsupported(format!(
        "the invariants are observed inside the simulation only, not by the {backend} backend"
    ))
}
