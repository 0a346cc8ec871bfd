//! The engine: the one task that owns the `SourceSelector`, applies the active source's
//! data to the register image, and routes Modbus writes to the Primary.
//!
//! Data from any other source is dropped here, and data from a newly activated source is
//! accepted only from its `Snapshot` on, so the image never mixes two servers' data.

use crate::image::{RegisterImage, ServeState};
use crate::metrics::Metrics;
use crate::selector::{SelectorConfig, SourceEvent, SourceSelector, Switch};
use crate::service_level::{LevelInputs, Serving, service_level};
use crate::source::{SourceCommand, SourceMsg};
use crate::status::StatusBoard;
use crate::write_queue::{Deadline, Resolution, WriteQueue};
use po_protocol::{Role, TagId, Value, WriteOutcome};
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

#[derive(Debug)]
struct SourceLink {
    name: String,
    commands: mpsc::Sender<SourceCommand>,
    connected: bool,
    catalog_ok: bool,
    /// The generation of the latest `Subscribe` sent to it: data answering an earlier
    /// one (still queued after a quick A→B→A) is not applied.
    generation: u64,
}

impl Deadline for WriteRequest {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Runs the engine until every source and write sender is gone.
pub struct Engine {
    selector: SourceSelector,
    image: Arc<RegisterImage>,
    metrics: Arc<Metrics>,
    /// The digest of the catalogue the register map was built from: a server whose
    /// catalogue differs is not used.
    catalog_digest: u64,
    sources: Vec<SourceLink>,
    /// Whether the active source's Snapshot has arrived since it was activated.
    synced: bool,
    /// Tags received so far in the active source's snapshot (for its log line).
    snapshot_tags: usize,
    /// The last subscription generation handed out (see `SourceLink::generation`).
    generations: u64,
    /// Writes queued, in flight, retried and expired by the rules of `write_queue`.
    writes: WriteQueue<WriteRequest>,
    /// What the status page shows: sources, switches and their reasons.
    board: Arc<StatusBoard>,
}

/// What made the selector switch, for the reason the status page gives.
#[derive(Debug, Clone, Copy)]
enum Trigger<'a> {
    /// Time passed: a source fell silent, or the start-up wait ended.
    Time,
    Connected(usize, Role, u64),
    Lost(usize, &'a str),
    Heartbeat(usize, Role, u64),
    Data(usize),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("active", &self.selector.active())
            .field("synced", &self.synced)
            .field("queued_writes", &self.writes.queued_len())
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
        let n = sources.len();
        Engine {
            selector: SourceSelector::new(config, n, image.clock().now()),
            image,
            metrics,
            catalog_digest,
            sources: sources
                .into_iter()
                .map(|(name, commands)| SourceLink {
                    name,
                    commands,
                    connected: false,
                    catalog_ok: false,
                    generation: 0,
                })
                .collect(),
            synced: false,
            snapshot_tags: 0,
            generations: 0,
            writes: WriteQueue::new(n),
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
            let wake = self.next_deadline();
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
            if let Some(sw) = self.selector.tick(now) {
                self.on_switch(sw, Trigger::Time);
            }
            self.image.set_stale(self.selector.is_stale());
            self.expire_writes(now);
            self.flush_writes(now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.selector.poll_at(), self.writes.poll_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Feeds one source message (also used to replay messages received during start-up).
    pub fn on_source_msg(&mut self, i: usize, msg: SourceMsg) {
        let now = self.image.clock().now();
        let (event, trigger) = match &msg {
            SourceMsg::Connected {
                role,
                epoch,
                catalog,
            } => {
                let (role, epoch) = (*role, *epoch);
                self.metrics.source_connects.fetch_add(1, Relaxed);
                let ok = crate::catalog::digest(catalog) == self.catalog_digest;
                if !ok {
                    tracing::error!(
                        source = %self.sources[i].name,
                        "catalogue differs from the one the register map was built from; not using this server"
                    );
                }
                self.board.handle_connected(i, role, epoch, ok);
                self.sources[i].connected = true;
                self.sources[i].catalog_ok = ok;
                if !ok {
                    return;
                }
                (
                    Some(SourceEvent::Connected { role, epoch }),
                    Trigger::Connected(i, role, epoch),
                )
            }
            SourceMsg::Lost { reason } => {
                self.metrics.source_losses.fetch_add(1, Relaxed);
                self.board.handle_lost(i, reason);
                self.sources[i].connected = false;
                self.writes.handle_source_lost(i);
                (Some(SourceEvent::Lost), Trigger::Lost(i, reason))
            }
            SourceMsg::Heartbeat { role, epoch } => {
                let (role, epoch) = (*role, *epoch);
                self.board.handle_heartbeat(i, role, epoch);
                (
                    self.sources[i]
                        .catalog_ok
                        .then_some(SourceEvent::Heartbeat { role, epoch }),
                    Trigger::Heartbeat(i, role, epoch),
                )
            }
            SourceMsg::Snapshot {
                values,
                complete,
                generation,
            } => {
                self.board.handle_heard(i);
                if self.is_active(i) && *generation == self.sources[i].generation {
                    // A large snapshot lands part by part; the served data is described
                    // as this source's (status registers) once the last part is in.
                    self.ingest(values);
                    self.snapshot_tags += values.len();
                    if *complete {
                        self.synced = true;
                        tracing::info!(source = %self.sources[i].name, tags = self.snapshot_tags, "snapshot applied");
                        self.snapshot_tags = 0;
                    }
                }
                (Some(SourceEvent::Data), Trigger::Data(i))
            }
            SourceMsg::Updates { batch, generation } => {
                self.board.handle_heard(i);
                if self.is_active(i) && self.synced && *generation == self.sources[i].generation {
                    self.ingest(batch);
                }
                (Some(SourceEvent::Data), Trigger::Data(i))
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
                match self.writes.handle_result(now, i, *request_id, *outcome) {
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
                (Some(SourceEvent::Data), Trigger::Data(i))
            }
        };
        if let Some(ev) = event
            && self.sources[i].catalog_ok
            && let Some(sw) = self.selector.handle(now, i, ev)
        {
            self.on_switch(sw, trigger);
        }
        self.publish_status();
        self.flush_writes(now);
    }

    fn is_active(&self, i: usize) -> bool {
        self.selector.active().is_some_and(|a| a.source == i)
    }

    fn ingest(&self, values: &[po_protocol::TagValue]) {
        let n = self.image.apply(values);
        self.metrics.ingest_updates.fetch_add(n as u64, Relaxed);
        self.metrics.ingest_frames.fetch_add(1, Relaxed);
    }

    fn on_switch(&mut self, sw: Switch, trigger: Trigger<'_>) {
        let name = |a: Option<crate::selector::Active>| match a {
            Some(a) => format!(
                "{} ({} epoch {})",
                self.sources[a.source].name, a.role, a.epoch
            ),
            None => "none".to_string(),
        };
        let reason = self.reason(sw, trigger);
        tracing::info!(from = %name(sw.from), to = %name(sw.to), %reason, "active source switch");
        let brief = |a: Option<crate::selector::Active>| a.map(|a| (a.source, a.role, a.epoch));
        self.board
            .handle_switch(brief(sw.from), brief(sw.to), reason);
        if let Some(from) = sw.from
            && sw.to.map(|t| t.source) != Some(from.source)
            && self.sources[from.source].connected
        {
            let _ = self.sources[from.source]
                .commands
                .try_send(SourceCommand::Unsubscribe);
        }
        match sw.to {
            Some(to) if sw.from.map(|f| f.source) != Some(to.source) => {
                self.synced = false;
                self.snapshot_tags = 0;
                self.generations += 1;
                self.sources[to.source].generation = self.generations;
                let _ = self.sources[to.source]
                    .commands
                    .try_send(SourceCommand::Subscribe {
                        generation: self.generations,
                    });
            }
            _ => {}
        }
        self.metrics
            .source_switches
            .store(self.selector.switch_count(), Relaxed);
        self.image.set_switches(self.selector.switch_count());
        self.publish_status();
    }

    /// Why the selector switched, in words: what had just happened.
    fn reason(&self, sw: Switch, trigger: Trigger<'_>) -> String {
        let name = |i: usize| self.sources[i].name.as_str();
        let timeout = humantime::format_duration(self.selector.config().source_timeout);
        match trigger {
            Trigger::Time => match sw.from {
                Some(f) => format!("nothing heard from {} for {timeout}", name(f.source)),
                None if sw.to.is_some() => {
                    format!("start-up: waited {timeout} for every server to report")
                }
                None => "no healthy server".to_string(),
            },
            Trigger::Lost(i, why) => format!("connection to {} lost: {why}", name(i)),
            Trigger::Connected(i, role, epoch) => {
                format!("{} connected as {role} (epoch {epoch})", name(i))
            }
            Trigger::Heartbeat(i, role, epoch) => {
                format!("{} announced {role} (epoch {epoch})", name(i))
            }
            Trigger::Data(i) => format!("data from {}", name(i)),
        }
    }

    /// Status registers describe the data in the image: a newly chosen source is shown
    /// only once its snapshot has landed (until then the image still holds the previous
    /// source's values, and says so).
    fn publish_status(&self) {
        let serving = match self.selector.active() {
            // The previous source's data is still served until the snapshot lands.
            Some(_) if !self.synced => match self.image.serving().0 {
                x if x == ServeState::Primary as u8 => Serving::Primary,
                x if x == ServeState::Standby as u8 => Serving::Standby,
                x if x == ServeState::Stale as u8 => Serving::Stale,
                _ => Serving::NotYet,
            },
            Some(a) => {
                let (state, role) = match a.role {
                    Role::Primary => (ServeState::Primary, 1),
                    Role::Standby => (ServeState::Standby, 2),
                };
                self.image
                    .set_active(state, a.source as u8 + 1, role, a.epoch);
                self.metrics
                    .active_source
                    .store(a.source as i64 + 1, Relaxed);
                match a.role {
                    Role::Primary => Serving::Primary,
                    Role::Standby => Serving::Standby,
                }
            }
            None => {
                let state = if self.selector.is_stale() {
                    ServeState::Stale
                } else {
                    ServeState::Starting
                };
                self.image.set_active(state, 0, 0, 0);
                self.metrics.active_source.store(0, Relaxed);
                match state {
                    ServeState::Stale => Serving::Stale,
                    _ => Serving::NotYet,
                }
            }
        };
        let level = service_level(&LevelInputs {
            draining: self.image.is_draining(),
            serving,
            sources_configured: self.sources.len(),
            sources_reachable: self
                .sources
                .iter()
                .filter(|s| s.connected && s.catalog_ok)
                .count(),
        });
        self.image.set_service_level(level);
        self.metrics.service_level.store(i64::from(level), Relaxed);
    }

    fn on_write(&mut self, w: WriteRequest) {
        tracing::debug!(tag = %w.tag, active = ?self.selector.active(), queued = self.writes.queued_len(), "write queued");
        self.writes.handle_write(w);
        self.flush_writes(self.image.clock().now());
    }

    /// Sends queued writes to the active Primary, if there is one.
    fn flush_writes(&mut self, now: Instant) {
        let primary = self
            .selector
            .active()
            .filter(|a| a.role == Role::Primary && self.sources[a.source].connected)
            .map(|a| a.source);
        while let Some((request_id, w)) = self.writes.poll_transmit(now, primary) {
            let source = primary.expect("a write is released only to a Primary");
            let cmd = SourceCommand::Write {
                request_id,
                tag: w.tag,
                value: w.value,
            };
            match self.sources[source].commands.try_send(cmd) {
                Ok(()) => self.writes.handle_sent(source, request_id, w),
                Err(_) => {
                    self.writes.handle_not_sent(w);
                    return;
                }
            }
        }
    }

    fn expire_writes(&mut self, now: Instant) {
        for w in self.writes.poll_expired(now) {
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
