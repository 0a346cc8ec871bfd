//! The point image's change feed (docs/design.md §16): how a face that pushes values
//! (OPC UA subscriptions) learns of every sample the engine stores, without keeping its
//! own copy of the image and without the engine knowing which faces exist.
//!
//! The engine's ingest stays cheap: a face declares per point how many of its clients
//! watch it ([`ChangeFeed::watch`]); a batch with no watched point costs one atomic load.
//! Watched samples are queued with their value (so every sample ingested reaches a
//! client that asked for every change, not only the latest), and the face's task is
//! woken. The queue is bounded: past [`PENDING_CAP`] samples the oldest are dropped
//! and counted ([`ChangeFeed::overflowed`]), never silently.

use po_protocol::{Quality, TagValue, Value};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use tokio::sync::Notify;

/// One point as the image holds it, at full precision (see `RegisterImage::point_value`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointValue {
    pub value: Value,
    pub quality: Quality,
    /// The server's sample time, µs since the Unix epoch (0: no sample yet).
    pub sampled_us: u64,
    /// This connector's receipt time, µs since the Unix epoch (0: no sample yet).
    pub received_us: u64,
}

/// Samples waiting for the face's task at most; a task that falls this far behind is
/// not keeping up, and the oldest samples give way (counted).
pub const PENDING_CAP: usize = 1 << 20;

/// One watched sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub point: u32,
    pub value: PointValue,
}

/// What the face's task takes from the feed in one go.
#[derive(Debug, Default)]
pub struct Drained {
    /// Watched samples in the order they were stored.
    pub changes: Vec<Change>,
    /// The status of every value changed (stale or back): re-read every watched point.
    pub everything: bool,
}

#[derive(Debug)]
pub struct ChangeFeed {
    /// Per point: how many monitored items watch it.
    interest: Vec<AtomicU32>,
    /// The sum of `interest`: zero lets ingest skip the feed with one load.
    watching: AtomicU64,
    pending: Mutex<Vec<Change>>,
    /// Set by a change of the whole image's status (stale, back).
    everything: AtomicBool,
    overflowed: AtomicU64,
    wake: Arc<Notify>,
}

/// Collects one batch's watched samples (built by [`ChangeFeed::collector`]).
#[derive(Debug)]
pub struct Collector<'a> {
    feed: &'a ChangeFeed,
    changes: Vec<Change>,
}

impl Collector<'_> {
    /// Adds the sample of `point` if some client watches it.
    pub fn push(&mut self, point: u32, tv: &TagValue, received_us: u64) {
        if self.feed.interest[point as usize].load(Relaxed) == 0 {
            return;
        }
        self.changes.push(Change {
            point,
            value: PointValue {
                value: tv.value,
                quality: tv.quality,
                sampled_us: tv.sampled_at.0,
                received_us,
            },
        });
    }
}

impl ChangeFeed {
    pub fn new(points: usize, wake: Arc<Notify>) -> ChangeFeed {
        ChangeFeed {
            interest: (0..points).map(|_| AtomicU32::new(0)).collect(),
            watching: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            everything: AtomicBool::new(false),
            overflowed: AtomicU64::new(0),
            wake,
        }
    }

    /// A collector for one batch, or `None` when no point is watched.
    pub fn collector(&self) -> Option<Collector<'_>> {
        (self.watching.load(Relaxed) > 0).then(|| Collector {
            feed: self,
            changes: Vec::new(),
        })
    }

    /// Queues a batch's watched samples and wakes the face.
    pub fn publish(&self, batch: Collector<'_>) {
        if batch.changes.is_empty() {
            return;
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.extend_from_slice(&batch.changes);
            if pending.len() > PENDING_CAP {
                let excess = pending.len() - PENDING_CAP;
                pending.drain(..excess);
                self.overflowed.fetch_add(excess as u64, Relaxed);
            }
        }
        self.wake.notify_one();
    }

    /// One more (`+1`) or one fewer (`-1`) monitored item watches `point`. A point
    /// outside the image is ignored (the caller resolved it against another map).
    pub fn watch(&self, point: u32, delta: i32) {
        let Some(slot) = self.interest.get(point as usize) else {
            return;
        };
        if delta >= 0 {
            slot.fetch_add(delta as u32, Relaxed);
            self.watching.fetch_add(delta as u64, Relaxed);
        } else {
            let by = delta.unsigned_abs();
            // Never below zero, whatever a confused caller says.
            let _ = slot.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(by)));
            let _ = self
                .watching
                .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(u64::from(by))));
        }
    }

    /// How many monitored items watch `point`.
    pub fn interest(&self, point: u32) -> u32 {
        self.interest
            .get(point as usize)
            .map_or(0, |n| n.load(Relaxed))
    }

    /// The image's status changed (service level, draining): wake the face.
    pub fn status_changed(&self) {
        self.wake.notify_one();
    }

    /// Every value's status changed at once (the image went stale or came back).
    pub fn everything_changed(&self) {
        self.everything.store(true, Relaxed);
        self.wake.notify_one();
    }

    /// Takes what is waiting.
    pub fn drain(&self) -> Drained {
        let changes = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        Drained {
            changes,
            everything: self.everything.swap(false, Relaxed),
        }
    }

    /// Samples dropped because the face fell [`PENDING_CAP`] behind.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use po_protocol::{TagId, Timestamp};

    fn sample(v: f64) -> TagValue {
        TagValue {
            tag: TagId(0),
            value: Value::Analog(v),
            quality: Quality::Good,
            sampled_at: Timestamp(7),
        }
    }

    #[test]
    fn only_watched_points_are_queued_in_order_and_every_sample_is_kept() {
        let feed = ChangeFeed::new(3, Arc::new(Notify::new()));
        assert!(
            feed.collector().is_none(),
            "nobody watches: ingest skips the feed"
        );
        feed.watch(1, 1);
        let mut c = feed.collector().expect("a point is watched");
        c.push(0, &sample(1.0), 10);
        c.push(1, &sample(2.0), 11);
        c.push(1, &sample(3.0), 12);
        feed.publish(c);
        let d = feed.drain();
        let got: Vec<_> = d.changes.iter().map(|c| (c.point, c.value.value)).collect();
        assert_eq!(
            got,
            vec![(1, Value::Analog(2.0)), (1, Value::Analog(3.0))],
            "both samples of the watched point, none of the other"
        );
        assert!(!d.everything);
        assert!(feed.drain().changes.is_empty(), "drained once");
    }

    #[test]
    fn interest_counts_up_and_down_and_never_below_zero() {
        let feed = ChangeFeed::new(2, Arc::new(Notify::new()));
        feed.watch(0, 1);
        feed.watch(0, 1);
        feed.watch(0, -1);
        assert_eq!(feed.interest(0), 1);
        feed.watch(0, -5);
        assert_eq!(feed.interest(0), 0);
        assert!(feed.collector().is_none());
        feed.watch(9, 1);
        assert_eq!(feed.interest(9), 0, "outside the image: ignored");
    }

    #[test]
    fn a_status_change_of_the_whole_image_is_reported_once() {
        let feed = ChangeFeed::new(1, Arc::new(Notify::new()));
        feed.everything_changed();
        assert!(feed.drain().everything);
        assert!(!feed.drain().everything);
    }
}
