//! One simulated Power Operation server: client sessions, the per-tick publisher, the
//! redundancy driver, the sync link, and the fault controls of [`ServerHandle`].
//!
//! All tasks of a running server belong to one *incarnation*: a crash cancels the
//! incarnation (every socket closes at once), a restart starts a fresh one with fresh
//! redundancy state. What survives a restart is what a real server keeps on disk:
//! its configuration and its setpoint store.

use crate::config::ServerConfig;
use crate::field::FieldModel;
use crate::redundancy::WriteMode;
use crate::redundancy::{PeerStatus, RedundancyRole, Transition};
use crate::session;
use crate::setpoints::{Setpoint, SetpointStore};
use crate::sync::{self, ReplicateRequest};
use po_protocol::Quality;
use po_protocol::{
    ErrorCode, Frame, Role, SharedBatch, TagId, TagSelection, TagValue, Value, WriteOutcome,
};
use po_runtime::{BoxListener, Clock, Env, Net};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("server {0} is running; crash or stop it before restarting")]
    AlreadyRunning(String),
}

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
    fn kill(&mut self, id: u64, code: ErrorCode, message: String) {
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

/// State that lives across restarts: what a real server keeps on disk, plus the
/// network-level fault flag of its sync link.
#[derive(Debug)]
struct Durable {
    config: ServerConfig,
    model: Arc<FieldModel>,
    setpoints: Arc<Mutex<SetpointStore>>,
    sync_cut: Arc<watch::Sender<bool>>,
    peer: Arc<Mutex<Option<SocketAddr>>>,
    client_addr: SocketAddr,
    sync_addr: Option<SocketAddr>,
    status: watch::Sender<Option<PeerStatus>>,
    /// The network and clocks the server was started with (kept for restarts).
    env: Env,
    /// The highest epoch held or heard: kept "on disk" so a restart never reuses one.
    known_epoch: Arc<AtomicU64>,
}

/// Everything the tasks of one incarnation share.
#[derive(Debug)]
pub(crate) struct Shared {
    config: ServerConfig,
    pub(crate) model: Arc<FieldModel>,
    setpoints: Arc<Mutex<SetpointStore>>,
    pub(crate) sync_cut: Arc<watch::Sender<bool>>,
    peer: Arc<Mutex<Option<SocketAddr>>>,
    status: watch::Sender<PeerStatus>,
    public_status: watch::Sender<Option<PeerStatus>>,
    redundancy: Option<Mutex<RedundancyRole>>,
    redundancy_wake: Notify,
    paused: watch::Sender<bool>,
    pub(crate) registry: Mutex<Registry>,
    replicator: mpsc::Sender<ReplicateRequest>,
    next_session: AtomicU64,
    cancel: CancellationToken,
    tracker: TaskTracker,
    env: Env,
    known_epoch: Arc<AtomicU64>,
    /// When the peer was last heard on the sync link (any frame).
    peer_heard: Mutex<Instant>,
}

impl Shared {
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.env.clock
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

    /// Blocks while the server is paused: the in-process equivalent of SIGSTOP.
    pub(crate) async fn wait_unpaused(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|p| !*p).await;
    }

    pub(crate) fn setpoints_snapshot(&self) -> Vec<(TagId, Setpoint)> {
        self.setpoints.lock().unwrap().snapshot()
    }

    fn accepts(&self, tag: TagId, value: Value) -> bool {
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

    pub(crate) fn on_peer_status(&self, peer: PeerStatus) {
        let Some(red) = &self.redundancy else { return };
        self.known_epoch.fetch_max(peer.epoch, Ordering::Relaxed);
        let t = red.lock().unwrap().on_peer_status(self.clock().now(), peer);
        if let Some(t) = t {
            self.apply_transition(t);
        }
        self.redundancy_wake.notify_one();
    }

    pub(crate) fn on_peer_known_epoch(&self, known: u64) {
        let Some(red) = &self.redundancy else { return };
        self.known_epoch.fetch_max(known, Ordering::Relaxed);
        let t = red
            .lock()
            .unwrap()
            .on_peer_known_epoch(self.clock().now(), known);
        if let Some(t) = t {
            self.apply_transition(t);
        }
    }

    /// The highest epoch this server has held or heard (across restarts).
    pub(crate) fn known_epoch(&self) -> u64 {
        self.known_epoch.load(Ordering::Relaxed)
    }

    pub(crate) fn link_down(&self) {
        if let Some(red) = &self.redundancy {
            red.lock().unwrap().on_link_down(self.clock().now());
            self.redundancy_wake.notify_one();
        }
    }

    fn apply_transition(&self, t: Transition) {
        self.known_epoch.fetch_max(t.to.epoch, Ordering::Relaxed);
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

    fn slow_message(&self) -> String {
        format!(
            "client fell {} frames behind on server {}; disconnected rather than sent a stream with holes",
            self.config.client_queue,
            self.name()
        )
    }

    /// Applies a client's write: Primary only, replicated to a reachable peer first.
    pub(crate) async fn write(&self, tag: TagId, value: Value) -> WriteOutcome {
        if self.status().role != Role::Primary {
            return WriteOutcome::NotPrimary;
        }
        let Some(info) = self.model.tag(tag) else {
            return WriteOutcome::UnknownTag;
        };
        if !info.writable {
            return WriteOutcome::ReadOnly;
        }
        if info.kind != value.kind() {
            return WriteOutcome::TypeMismatch;
        }
        let mode = self.redundancy.as_ref().map_or(WriteMode::Solo, |r| {
            r.lock().unwrap().write_mode(self.clock().now())
        });
        tracing::debug!(server = %self.name(), %tag, %value, ?mode, "write");
        // Stamped once: the peer stores the very entry we store.
        let entry = self.stamp(tag, value);
        match mode {
            WriteMode::Solo => {}
            WriteMode::Hold => {
                tracing::debug!(server = %self.name(), %tag, "peer just fell silent; write refused for now");
                return WriteOutcome::NotPrimary;
            }
            WriteMode::Replicate => {
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
                if !replicated && !crate::switches::ack_unreplicated() {
                    // Not applied: acknowledging a write the peer may never get could lose
                    // it (split brain); the client retries at the current Primary.
                    tracing::warn!(server = %self.name(), %tag, "peer did not confirm the replicated write in time; refused");
                    return WriteOutcome::NotPrimary;
                }
            }
        }
        self.setpoints.lock().unwrap().merge_one(tag, entry);
        WriteOutcome::Applied
    }

    /// The store entry a write made now would get (later than what the tag holds).
    fn stamp(&self, tag: TagId, value: Value) -> Setpoint {
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
    fn publish_tick(&self, tick: u64, values: &mut Vec<Value>, previous: &mut Vec<Value>) {
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
        let shared = match SharedBatch::new(&batch) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(server = %self.name(), error = %e, "cannot encode update batch");
                return;
            }
        };
        let mut slow = Vec::new();
        for (id, s) in &reg.sessions {
            let msg = match &s.subscription {
                None => continue,
                Some(Subscription::All) => Outgoing::Updates(shared.clone()),
                Some(Subscription::List(tags)) => {
                    let mine: Vec<TagValue> = batch
                        .iter()
                        .filter(|tv| tags.binary_search(&tv.tag).is_ok())
                        .copied()
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    Outgoing::OwnUpdates(mine)
                }
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(msg) {
                slow.push(*id);
            }
        }
        for id in slow {
            reg.kill(id, ErrorCode::SlowConsumer, self.slow_message());
        }
    }
}

fn same_value(a: Value, b: Value) -> bool {
    match (a, b) {
        (Value::Analog(x), Value::Analog(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// Controls one simulated server: the in-process fault controls used by the harness
/// and by `po-sim pair`.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    durable: Durable,
    running: Mutex<Option<Incarnation>>,
}

#[derive(Debug)]
struct Incarnation {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Binds the listeners and starts serving. Addresses with port 0 get a free port;
    /// [`ServerHandle::client_addr`] tells which, and a restart reuses it.
    pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
        ServerHandle::start_in(config, Env::tokio()).await
    }

    /// [`ServerHandle::start`] with the network and clocks given by the caller (a
    /// simulation passes virtual ones).
    pub async fn start_in(config: ServerConfig, env: Env) -> Result<ServerHandle, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let model = Arc::new(
            config
                .field_model()
                .map_err(|e| ServerError::Config(e.to_string()))?,
        );
        let client = bind(&env, config.listen, "client access").await?;
        let client_addr = client.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            what: "client access",
            source,
        })?;
        let (sync_listener, sync_addr) = match &config.redundancy {
            Some(r) => {
                let l = bind(&env, r.sync_listen, "sync link").await?;
                let a = l.local_addr().map_err(|source| ServerError::Bind {
                    addr: r.sync_listen,
                    what: "sync link",
                    source,
                })?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let mut config = config;
        config.listen = client_addr;
        if let (Some(r), Some(a)) = (config.redundancy.as_mut(), sync_addr) {
            r.sync_listen = a;
        }
        let durable = Durable {
            config,
            model,
            setpoints: Arc::default(),
            sync_cut: Arc::new(watch::channel(false).0),
            peer: Arc::default(),
            client_addr,
            sync_addr,
            status: watch::channel(None).0,
            env,
            known_epoch: Arc::default(),
        };
        let handle = ServerHandle {
            inner: Arc::new(HandleInner {
                durable,
                running: Mutex::new(None),
            }),
        };
        handle.launch(client, sync_listener);
        Ok(handle)
    }

    fn launch(&self, client: BoxListener, sync_listener: Option<BoxListener>) {
        let d = &self.inner.durable;
        let redundancy = d.config.redundancy_config().map(|(index, cfg)| {
            let known = d.known_epoch.load(Ordering::Relaxed);
            Mutex::new(RedundancyRole::new(index, cfg, d.env.clock.now()).with_known_epoch(known))
        });
        let initial = match &redundancy {
            Some(r) => r.lock().unwrap().status(),
            None => PeerStatus {
                role: Role::Primary,
                epoch: 1,
            },
        };
        let (replicator, replicate_rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            config: d.config.clone(),
            model: d.model.clone(),
            setpoints: d.setpoints.clone(),
            sync_cut: d.sync_cut.clone(),
            peer: d.peer.clone(),
            status: watch::channel(initial).0,
            public_status: d.status.clone(),
            redundancy,
            redundancy_wake: Notify::new(),
            paused: watch::channel(false).0,
            registry: Mutex::new(Registry::default()),
            replicator,
            next_session: AtomicU64::new(1),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            env: d.env.clone(),
            known_epoch: d.known_epoch.clone(),
            peer_heard: Mutex::new(d.env.clock.now()),
        });
        d.status.send_replace(Some(initial));
        tracing::info!(server = %shared.name(), addr = %d.client_addr, role = %initial.role, epoch = initial.epoch, "server started");

        // The image exists before the first client can subscribe.
        let mut values = Vec::with_capacity(shared.model.tag_count());
        let mut previous = Vec::with_capacity(shared.model.tag_count());
        let tick = shared.model.tick_at(shared.clock().wall());
        shared.publish_tick(tick, &mut values, &mut previous);

        shared.spawn(run_ticker(shared.clone(), tick, values, previous));
        shared.spawn(run_heartbeats(shared.clone()));
        shared.spawn(session::run_listener(shared.clone(), client));
        if let Some(l) = sync_listener {
            shared.spawn(run_redundancy(shared.clone()));
            shared.spawn(sync::run_inbound(shared.clone(), l));
            shared.spawn(sync::run_outbound(shared.clone(), replicate_rx));
        }
        *self.inner.running.lock().unwrap() = Some(Incarnation { shared });
    }

    pub fn name(&self) -> &str {
        &self.inner.durable.config.name
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.durable.config
    }

    pub fn model(&self) -> &Arc<FieldModel> {
        &self.inner.durable.model
    }

    /// The bound client-access address.
    pub fn client_addr(&self) -> SocketAddr {
        self.inner.durable.client_addr
    }

    /// The bound sync-link address of a redundant server.
    pub fn sync_addr(&self) -> Option<SocketAddr> {
        self.inner.durable.sync_addr
    }

    /// Points the sync link at the peer (overrides `redundancy.peer`), for pairs whose
    /// ports are only known once both are bound.
    pub fn set_peer(&self, addr: SocketAddr) {
        *self.inner.durable.peer.lock().unwrap() = Some(addr);
    }

    /// Current role and epoch; `None` while crashed.
    pub fn status(&self) -> Option<PeerStatus> {
        *self.inner.durable.status.borrow()
    }

    /// Follows role and epoch changes (and crashes, as `None`).
    pub fn watch_status(&self) -> watch::Receiver<Option<PeerStatus>> {
        self.inner.durable.status.subscribe()
    }

    pub fn is_running(&self) -> bool {
        self.inner.running.lock().unwrap().is_some()
    }

    /// The value a writable tag was last set to on this server, if any.
    pub fn setpoint(&self, tag: TagId) -> Option<Value> {
        self.inner.durable.setpoints.lock().unwrap().get(tag)
    }

    /// Number of client sessions past `Hello`.
    pub fn session_count(&self) -> usize {
        self.shared()
            .map_or(0, |s| s.registry.lock().unwrap().sessions.len())
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.inner
            .running
            .lock()
            .unwrap()
            .as_ref()
            .map(|i| i.shared.clone())
    }

    /// Crash: every socket closes now, nothing is said to anyone.
    pub fn crash(&self) {
        if let Some(inc) = self.inner.running.lock().unwrap().take() {
            tracing::info!(server = %self.name(), "crash");
            inc.shared.cancel.cancel();
            inc.shared.tracker.close();
            self.inner.durable.status.send_replace(None);
        }
    }

    /// Waits until every task of the last incarnation has ended (sockets closed).
    async fn wait_stopped(&self, shared: &Shared) {
        shared.tracker.close();
        shared.tracker.wait().await;
    }

    /// Crash, then wait until every socket of the server is closed.
    pub async fn crash_and_wait(&self) {
        let shared = self.shared();
        self.crash();
        if let Some(s) = shared {
            self.wait_stopped(&s).await;
        }
    }

    /// Starts a crashed server again on the same addresses, with fresh redundancy state.
    pub async fn restart(&self) -> Result<(), ServerError> {
        if self.is_running() {
            return Err(ServerError::AlreadyRunning(self.name().to_string()));
        }
        let d = &self.inner.durable;
        let client = bind(&d.env, d.client_addr, "client access").await?;
        let sync_listener = match d.sync_addr {
            Some(a) => Some(bind(&d.env, a, "sync link").await?),
            None => None,
        };
        tracing::info!(server = %self.name(), "restart");
        self.launch(client, sync_listener);
        Ok(())
    }

    /// Pause: stop sending and reading, keep every socket open (a silent failure).
    pub fn pause(&self) {
        if let Some(s) = self.shared() {
            tracing::info!(server = %self.name(), "pause");
            s.paused.send_replace(true);
        }
    }

    pub fn resume(&self) {
        if let Some(s) = self.shared() {
            tracing::info!(server = %self.name(), "resume");
            s.paused.send_replace(false);
            s.redundancy_wake.notify_one();
        }
    }

    pub fn is_paused(&self) -> bool {
        self.shared().is_some_and(|s| *s.paused.borrow())
    }

    /// Cuts this server's side of the sync link (both directions); it stays cut across
    /// restarts until healed.
    pub fn cut_sync(&self) {
        tracing::info!(server = %self.name(), "sync link cut");
        self.inner.durable.sync_cut.send_replace(true);
    }

    pub fn heal_sync(&self) {
        tracing::info!(server = %self.name(), "sync link healed");
        self.inner.durable.sync_cut.send_replace(false);
    }

    /// Graceful stop: clients are told `ShuttingDown`, then everything closes.
    pub async fn shutdown(&self) {
        let Some(shared) = self.shared() else { return };
        {
            let mut reg = shared.registry.lock().unwrap();
            let ids: Vec<u64> = reg.sessions.keys().copied().collect();
            for id in ids {
                if let Some(mut e) = reg.sessions.remove(&id)
                    && let Some(kill) = e.kill.take()
                {
                    let _ = kill.send(Frame::Error {
                        code: ErrorCode::ShuttingDown,
                        message: format!("server {} is shutting down", shared.name()),
                    });
                }
            }
        }
        // Give writers a moment to deliver the goodbye, bounded.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while shared.tracker.len() > 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        self.crash_and_wait().await;
    }
}

async fn bind(env: &Env, addr: SocketAddr, what: &'static str) -> Result<BoxListener, ServerError> {
    env.net
        .bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, what, source })
}

