//! A simulated redundant Power Operation server pair.
//!
//! - [`field`]: the deterministic field model every value comes from, so anyone can
//!   recompute what a server served.
//! - [`redundancy`]: the sans-IO Primary/Standby role state machine.
//! - [`server`]: one Power Operation server speaking the client-access protocol, with
//!   its sync link to the peer and its fault controls.
//! - [`config`]: the `po-sim` configuration file.

pub mod field;
pub mod redundancy;
