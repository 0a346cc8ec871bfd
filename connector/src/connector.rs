//! Assembly of a running connector: sources, engine, Modbus listener and metrics
//! endpoint, all owned by one handle so a harness can run, crash and stop it in process.

use crate::authz::RoleTable;
use crate::config::MapConfig;
use crate::config::{AccessKind, ConnectorConfig};
use crate::engine::{Engine, EnginePing, WriteRequest};
use crate::http::{ConnectorInfo, HttpLimits, HttpState, serve_http};
use crate::image::RegisterImage;
use crate::image_slot::ImageSlot;
use crate::lifecycle::Lifecycle;
use crate::listener::ModbusSecurity;
use crate::listener::{ListenerLimits, serve_modbus};
use crate::liveness::{Liveness, PROBE_EVERY};
use crate::map::{MapError, RegisterMap};
use crate::metrics::Metrics;
use crate::selector::SelectorConfig;
use crate::service::ModbusService;
use crate::source::{SourceMsg, run_source, source_specs};
use crate::status::{SourceInfo, StatusBoard};
use po_runtime::Env;
use po_runtime::tls::{TlsServer, TlsSetupError, TlsVersions};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no server delivered a tag catalogue within {0:?}")]
    NoCatalog(Duration),
    #[error("register map")]
    Map(#[from] MapError),
    #[error("cannot listen for Modbus on {addr}")]
    ModbusBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("tls: {0}")]
    Tls(#[from] TlsSetupError),
    #[error("cannot listen for metrics on {addr}")]
    MetricsBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for OPC UA on {addr}")]
    OpcUaBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    OpcUa(#[from] crate::opcua::OpcUaError),
}

/// A running connector.
#[derive(Debug)]
pub struct ConnectorHandle {
    pub name: String,
    /// Plain Modbus TCP; the Modbus/TCP Security address when plain Modbus is off.
    pub modbus_addr: SocketAddr,
    /// Modbus/TCP Security, when configured.
    pub modbus_tls_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The OPC UA server, when configured.
    pub opcua: Option<crate::opcua::OpcUaFace>,
    pub image: Arc<RegisterImage>,
    pub metrics: Arc<Metrics>,
    /// What the status page shows.
    pub board: Arc<StatusBoard>,
    /// Everything `/api/status` is built from (also without an HTTP listener, so a
    /// simulation can read the same document in virtual time).
    pub status: HttpState,
    /// Every TLS end (towards the servers, Modbus/TCP Security): `reload()` rotates
    /// certificates without a restart.
    pub tls: po_runtime::tls::TlsEnds,
    /// Stopping, draining, liveness: also available before the catalogue arrived.
    pub control: ConnectorControl,
}

/// What a supervisor needs of a connector from the moment its listeners are up: how to
/// drain and stop it, whether its engine answers, what it serves.
#[derive(Debug, Clone)]
pub struct ConnectorControl {
    pub images: Arc<ImageSlot>,
    lifecycle: Arc<Lifecycle>,
    engine_pings: mpsc::Sender<EnginePing>,
    write_timeout: Duration,
    tracker: TaskTracker,
    /// The OPC UA face, told of a drain so its clients hear `ServiceLevel` 0 in time.
    opcua: Option<crate::opcua::OpcUaFace>,
}

/// How long OPC UA clients have, once a drain begins, to hear `ServiceLevel` 0 and move
/// before their sessions close (`SecondsTillShutdown` counts it down): a subscription
/// publishes within its publishing interval, and a warm client moves on that.
pub const OPCUA_DRAIN_NOTICE: Duration = Duration::from_secs(1);

impl ConnectorControl {
    /// Stops everything and waits until every socket is closed.
    pub async fn shutdown(&self) {
        self.lifecycle.abort.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// SIGTERM: "draining" in the status block at once, no new masters, the requests in
    /// progress answered (writes up to `write_timeout`), masters closed between
    /// requests, then [`ConnectorControl::shutdown`]. Returns the requests still
    /// unanswered when the grace period ended.
    pub async fn drain(&self) -> usize {
        self.images.set_draining();
        // OPC UA sessions get their notice while writes finish.
        let notice = async {
            if let Some(face) = &self.opcua
                && face.has_sessions()
            {
                face.handle.shutdown_after(OPCUA_DRAIN_NOTICE, "draining");
                tokio::time::sleep(OPCUA_DRAIN_NOTICE).await;
            }
        };
        // A write forwarded just now may take `write_timeout`; its answer must go out.
        let (left, ()) = tokio::join!(
            self.lifecycle
                .drain(self.write_timeout + Duration::from_millis(500)),
            notice
        );
        self.shutdown().await;
        left
    }

    /// Asks the engine (or, before the catalogue, the start-up loop) to answer within
    /// `within`: false when it is stuck (the watchdog's test, docs/service.md).
    pub async fn engine_answers(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let asked = async { self.engine_pings.send(tx).await.is_ok() && rx.await.is_ok() };
        tokio::time::timeout(within, asked).await.unwrap_or(false)
    }

    pub fn is_draining(&self) -> bool {
        self.lifecycle.is_draining()
    }

    /// A future that resolves when the connector has been stopped.
    pub fn stopped(&self) -> impl Future<Output = ()> + use<> {
        let cancel = self.lifecycle.abort.clone();
        async move { cancel.cancelled().await }
    }
}

impl ConnectorHandle {
    /// Stops everything and waits until every socket is closed.
    pub async fn shutdown(&self) {
        self.control.shutdown().await
    }

    /// The `/api/status` document, now.
    pub fn status_doc(&self) -> crate::api::StatusDoc {
        crate::http::status_doc(&self.status)
    }

    /// A future that resolves when the connector has been stopped.
    pub fn stopped(&self) -> impl Future<Output = ()> + use<> {
        self.control.stopped()
    }
}

/// Starts the connector and returns once it serves every tag. The register map needs
/// the server's catalogue; until the first server has answered `Browse` the listeners
/// answer with the status block alone ([`listen`]); `catalog_wait` bounds that wait
/// (`None`: wait for ever, logging failed attempts).
pub async fn start(
    config: ConnectorConfig,
    catalog_wait: Option<Duration>,
) -> Result<ConnectorHandle, StartError> {
    start_in(config, catalog_wait, Env::tokio()).await
}

/// [`start`] with the network and clocks given by the caller (a simulation passes
/// virtual ones).
pub async fn start_in(
    config: ConnectorConfig,
    catalog_wait: Option<Duration>,
    env: Env,
) -> Result<ConnectorHandle, StartError> {
    listen(config, env).await?.serve(catalog_wait).await
}

/// A connector whose listeners are up and whose sources are dialling, waiting for the
/// first catalogue ([`Starting::serve`]).
#[derive(Debug)]
pub struct Starting {
    config: ConnectorConfig,
    env: Env,
    started: Instant,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    status: HttpState,
    tls: po_runtime::tls::TlsEnds,
    control: ConnectorControl,
    modbus_addr: SocketAddr,
    modbus_tls_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    opcua: Option<crate::opcua::OpcUaFace>,
    /// Wakes the faces that follow the image's changes (OPC UA); `None` without them.
    feed_wake: Option<Arc<tokio::sync::Notify>>,
    links: Vec<(String, mpsc::Sender<crate::source::SourceCommand>)>,
    events: mpsc::Receiver<(usize, SourceMsg)>,
    writes: mpsc::Receiver<WriteRequest>,
    pings: mpsc::Receiver<EnginePing>,
}

impl Starting {
    /// Stopping, draining and liveness, before the catalogue too.
    pub fn control(&self) -> &ConnectorControl {
        &self.control
    }

    /// The `/api/status` document, now.
    pub fn status_doc(&self) -> crate::api::StatusDoc {
        crate::http::status_doc(&self.status)
    }

    /// What `/api/status` and `/healthz` are built from.
    pub fn status_state(&self) -> HttpState {
        self.status.clone()
    }
}

/// Opens the listeners (Modbus answering the status block, HTTP answering in full)
/// and starts dialling the sources. A port in use fails here, at once.
pub async fn listen(config: ConnectorConfig, env: Env) -> Result<Starting, StartError> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let metrics = Arc::new(Metrics::default());
    let board = Arc::new(StatusBoard::new(
        env.clock.clone(),
        config.policy.source_timeout,
        config
            .sources
            .iter()
            .map(|s| SourceInfo {
                name: s.name.clone(),
                address: s.address,
                licence: match s.access {
                    AccessKind::Local => None,
                    AccessKind::ClientAccess => Some(s.licence.clone().unwrap_or_default()),
                },
            })
            .collect(),
    ));
    // Every certificate file is read before anything connects or listens.
    let specs = source_specs(&config, &env.net, &env.clock)?;
    let mut tls = po_runtime::tls::TlsEnds::default();
    if let Some(client) = specs.first().and_then(|s| s.tls.as_ref()) {
        // Every source shares one client end.
        tls.add_client(&client.client);
    }
    let security = match &config.modbus.tls {
        Some(t) => {
            let server = TlsServer::load(&t.files(), TlsVersions::Tls12And13)?;
            tls.add_server(&server);
            Some(Arc::new(ModbusSecurity::new(
                server,
                t.handshake_timeout,
                RoleTable::from_config(&config.modbus),
            )))
        }
        None => None,
    };
    warn_plaintext(&config);

    // The listeners open first, so a connector whose servers cannot be reached still
    // answers: the status block says "starting", `/api/status` and `/readyz` say why
    // (docs/connector.md "Before the catalogue"). A port in use fails the start at once.
    let started = env.clock.now();
    let placeholder_map = RegisterMap::build(&[], &config.modbus, &MapConfig::default())?;
    let feed_wake = config
        .opcua
        .as_ref()
        .map(|_| Arc::new(tokio::sync::Notify::new()));
    let mut placeholder =
        RegisterImage::with_clock_since(Arc::new(placeholder_map), env.clock.clone(), started);
    if let Some(wake) = &feed_wake {
        placeholder = placeholder.with_feed(wake.clone());
    }
    let images = Arc::new(ImageSlot::starting(Arc::new(placeholder)));
    let bind = |addr: SocketAddr, what: &'static str| {
        let net = env.net.clone();
        async move {
            match net.bind(addr).await {
                Ok(l) => {
                    let bound = l.local_addr().unwrap_or(addr);
                    Ok((l, bound))
                }
                Err(source) => Err(match what {
                    "metrics" => StartError::MetricsBind { addr, source },
                    "opcua" => StartError::OpcUaBind { addr, source },
                    _ => StartError::ModbusBind { addr, source },
                }),
            }
        }
    };
    let plain = match config.modbus.plain {
        true => Some(bind(config.modbus.listen, "modbus").await?),
        false => None,
    };
    let secure = match &config.modbus.tls {
        Some(t) => Some(bind(t.listen_on(config.modbus.listen), "modbus").await?),
        None => None,
    };
    let modbus_tls_addr = secure.as_ref().map(|(_, a)| *a);
    let modbus_addr = plain
        .as_ref()
        .map(|(_, a)| *a)
        .or(modbus_tls_addr)
        .unwrap_or(config.modbus.listen);
    let metrics_listener = match &config.metrics {
        Some(m) => Some(bind(m.listen, "metrics").await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|(_, a)| *a);
    let opcua_listener = match &config.opcua {
        Some(o) => Some(bind(o.listen, "opcua").await?),
        None => None,
    };

    let (writes_tx, writes_rx) = mpsc::channel(1024);
    let lifecycle = Arc::new(Lifecycle::new(cancel.clone()));
    let opcua = match (&config.opcua, opcua_listener, &feed_wake) {
        (Some(o), Some((listener, _)), Some(wake)) => Some(
            crate::opcua::start(crate::opcua::OpcUaStart {
                config: &config,
                opcua: o,
                listener,
                images: images.clone(),
                wake: wake.clone(),
                writes: writes_tx.clone(),
                lifecycle: lifecycle.clone(),
                metrics: metrics.clone(),
                tracker: &tracker,
                cancel: cancel.clone(),
            })
            .await?,
        ),
        _ => None,
    };
    let service = Arc::new(
        ModbusService::new(
            images.clone(),
            writes_tx,
            &config.modbus,
            config.policy.write_timeout,
            metrics.clone(),
        )
        .with_lifecycle(lifecycle.clone()),
    );
    let limits = ListenerLimits {
        allow: config.modbus.allow.clone(),
        max_connections: config.modbus.max_connections,
        idle_timeout: config.modbus.idle_timeout,
    };
    for (listener, security) in [(plain, None), (secure, security)] {
        if let Some((listener, _)) = listener {
            tracker.spawn(serve_modbus(
                listener,
                service.clone(),
                limits.clone(),
                security,
                metrics.clone(),
                board.clone(),
                lifecycle.clone(),
            ));
        }
    }
    let status = HttpState {
        info: Arc::new(ConnectorInfo {
            name: config.name.clone(),
            modbus_listen: modbus_addr.to_string(),
            max_connections: config.modbus.max_connections,
        }),
        metrics: metrics.clone(),
        images: images.clone(),
        board: board.clone(),
        liveness: Arc::new(Liveness::new(env.clock.clone())),
        opcua: opcua.clone(),
    };
    if let (Some((l, _)), Some(http)) = (metrics_listener, config.metrics.clone()) {
        tracker.spawn(serve_http(
            l,
            HttpLimits {
                max_connections: http.max_connections,
                read_timeout: http.read_timeout,
            },
            status.clone(),
            cancel.clone(),
        ));
    }
    match (config.modbus.plain, modbus_tls_addr) {
        (true, None) => {
            tracing::info!(connector = %config.name, modbus = %modbus_addr, "listening for Modbus TCP (status block only until a server delivers the catalogue)")
        }
        (true, Some(tls)) => {
            tracing::info!(connector = %config.name, modbus = %modbus_addr, modbus_security = %tls, "listening for Modbus TCP and Modbus/TCP Security (status block only until a server delivers the catalogue)")
        }
        (false, _) => {
            tracing::info!(connector = %config.name, modbus_security = %modbus_addr, "listening for Modbus/TCP Security only (status block only until a server delivers the catalogue)")
        }
    }

    let (events_tx, events) = mpsc::channel::<(usize, SourceMsg)>(256);
    let mut links = Vec::new();
    for spec in specs {
        let (tx, rx) = mpsc::channel(1024);
        links.push((spec.name.clone(), tx));
        spawn(&tracker, &cancel, run_source(spec, rx, events_tx.clone()));
    }
    drop(events_tx);
    let (pings_tx, pings) = mpsc::channel(1);
    let control = ConnectorControl {
        images,
        lifecycle,
        engine_pings: pings_tx,
        write_timeout: config.policy.write_timeout,
        tracker,
        opcua: opcua.clone(),
    };
    // The liveness probe: asks the engine (or the start-up loop) to answer, once a
    // second; `/healthz` and the watchdog read the verdict.
    let (probe, liveness) = (control.clone(), status.liveness.clone());
    spawn(&control.tracker, &cancel, async move {
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            if probe.engine_answers(PROBE_EVERY).await {
                liveness.handle_answer();
            }
        }
    });
    Ok(Starting {
        config,
        env,
        started,
        metrics,
        board,
        status,
        tls,
        control,
        modbus_addr,
        modbus_tls_addr,
        metrics_addr,
        opcua,
        feed_wake,
        links,
        events,
        writes: writes_rx,
        pings,
    })
}

