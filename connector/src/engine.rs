//! The engine: the one task that drives the [`EngineCore`] — feeds it the sources'
//! messages, the writes and the time, and carries out what it decides: applies the data
//! it accepts to the register image, sends subscriptions and writes to the sources,
//! publishes the status. Every rule (the catalogue gate, the generation rule that never
//! mixes two servers' data, write routing) is in `engine_core.rs`.

use crate::engine_core::{Control, EngineCore, Output, Served, Verdict};
use crate::image::{RegisterImage, ServeState};
use crate::metrics::Metrics;
use crate::selector::{SelectorConfig, Switch};
use crate::service_level::{LevelInputs, Serving, service_level};
use crate::source::{SourceCommand, SourceMsg};
use crate::status::StatusBoard;
use crate::write_queue::{Deadline, Resolution};
use po_protocol::{TagId, Value, WriteOutcome};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// How a write ended, as the Modbus layer needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteReply {
    Applied,
    /// The server refused it (not for lack of a Primary).
    Refused(WriteOutcome),
    /// No Primary applied it before the write timeout.
    TimedOut,
}

/// A liveness probe: the engine answers it between two events, so an engine stuck in
/// one event leaves it unanswered (the service manager's watchdog, docs/service.md).
pub type EnginePing = oneshot::Sender<()>;

/// A write from a Modbus master, on its way to the Primary.
#[derive(Debug)]
pub struct WriteRequest {
    pub tag: TagId,
    pub value: Value,
    pub deadline: Instant,
    pub reply: oneshot::Sender<WriteReply>,
}

impl Deadline for WriteRequest {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Runs the engine until every source and write sender is gone.
pub struct Engine {
    /// Every decision: the catalogue gate, the generation rule, subscriptions, status,
    /// write routing.
    core: EngineCore<WriteRequest>,
    image: Arc<RegisterImage>,
    metrics: Arc<Metrics>,
    /// Where each source's commands go, in index order.
    commands: Vec<mpsc::Sender<SourceCommand>>,
    /// The sources' names, in index order (for log lines).
    names: Vec<String>,
    /// What the status page shows: sources, switches and their reasons.
    board: Arc<StatusBoard>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("active", &self.core.active())
            .field("synced", &self.core.is_synced())
            .field("queued_writes", &self.core.queued_writes())
            .finish()
    }
}

