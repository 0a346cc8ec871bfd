//! Model-based property tests of the source session core (`connector/src/source_session.rs`).
//!
//! `Session`: a modelled server streams numbered data frames over a link that may lose
//! them; the engine subscribes (with generations), unsubscribes and writes at random. Each
//! update carries the server's sequence number as its value, so the engine's view can be
//! checked frame by frame:
//! - what the session tells the engine never has a hole: an update applies on top of the
//!   snapshot or update told before it, never across a lost frame;
//! - data is told with the generation of the engine's latest `Subscribe`;
//! - the session resubscribes (and tells the engine, which counts `sc_resubscribes_total`)
//!   only when a frame was lost, and once the link stops losing, one heartbeat brings the
//!   engine's view back to the server's;
//! - the silence deadline is exactly `silence_timeout` after the last frame heard.
//!
//! `Reconnect`: the wait doubles from `min` up to `max` and starts again after a session
//! that was up; a loss or a new way of failing is warned about at once, the same failure
//! again at most once per 10 s with the count of attempts not logged.

use po_protocol::{Frame, Quality, Role, TagId, TagValue, Timestamp, Value, WriteOutcome};
use proptest::prelude::*;
use smart_connector::source_session::{
    Action, Notice, REPEAT_EVERY, Reconnect, Session, SourceCommand, SourceMsg,
};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

const SILENCE: Duration = Duration::from_millis(1_000);

#[derive(Debug, Clone)]
enum Step {
    /// The engine subscribes (a new generation).
    Subscribe,
    Unsubscribe,
    Write,
    /// The server sends its next update (when subscribed); `lost`: the link drops it.
    ServerUpdate {
        lost: bool,
    },
    /// The server announces its sequence number.
    ServerHeartbeat {
        lost: bool,
    },
    /// The next frame on the link reaches the session.
    Deliver,
    /// A frame the session does not expect in an established session.
    Stray,
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::Subscribe),
        1 => Just(Step::Unsubscribe),
        1 => Just(Step::Write),
        // Losses are rarer than deliveries, so that long runs without a loss happen too.
        6 => prop::bool::weighted(0.2).prop_map(|lost| Step::ServerUpdate { lost }),
        2 => prop::bool::weighted(0.2).prop_map(|lost| Step::ServerHeartbeat { lost }),
        8 => Just(Step::Deliver),
        1 => Just(Step::Stray),
        2 => (0u64..1_500).prop_map(Step::Advance),
    ]
}

fn update(seq: u64) -> Frame {
    Frame::Updates {
        seq,
        batch: vec![value(seq)],
    }
}

fn value(n: u64) -> TagValue {
    TagValue {
        tag: TagId(0),
        value: Value::Analog(n as f64),
        quality: Quality::Good,
        sampled_at: Timestamp(n),
    }
}

fn carried(values: &[TagValue]) -> u64 {
    match values {
        [
            TagValue {
                value: Value::Analog(v),
                ..
            },
        ] => *v as u64,
        other => panic!("one value per frame in this model, got {other:?}"),
    }
}

/// The modelled server and what the engine has been told.
struct World {
    session: Session,
    now: Instant,
    /// When the session last heard a frame.
    heard: Instant,
    /// The server's sequence number: the last data frame it sent.
    server_seq: u64,
    /// The server streams updates (a `Subscribe` reached it, no `Unsubscribe` since).
    server_subscribed: bool,
    /// Frames on their way to the session.
    link: VecDeque<Frame>,
    /// The sequence numbers of the updates the link lost.
    lost: HashSet<u64>,
    /// The engine's latest generation (0: never subscribed).
    generation: u64,
    /// The engine subscribed and has not unsubscribed since.
    engine_subscribed: bool,
    /// The engine's view: the value of the last snapshot or update it was told.
    engine_view: Option<u64>,
    resubscribes: u64,
    next_request: u64,
    writes_answered: Vec<u64>,
}

impl World {
    fn new() -> World {
        let now = Instant::now();
        World {
            session: Session::new("A", SILENCE, now),
            now,
            heard: now,
            server_seq: 0,
            server_subscribed: false,
            link: VecDeque::new(),
            lost: HashSet::new(),
            generation: 0,
            engine_subscribed: false,
            engine_view: None,
            resubscribes: 0,
            next_request: 0,
            writes_answered: Vec::new(),
        }
    }

