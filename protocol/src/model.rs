//! The data model every part of the system shares: tags, values, qualities and time.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Dense tag index, assigned by the server from 0 in catalogue order.
///
/// Dense ids let the connector keep its register image as a flat array indexed by tag,
/// which is what makes ingest cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TagId(pub u32);

impl TagId {
    /// The id as an index into per-tag arrays.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for TagId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What sort of quantity a tag carries; it decides the value type and the Modbus encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TagKind {
    /// A measured quantity (volts, amps, kW...), carried as `f64`.
    Analog,
    /// A two-state point (breaker closed, alarm active), carried as `bool`.
    Digital,
    /// A monotonic accumulator (energy in kWh), carried as `u64`.
    Counter,
}

impl TagKind {
    /// Short lower-case name used in catalogues and points lists.
    pub fn as_str(self) -> &'static str {
        match self {
            TagKind::Analog => "analog",
            TagKind::Digital => "digital",
            TagKind::Counter => "counter",
        }
    }
}

/// Catalogue entry of one tag, as returned by `Browse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagInfo {
    pub id: TagId,
    /// Hierarchical name such as `Feeder03.Meter2.kW`.
    pub name: String,
    /// Engineering unit (`V`, `A`, `kW`, `kWh`, ...); empty for dimensionless tags.
    pub unit: String,
    pub kind: TagKind,
    /// Whether clients may write the tag (setpoints, breaker commands).
    pub writable: bool,
}

/// A tag value. The variant always matches the tag's [`TagKind`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Analog(f64),
    Digital(bool),
    Counter(u64),
}

impl Value {
    /// The kind this value belongs to, used to reject writes of the wrong type.
    pub fn kind(self) -> TagKind {
        match self {
            Value::Analog(_) => TagKind::Analog,
            Value::Digital(_) => TagKind::Digital,
            Value::Counter(_) => TagKind::Counter,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Analog(v) => write!(f, "{v}"),
            Value::Digital(v) => write!(f, "{}", u8::from(*v)),
            Value::Counter(v) => write!(f, "{v}"),
        }
    }
}

/// How far a value can be trusted.
///
/// `Stale` is never sent by a server: it is the connector's own verdict when no server
/// has delivered fresh data for `stale_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quality {
    Good,
    Uncertain,
    Bad,
    Stale,
}

impl Quality {
    /// Numeric code used in Modbus quality registers (`docs/register-map.md`).
    pub fn code(self) -> u16 {
        match self {
            Quality::Good => 0,
            Quality::Uncertain => 1,
            Quality::Bad => 2,
            Quality::Stale => 3,
        }
    }
}

/// Microseconds since the Unix epoch, set by the server when it sampled the value.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time. Only binaries and drivers call this; sans-IO cores
    /// take time as an argument.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_micros() as u64)
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }
}

/// One sampled value of one tag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TagValue {
    pub tag: TagId,
    pub value: Value,
    pub quality: Quality,
    pub sampled_at: Timestamp,
}

/// Redundancy role a server claims. Together with the epoch it tells clients whom to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Primary,
    Standby,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "Primary",
            Role::Standby => "Standby",
        })
    }
}
