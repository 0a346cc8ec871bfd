//! The client-access protocol spoken between Power Operation servers and their clients
//! (Smart Connectors, and the simulator's own sync link).
//!
//! The crate is deliberately free of sockets and clocks: it defines the data model
//! ([`model`]), the frames ([`frame`]) and a length-delimited postcard codec ([`codec`])
//! that both the simulator and the connector drive from their own tokio tasks. The wire
//! format is documented in `docs/protocol.md`; that document is a contract.

pub mod codec;
pub mod frame;
pub mod model;

pub use codec::{CodecError, FrameCodec, MAX_FRAME_LEN, SharedBatch};
pub use frame::{
    Access, ErrorCode, Frame, PART_TAGS, PROTOCOL_VERSION, TagSelection, WriteOutcome,
};
pub use model::{Quality, Role, TagId, TagInfo, TagKind, TagValue, Timestamp, Value};
