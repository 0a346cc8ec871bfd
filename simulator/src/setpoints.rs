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
    /// Per tag: the entry and the store version at which it last changed.
    entries: BTreeMap<TagId, (Setpoint, u64)>,
    /// Counts changes, so a peer can be sent what changed since it was last told.
    version: u64,
}

impl SetpointStore {
    /// A local write at `now`: it supersedes whatever the tag holds (its time is moved
    /// past the stored one should the clock have gone back). Returns the stored entry, to
    /// replicate as it is.
    pub fn write(&mut self, tag: TagId, value: Value, now: Timestamp) -> Setpoint {
        let floor = self
            .entries
            .get(&tag)
            .map_or(0, |(s, _)| s.written_at.0.saturating_add(1));
        let entry = Setpoint {
            value,
            written_at: Timestamp(now.0.max(floor)),
        };
        self.version += 1;
        self.entries.insert(tag, (entry, self.version));
        entry
    }

    /// Takes `entry` unless the tag already holds a later write. Returns whether it did.
    pub fn merge_one(&mut self, tag: TagId, entry: Setpoint) -> bool {
        match self.entries.get(&tag) {
            Some((have, _)) if !entry.supersedes(have) => false,
            _ => {
                self.version += 1;
                self.entries.insert(tag, (entry, self.version));
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
                .map(|e| (tag, *e))
                .into_iter()
                .collect(),
            version: self.version,
        }
    }

    pub fn get(&self, tag: TagId) -> Option<Value> {
        self.entries.get(&tag).map(|(s, _)| s.value)
    }

    /// Every entry, in tag order.
    pub fn entries(&self) -> impl Iterator<Item = (TagId, Setpoint)> + '_ {
        self.entries.iter().map(|(t, (s, _))| (*t, *s))
    }

    /// The entries changed after `version` (all of them for 0), and the version they
    /// bring a peer to: sending these whenever there are any keeps the peer's store up
    /// to date, also with writes applied here alone while it was unreachable.
    pub fn changes_since(&self, version: u64) -> (Vec<(TagId, Setpoint)>, u64) {
        let changed = self
            .entries
            .iter()
            .filter(|(_, (_, v))| *v > version)
            .map(|(t, (s, _))| (*t, *s))
            .collect();
        (changed, self.version)
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
    fn changes_since_names_only_what_changed() {
        let mut s = SetpointStore::default();
        s.write(TagId(1), Value::Analog(1.0), Timestamp(10));
        let (all, v1) = s.changes_since(0);
        assert_eq!(all.len(), 1);
        assert_eq!(s.changes_since(v1).0, vec![]);
        s.write(TagId(2), Value::Analog(2.0), Timestamp(20));
        assert!(!s.merge_one(TagId(1), sp(0.5, 5)), "older: no change");
        let (changed, _) = s.changes_since(v1);
        assert_eq!(
            changed.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![TagId(2)]
        );
    }

    #[test]
    fn merging_what_is_already_there_changes_nothing() {
        let mut s = SetpointStore::default();
        s.merge_one(TagId(1), sp(1.0, 100));
        let (_, v) = s.changes_since(0);
        // Identical entries come back from the peer all the time (it echoes what it
        // merged): taking them again would bounce them between the two for ever.
        assert!(!s.merge_one(TagId(1), sp(1.0, 100)));
        assert_eq!(s.changes_since(v), (vec![], v));
        // A merged newer entry is a change the peer must hear of.
        assert!(s.merge_one(TagId(2), sp(2.0, 50)));
        let (changed, v2) = s.changes_since(v);
        assert_eq!(changed, vec![(TagId(2), sp(2.0, 50))]);
        assert!(v2 > v);
    }

    #[test]
    fn a_write_is_stamped_against_the_tag_it_writes() {
        let mut s = SetpointStore::default();
        s.merge_one(TagId(1), sp(1.0, 100));
        s.merge_one(TagId(2), sp(2.0, 500));
        let mut probe = s.clone_entry(TagId(1));
        assert_eq!(probe.get(TagId(1)), Some(Value::Analog(1.0)));
        assert_eq!(probe.get(TagId(2)), None, "only the tag written");
        // Stamped after the stored entry even with a clock behind it, so it wins the merge.
        let e = probe.write(TagId(1), Value::Analog(3.0), Timestamp(10));
        assert_eq!(e.written_at, Timestamp(101));
        assert!(s.merge_one(TagId(1), e));
        assert_eq!(s.get(TagId(1)), Some(Value::Analog(3.0)));
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
            proptest::prop_assert_eq!(a.snapshot(), b.snapshot());
        }

        /// Sending only what changed since the last sending converges as well as sending
        /// everything, whatever each side wrote in between.
        #[test]
        fn sending_changes_converges_like_sending_everything(
            rounds in proptest::collection::vec(
                (proptest::collection::vec((0u32..4, 0u64..100), 0..4),
                 proptest::collection::vec((0u32..4, 0u64..100), 0..4)),
                1..6,
            ),
        ) {
            let (mut a, mut b) = (SetpointStore::default(), SetpointStore::default());
            let (mut a_told, mut b_told) = (0u64, 0u64);
            let mut clock = 0u64;
            for (a_writes, b_writes) in rounds {
                for (t, v) in a_writes { clock += 1; a.write(TagId(t), Value::Counter(v), Timestamp(clock)); }
                for (t, v) in b_writes { clock += 1; b.write(TagId(t), Value::Counter(v), Timestamp(clock)); }
                let (to_b, va) = a.changes_since(a_told);
                a_told = va;
                let (to_a, vb) = b.changes_since(b_told);
                b_told = vb;
                b.merge(to_b);
                a.merge(to_a);
            }
            // One more exchange settles what the last merges changed.
            let (to_b, _) = a.changes_since(a_told);
            let (to_a, _) = b.changes_since(b_told);
            b.merge(to_b);
            a.merge(to_a);
            proptest::prop_assert_eq!(a.snapshot(), b.snapshot());
        }
    }
}
