//! The Smart Connector (assembly in progress).

pub mod selector;
