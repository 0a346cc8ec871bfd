//! The source session's decisions, sans-IO: what `source.rs` sends, tells the engine and
//! waits for, with frames, commands and `now` passed in and no sockets or timers inside.
//!
//! - [`Reconnect`]: capped exponential backoff between attempts, and which attempt is
//!   worth a warning (one per loss and per change of failure, then one per 10 s with
//!   the attempts not logged, docs/connector.md);
//! - [`Handshake`]: `Hello` → `Welcome` → `Browse` → catalogue (in parts);
//! - [`Session`]: an established session — data frames numbered without gaps (a gap
//!   resubscribes, and the engine is told so it counts `sc_resubscribes_total`), the
//!   engine's subscriptions tagged with their generation, and the silence deadline (a
//!   server silent for `silence_timeout` is dropped: a black hole never closes a link).
//!
//! Tested in-module (fast, guards mutation testing).

use crate::sequence::{SeqVerdict, SequenceTracker};
use po_protocol::{
    ErrorCode, Frame, Role, TagId, TagInfo, TagSelection, TagValue, Value, WriteOutcome,
};
use po_runtime::admission::LogThrottle;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the engine asks of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceCommand {
    /// Subscribe (again); the data that answers it carries `generation`, so the engine
    /// can tell it from data of an earlier subscription still on its way.
    Subscribe {
        generation: u64,
    },
    Unsubscribe,
    Write {
        request_id: u64,
        tag: TagId,
        value: Value,
    },
}

/// What a source tells the engine.
#[derive(Debug)]
pub enum SourceMsg {
    Connected {
        role: Role,
        epoch: u64,
        /// Shared, so the start-up can keep it while the engine compares it, uncopied.
        catalog: Arc<Vec<TagInfo>>,
    },
    Lost {
        reason: String,
    },
    Heartbeat {
        role: Role,
        epoch: u64,
    },
    /// A snapshot, or one part of a large one (`complete` on its final part).
    Snapshot {
        values: Vec<TagValue>,
        complete: bool,
        /// The `Subscribe` it answers.
        generation: u64,
    },
    Updates {
        batch: Vec<TagValue>,
        generation: u64,
    },
    WriteResult {
        request_id: u64,
        outcome: WriteOutcome,
    },
    /// Data frames were lost (a sequence gap) and the session subscribed again: counted
    /// in `sc_resubscribes_total`.
    Resubscribed,
}

/// The same reconnection failure is warned about at most this often.
pub const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// How loudly to report a session's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Warn "source lost" (a session that was up ended, or the very first attempt failed).
    Lost,
    /// Warn "source still unreachable": the way reconnecting fails changed, or
    /// `not_logged` quiet attempts have passed since the last warning.
    StillUnreachable { not_logged: Option<u64> },
    /// The same failure again, within [`REPEAT_EVERY`] of the last warning: debug only.
    Quiet,
}

/// What to do after a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Wait this long before the next attempt.
    pub wait: Duration,
    pub notice: Notice,
}

/// Backoff and log throttling between connection attempts.
#[derive(Debug, Clone)]
pub struct Reconnect {
    min: Duration,
    max: Duration,
    backoff: Duration,
    first_attempt: bool,
    /// How the last attempt failed (None after a session that was up).
    last_failure: Option<String>,
    repeats: LogThrottle,
}

impl Reconnect {
    pub fn new(min: Duration, max: Duration) -> Reconnect {
        Reconnect {
            min,
            max,
            backoff: min,
            first_attempt: true,
            last_failure: None,
            repeats: LogThrottle::new(REPEAT_EVERY),
        }
    }

    /// A session ended for `reason`; `established`: it had got as far as the catalogue.
    pub fn handle_session_end(&mut self, now: Instant, reason: &str, established: bool) -> Retry {
        if established {
            self.backoff = self.min;
        }
        // The first attempt always differs from the last failure (there was none).
        let changed = self.last_failure.as_deref() != Some(reason);
        let notice = if established || changed {
            self.repeats = LogThrottle::new(REPEAT_EVERY);
            self.repeats
                .handle_event(tokio::time::Instant::from_std(now));
            if established || self.first_attempt {
                Notice::Lost
            } else {
                Notice::StillUnreachable { not_logged: None }
            }
        } else if let Some(n) = self
            .repeats
            .handle_event(tokio::time::Instant::from_std(now))
        {
            Notice::StillUnreachable {
                not_logged: Some(n),
            }
        } else {
            Notice::Quiet
        };
        self.first_attempt = false;
        self.last_failure = (!established).then(|| reason.to_string());
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.max);
        Retry { wait, notice }
    }
}

