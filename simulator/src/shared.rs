//! What the tasks of one server incarnation share: the session registry and published
//! image, the redundancy state, the setpoint store, and the operations on them (write,
//! subscribe, publish, role changes). The server's lifecycle (`server`), the client
//! sessions (`session`) and the sync link (`sync`) all work on it; it depends on none of
//! them.

use crate::config::ServerConfig;
use crate::field::FieldModel;
use crate::redundancy::WriteMode;
use crate::redundancy::{PeerStatus, RedundancyRole, ReplicatedWrite, Transition};
use crate::setpoints::{Setpoint, SetpointStore};
use crate::write_rules::{WritePlan, plan_write};
use po_protocol::{
    ErrorCode, Frame, PART_TAGS, Quality, SharedBatch, TagId, TagSelection, TagValue, Value,
    WriteOutcome,
};
use po_runtime::{Clock, Env, Net};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A message queued for one client session's writer. `seq`, role and epoch are filled
/// in by the writer, which is the only place that knows what the session has sent.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Snapshot(Vec<TagValue>),
    Updates(SharedBatch),
    OwnUpdates(Vec<TagValue>),
    Heartbeat,
    Frame(Frame),
}

/// One connected client, as the publisher sees it.
#[derive(Debug)]
pub(crate) struct SessionEntry {
    pub tx: mpsc::Sender<Outgoing>,
    pub kill: Option<oneshot::Sender<Frame>>,
    pub subscription: Option<Subscription>,
    pub client_name: String,
    pub licence: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Subscription {
    All,
    /// Sorted, deduplicated tag ids.
    List(Vec<TagId>),
}

/// Sessions, the published image and licence use, under one lock so that a new
/// subscriber's snapshot and the updates after it can never interleave wrongly.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Ordered by id, so publishing visits sessions in the same order on every run.
    pub sessions: BTreeMap<u64, SessionEntry>,
    pub image: Vec<TagValue>,
    pub licences_in_use: HashMap<String, (String, SocketAddr)>,
}

impl Registry {
    /// Disconnects a session that cannot keep up, telling it why.
    pub(crate) fn kill(&mut self, id: u64, code: ErrorCode, message: String) {
        if let Some(mut entry) = self.sessions.remove(&id) {
            tracing::warn!(client = %entry.client_name, %code, "{message}");
            if let Some(kill) = entry.kill.take() {
                let _ = kill.send(Frame::Error { code, message });
            }
            if let Some(l) = entry.licence {
                self.licences_in_use.remove(&l);
            }
        }
    }
}

/// A write waiting to be confirmed by the peer.
#[derive(Debug)]
pub(crate) struct ReplicateRequest {
    pub tag: TagId,
    pub entry: Setpoint,
    pub deadline: Instant,
    pub done: oneshot::Sender<()>,
}

/// Everything the tasks of one incarnation share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) model: Arc<FieldModel>,
    pub(crate) setpoints: Arc<Mutex<SetpointStore>>,
    pub(crate) sync_cut: Arc<watch::Sender<bool>>,
    pub(crate) peer: Arc<Mutex<Option<SocketAddr>>>,
    pub(crate) status: watch::Sender<PeerStatus>,
    pub(crate) public_status: watch::Sender<Option<PeerStatus>>,
    pub(crate) redundancy: Option<Mutex<RedundancyRole>>,
    pub(crate) redundancy_wake: Notify,
    pub(crate) paused: watch::Sender<bool>,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) replicator: mpsc::Sender<ReplicateRequest>,
    pub(crate) next_session: AtomicU64,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Cancelled when a graceful stop begins: the client-access listener stops accepting
    /// and connections that have not said `Hello` are told `ShuttingDown`.
    pub(crate) draining: CancellationToken,
    /// The client-access listener task: a graceful stop waits for it to have closed the
    /// listening socket before it tells clients, so none can come in after.
    pub(crate) accepting: TaskTracker,
    /// The client sessions: a graceful stop waits (up to `limits.drain_timeout`) for each
    /// to have said goodbye and seen its client close.
    pub(crate) sessions: TaskTracker,
    pub(crate) env: Env,
    /// Where the role's known epoch is recorded for the next incarnation (and, with
    /// `state_dir`, the next process); the live value is the role's.
    pub(crate) epoch_record: Arc<crate::state::EpochRecord>,
    /// When the peer was last heard on the sync link (any frame).
    pub(crate) peer_heard: Mutex<Instant>,
    /// TLS on both links, when configured.
    pub(crate) tls: Option<Arc<ServerTls>>,
}

