//! Property tests of the engine's write queue over arbitrary sequences of writes, sends,
//! answers, lost sources and the passage of time.

use po_protocol::WriteOutcome;
use proptest::prelude::*;
use smart_connector::write_queue::{Deadline, RETRY_DELAY, Resolution, WriteQueue};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct W {
    /// Arrival order.
    id: usize,
    deadline: Instant,
}

impl Deadline for W {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write {
        lives_ms: u64,
    },
    /// Send what may be sent to `primary`; the source's queue takes `room` of them.
    Flush {
        primary: Option<usize>,
        room: usize,
    },
    Answer {
        source: usize,
        nth: usize,
        outcome: u8,
    },
    Lost {
        source: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..400).prop_map(|lives_ms| Op::Write { lives_ms }),
        3 => (prop::option::of(0usize..2), 0usize..4).prop_map(|(primary, room)| Op::Flush { primary, room }),
        3 => (0usize..2, 0usize..3, 0u8..3).prop_map(|(source, nth, outcome)| Op::Answer { source, nth, outcome }),
        1 => (0usize..2).prop_map(|source| Op::Lost { source }),
        2 => (0u64..120).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn every_write_ends_once_in_order_and_never_late(ops in prop::collection::vec(op(), 1..100)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut q: WriteQueue<W> = WriteQueue::new(2);
        let mut written = 0usize;
        let mut ended = 0usize;
        // Per source: (request id, write id) in flight, in send order.
        let mut flying: [Vec<(u64, usize)>; 2] = [vec![], vec![]];
        let mut hold_until: Option<Instant> = None;
        for op in ops {
            match op {
                Op::Write { lives_ms } => {
                    q.handle_write(W { id: written, deadline: now + Duration::from_millis(lives_ms) });
                    written += 1;
                }
                Op::Flush { primary, room } => {
                    // The engine's turn: expire, then send what may be sent.
                    let expired = q.poll_expired(now);
                    ended += expired.len();
                    for f in &mut flying {
                        f.retain(|(_, id)| !expired.iter().any(|w| w.id == *id));
                    }
                    let mut sent = 0;
                    while let Some((rid, w)) = q.poll_transmit(now, primary) {
                        let source = primary.expect("nothing is released without a Primary");
                        prop_assert!(w.deadline > now, "write {} sent past its deadline", w.id);
                        prop_assert!(hold_until.is_none_or(|h| now >= h), "sent during the retry hold");
                        if sent == room {
                            q.handle_not_sent(w);
                            break;
                        }
                        sent += 1;
                        flying[source].push((rid, w.id));
                        q.handle_sent(source, rid, w);
                    }
                    // Liveness: the engine sleeps until poll_at; it must lie ahead.
                    prop_assert!(q.poll_at().is_none_or(|t| t > now), "poll_at in the past: the engine would spin");
                }
                Op::Answer { source, nth, outcome } => {
                    if flying[source].is_empty() { continue; }
                    let (rid, _) = flying[source].remove(nth % flying[source].len());
                    let outcome = [WriteOutcome::Applied, WriteOutcome::NotPrimary, WriteOutcome::ReadOnly][outcome as usize];
                    match q.handle_result(now, source, rid, outcome) {
                        Some((_, Resolution::Applied)) => { prop_assert_eq!(outcome, WriteOutcome::Applied); ended += 1; }
                        Some((_, Resolution::Refused(o))) => { prop_assert_eq!(o, outcome); ended += 1; }
                        None => {
                            if outcome == WriteOutcome::NotPrimary {
                                hold_until = Some(now + RETRY_DELAY);
                            }
                        }
                    }
                }
                Op::Lost { source } => {
                    q.handle_source_lost(source);
                    flying[source].clear();
                }
                Op::Advance { ms } => {
                    now += Duration::from_millis(ms);
                    let expired = q.poll_expired(now);
                    for w in &expired {
                        prop_assert!(w.deadline <= now);
                    }
                    ended += expired.len();
                    // What expired in flight is forgotten by the queue: an answer to it
                    // changes nothing (tested below by answering only known requests).
                    for f in &mut flying {
                        f.retain(|(_, id)| !expired.iter().any(|w| w.id == *id));
                    }
                }
            }
            // Conservation: every write is queued, in flight, or ended — exactly once.
            prop_assert_eq!(q.queued_len() + q.in_flight_len() + ended, written);
            // poll_at names the earliest deadline there is.
            // poll_at names something exactly when there is something to wait for: an
            // empty queue has no deadline and no hold to wake up for.
            prop_assert_eq!(q.poll_at().is_some(), q.queued_len() + q.in_flight_len() > 0);
        }
        // At the end of time everything has ended.
        ended += q.poll_expired(now + Duration::from_secs(3600)).len();
        prop_assert_eq!(ended, written);
        prop_assert_eq!(q.queued_len() + q.in_flight_len(), 0);
    }

    #[test]
    fn writes_leave_in_arrival_order_and_retries_go_first(n in 1usize..12, fail_first in any::<bool>()) {
        let t0 = Instant::now();
        let mut q: WriteQueue<W> = WriteQueue::new(1);
        for id in 0..n {
            q.handle_write(W { id, deadline: t0 + Duration::from_secs(10) });
        }
        let mut order = Vec::new();
        let (rid, first) = q.poll_transmit(t0, Some(0)).unwrap();
        order.push(first.id);
        q.handle_sent(0, rid, first);
        let mut now = t0;
        if fail_first {
            prop_assert!(q.handle_result(now, 0, rid, WriteOutcome::NotPrimary).is_none());
            prop_assert!(q.poll_transmit(now, Some(0)).is_none(), "held after NotPrimary");
            now += RETRY_DELAY;
            order.clear();
        } else {
            q.handle_source_lost(0);
            order.clear();
        }
        while let Some((rid, w)) = q.poll_transmit(now, Some(0)) {
            order.push(w.id);
            q.handle_sent(0, rid, w);
        }
        prop_assert_eq!(order, (0..n).collect::<Vec<_>>());
    }
}
