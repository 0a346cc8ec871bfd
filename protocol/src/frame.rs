//! Every frame of the client-access protocol (`docs/protocol.md` §Frames).
//!
//! One enum for both directions keeps the codec single and lets a property test
//! round-trip every frame; which side may send which frame is enforced by the session
//! state machines, not by the type.

use crate::model::{Role, TagId, TagInfo, TagValue, Timestamp, Value};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version spoken by this crate. A server refuses a `Hello` with any other version.
pub const PROTOCOL_VERSION: u16 = 1;

/// How a client proves it may connect (`docs/protocol.md` §Licensing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// A connector on the server's own host: no licence, but only from the server's
    /// own host address.
    Local,
    /// A connector on another host: needs one of the server's Client Access licences,
    /// each usable by one client at a time.
    ClientAccess { licence: String },
}

/// Which tags a subscription covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagSelection {
    All,
    List(Vec<TagId>),
}

/// Result of a `Write`, sent once the server has decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// Applied (and replicated to the peer when it was reachable).
    Applied,
    /// This server is not Primary; send the write to the Primary.
    NotPrimary,
    /// No tag with that id.
    UnknownTag,
    /// The tag exists but is not writable.
    ReadOnly,
    /// The value's type does not match the tag's kind.
    TypeMismatch,
}

impl WriteOutcome {
    pub fn is_applied(self) -> bool {
        self == WriteOutcome::Applied
    }
}

/// Why a server ends or refuses a session. Carried in [`Frame::Error`] with a
/// human-readable message that says what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The bytes received were not a valid frame.
    Malformed,
    /// The client spoke a protocol version the server does not.
    UnsupportedVersion,
    /// The first frame was not `Hello`, or a frame arrived that this side may not send.
    UnexpectedFrame,
    /// `Local` access from an address that is not the server's own.
    LocalAccessDenied,
    /// No Client Access licence presented, or one the server does not have.
    LicenceMissing,
    /// The presented licence is held by another client.
    LicenceInUse,
    /// The client did not read fast enough; its queue overflowed and it is disconnected
    /// rather than fed a stream with holes.
    SlowConsumer,
    /// The server is shutting down.
    ShuttingDown,
    /// The subscription names a tag the server does not have.
    UnknownTag,
    /// Over TLS: the presented licence is bound to another client identity (the common
    /// name of another certificate). Appended last so the wire numbering of the others
    /// is unchanged.
    LicenceIdentityMismatch,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A client-access frame. On the wire: big-endian `u32` length, then the postcard
/// encoding of this enum. Variant order is part of the wire format: append only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    // client -> server
    Hello {
        version: u16,
        client_name: String,
        access: Access,
    },
    Browse,
    Subscribe {
        tags: TagSelection,
    },
    Write {
        request_id: u64,
        tag: TagId,
        value: Value,
    },
    Ping,
    // server -> client
    Welcome {
        server_name: String,
        role: Role,
        epoch: u64,
    },
    Catalog {
        tags: Vec<TagInfo>,
    },
    Snapshot {
        seq: u64,
        values: Vec<TagValue>,
    },
    Updates {
        seq: u64,
        batch: Vec<TagValue>,
    },
    Heartbeat {
        role: Role,
        epoch: u64,
        /// `seq` of the last data frame sent on this session (0 before any), so a
        /// client notices lost trailing frames without waiting for the next data.
        seq: u64,
        sent_at: Timestamp,
    },
    WriteResult {
        request_id: u64,
        outcome: WriteOutcome,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    // Appended after version 1's first draft; client -> server.
    /// Stop sending data frames on this session (heartbeats continue). A connector keeps
    /// its Standby connection warm this way: connected and watched, but not streaming.
    Unsubscribe,
    // Appended for large sites (docs/design.md §15); server -> client.
    /// Part of a catalogue too large for one frame: more parts or the final `Catalog`
    /// follow; the client concatenates them in order.
    CatalogPart {
        tags: Vec<TagInfo>,
    },
    /// Part of a snapshot too large for one frame (a `Snapshot` is always whole): a data
    /// frame with its own `seq`, so heartbeats between parts stay in step; `part` counts
    /// from 0 and `last` marks the final part, so a client can tell a new snapshot, the
    /// rest of one it gave up on, and a complete one apart.
    SnapshotPart {
        seq: u64,
        part: u32,
        last: bool,
        values: Vec<TagValue>,
    },
}

/// Tags per `CatalogPart`/`SnapshotPart`: a part stays around 1-3 MB, far below
/// [`crate::MAX_FRAME_LEN`], and a client hears from its server at least once per part.
pub const PART_TAGS: usize = 50_000;

impl Frame {
    /// Short name for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Browse => "Browse",
            Frame::Subscribe { .. } => "Subscribe",
            Frame::Write { .. } => "Write",
            Frame::Ping => "Ping",
            Frame::Welcome { .. } => "Welcome",
            Frame::Catalog { .. } => "Catalog",
            Frame::Snapshot { .. } => "Snapshot",
            Frame::Updates { .. } => "Updates",
            Frame::Heartbeat { .. } => "Heartbeat",
            Frame::WriteResult { .. } => "WriteResult",
            Frame::Error { .. } => "Error",
            Frame::Unsubscribe => "Unsubscribe",
            Frame::CatalogPart { .. } => "CatalogPart",
            Frame::SnapshotPart { .. } => "SnapshotPart",
        }
    }

    /// Postcard variant index of `Updates`; [`crate::SharedBatch`] writes it by hand.
    pub(crate) const UPDATES_VARIANT: u8 = 8;
}