/// The two ends of this server's TLS: the server end for clients and the peer's sync
/// connections, the client end for its own sync connection to the peer.
#[derive(Debug)]
pub(crate) struct ServerTls {
    pub(crate) server: po_runtime::tls::TlsServer,
    pub(crate) client: po_runtime::tls::TlsClient,
    refusals: po_runtime::tls::HandshakeRefusals,
}

impl ServerTls {
    pub(crate) fn load(
        files: &po_runtime::tls::TlsFiles,
    ) -> Result<ServerTls, po_runtime::tls::TlsSetupError> {
        use po_runtime::tls::{TlsClient, TlsServer, TlsVersions};
        Ok(ServerTls {
            server: TlsServer::load(files, TlsVersions::Tls13)?,
            client: TlsClient::load(files, TlsVersions::Tls13)?,
            refusals: Default::default(),
        })
    }

    /// Logs a refused handshake, unless too many were just logged.
    pub(crate) fn log_refusal(
        &self,
        shared: &Shared,
        link: &str,
        from: SocketAddr,
        error: &dyn std::fmt::Display,
    ) {
        if let Some(more) = self.refusals.handle_refusal(shared.clock().tokio_now()) {
            let server = shared.name();
            tracing::warn!(%server, %from, not_logged = more, "{link} connection refused: {error}");
        }
    }
}

