//! The OPC UA face (docs/opcua.md, docs/design.md §17): a server on the `async-opcua`
//! stack whose tags namespace is served from the point image, whose writes go through
//! the one write path, whose users get the roles of Modbus/TCP Security, and whose
//! `ServiceLevel` is the one service-level core's (status register 14).

pub mod auth;
mod face_thread;
pub mod nodes;
pub mod redundancy;
pub mod server;
pub mod sessions;
pub mod tree;
pub mod values;

pub use server::{OpcUaError, OpcUaFace, OpcUaStart, start};