impl Starting {
    /// Waits for the first catalogue (at most `catalog_wait`), builds the register map
    /// and starts the engine: from then on every tag is served.
    pub async fn serve(
        self,
        catalog_wait: Option<Duration>,
    ) -> Result<ConnectorHandle, StartError> {
        let Starting {
            config,
            env,
            started,
            metrics,
            board,
            status,
            tls,
            control,
            modbus_addr,
            modbus_tls_addr,
            metrics_addr,
            opcua,
            feed_wake,
            links,
            mut events,
            writes,
            mut pings,
        } = self;
        let fail = |e: StartError| {
            control.lifecycle.abort.cancel();
            Err(e)
        };
        // Until the first catalogue a source can only report that it could not connect:
        // the board shows why (the status page's "last error"); the engine, which only
        // ever uses sources that delivered a catalogue, need not see those reports. The
        // watchdog's pings are answered here meanwhile.
        let wait = async {
            loop {
                tokio::select! {
                    ev = events.recv() => match ev? {
                        (i, SourceMsg::Connected { role, epoch, catalog }) => {
                            return Some((i, role, epoch, catalog));
                        }
                        (i, SourceMsg::Lost { reason }) => {
                            metrics.source_losses.fetch_add(1, Relaxed);
                            board.handle_lost(i, &reason);
                        }
                        (i, other) => {
                            tracing::debug!(source = i, ?other, "message before any catalogue; dropped")
                        }
                    },
                    Some(ping) = pings.recv() => {
                        let _ = ping.send(());
                    }
                }
            }
        };
        let first = match catalog_wait {
            Some(d) => tokio::time::timeout(d, wait).await.ok().flatten(),
            None => wait.await,
        };
        let Some((first_source, role, epoch, catalog)) = first else {
            return fail(StartError::NoCatalog(catalog_wait.unwrap_or_default()));
        };
        let catalog_digest = crate::catalog::digest(&catalog);
        let map = match RegisterMap::build(&catalog, &config.modbus, &config.map) {
            Ok(m) => Arc::new(m),
            Err(e) => return fail(e.into()),
        };
        let mut image = RegisterImage::with_clock_since(map.clone(), env.clock.clone(), started);
        if let Some(wake) = &feed_wake {
            image = image.with_feed(wake.clone());
        }
        let image = Arc::new(image);
        tracing::info!(
            connector = %config.name,
            tags = catalog.len(),
            points = map.points().len(),
            registers = map.register_end(),
            "register map built; serving every tag"
        );
        let selector = SelectorConfig {
            source_timeout: config.policy.source_timeout,
            stale_after: config.policy.stale_after,
            serve_standby: config.policy.serve_standby,
        };
        let mut engine = Engine::new(
            selector,
            image.clone(),
            metrics.clone(),
            catalog_digest,
            links,
            board.clone(),
        );
        engine.on_source_msg(
            first_source,
            SourceMsg::Connected {
                role,
                epoch,
                catalog,
            },
        );
        control.images.set(image.clone());
        if let Some(wake) = &feed_wake {
            // The faces now serve the real image (its service level, its tags).
            wake.notify_one();
        }
        spawn(
            &control.tracker,
            &control.lifecycle.abort,
            engine.run(events, writes, pings),
        );
        Ok(ConnectorHandle {
            name: config.name.clone(),
            modbus_addr,
            modbus_tls_addr,
            metrics_addr,
            opcua,
            image,
            metrics,
            board,
            status,
            tls,
            control,
        })
    }
}