impl Shared {
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.env.clock
    }

    /// The instant `after` from now on the injected clock, as a deadline for tokio's
    /// timers (the two agree, see `po_runtime::Clock::now`), so that a simulation decides
    /// this time like every other.
    pub(crate) fn deadline_in(&self, after: Duration) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.clock().now() + after)
    }

    pub(crate) fn net(&self) -> &dyn Net {
        &*self.env.net
    }

    /// The address this server's outgoing connections leave from.
    pub(crate) fn host_address(&self) -> Option<std::net::IpAddr> {
        self.config
            .host_address
            .or(Some(self.config.listen.ip()).filter(|ip| !ip.is_unspecified()))
    }

    /// How long the peer may be silent on the sync link before its connection is
    /// treated as dead: the failover timeout, after which the pair acts on it anyway.
    pub(crate) fn sync_liveness(&self) -> Duration {
        self.config
            .redundancy
            .as_ref()
            .map_or(Duration::from_secs(1), |r| r.failover_timeout)
    }

    pub(crate) fn peer_heard(&self) {
        *self.peer_heard.lock().unwrap() = self.clock().now();
    }

    /// Whether nothing was heard from the peer for the liveness period, counting from
    /// `since` at the earliest.
    pub(crate) fn peer_silent_since(&self, since: Instant) -> bool {
        let heard = (*self.peer_heard.lock().unwrap()).max(since);
        self.clock().now().saturating_duration_since(heard) > self.sync_liveness()
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub(crate) fn index(&self) -> u8 {
        self.config.redundancy.as_ref().map_or(0, |r| r.index)
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        self.config.heartbeat
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.peer
            .lock()
            .unwrap()
            .or(self.config.redundancy.as_ref().map(|r| r.peer))
            .expect("sync link runs only for a redundant server")
    }

    pub(crate) fn status(&self) -> PeerStatus {
        *self.status.borrow()
    }

    pub(crate) fn status_rx(&self) -> watch::Receiver<PeerStatus> {
        self.status.subscribe()
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Spawns a task of this incarnation: it ends when the server crashes or stops.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = fut => {}
            }
        });
    }

    /// Spawns a client session: a task of this incarnation that a graceful stop waits for.
    pub(crate) fn spawn_session<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(self.sessions.track_future(fut));
    }

    /// Whether a graceful stop has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Blocks while the server is paused: the in-process equivalent of SIGSTOP.
    pub(crate) async fn wait_unpaused(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|p| !*p).await;
    }

    pub(crate) fn setpoint_changes_since(&self, version: u64) -> (Vec<(TagId, Setpoint)>, u64) {
        self.setpoints.lock().unwrap().changes_since(version)
    }

    pub(crate) fn accepts(&self, tag: TagId, value: Value) -> bool {
        self.model
            .tag(tag)
            .is_some_and(|t| t.writable && t.kind == value.kind())
    }

    pub(crate) fn apply_replicated(&self, tag: TagId, entry: Setpoint) {
        if self.accepts(tag, entry.value) {
            self.setpoints.lock().unwrap().merge_one(tag, entry);
        }
    }

    /// Merges the peer's store into ours: per tag the later write wins, so after a split
    /// brain the pair keeps the writes both sides acknowledged (the latest of each tag)
    /// rather than one side's store replacing the other's.
    pub(crate) fn merge_setpoints(&self, values: Vec<(TagId, Setpoint)>) {
        let mut store = self.setpoints.lock().unwrap();
        for (tag, entry) in values {
            if self.accepts(tag, entry.value) {
                store.merge_one(tag, entry);
            }
        }
    }

    /// Feeds the redundancy role one input (`None` for a standalone server). The known
    /// epoch, if the input raised it, is recorded (on disk with `state_dir`) before the
    /// role's lock is released: a status frame (which reads the known epoch under that
    /// lock) and a transition (announced by the caller after this returns) can therefore
    /// never tell anyone of an epoch that is not kept yet.
    fn drive_role<T>(&self, input: impl FnOnce(&mut RedundancyRole, Instant) -> T) -> Option<T> {
        let red = self.redundancy.as_ref()?;
        let mut role = red.lock().unwrap();
        let out = input(&mut role, self.clock().now());
        if let Some(known) = role.poll_known_epoch_raised() {
            self.epoch_record.record(known);
        }
        Some(out)
    }

    /// [`Shared::drive_role`] for an input that may change the role: the change is
    /// announced.
    fn drive_transition(
        &self,
        input: impl FnOnce(&mut RedundancyRole, Instant) -> Option<Transition>,
    ) {
        if let Some(Some(t)) = self.drive_role(input) {
            self.apply_transition(t);
        }
    }

    pub(crate) fn on_peer_status(&self, peer: PeerStatus) {
        self.drive_transition(|r, now| r.on_peer_status(now, peer));
        self.redundancy_wake.notify_one();
    }

    pub(crate) fn on_peer_known_epoch(&self, known: u64) {
        self.drive_transition(|r, now| r.on_peer_known_epoch(now, known));
    }

    /// The role's timers (`RedundancyRole::poll`), driven by the server's redundancy task.
    pub(crate) fn poll_role(&self) {
        self.drive_transition(|r, now| r.poll(now));
    }

    /// When [`Shared::poll_role`] is next due (`None` for a standalone server).
    pub(crate) fn role_poll_at(&self) -> Option<Instant> {
        self.drive_role(|r, _| r.poll_at())
    }

    /// Whether a write the peer replicated at `sender_epoch` is applied or refused
    /// (`RedundancyRole::handle_replicated_write`).
    pub(crate) fn fence_replicated_write(&self, sender_epoch: u64) -> ReplicatedWrite {
        self.drive_role(|r, now| r.handle_replicated_write(now, sender_epoch))
            .expect("sync link runs only for a redundant server")
    }

    /// The highest epoch this server has held or heard (across restarts), for the peer.
    pub(crate) fn known_epoch(&self) -> u64 {
        self.drive_role(|r, _| r.known_epoch()).unwrap_or(0)
    }

    pub(crate) fn link_down(&self) {
        if self.drive_role(|r, now| r.on_link_down(now)).is_some() {
            self.redundancy_wake.notify_one();
        }
    }

    fn apply_transition(&self, t: Transition) {
        // The new epoch is recorded already (`drive_role`).
        tracing::info!(
            server = %self.name(),
            from = %format!("{} epoch {}", t.from.role, t.from.epoch),
            to = %format!("{} epoch {}", t.to.role, t.to.epoch),
            reason = ?t.reason,
            "role change"
        );
        self.status.send_replace(t.to);
        self.public_status.send_replace(Some(t.to));
        self.broadcast_heartbeat();
    }

    /// Queues a heartbeat for every session; one that cannot take it is a slow consumer.
    pub(crate) fn broadcast_heartbeat(&self) {
        let mut reg = self.registry.lock().unwrap();
        let mut slow = Vec::new();
        for (id, s) in &reg.sessions {
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(Outgoing::Heartbeat) {
                slow.push(*id);
            }
        }
        for id in slow {
            reg.kill(id, ErrorCode::SlowConsumer, self.slow_message());
        }
    }

    pub(crate) fn slow_message(&self) -> String {
        format!(
            "client fell {} frames behind on server {}; disconnected rather than sent a stream with holes",
            self.config.client_queue,
            self.name()
        )
    }

    /// How a write arriving now would be treated (Solo for a standalone server).
    pub(crate) fn write_mode(&self) -> WriteMode {
        self.redundancy.as_ref().map_or(WriteMode::Solo, |r| {
            r.lock().unwrap().write_mode(self.clock().now())
        })
    }

    /// Applies a client's write as [`plan_write`] decides: Primary only, replicated to a
    /// reachable peer first.
    pub(crate) async fn write(&self, tag: TagId, value: Value) -> WriteOutcome {
        let mode = self.write_mode();
        let plan = plan_write(self.status().role, self.model.tag(tag), value, mode);
        tracing::debug!(server = %self.name(), %tag, %value, ?mode, ?plan, "write");
        if let WritePlan::Refuse(outcome) = plan {
            return outcome;
        }
        // Stamped once: the peer stores the very entry we store.
        let entry = self.stamp(tag, value);
        if plan == WritePlan::ReplicateFirst {
            let timeout = self
                .config
                .redundancy
                .as_ref()
                .map_or(Duration::from_secs(1), |r| r.failover_timeout);
            let (done, confirmed) = oneshot::channel();
            let req = ReplicateRequest {
                tag,
                entry,
                deadline: self.clock().now() + timeout,
                done,
            };
            let replicated = self.replicator.try_send(req).is_ok()
                && tokio::time::timeout(timeout, confirmed)
                    .await
                    .is_ok_and(|r| r.is_ok());
            if !replicated {
                // Not applied: acknowledging a write the peer may never get could lose
                // it (split brain); the client retries at the current Primary.
                tracing::warn!(server = %self.name(), %tag, "peer did not confirm the replicated write; refused");
                return WriteOutcome::NotPrimary;
            }
        }
        self.setpoints.lock().unwrap().merge_one(tag, entry);
        WriteOutcome::Applied
    }

    /// The store entry a write made now would get (later than what the tag holds).
    pub(crate) fn stamp(&self, tag: TagId, value: Value) -> Setpoint {
        let mut probe = self.setpoints.lock().unwrap().clone_entry(tag);
        probe.write(tag, value, self.clock().wall())
    }

    /// Registers a subscriber and queues its snapshot, atomically with respect to ticks.
    pub(crate) fn subscribe(&self, id: u64, selection: &TagSelection) -> Result<(), String> {
        let sub = match selection {
            TagSelection::All => Subscription::All,
            TagSelection::List(tags) => {
                if let Some(bad) = tags.iter().find(|t| self.model.tag(**t).is_none()) {
                    return Err(format!(
                        "tag {bad} does not exist on server {} ({} tags)",
                        self.name(),
                        self.model.tag_count()
                    ));
                }
                let mut tags = tags.clone();
                tags.sort();
                tags.dedup();
                Subscription::List(tags)
            }
        };
        let mut reg = self.registry.lock().unwrap();
        let snapshot: Vec<TagValue> = match &sub {
            Subscription::All => reg.image.clone(),
            Subscription::List(tags) => tags
                .iter()
                .filter_map(|t| reg.image.get(t.index()).copied())
                .collect(),
        };
        let Some(entry) = reg.sessions.get_mut(&id) else {
            return Ok(()); // already gone
        };
        entry.subscription = Some(sub);
        if let Err(mpsc::error::TrySendError::Full(_)) =
            entry.tx.try_send(Outgoing::Snapshot(snapshot))
        {
            reg.kill(id, ErrorCode::SlowConsumer, self.slow_message());
        }
        Ok(())
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        if let Some(entry) = self.registry.lock().unwrap().sessions.get_mut(&id) {
            entry.subscription = None;
        }
    }

    /// Computes the tick's values and publishes what changed.
    pub(crate) fn publish_tick(
        &self,
        tick: u64,
        values: &mut Vec<Value>,
        previous: &mut Vec<Value>,
    ) {
        self.model.values_at(tick, values);
        for (tag, s) in self.setpoints.lock().unwrap().entries() {
            values[tag.index()] = s.value;
        }
        let sampled_at = self.model.tick_time(tick);
        let first = previous.is_empty();
        let batch: Vec<TagValue> = values
            .iter()
            .enumerate()
            .filter(|(i, v)| first || !same_value(previous[*i], **v))
            .map(|(i, v)| TagValue {
                tag: TagId(i as u32),
                value: *v,
                quality: Quality::Good,
                sampled_at,
            })
            .collect();
        std::mem::swap(values, previous);
        let mut reg = self.registry.lock().unwrap();
        if first {
            reg.image = batch;
            return;
        }
        for tv in &batch {
            reg.image[tv.tag.index()] = *tv;
        }
        if batch.is_empty() {
            return;
        }
        // One frame per PART_TAGS changes, so a large site's tick stays far below the
        // frame limit (each part is a data frame of its own).
        let mut parts = Vec::with_capacity(batch.len().div_ceil(PART_TAGS));
        for chunk in batch.chunks(PART_TAGS) {
            match SharedBatch::new(chunk) {
                Ok(s) => parts.push(s),
                Err(e) => {
                    tracing::error!(server = %self.name(), error = %e, "cannot encode update batch");
                    return;
                }
            }
        }
        let mut slow = Vec::new();
        for (id, s) in &reg.sessions {
            let msgs: Vec<Outgoing> = match &s.subscription {
                None => continue,
                Some(Subscription::All) => parts.iter().cloned().map(Outgoing::Updates).collect(),
                Some(Subscription::List(tags)) => {
                    let mine: Vec<TagValue> = batch
                        .iter()
                        .filter(|tv| tags.binary_search(&tv.tag).is_ok())
                        .copied()
                        .collect();
                    mine.chunks(PART_TAGS)
                        .map(|c| Outgoing::OwnUpdates(c.to_vec()))
                        .collect()
                }
            };
            for msg in msgs {
                if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(msg) {
                    slow.push(*id);
                    break;
                }
            }
        }
        for id in slow {
            reg.kill(id, ErrorCode::SlowConsumer, self.slow_message());
        }
    }
}

pub(crate) fn same_value(a: Value, b: Value) -> bool {
    match (a, b) {
        (Value::Analog(x), Value::Analog(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}
