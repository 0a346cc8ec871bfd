//! The setpoint store: the last written value of every writable tag, with the wall time it
//! was written. What a real server keeps on disk; it survives restarts.
//!
//! Merging keeps, per tag, the later write (last writer wins, ties broken by the value so
//! both sides choose alike). Two stores that have exchanged their contents are equal,
//! whatever the order of the exchange: after a split brain in which both servers of a pair
//! acknowledged writes, the pair converges on the latest write of each tag instead of one
//! side throwing the other's acknowledged writes away. Sans-IO: time comes in as an
//! argument.

use po_protocol::{TagId, Timestamp, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One written value and when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Setpoint {
    pub value: Value,
    pub written_at: Timestamp,
}

impl Setpoint {
    /// A total order: time first, then the value's bits, so equal times still decide.
    fn order_key(&self) -> (u64, u8, u64) {
        let (kind, bits) = match self.value {
            Value::Analog(x) => (0, x.to_bits()),
            Value::Digital(b) => (1, u64::from(b)),
            Value::Counter(c) => (2, c),
        };
        (self.written_at.0, kind, bits)
    }

    fn supersedes(&self, other: &Setpoint) -> bool {
        self.order_key() > other.order_key()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetpointStore {
    entries: BTreeMap<TagId, Setpoint>,
}

impl SetpointStore {
    /// A local write at `now`: it supersedes whatever the tag holds (its time is moved
    /// past the stored one should the clock have gone back). Returns the stored entry, to
    /// replicate as it is.
    pub fn write(&mut self, tag: TagId, value: Value, now: Timestamp) -> Setpoint {
        let floor = self
            .entries
            .get(&tag)
            .map_or(0, |s| s.written_at.0.saturating_add(1));
        let entry = Setpoint {
            value,
            written_at: Timestamp(now.0.max(floor)),
        };
        self.entries.insert(tag, entry);
        entry
    }

    /// Takes `entry` unless the tag already holds a later write. Returns whether it did.
    pub fn merge_one(&mut self, tag: TagId, entry: Setpoint) -> bool {
        match self.entries.get(&tag) {
            Some(have) if !entry.supersedes(have) => false,
            _ => {
                self.entries.insert(tag, entry);
                true
            }
        }
    }

    /// Merges a peer's store (or part of it).
    pub fn merge(&mut self, entries: impl IntoIterator<Item = (TagId, Setpoint)>) {
        for (tag, entry) in entries {
            self.merge_one(tag, entry);
        }
    }

    /// A store holding only `tag`'s entry: what a write to it would be stamped against.
    pub fn clone_entry(&self, tag: TagId) -> SetpointStore {
        SetpointStore {
            entries: self
                .entries
                .get(&tag)
                .map(|s| (tag, *s))
                .into_iter()
                .collect(),
        }
    }

    pub fn get(&self, tag: TagId) -> Option<Value> {
        self.entries.get(&tag).map(|s| s.value)
    }

    /// Every entry, in tag order.
    pub fn entries(&self) -> impl Iterator<Item = (TagId, Setpoint)> + '_ {
        self.entries.iter().map(|(t, s)| (*t, *s))
    }

    pub fn snapshot(&self) -> Vec<(TagId, Setpoint)> {
        self.entries().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(v: f64, at: u64) -> Setpoint {
        Setpoint {
            value: Value::Analog(v),
            written_at: Timestamp(at),
        }
    }

    #[test]
    fn a_local_write_always_wins_even_if_the_clock_went_back() {
        let mut s = SetpointStore::default();
        s.merge_one(TagId(1), sp(1.0, 100));
        let e = s.write(TagId(1), Value::Analog(2.0), Timestamp(50));
        assert_eq!(e.written_at, Timestamp(101));
        assert_eq!(s.get(TagId(1)), Some(Value::Analog(2.0)));
    }

    #[test]
    fn merging_keeps_the_later_write_per_tag() {
        let mut a = SetpointStore::default();
        a.merge_one(TagId(1), sp(1.0, 100));
        a.merge_one(TagId(2), sp(5.0, 300));
        let mut b = SetpointStore::default();
        b.merge_one(TagId(1), sp(2.0, 200));
        b.merge_one(TagId(2), sp(6.0, 250));
        a.merge(b.snapshot());
        assert_eq!(a.get(TagId(1)), Some(Value::Analog(2.0)));
        assert_eq!(a.get(TagId(2)), Some(Value::Analog(5.0)));
        assert!(!a.merge_one(TagId(2), sp(7.0, 299)));
    }

    proptest::proptest! {
        /// Whatever each side wrote, after exchanging stores both hold the same values.
        #[test]
        fn two_stores_converge_after_an_exchange(
            a_writes in proptest::collection::vec((0u32..4, -5.0f64..5.0, 0u64..50), 0..12),
            b_writes in proptest::collection::vec((0u32..4, -5.0f64..5.0, 0u64..50), 0..12),
        ) {
            let (mut a, mut b) = (SetpointStore::default(), SetpointStore::default());
            for (t, v, at) in a_writes { a.write(TagId(t), Value::Analog(v), Timestamp(at)); }
            for (t, v, at) in b_writes { b.write(TagId(t), Value::Analog(v), Timestamp(at)); }
            let (sa, sb) = (a.snapshot(), b.snapshot());
            a.merge(sb);
            b.merge(sa);
            proptest::prop_assert_eq!(a, b);
        }
    }
}