/// A link that crosses the network in plaintext is a choice for labs: say so once.
fn warn_plaintext(config: &ConnectorConfig) {
    if config.tls.is_none() {
        for s in config
            .sources
            .iter()
            .filter(|s| !s.address.ip().is_loopback())
        {
            tracing::warn!(source = %s.name, addr = %s.address, "client access to this server is plaintext across the network: configure [tls] (docs/security.md)");
        }
    }
    let m = &config.modbus;
    if m.plain && !m.listen.ip().is_loopback() {
        tracing::warn!(modbus = %m.listen, "plain Modbus TCP on a non-loopback address: any master the allow-list admits may read and write, whatever the roles of [modbus.tls]; consider modbus.plain = false (docs/security.md)");
    }
}

fn spawn<F>(tracker: &TaskTracker, cancel: &CancellationToken, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let cancel = cancel.clone();
    tracker.spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = fut => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModbusConfig;

    fn control(engine_pings: mpsc::Sender<EnginePing>) -> ConnectorControl {
        let map = RegisterMap::build(&[], &ModbusConfig::default(), &MapConfig::default())
            .expect("an empty catalogue maps");
        ConnectorControl {
            images: Arc::new(ImageSlot::starting(Arc::new(RegisterImage::new(Arc::new(
                map,
            ))))),
            lifecycle: Arc::new(Lifecycle::new(CancellationToken::new())),
            engine_pings,
            write_timeout: Duration::from_secs(1),
            tracker: TaskTracker::new(),
            opcua: None,
        }
    }

    /// The probe behind `/healthz` and the watchdog: an engine that answers between two
    /// events is alive; one stuck inside an event (its channel never read) is not, and
    /// the probe itself never hangs.
    #[tokio::test(start_paused = true)]
    async fn the_liveness_probe_tells_an_answering_engine_from_a_stuck_one() {
        let (tx, mut rx) = mpsc::channel::<EnginePing>(1);
        let answering = tokio::spawn(async move {
            for _ in 0..2 {
                let ping = rx.recv().await.unwrap();
                ping.send(()).unwrap();
            }
            // Stuck: keeps the channel open, never reads it again.
            std::future::pending::<()>().await;
        });
        let c = control(tx);
        assert!(c.engine_answers(Duration::from_secs(1)).await);
        assert!(c.engine_answers(Duration::from_secs(1)).await);
        let start = tokio::time::Instant::now();
        assert!(!c.engine_answers(Duration::from_secs(1)).await);
        // The ping is queued, unread; the next one cannot even be queued.
        assert!(!c.engine_answers(Duration::from_secs(1)).await);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(2),
            "each probe gives up on time"
        );
        answering.abort();
        // An engine that is gone is not alive either.
        let (tx, rx) = mpsc::channel::<EnginePing>(1);
        drop(rx);
        assert!(!control(tx).engine_answers(Duration::from_secs(1)).await);
    }
}
