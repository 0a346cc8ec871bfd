//! One simulated Power Operation server: client sessions, the per-tick publisher, the
//! redundancy driver, the sync link, and the fault controls of [`ServerHandle`].
//!
//! All tasks of a running server belong to one *incarnation*: a crash cancels the
//! incarnation (every socket closes at once), a graceful stop first drains it (no new
//! clients, connected ones told `ShuttingDown`), a restart starts a fresh one with fresh
//! redundancy state. What survives an in-process restart is kept in the [`ServerHandle`]:
//! the configuration, the setpoint store and the record of the highest known epoch (the
//! role reports each rise of it and the driver records it: `crate::state::EpochRecord`).
//! What survives a process restart is only what is on disk: that record, in `state_dir`
//! when one is configured (`crate::state`); the setpoints come back from the peer.

use crate::config::ServerConfig;
use crate::field::FieldModel;
use crate::redundancy::{PeerStatus, RedundancyRole};
use crate::session;
use crate::setpoints::SetpointStore;
use crate::shared::ServerTls;
use crate::shared::{Registry, Shared};
use crate::sync;
use po_protocol::{ErrorCode, Frame, Role, TagId, Value};
use po_runtime::{BoxListener, Env};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
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
    #[error("tls: {0}")]
    Tls(#[from] po_runtime::tls::TlsSetupError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// State that lives across in-process restarts, plus the network-level fault flag of its
/// sync link. Of it only `epoch_record` outlives the process, and only with `state_dir`.
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
    /// The highest epoch held or heard, as the role last reported it, so a restart never
    /// reuses one: in memory across in-process restarts, and in `state_dir` (when set)
    /// also on disk, across process restarts.
    epoch_record: Arc<crate::state::EpochRecord>,
    /// Both ends of TLS, loaded once at start (a restart keeps them, as a real server
    /// keeps the files it read at start-up); `None`: plaintext.
    tls: Option<Arc<ServerTls>>,
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
        let tls = match &config.tls {
            Some(t) => Some(Arc::new(ServerTls::load(&t.files())?)),
            None => None,
        };
        // Read before binding: a bad state file stops the start with nothing half-open.
        let epoch_record = match config.state_file() {
            Some(file) => {
                file.create_dir()?;
                let epoch = file.read()?;
                tracing::info!(server = %config.name, file = %file.path().display(), epoch, "highest known epoch read");
                crate::state::EpochRecord::new(epoch, Some(file))
            }
            None => crate::state::EpochRecord::default(),
        };
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
            epoch_record: Arc::new(epoch_record),
            tls,
        };
        if d_plaintext_on_network(&durable) {
            tracing::warn!(server = %durable.config.name, addr = %client_addr, "client access is plaintext on a non-loopback address: anyone who reaches it can present any licence; configure [tls] (docs/security.md)");
        }
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
            let known = d.epoch_record.get();
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
            draining: CancellationToken::new(),
            accepting: TaskTracker::new(),
            sessions: TaskTracker::new(),
            env: d.env.clone(),
            epoch_record: d.epoch_record.clone(),
            peer_heard: Mutex::new(d.env.clock.now()),
            tls: d.tls.clone(),
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
        shared.spawn(
            shared
                .accepting
                .track_future(session::run_listener(shared.clone(), client)),
        );
        if let Some(l) = sync_listener {
            shared.spawn(run_redundancy(shared.clone()));
            shared.spawn(sync::run_inbound(shared.clone(), l));
            shared.spawn(sync::run_outbound(shared.clone(), replicate_rx));
        }
        *self.inner.running.lock().unwrap() = Some(Incarnation { shared });
    }

    /// Both TLS ends of this server (none without `[tls]`): `reload()` rotates its
    /// certificates without a restart; a restarted incarnation keeps the reloaded ones.
    pub fn tls_ends(&self) -> po_runtime::tls::TlsEnds {
        let mut ends = po_runtime::tls::TlsEnds::default();
        if let Some(t) = &self.inner.durable.tls {
            ends.add_server(&t.server);
            ends.add_client(&t.client);
        }
        ends
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

    /// How a client's write arriving now would be treated; `None` while crashed.
    /// `Replicate` means this server hears its peer and replicates before it acknowledges.
    pub fn write_mode(&self) -> Option<crate::redundancy::WriteMode> {
        self.shared().map(|s| s.write_mode())
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
        self.end_incarnation("crash");
    }

    /// Ends the running incarnation: every task is cancelled, every socket closes.
    /// `what` is logged: a crash, or the end of a graceful stop.
    fn end_incarnation(&self, what: &'static str) {
        if let Some(inc) = self.inner.running.lock().unwrap().take() {
            tracing::info!(server = %self.name(), "{what}");
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

    /// Graceful stop (a drain): the client-access listener closes, so new clients are
    /// refused; every connected client is sent `Error{ShuttingDown}` and its connection
    /// closed on our side; then the stop waits up to `limits.drain_timeout` for the
    /// clients to close theirs (so each reads the goodbye, and no unread bytes turn our
    /// close into a reset) before everything else stops. Logged as `stopped`, not as a
    /// crash.
    pub async fn shutdown(&self) {
        let Some(shared) = self.shared() else { return };
        shared.draining.cancel();
        shared.accepting.close();
        shared.accepting.wait().await;
        let told = {
            let mut reg = shared.registry.lock().unwrap();
            let ids: Vec<u64> = reg.sessions.keys().copied().collect();
            for id in &ids {
                if let Some(mut e) = reg.sessions.remove(id)
                    && let Some(kill) = e.kill.take()
                {
                    let _ = kill.send(Frame::Error {
                        code: ErrorCode::ShuttingDown,
                        message: format!("server {} is shutting down", shared.name()),
                    });
                }
            }
            ids.len()
        };
        let drain = shared.config.limits.drain_timeout;
        tracing::info!(server = %self.name(), clients = told, drain_timeout = %humantime::format_duration(drain), "stopping: no new clients; connected ones told ShuttingDown");
        shared.sessions.close();
        if tokio::time::timeout(drain, shared.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(server = %self.name(), clients = shared.sessions.len(), "clients still connected after limits.drain_timeout ({}); closing their connections", humantime::format_duration(drain));
        }
        self.end_incarnation("stopped");
        self.wait_stopped(&shared).await;
    }
}

/// Reads the certificate files of a `[tls]` section as start-up would (`po-sim check`).
pub fn check_tls_files(
    files: &po_runtime::tls::TlsFiles,
) -> Result<(), po_runtime::tls::TlsSetupError> {
    ServerTls::load(files).map(drop)
}

/// Whether the client-access link is plaintext where others can reach it.
fn d_plaintext_on_network(d: &Durable) -> bool {
    d.tls.is_none() && !d.client_addr.ip().is_loopback()
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
    while let Some(at) = shared.role_poll_at() {
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
            _ = shared.redundancy_wake.notified() => {}
        }
        shared.wait_unpaused().await;
        shared.poll_role();
    }
}
