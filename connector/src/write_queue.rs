//! Writes on their way to the Primary: queued until there is one, in flight on the source
//! they were sent to, retried after `NotPrimary` or a lost source, expired at their
//! deadline. Sans-IO: the engine feeds events and `now`, and carries out what it is told;
//! a write is any value with a deadline, so tests need no channels. Property-tested in
//! `connector/tests/write_queue_props.rs`.
//!
//! Rules:
//! - writes are sent in the order they arrived; one that must be retried goes back to the
//!   front, ahead of later writes, so one master's writes to one tag keep their order;
//! - nothing is sent while no Primary is active, nor for [`RETRY_DELAY`] after a
//!   `NotPrimary` (no hot retry loop while the pair sorts out its roles);
//! - a write sent on a source that is lost may or may not have been applied: it is sent
//!   again to the next Primary (a write sets a value: repeating it is harmless);
//! - at its deadline a write leaves the queue, wherever it is, and is answered as timed
//!   out; a write past its deadline is never sent.

use po_protocol::WriteOutcome;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Pause before retrying a write the server answered `NotPrimary`.
pub const RETRY_DELAY: Duration = Duration::from_millis(50);

/// What the queue needs of a write.
pub trait Deadline {
    fn deadline(&self) -> Instant;
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Applied,
    /// Refused by the server for a reason other than not being Primary.
    Refused(WriteOutcome),
}

#[derive(Debug)]
pub struct WriteQueue<W> {
    queued: VecDeque<W>,
    /// Per source: writes sent there, by request id (ids grow, so this is send order).
    in_flight: Vec<BTreeMap<u64, W>>,
    next_request_id: u64,
    hold_until: Option<Instant>,
}

impl<W: Deadline> WriteQueue<W> {
    pub fn new(sources: usize) -> WriteQueue<W> {
        WriteQueue {
            queued: VecDeque::new(),
            in_flight: (0..sources).map(|_| BTreeMap::new()).collect(),
            next_request_id: 1,
            hold_until: None,
        }
    }

    /// A new write from a master.
    pub fn handle_write(&mut self, w: W) {
        self.queued.push_back(w);
    }

    /// The next write to send to `primary` (the active Primary's source, if any), with
    /// the request id to send it under. Hand it back with [`Self::handle_sent`] or
    /// [`Self::handle_not_sent`].
    pub fn poll_transmit(&mut self, now: Instant, primary: Option<usize>) -> Option<(u64, W)> {
        // A hold that has passed is over, Primary or not: `poll_at` must never name a
        // moment already gone (the engine would wake up for it again and again).
        if self.hold_until.is_some_and(|t| now < t) {
            return None;
        }
        self.hold_until = None;
        primary?;
        if self.queued.front()?.deadline() <= now {
            return None; // expired: `poll_expired` answers it
        }
        let w = self.queued.pop_front()?;
        let id = self.next_request_id;
        self.next_request_id += 1;
        Some((id, w))
    }

    /// The write went out on `source` as request `id`.
    pub fn handle_sent(&mut self, source: usize, id: u64, w: W) {
        self.in_flight[source].insert(id, w);
    }

    /// The write could not be sent (the source's queue is full): it stays first.
    pub fn handle_not_sent(&mut self, w: W) {
        self.queued.push_front(w);
    }

    /// A source's answer to request `id`. Returns the write with how it ended, or `None`
    /// when it is to be retried (`NotPrimary`) or unknown (already expired).
    pub fn handle_result(
        &mut self,
        now: Instant,
        source: usize,
        id: u64,
        outcome: WriteOutcome,
    ) -> Option<(W, Resolution)> {
        let w = self.in_flight.get_mut(source)?.remove(&id)?;
        match outcome {
            WriteOutcome::Applied => Some((w, Resolution::Applied)),
            WriteOutcome::NotPrimary => {
                self.queued.push_front(w);
                self.hold_until = Some(now + RETRY_DELAY);
                None
            }
            other => Some((w, Resolution::Refused(other))),
        }
    }

    /// The source's connection is gone: what was in flight there goes back to the front
    /// of the queue, in the order it was sent.
    pub fn handle_source_lost(&mut self, source: usize) {
        let Some(lost) = self.in_flight.get_mut(source) else {
            return;
        };
        for (_, w) in std::mem::take(lost).into_iter().rev() {
            self.queued.push_front(w);
        }
    }

    /// Removes every write whose deadline has come, queued or in flight.
    pub fn poll_expired(&mut self, now: Instant) -> Vec<W> {
        let mut expired = Vec::new();
        let mut keep = VecDeque::with_capacity(self.queued.len());
        for w in self.queued.drain(..) {
            if w.deadline() <= now {
                expired.push(w);
            } else {
                keep.push_back(w);
            }
        }
        self.queued = keep;
        for flight in &mut self.in_flight {
            let due: Vec<u64> = flight
                .iter()
                .filter(|(_, w)| w.deadline() <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if let Some(w) = flight.remove(&id) {
                    expired.push(w);
                }
            }
        }
        expired
    }

    /// When something may next change on its own: a deadline, or the end of a hold.
    pub fn poll_at(&self) -> Option<Instant> {
        let deadlines = self
            .queued
            .iter()
            .chain(self.in_flight.iter().flat_map(|f| f.values()))
            .map(|w| w.deadline())
            .min();
        let hold = self.hold_until.filter(|_| !self.queued.is_empty());
        deadlines.into_iter().chain(hold).min()
    }

    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    pub fn in_flight_len(&self) -> usize {
        self.in_flight.iter().map(|f| f.len()).sum()
    }
}