    /// Carry out the session's decisions: frames reach the server at once, tells reach
    /// the engine, whose view is checked.
    fn carry_out(&mut self) -> Result<(), TestCaseError> {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Send(Frame::Subscribe { .. }) => {
                    self.server_subscribed = true;
                    self.link.push_back(Frame::Snapshot {
                        seq: self.server_seq,
                        values: vec![value(self.server_seq)],
                    });
                }
                Action::Send(Frame::Unsubscribe) => self.server_subscribed = false,
                Action::Send(Frame::Write { request_id, .. }) => {
                    self.link.push_back(Frame::WriteResult {
                        request_id,
                        outcome: WriteOutcome::Applied,
                    });
                }
                Action::Send(other) => {
                    return Err(TestCaseError::fail(format!("unexpected send {other:?}")));
                }
                Action::Tell(msg) => self.told(msg)?,
            }
        }
        Ok(())
    }

    fn told(&mut self, msg: SourceMsg) -> Result<(), TestCaseError> {
        match msg {
            SourceMsg::Snapshot {
                values,
                complete,
                generation,
            } => {
                prop_assert!(complete);
                prop_assert_eq!(
                    generation,
                    self.generation,
                    "a snapshot of an old generation"
                );
                self.engine_view = Some(carried(&values));
            }
            SourceMsg::Updates { batch, generation } => {
                prop_assert_eq!(generation, self.generation, "updates of an old generation");
                let v = carried(&batch);
                prop_assert_eq!(
                    self.engine_view.map(|last| last + 1),
                    Some(v),
                    "an update told across a hole (or before any snapshot)"
                );
                self.engine_view = Some(v);
            }
            SourceMsg::Resubscribed => {
                // The frames come in order, so a gap seen after the engine's view `v`
                // means frame `v + 1` was lost (not merely late).
                prop_assert!(
                    self.engine_view
                        .is_some_and(|v| self.lost.contains(&(v + 1))),
                    "resubscribed though nothing was lost after {:?}",
                    self.engine_view
                );
                self.resubscribes += 1;
            }
            SourceMsg::WriteResult { request_id, .. } => self.writes_answered.push(request_id),
            SourceMsg::Heartbeat { .. } => {}
            other => return Err(TestCaseError::fail(format!("unexpected tell {other:?}"))),
        }
        Ok(())
    }

    fn apply(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::Subscribe => {
                self.generation += 1;
                self.engine_subscribed = true;
                // Data told from now on must be of the new subscription: a fresh view.
                self.engine_view = None;
                self.session.handle_command(SourceCommand::Subscribe {
                    generation: self.generation,
                });
            }
            Step::Unsubscribe => {
                self.engine_subscribed = false;
                self.engine_view = None;
                self.session.handle_command(SourceCommand::Unsubscribe);
            }
            Step::Write => {
                self.next_request += 1;
                self.session.handle_command(SourceCommand::Write {
                    request_id: self.next_request,
                    tag: TagId(0),
                    value: Value::Analog(1.0),
                });
            }
            Step::ServerUpdate { lost } => {
                if self.server_subscribed {
                    self.server_seq += 1;
                    if *lost {
                        self.lost.insert(self.server_seq);
                    } else {
                        self.link.push_back(update(self.server_seq));
                    }
                }
            }
            Step::ServerHeartbeat { lost } => {
                if !lost {
                    self.link.push_back(heartbeat(self.server_seq));
                }
            }
            Step::Deliver => {
                if let Some(frame) = self.link.pop_front() {
                    self.deliver(frame)?;
                }
            }
            Step::Stray => self.deliver(Frame::Browse)?,
            Step::Advance(ms) => {
                self.now += Duration::from_millis(*ms);
                let silent = self.now.duration_since(self.heard);
                let verdict = self.session.handle_timeout(self.now);
                prop_assert_eq!(
                    verdict.is_err(),
                    silent >= SILENCE,
                    "silent for {:?}",
                    silent
                );
                prop_assert_eq!(self.session.poll_timeout(), self.heard + SILENCE);
            }
        }
        self.carry_out()
    }

    fn deliver(&mut self, frame: Frame) -> Result<(), TestCaseError> {
        self.heard = self.now;
        prop_assert!(self.session.handle_frame(self.now, frame).is_ok());
        prop_assert_eq!(self.session.poll_timeout(), self.now + SILENCE);
        Ok(())
    }

    /// The link stops losing: everything on it arrives, then a heartbeat (and the
    /// snapshot a resubscription asks for).
    fn settle(&mut self) -> Result<(), TestCaseError> {
        self.link.push_back(heartbeat(self.server_seq));
        while let Some(frame) = self.link.pop_front() {
            self.deliver(frame)?;
            self.carry_out()?;
        }
        Ok(())
    }
}

