//! The Smart Connector: subscribes to one or two Power Operation servers, follows
//! whichever is Primary, and serves every tag to third parties as a Modbus TCP server.
//!
//! - [`selector`]: the sans-IO `SourceSelector` (which server to follow).

pub mod selector;
