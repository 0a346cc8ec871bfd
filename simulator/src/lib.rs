//! A simulated redundant Power Operation server pair.
//!
//! - [`field`]: the deterministic field model every value comes from, so anyone can
//!   recompute what a server served.
//! - [`redundancy`]: the sans-IO Primary/Standby role state machine.
//! - [`server`]: one Power Operation server speaking the client-access protocol, with
//!   its sync link to the peer and its fault controls; [`pair`]: two of them wired up.
//! - [`config`]: the `po-sim` configuration file; [`state`]: what a server keeps on disk.

pub mod config;
pub mod field;
pub mod pair;
pub mod redundancy;
pub mod server;
mod session;
pub mod setpoints;
mod shared;
pub mod state;
pub mod sync;
pub mod write_rules;

pub use config::ServerConfig;
pub use field::{FieldModel, SiteSpec};
pub use server::{ServerError, ServerHandle};