fn heartbeat(seq: u64) -> Frame {
    Frame::Heartbeat {
        role: Role::Primary,
        epoch: 1,
        seq,
        sent_at: Timestamp(0),
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut w = World::new();
    let mut losses = 0;
    for s in steps {
        if matches!(s, Step::ServerUpdate { lost: true }) && w.server_subscribed {
            losses += 1;
        }
        w.apply(s)?;
    }
    w.settle()?;
    prop_assert!(w.resubscribes <= losses, "more resubscriptions than losses");
    if w.engine_subscribed {
        // One heartbeat after the losses stopped brought the engine back to the server.
        prop_assert_eq!(
            w.engine_view,
            Some(w.server_seq),
            "the engine did not catch up"
        );
    }
    // Every write was answered, in order.
    prop_assert_eq!(w.writes_answered, (1..=w.next_request).collect::<Vec<_>>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_engine_never_sees_a_hole_and_catches_up_once_losses_stop(
        steps in proptest::collection::vec(step(), 0..120)
    ) {
        run(&steps)?;
    }
}

/// A lost update followed by a heartbeat: exactly one resubscription, told once, and the
/// snapshot it asks for brings the engine back.
#[test]
fn one_lost_update_is_one_resubscription() {
    let mut w = World::new();
    let steps = [
        Step::Subscribe,
        Step::Deliver, // the snapshot at 0
        Step::ServerUpdate { lost: false },
        Step::ServerUpdate { lost: true },
        Step::Deliver, // update 1
        Step::ServerHeartbeat { lost: false },
        Step::Deliver, // heartbeat at 2: frame 2 was lost
    ];
    for s in &steps {
        w.apply(s).unwrap();
    }
    assert_eq!(w.resubscribes, 1);
    assert_eq!(w.engine_view, Some(1));
    w.settle().unwrap();
    assert_eq!(w.resubscribes, 1, "the snapshot ends the resynchronisation");
    assert_eq!(w.engine_view, Some(2));
}

#[derive(Debug, Clone)]
struct Attempt {
    /// Milliseconds since the previous attempt ended.
    after_ms: u64,
    /// Which of a few ways it failed (ignored when `established`).
    failure: u8,
    established: bool,
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (0u64..6_000, 0u8..3, prop::bool::weighted(0.15)).prop_map(
        |(after_ms, failure, established)| Attempt {
            after_ms,
            failure,
            established,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn backoff_doubles_to_the_cap_and_warnings_are_throttled_per_failure(
        attempts in proptest::collection::vec(attempt(), 1..60)
    ) {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1_600);
        let mut r = Reconnect::new(min, max);
        let mut now = Instant::now();
        // The model.
        let mut backoff = min;
        let mut first = true;
        let mut last_failure: Option<u8> = None;
        let mut last_warning = now;
        let mut quiet = 0u64;
        for a in attempts {
            now += Duration::from_millis(a.after_ms);
            let reason = format!("failure {}", a.failure);
            let retry = r.handle_session_end(now, &reason, a.established);
            if a.established {
                backoff = min;
            }
            prop_assert_eq!(retry.wait, backoff);
            backoff = (backoff * 2).min(max);
            let changed = a.established || last_failure != Some(a.failure);
            if changed {
                let expected = if a.established || first {
                    Notice::Lost
                } else {
                    Notice::StillUnreachable { not_logged: None }
                };
                prop_assert_eq!(retry.notice, expected);
                last_warning = now;
                quiet = 0;
            } else {
                let since = now.duration_since(last_warning);
                // The throttle adds up fractions of its period in floating point: at
                // exactly the period either answer is right.
                let due = since > REPEAT_EVERY
                    || (since == REPEAT_EVERY
                        && retry.notice != Notice::Quiet);
                if due {
                    prop_assert_eq!(
                        retry.notice,
                        Notice::StillUnreachable { not_logged: Some(quiet) }
                    );
                    last_warning = now;
                    quiet = 0;
                } else {
                    prop_assert_eq!(retry.notice, Notice::Quiet);
                    quiet += 1;
                }
            }
            first = false;
            last_failure = (!a.established).then_some(a.failure);
        }
    }
}