/// How a server's `Error` frame is told in the log.
pub fn refusal(code: ErrorCode, message: &str) -> String {
    // A graceful stop is no refusal: the log should say the server is going away.
    if code == ErrorCode::ShuttingDown {
        return format!("server shutting down ({code}): {message}");
    }
    format!("server refused ({code}): {message}")
}

/// What the handshake wants next.
#[derive(Debug, Clone, PartialEq)]
pub enum HandshakeStep {
    /// Send this frame, then wait for the next one.
    Send(Frame),
    /// Wait for the next frame (a catalogue part came).
    Wait,
    /// The session is established.
    Done {
        role: Role,
        epoch: u64,
        catalog: Arc<Vec<TagInfo>>,
    },
}

/// `Welcome`, then the catalogue (in parts); heartbeats meanwhile update the claim.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    welcomed: Option<(Role, u64)>,
    catalog: Vec<TagInfo>,
}

impl Handshake {
    /// What the next frame must be (for "no X within ..." when it does not come).
    pub fn waiting_for(&self) -> &'static str {
        if self.welcomed.is_some() {
            "Catalog"
        } else {
            "Welcome"
        }
    }

    /// The next frame from the server (its `Error` frames included): the next step, or
    /// why the session ends.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<HandshakeStep, String> {
        if let Frame::Error { code, message } = frame {
            return Err(refusal(code, &message));
        }
        let Some((role, epoch)) = self.welcomed.as_mut() else {
            return match frame {
                Frame::Welcome { role, epoch, .. } => {
                    self.welcomed = Some((role, epoch));
                    Ok(HandshakeStep::Send(Frame::Browse))
                }
                other => Err(format!("expected Welcome, got {}", other.kind())),
            };
        };
        match frame {
            Frame::CatalogPart { tags } => {
                self.catalog.extend(tags);
                Ok(HandshakeStep::Wait)
            }
            Frame::Catalog { tags } => {
                self.catalog.extend(tags);
                Ok(HandshakeStep::Done {
                    role: *role,
                    epoch: *epoch,
                    catalog: Arc::new(std::mem::take(&mut self.catalog)),
                })
            }
            Frame::Heartbeat {
                role: r, epoch: e, ..
            } => {
                *role = r;
                *epoch = e;
                Ok(HandshakeStep::Wait)
            }
            other => Err(format!("expected Catalog, got {}", other.kind())),
        }
    }
}

/// A decision of an established session, in order.
#[derive(Debug)]
pub enum Action {
    /// Send this frame to the server.
    Send(Frame),
    /// Tell the engine.
    Tell(SourceMsg),
}

/// An established session.
#[derive(Debug)]
pub struct Session {
    /// The source's name, for log lines.
    name: String,
    /// Data frames must be numbered without gaps.
    seq: SequenceTracker,
    /// The engine's latest `Subscribe` on this session.
    generation: u64,
    silence_timeout: Duration,
    last_heard: Instant,
    actions: VecDeque<Action>,
}

fn subscribe_all() -> Frame {
    Frame::Subscribe {
        tags: TagSelection::All,
    }
}

impl Session {
    pub fn new(name: &str, silence_timeout: Duration, now: Instant) -> Session {
        Session {
            name: name.to_string(),
            seq: SequenceTracker::default(),
            generation: 0,
            silence_timeout,
            last_heard: now,
            actions: VecDeque::new(),
        }
    }

    /// When the server will have been silent too long (unless a frame comes first).
    pub fn poll_timeout(&self) -> Instant {
        self.last_heard + self.silence_timeout
    }