impl Engine {
    pub fn new(
        config: SelectorConfig,
        image: Arc<RegisterImage>,
        metrics: Arc<Metrics>,
        catalog_digest: u64,
        sources: Vec<(String, mpsc::Sender<SourceCommand>)>,
        board: Arc<StatusBoard>,
    ) -> Engine {
        let (names, commands): (Vec<String>, Vec<_>) = sources.into_iter().unzip();
        Engine {
            core: EngineCore::new(config, catalog_digest, names.clone(), image.clock().now()),
            image,
            metrics,
            commands,
            names,
            board,
        }
    }

    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<(usize, SourceMsg)>,
        mut writes: mpsc::Receiver<WriteRequest>,
        mut pings: mpsc::Receiver<EnginePing>,
    ) {
        let mut writes_open = true;
        loop {
            let wake = self.core.poll_timeout();
            tokio::select! {
                ev = events.recv() => match ev {
                    Some((i, msg)) => self.on_source_msg(i, msg),
                    None => return,
                },
                w = writes.recv(), if writes_open => match w {
                    Some(w) => self.on_write(w),
                    None => writes_open = false,
                },
                Some(ping) = pings.recv() => {
                    let _ = ping.send(());
                }
                _ = sleep_until(wake) => {}
            }
            let now = self.image.clock().now();
            self.core.handle_timeout(now);
            self.carry_out();
            self.image.set_stale(self.core.is_stale());
            self.expire_writes(now);
            self.flush_writes(now);
        }
    }

    /// Feeds one source message (also used to replay messages received during start-up).
    pub fn on_source_msg(&mut self, i: usize, msg: SourceMsg) {
        let now = self.image.clock().now();
        match msg {
            SourceMsg::Connected {
                role,
                epoch,
                catalog,
            } => {
                self.metrics.source_connects.fetch_add(1, Relaxed);
                let digest = crate::catalog::digest(&catalog);
                let ok = self.core.handle_connected(now, i, role, epoch, digest);
                self.board.handle_connected(i, role, epoch, ok);
                if !ok {
                    self.carry_out();
                    return;
                }
            }
            SourceMsg::Lost { reason } => {
                self.metrics.source_losses.fetch_add(1, Relaxed);
                self.board.handle_lost(i, &reason);
                self.core.handle_lost(now, i, &reason);
            }
            SourceMsg::Heartbeat { role, epoch } => {
                self.board.handle_heartbeat(i, role, epoch);
                self.core.handle_heartbeat(now, i, role, epoch);
            }
            SourceMsg::Snapshot {
                values,
                complete,
                generation,
            } => {
                self.board.handle_heard(i);
                // A large snapshot lands part by part; the served data is described as
                // this source's (status registers) once the last part is in.
                let verdict = self
                    .core
                    .handle_snapshot(now, i, generation, complete, values.len());
                if verdict == Verdict::Apply {
                    self.ingest(&values);
                }
            }
            SourceMsg::Updates { batch, generation } => {
                self.board.handle_heard(i);
                if self.core.handle_updates(now, i, generation) == Verdict::Apply {
                    self.ingest(&batch);
                }
            }
            SourceMsg::Resubscribed => {
                self.metrics.resubscribes.fetch_add(1, Relaxed);
                return;
            }
            SourceMsg::WriteResult {
                request_id,
                outcome,
            } => {
                self.board.handle_heard(i);
                match self.core.handle_write_result(now, i, request_id, outcome) {
                    Some((w, Resolution::Applied)) => {
                        self.metrics.writes_applied.fetch_add(1, Relaxed);
                        let _ = w.reply.send(WriteReply::Applied);
                    }
                    Some((w, Resolution::Refused(other))) => {
                        self.metrics.writes_refused.fetch_add(1, Relaxed);
                        let _ = w.reply.send(WriteReply::Refused(other));
                    }
                    // Retried shortly at whichever server is then Primary, or expired.
                    None => {}
                }
            }
        }
        self.carry_out();
        self.publish_status();
        self.flush_writes(now);
    }

    fn ingest(&self, values: &[po_protocol::TagValue]) {
        let n = self.image.apply(values);
        self.metrics.ingest_updates.fetch_add(n as u64, Relaxed);
        self.metrics.ingest_frames.fetch_add(1, Relaxed);
    }

    /// Carries out the core's decisions, in order.
    fn carry_out(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Control(i, control) => {
                    let cmd = match control {
                        Control::Subscribe { generation } => {
                            SourceCommand::Subscribe { generation }
                        }
                        Control::Unsubscribe => SourceCommand::Unsubscribe,
                    };
                    let _ = self.commands[i].try_send(cmd);
                }
                Output::Switched { switch, reason } => self.on_switch(switch, reason),
                Output::CatalogRefused(i) => tracing::error!(
                    source = %self.names[i],
                    "catalogue differs from the one the register map was built from; not using this server"
                ),
                Output::SnapshotApplied { source, tags } => {
                    tracing::info!(source = %self.names[source], tags, "snapshot applied");
                }
            }
        }
    }

    fn on_switch(&self, sw: Switch, reason: String) {
        let name = |a: Option<crate::selector::Active>| match a {
            Some(a) => format!("{} ({} epoch {})", self.names[a.source], a.role, a.epoch),
            None => "none".to_string(),
        };
        tracing::info!(from = %name(sw.from), to = %name(sw.to), %reason, "active source switch");
        let brief = |a: Option<crate::selector::Active>| a.map(|a| (a.source, a.role, a.epoch));
        self.board
            .handle_switch(brief(sw.from), brief(sw.to), reason);
        self.metrics
            .source_switches
            .store(self.core.switch_count(), Relaxed);
        self.image.set_switches(self.core.switch_count());
        self.publish_status();
    }

    /// Status registers describe the data in the image: a newly chosen source is shown
    /// only once its snapshot has landed (until then the image still holds the previous
    /// source's values, and says so).
    fn publish_status(&self) {
        let status = self.core.status();
        let serving = match status.served {
            // The previous source's data is still served until the snapshot lands.
            Served::Previous => match self.image.serving().0 {
                x if x == ServeState::Primary as u8 => Serving::Primary,
                x if x == ServeState::Standby as u8 => Serving::Standby,
                x if x == ServeState::Stale as u8 => Serving::Stale,
                _ => Serving::NotYet,
            },
            Served::Active {
                state,
                source,
                role,
                epoch,
            } => {
                self.image.set_active(state, source, role, epoch);
                self.metrics.active_source.store(i64::from(source), Relaxed);
                match state {
                    ServeState::Primary => Serving::Primary,
                    _ => Serving::Standby,
                }
            }
            Served::Nothing { stale } => {
                let state = if stale {
                    ServeState::Stale
                } else {
                    ServeState::Starting
                };
                self.image.set_active(state, 0, 0, 0);
                self.metrics.active_source.store(0, Relaxed);
                if stale {
                    Serving::Stale
                } else {
                    Serving::NotYet
                }
            }
        };
        let level = service_level(&LevelInputs {
            draining: self.image.is_draining(),
            serving,
            sources_configured: status.sources_configured,
            sources_reachable: status.sources_reachable,
        });
        self.image.set_service_level(level);
        self.metrics.service_level.store(i64::from(level), Relaxed);
    }

    fn on_write(&mut self, w: WriteRequest) {
        tracing::debug!(tag = %w.tag, active = ?self.core.active(), queued = self.core.queued_writes(), "write queued");
        self.core.handle_write(w);
        self.flush_writes(self.image.clock().now());
    }

    /// Sends queued writes to the active Primary, if there is one.
    fn flush_writes(&mut self, now: Instant) {
        while let Some((source, request_id, w)) = self.core.poll_transmit(now) {
            let cmd = SourceCommand::Write {
                request_id,
                tag: w.tag,
                value: w.value,
            };
            match self.commands[source].try_send(cmd) {
                Ok(()) => self.core.handle_sent(source, request_id, w),
                Err(_) => {
                    self.core.handle_not_sent(w);
                    return;
                }
            }
        }
    }

    fn expire_writes(&mut self, now: Instant) {
        for w in self.core.poll_expired(now) {
            self.metrics.writes_timed_out.fetch_add(1, Relaxed);
            tracing::warn!(tag = %w.tag, "write timed out waiting for the Primary");
            let _ = w.reply.send(WriteReply::TimedOut);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
