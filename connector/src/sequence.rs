//! Sequence tracking of one client-access session (docs/design.md §4: "`seq` counts data frames
//! per session; a gap means loss, and the client must resubscribe").
//!
//! Sans-IO: the source task feeds it the frames' sequence numbers and its own
//! (re)subscriptions, and does what it answers. Property-tested in
//! `connector/tests/sequence_props.rs`.

/// What to do with a data frame, or after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In order: pass it on.
    Accept,
    /// Sent before our latest (re)subscription's snapshot: drop it silently.
    Drop,
    /// Frames were lost: drop this one and resubscribe (a snapshot will follow).
    Resubscribe,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceTracker {
    /// The last data frame accepted since the latest snapshot.
    last: Option<u64>,
    /// A (re)subscription is under way: everything up to its snapshot is stale.
    resyncing: bool,
    /// Parts of a snapshot are arriving; its last part is still to come.
    in_snapshot: bool,
}

impl SequenceTracker {
    /// We (re)subscribed or unsubscribed: updates still in flight from the earlier
    /// subscription are dropped until the next snapshot, not mistaken for a gap.
    pub fn handle_subscribe(&mut self) {
        self.last = None;
        self.resyncing = true;
        self.in_snapshot = false;
    }

    /// A (whole) snapshot: the stream starts again at its `seq`.
    pub fn handle_snapshot(&mut self, seq: u64) -> SeqVerdict {
        self.last = Some(seq);
        self.resyncing = false;
        self.in_snapshot = false;
        SeqVerdict::Accept
    }

    /// A part of a large snapshot: part 0 restarts the stream (as a whole snapshot
    /// does); later parts must follow in order; parts of a snapshot whose start was
    /// missed or given up on are a hole, then dropped while the resubscription is under
    /// way. The snapshot is complete when its `last` part is accepted.
    pub fn handle_snapshot_part(&mut self, seq: u64, part: u32, last: bool) -> SeqVerdict {
        if part == 0 {
            self.last = Some(seq);
            self.resyncing = false;
            self.in_snapshot = !last;
            return SeqVerdict::Accept;
        }
        if !self.in_snapshot {
            if self.resyncing {
                return SeqVerdict::Drop;
            }
            self.resyncing = true;
            return SeqVerdict::Resubscribe;
        }
        match self.last {
            Some(prev) if seq == prev + 1 => {
                self.last = Some(seq);
                self.in_snapshot = !last;
                SeqVerdict::Accept
            }
            _ => {
                self.in_snapshot = false;
                self.resyncing = true;
                SeqVerdict::Resubscribe
            }
        }
    }

    /// An update batch.
    pub fn handle_updates(&mut self, seq: u64) -> SeqVerdict {
        if self.resyncing {
            return SeqVerdict::Drop;
        }
        if self.in_snapshot {
            // Updates never come between a snapshot's parts: something is wrong.
            self.in_snapshot = false;
            self.resyncing = true;
            return SeqVerdict::Resubscribe;
        }
        match self.last {
            Some(last) if seq == last + 1 => {
                self.last = Some(seq);
                SeqVerdict::Accept
            }
            _ => {
                self.resyncing = true;
                SeqVerdict::Resubscribe
            }
        }
    }

    /// A heartbeat announces the session's current `seq`: one beyond the last frame we
    /// accepted means data frames were lost on the way.
    pub fn handle_heartbeat(&mut self, seq: u64) -> SeqVerdict {
        match self.last {
            Some(last) if seq > last && !self.resyncing => {
                self.resyncing = true;
                SeqVerdict::Resubscribe
            }
            _ => SeqVerdict::Accept,
        }
    }

    /// The last accepted data frame's `seq`, if a snapshot started the stream.
    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SeqVerdict::*;

    #[test]
    fn in_order_frames_pass_and_a_gap_asks_for_a_resubscription_once() {
        let mut t = SequenceTracker::default();
        assert_eq!(
            t.handle_updates(1),
            Resubscribe,
            "updates before any snapshot"
        );
        t.handle_subscribe();
        assert_eq!(
            t.handle_updates(2),
            Drop,
            "left over from before the subscription"
        );
        assert_eq!(t.last(), None);
        assert_eq!(t.handle_snapshot(5), Accept);
        assert_eq!(t.last(), Some(5));
        assert_eq!(t.handle_updates(6), Accept);
        assert_eq!(t.last(), Some(6));
        assert_eq!(t.handle_heartbeat(6), Accept, "nothing missing");
        assert_eq!(t.handle_updates(8), Resubscribe, "7 is missing");
        assert_eq!(t.handle_updates(9), Drop, "until the snapshot");
        assert_eq!(t.handle_heartbeat(12), Accept, "already resubscribing");
        assert_eq!(t.handle_snapshot(13), Accept);
        assert_eq!(t.handle_heartbeat(14), Resubscribe, "14 announced, 13 seen");
    }

    #[test]
    fn a_snapshot_in_parts_is_one_stream_and_a_lost_part_asks_again() {
        let mut t = SequenceTracker::default();
        t.handle_subscribe();
        assert_eq!(t.handle_snapshot_part(4, 0, false), Accept);
        assert_eq!(t.handle_heartbeat(4), Accept, "a heartbeat between parts");
        assert_eq!(t.handle_snapshot_part(5, 1, false), Accept);
        assert_eq!(t.handle_snapshot_part(6, 2, true), Accept, "the last part");
        assert_eq!(t.handle_updates(7), Accept);
        // A part goes missing: ask again, drop the rest of that snapshot, then take the
        // new one from its part 0.
        assert_eq!(t.handle_snapshot_part(10, 0, false), Accept);
        assert_eq!(
            t.handle_snapshot_part(12, 2, false),
            Resubscribe,
            "part 1 (11) lost"
        );
        assert_eq!(t.handle_snapshot_part(13, 3, true), Drop);
        assert_eq!(t.handle_updates(14), Drop);
        assert_eq!(t.handle_snapshot_part(20, 0, false), Accept);
        assert_eq!(t.handle_snapshot_part(22, 1, true), Resubscribe, "21 lost");
        assert_eq!(t.handle_snapshot_part(23, 0, false), Accept);
        assert_eq!(
            t.handle_updates(24),
            Resubscribe,
            "updates inside a snapshot"
        );
        // The rest of a snapshot whose part 0 was lost is a hole, not a snapshot.
        let mut t = SequenceTracker::default();
        assert_eq!(t.handle_snapshot(1), Accept);
        assert_eq!(
            t.handle_snapshot_part(3, 1, true),
            Resubscribe,
            "part 0 (2) lost"
        );
        assert_eq!(t.handle_snapshot(5), Accept, "a whole snapshot");
        // Subscribing in the middle of parts: the rest is dropped.
        assert_eq!(t.handle_snapshot_part(6, 0, false), Accept);
        t.handle_subscribe();
        assert_eq!(t.handle_snapshot_part(7, 1, true), Drop);
        assert_eq!(t.handle_snapshot_part(8, 0, true), Accept);
    }
}