    /// Time passed: an error (the reason) once the server has been silent too long.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        if now >= self.poll_timeout() {
            return Err(format!("server silent for {:?}", self.silence_timeout));
        }
        Ok(())
    }

    /// The next decision to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn resubscribe(&mut self) {
        self.actions.push_back(Action::Send(subscribe_all()));
        self.actions
            .push_back(Action::Tell(SourceMsg::Resubscribed));
    }

    /// A frame from the server: an error (the reason) if it ends the session.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), String> {
        self.last_heard = now;
        let generation = self.generation;
        let msg = match frame {
            Frame::Heartbeat {
                role,
                epoch,
                seq: announced,
                ..
            } => {
                let last = self.seq.last();
                if self.seq.handle_heartbeat(announced) == SeqVerdict::Resubscribe {
                    tracing::warn!(source = %self.name, ?last, announced, "data frames lost; resubscribing");
                    self.resubscribe();
                }
                SourceMsg::Heartbeat { role, epoch }
            }
            Frame::Snapshot { seq: at, values } => {
                self.seq.handle_snapshot(at);
                SourceMsg::Snapshot {
                    values,
                    complete: true,
                    generation,
                }
            }
            Frame::SnapshotPart {
                seq: at,
                part,
                last,
                values,
            } => match self.seq.handle_snapshot_part(at, part, last) {
                SeqVerdict::Accept => SourceMsg::Snapshot {
                    values,
                    complete: last,
                    generation,
                },
                SeqVerdict::Drop => return Ok(()),
                SeqVerdict::Resubscribe => {
                    tracing::warn!(source = %self.name, got = at, part, "snapshot part lost; resubscribing");
                    self.resubscribe();
                    return Ok(());
                }
            },
            Frame::Updates { seq: at, batch } => {
                let last = self.seq.last();
                match self.seq.handle_updates(at) {
                    SeqVerdict::Accept => SourceMsg::Updates { batch, generation },
                    SeqVerdict::Drop => return Ok(()),
                    SeqVerdict::Resubscribe => {
                        tracing::warn!(source = %self.name, ?last, got = at, "sequence gap; resubscribing");
                        self.resubscribe();
                        return Ok(());
                    }
                }
            }
            Frame::WriteResult {
                request_id,
                outcome,
            } => SourceMsg::WriteResult {
                request_id,
                outcome,
            },
            Frame::Error { code, message } => return Err(refusal(code, &message)),
            other => {
                tracing::warn!(
                    source = %self.name,
                    frame = other.kind(),
                    "unexpected frame from server; ignored"
                );
                return Ok(());
            }
        };
        self.actions.push_back(Action::Tell(msg));
        Ok(())
    }

    /// A command from the engine.
    pub fn handle_command(&mut self, cmd: SourceCommand) {
        let frame = match cmd {
            // Until the Snapshot arrives, updates still in flight from an earlier
            // subscription are dropped, not mistaken for a gap.
            SourceCommand::Subscribe { generation } => {
                self.generation = generation;
                self.seq.handle_subscribe();
                subscribe_all()
            }
            SourceCommand::Unsubscribe => {
                self.seq.handle_subscribe();
                Frame::Unsubscribe
            }
            SourceCommand::Write {
                request_id,
                tag,
                value,
            } => Frame::Write {
                request_id,
                tag,
                value,
            },
        };
        self.actions.push_back(Action::Send(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use po_protocol::{Quality, TagKind, Timestamp};

    const MS: Duration = Duration::from_millis(1);

    fn values(n: u64) -> Vec<TagValue> {
        vec![TagValue {
            tag: TagId(0),
            value: Value::Analog(n as f64),
            quality: Quality::Good,
            sampled_at: Timestamp(n),
        }]
    }

    fn tag(id: u32) -> TagInfo {
        TagInfo {
            id: TagId(id),
            name: format!("T{id}"),
            unit: String::new(),
            kind: TagKind::Analog,
            writable: false,
        }
    }

    fn heartbeat(role: Role, epoch: u64, seq: u64) -> Frame {
        Frame::Heartbeat {
            role,
            epoch,
            seq,
            sent_at: Timestamp(0),
        }
    }

    fn drain(s: &mut Session) -> Vec<String> {
        std::iter::from_fn(|| s.poll_action())
            .map(|a| match a {
                Action::Send(f) => format!("send {}", f.kind()),
                Action::Tell(m) => format!("tell {}", tell(&m)),
            })
            .collect()
    }

    fn tell(m: &SourceMsg) -> String {
        match m {
            SourceMsg::Heartbeat { role, epoch } => format!("Heartbeat {role} {epoch}"),
            SourceMsg::Snapshot {
                complete,
                generation,
                values,
            } => format!(
                "Snapshot g{generation} complete={complete} n={}",
                values.len()
            ),
            SourceMsg::Updates { generation, .. } => format!("Updates g{generation}"),
            SourceMsg::WriteResult { request_id, .. } => format!("WriteResult {request_id}"),
            SourceMsg::Resubscribed => "Resubscribed".into(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_restarts_after_an_established_session() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(100 * MS, 350 * MS);
        let waits: Vec<Duration> = (0..4)
            .map(|_| r.handle_session_end(t0, "refused", false).wait)
            .collect();
        assert_eq!(waits, [100 * MS, 200 * MS, 350 * MS, 350 * MS]);
        assert_eq!(r.handle_session_end(t0, "closed", true).wait, 100 * MS);
        assert_eq!(r.handle_session_end(t0, "refused", false).wait, 200 * MS);
    }

    #[test]
    fn the_same_failure_is_warned_once_then_once_per_10_s_with_the_quiet_count() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(MS, MS);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            r.handle_session_end(at(0), "refused", false).notice,
            Notice::Lost
        );
        for s in 1..10 {
            assert_eq!(
                r.handle_session_end(at(s), "refused", false).notice,
                Notice::Quiet,
                "{s}"
            );
        }
        // 11 s: a whole 10 s have passed since the warning (not a float's breadth less).
        assert_eq!(
            r.handle_session_end(at(11), "refused", false).notice,
            Notice::StillUnreachable {
                not_logged: Some(9)
            }
        );
        // Failing another way is news at once.
        assert_eq!(
            r.handle_session_end(at(11), "timed out", false).notice,
            Notice::StillUnreachable { not_logged: None }
        );
        assert_eq!(
            r.handle_session_end(at(12), "timed out", false).notice,
            Notice::Quiet
        );
        // A session that was up and ended is always a warning, and so is the next failure
        // (it is not the same failure as before the session).
        assert_eq!(
            r.handle_session_end(at(13), "closed", true).notice,
            Notice::Lost
        );
        assert_eq!(
            r.handle_session_end(at(14), "closed", false).notice,
            Notice::StillUnreachable { not_logged: None }
        );
    }

    #[test]
    fn the_handshake_browses_after_welcome_and_gathers_the_catalogue_parts() {
        let mut h = Handshake::default();
        assert_eq!(h.waiting_for(), "Welcome");
        let step = h.handle_frame(Frame::Welcome {
            server_name: "po-a".into(),
            role: Role::Standby,
            epoch: 2,
        });
        assert_eq!(step, Ok(HandshakeStep::Send(Frame::Browse)));
        assert_eq!(h.waiting_for(), "Catalog");
        let step = h.handle_frame(Frame::CatalogPart { tags: vec![tag(0)] });
        assert_eq!(step, Ok(HandshakeStep::Wait));
        // A promotion during the browse: the claim reported is the latest.
        let step = h.handle_frame(heartbeat(Role::Primary, 3, 0));
        assert_eq!(step, Ok(HandshakeStep::Wait));
        let step = h.handle_frame(Frame::Catalog { tags: vec![tag(1)] });
        assert_eq!(
            step,
            Ok(HandshakeStep::Done {
                role: Role::Primary,
                epoch: 3,
                catalog: Arc::new(vec![tag(0), tag(1)]),
            })
        );
    }

    #[test]
    fn the_handshake_ends_on_a_wrong_frame_or_a_refusal() {
        let mut h = Handshake::default();
        assert_eq!(
            h.handle_frame(Frame::Browse),
            Err("expected Welcome, got Browse".to_string())
        );
        let mut h = Handshake::default();
        let refused = h.handle_frame(Frame::Error {
            code: ErrorCode::ShuttingDown,
            message: "bye".into(),
        });
        assert_eq!(
            refused,
            Err("server shutting down (ShuttingDown): bye".to_string())
        );
        let mut h = Handshake::default();
        h.handle_frame(Frame::Welcome {
            server_name: "po-a".into(),
            role: Role::Primary,
            epoch: 1,
        })
        .unwrap();
        assert_eq!(
            h.handle_frame(Frame::Unsubscribe),
            Err("expected Catalog, got Unsubscribe".to_string())
        );
    }

    #[test]
    fn a_refusal_names_its_code() {
        assert_eq!(
            refusal(ErrorCode::ShuttingDown, "going"),
            "server shutting down (ShuttingDown): going"
        );
        assert!(refusal(ErrorCode::Malformed, "no").starts_with("server refused (Malformed): no"));
    }

    #[test]
    fn data_carries_the_generation_of_the_latest_subscribe() {
        let t0 = Instant::now();
        let mut s = Session::new("po-a", Duration::from_secs(1), t0);
        s.handle_command(SourceCommand::Subscribe { generation: 7 });
        s.handle_frame(
            t0,
            Frame::Snapshot {
                seq: 1,
                values: values(1),
            },
        )
        .unwrap();
        s.handle_frame(
            t0,
            Frame::Updates {
                seq: 2,
                batch: values(2),
            },
        )
        .unwrap();
        assert_eq!(
            drain(&mut s),
            [
                "send Subscribe",
                "tell Snapshot g7 complete=true n=1",
                "tell Updates g7"
            ]
        );
        // Unsubscribed: updates still in flight are dropped, not a gap.
        s.handle_command(SourceCommand::Unsubscribe);
        s.handle_frame(
            t0,
            Frame::Updates {
                seq: 3,
                batch: values(3),
            },
        )
        .unwrap();
        assert_eq!(drain(&mut s), ["send Unsubscribe"]);
        s.handle_command(SourceCommand::Write {
            request_id: 4,
            tag: TagId(0),
            value: Value::Analog(1.0),
        });
        s.handle_frame(
            t0,
            Frame::WriteResult {
                request_id: 4,
                outcome: po_protocol::WriteOutcome::Applied,
            },
        )
        .unwrap();
        assert_eq!(drain(&mut s), ["send Write", "tell WriteResult 4"]);
    }

    #[test]
    fn a_sequence_gap_resubscribes_and_tells_the_engine() {
        let t0 = Instant::now();
        let mut s = Session::new("po-a", Duration::from_secs(1), t0);
        s.handle_command(SourceCommand::Subscribe { generation: 1 });
        s.handle_frame(
            t0,
            Frame::Snapshot {
                seq: 1,
                values: values(1),
            },
        )
        .unwrap();
        drain(&mut s);
        // Frame 2 lost.
        s.handle_frame(
            t0,
            Frame::Updates {
                seq: 3,
                batch: values(3),
            },
        )
        .unwrap();
        assert_eq!(drain(&mut s), ["send Subscribe", "tell Resubscribed"]);
        // Until the new snapshot, the rest of the old stream is dropped quietly.
        s.handle_frame(
            t0,
            Frame::Updates {
                seq: 4,
                batch: values(4),
            },
        )
        .unwrap();
        assert_eq!(drain(&mut s), Vec::<String>::new());
        // A snapshot in parts, its start missed: one resubscription, then quiet.
        s.handle_frame(
            t0,
            Frame::Snapshot {
                seq: 1,
                values: values(1),
            },
        )
        .unwrap();
        s.handle_frame(
            t0,
            Frame::SnapshotPart {
                seq: 2,
                part: 1,
                last: true,
                values: values(2),
            },
        )
        .unwrap();
        assert_eq!(
            drain(&mut s),
            [
                "tell Snapshot g1 complete=true n=1",
                "send Subscribe",
                "tell Resubscribed"
            ]
        );
        s.handle_frame(
            t0,
            Frame::SnapshotPart {
                seq: 3,
                part: 1,
                last: true,
                values: values(3),
            },
        )
        .unwrap();
        assert_eq!(drain(&mut s), Vec::<String>::new());
        // Parts in order: each told, complete on the last.
        for (seq, part, last) in [(1, 0, false), (2, 1, true)] {
            s.handle_frame(
                t0,
                Frame::SnapshotPart {
                    seq,
                    part,
                    last,
                    values: values(seq),
                },
            )
            .unwrap();
        }
        assert_eq!(
            drain(&mut s),
            [
                "tell Snapshot g1 complete=false n=1",
                "tell Snapshot g1 complete=true n=1"
            ]
        );
        // Trailing frames lost: the heartbeat's seq is ahead of the last frame.
        s.handle_frame(t0, heartbeat(Role::Primary, 1, 3)).unwrap();
        assert_eq!(
            drain(&mut s),
            [
                "send Subscribe",
                "tell Resubscribed",
                "tell Heartbeat Primary 1"
            ]
        );
        s.handle_frame(t0, heartbeat(Role::Primary, 1, 3)).unwrap();
        assert_eq!(drain(&mut s), ["tell Heartbeat Primary 1"]);
    }

    #[test]
    fn a_server_silent_for_the_timeout_ends_the_session_and_any_frame_restarts_it() {
        let t0 = Instant::now();
        let mut s = Session::new("po-a", Duration::from_secs(2), t0);
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(2));
        assert_eq!(s.handle_timeout(t0 + Duration::from_millis(1999)), Ok(()));
        // Even an ignored frame is a sign of life.
        s.handle_frame(t0 + Duration::from_secs(1), Frame::Browse)
            .unwrap();
        assert_eq!(drain(&mut s), Vec::<String>::new());
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(3));
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(2)), Ok(()));
        assert_eq!(
            s.handle_timeout(t0 + Duration::from_secs(3)),
            Err("server silent for 2s".to_string())
        );
        // A command is no sign of the server's life.
        s.handle_command(SourceCommand::Unsubscribe);
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(3));
    }

    #[test]
    fn an_error_frame_ends_an_established_session() {
        let t0 = Instant::now();
        let mut s = Session::new("po-a", Duration::from_secs(1), t0);
        assert_eq!(
            s.handle_frame(
                t0,
                Frame::Error {
                    code: ErrorCode::ShuttingDown,
                    message: "bye".into()
                }
            ),
            Err("server shutting down (ShuttingDown): bye".to_string())
        );
    }
}
