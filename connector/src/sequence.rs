//! Sequence tracking of one client-access session (DESIGN §4: "`seq` counts data frames
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
}

impl SequenceTracker {
    /// We (re)subscribed or unsubscribed: updates still in flight from the earlier
    /// subscription are dropped until the next snapshot, not mistaken for a gap.
    pub fn handle_subscribe(&mut self) {
        self.last = None;
        self.resyncing = true;
    }

    /// A snapshot: the stream starts again at its `seq`.
    pub fn handle_snapshot(&mut self, seq: u64) -> SeqVerdict {
        self.last = Some(seq);
        self.resyncing = false;
        SeqVerdict::Accept
    }

    /// An update batch.
    pub fn handle_updates(&mut self, seq: u64) -> SeqVerdict {
        if self.resyncing {
            return SeqVerdict::Drop;
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
}