/// Publishes one batch per scan period, aligned to the field model's ticks.
async fn run_ticker(
    shared: Arc<Shared>,
    mut last: u64,
    mut values: Vec<Value>,
    mut previous: Vec<Value>,
) {
    loop {
        let next = shared.model.tick_time(last + 1);
        let now = shared.clock().wall();
        if next > now {
            tokio::time::sleep(Duration::from_micros(next.0 - now.0)).await;
        }
        shared.wait_unpaused().await;
        let tick = shared.model.tick_at(shared.clock().wall());
        if tick <= last {
            continue;
        }
        shared.publish_tick(tick, &mut values, &mut previous);
        last = tick;
    }
}

async fn run_heartbeats(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(shared.heartbeat());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        shared.wait_unpaused().await;
        shared.broadcast_heartbeat();
    }
}

/// Drives the redundancy state machine's timers.
async fn run_redundancy(shared: Arc<Shared>) {
    let Some(red) = &shared.redundancy else {
        return;
    };
    loop {
        let at = red.lock().unwrap().poll_at();
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
            _ = shared.redundancy_wake.notified() => {}
        }
        shared.wait_unpaused().await;
        let t = red.lock().unwrap().poll(shared.clock().now());
        if let Some(t) = t {
            shared.apply_transition(t);
        }
    }
}
