//! The network and the clocks a component is given (docs/design.md §10).
//!
//! The simulator server and the connector never open a socket or read a clock on their
//! own: they are started with an [`Env`], whose [`Net`] binds listeners and dials peers
//! and whose [`Clock`] tells monotonic and wall time. The binaries pass [`Env::tokio`]
//! (tokio's network, the system clock); the harness's simulation backend passes a
//! turmoil network and virtual time, so the same component code runs deterministically.

pub mod accept;
pub mod admission;
pub mod cli;
mod clock;
pub mod config_diagnostics;
pub mod descriptors;
mod net;
pub mod tls;

pub use clock::{Clock, SystemClock};
pub use net::{BoxListener, BoxStream, Listener, Net, Stream, TokioNet};

use std::sync::Arc;

/// What a component is started with.
#[derive(Debug, Clone)]
pub struct Env {
    /// Binds listeners and dials peers.
    pub net: Arc<dyn Net>,
    /// Monotonic and wall time.
    pub clock: Arc<dyn Clock>,
}

impl Env {
    /// Tokio's network and the system clock: what the binaries run with.
    pub fn tokio() -> Env {
        Env {
            net: Arc::new(TokioNet),
            clock: Arc::new(SystemClock),
        }
    }
}
