//! Assembly of a running connector: sources, engine, Modbus listener and metrics
//! endpoint, all owned by one handle so a harness can run, crash and stop it in process.

use crate::authz::RoleTable;
use crate::config::{AccessKind, ConnectorConfig};
use crate::engine::Engine;
use crate::http::{ConnectorInfo, HttpLimits, HttpState, serve_http};
use crate::image::RegisterImage;
use crate::listener::ModbusSecurity;
use crate::listener::{ListenerLimits, serve_modbus};
use crate::map::{MapError, RegisterMap};
use crate::metrics::Metrics;
use crate::selector::SelectorConfig;
use crate::service::ModbusService;
use crate::source::{SourceMsg, SourceSpec, SourceTls, run_source};
use crate::status::{SourceInfo, StatusBoard};
use po_protocol::Access;
use po_runtime::tls::{TlsClient, TlsServer, TlsSetupError, TlsVersions};
use po_runtime::{Env, Net};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
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
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl ConnectorHandle {
    /// Stops everything and waits until every socket is closed.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// The `/api/status` document, now.
    pub fn status_doc(&self) -> crate::api::StatusDoc {
        crate::http::status_doc(&self.status)
    }

    /// A future that resolves when the connector has been stopped.
    pub fn stopped(&self) -> impl Future<Output = ()> + use<> {
        let cancel = self.cancel.clone();
        async move { cancel.cancelled().await }
    }
}

/// How each source is dialled. With `[tls]` the certificate files are read here, so a
/// bad file stops the start with an error naming it.
pub fn source_specs(
    config: &ConnectorConfig,
    net: &Arc<dyn Net>,
) -> Result<Vec<SourceSpec>, TlsSetupError> {
    let tls = match &config.tls {
        Some(files) => Some(TlsClient::load(files, TlsVersions::Tls13)?),
        None => None,
    };
    Ok(config
        .sources
        .iter()
        .enumerate()
        .map(|(index, s)| SourceSpec {
            index,
            name: s.name.clone(),
            address: s.address,
            access: match s.access {
                AccessKind::Local => Access::Local,
                AccessKind::ClientAccess => Access::ClientAccess {
                    licence: s.licence.clone().unwrap_or_default(),
                },
            },
            host_address: config.host_address,
            client_name: config.name.clone(),
            connect_timeout: config.policy.source_timeout.max(Duration::from_millis(500)),
            reconnect_min: config.policy.reconnect_min,
            reconnect_max: config.policy.reconnect_max,
            silence_timeout: (config.policy.source_timeout * 2).max(Duration::from_secs(1)),
            net: net.clone(),
            tls: tls.clone().map(|client| SourceTls {
                client,
                server_name: s
                    .server_name
                    .clone()
                    .unwrap_or_else(|| s.address.ip().to_string()),
            }),
        })
        .collect())
}

/// Starts the connector. The register map needs the server's catalogue, so Modbus
/// serving begins once the first server has answered `Browse`; `catalog_wait` bounds
/// that wait (`None`: wait for ever, logging each failed attempt).
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
    let specs = source_specs(&config, &env.net)?;
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
    let (events_tx, mut events) = mpsc::channel::<(usize, SourceMsg)>(256);
    let mut links = Vec::new();
    for spec in specs {
        let (tx, rx) = mpsc::channel(1024);
        links.push((spec.name.clone(), tx));
        spawn(&tracker, &cancel, run_source(spec, rx, events_tx.clone()));
    }
    drop(events_tx);

    // Bootstrap: keep every message until one carries a catalogue.
    let mut early = Vec::new();
    let wait = async {
        while let Some((i, msg)) = events.recv().await {
            let catalog = match &msg {
                SourceMsg::Connected { catalog, .. } => Some(catalog.clone()),
                _ => None,
            };
            early.push((i, msg));
            if let Some(c) = catalog {
                return Some(c);
            }
        }
        None
    };
    let catalog = match catalog_wait {
        Some(d) => tokio::time::timeout(d, wait).await.ok().flatten(),
        None => wait.await,
    };
    let Some(catalog) = catalog else {
        cancel.cancel();
        return Err(StartError::NoCatalog(catalog_wait.unwrap_or_default()));
    };
    let catalog_digest = crate::catalog::digest(&catalog);
    let map = match RegisterMap::build(&catalog, &config.modbus, &config.map) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            cancel.cancel();
            return Err(e.into());
        }
    };
    let image = Arc::new(RegisterImage::with_clock(map.clone(), env.clock.clone()));
    tracing::info!(
        connector = %config.name,
        tags = catalog.len(),
        points = map.points().len(),
        registers = map.register_end(),
        "register map built"
    );

    let bind_modbus = |addr: SocketAddr| {
        let net = env.net.clone();
        let cancel = cancel.clone();
        async move {
            match net.bind(addr).await {
                Ok(l) => {
                    let bound = l.local_addr().unwrap_or(addr);
                    Ok((l, bound))
                }
                Err(source) => {
                    cancel.cancel();
                    Err(StartError::ModbusBind { addr, source })
                }
            }
        }
    };
    let plain = match config.modbus.plain {
        true => Some(bind_modbus(config.modbus.listen).await?),
        false => None,
    };
    let secure = match &config.modbus.tls {
        Some(t) => Some(bind_modbus(t.listen_on(config.modbus.listen)).await?),
        None => None,
    };
    let modbus_tls_addr = secure.as_ref().map(|(_, a)| *a);
    let modbus_addr = plain
        .as_ref()
        .map(|(_, a)| *a)
        .or(modbus_tls_addr)
        .unwrap_or(config.modbus.listen);
    let metrics_listener = match &config.metrics {
        Some(m) => match env.net.bind(m.listen).await {
            Ok(l) => Some(l),
            Err(source) => {
                cancel.cancel();
                return Err(StartError::MetricsBind {
                    addr: m.listen,
                    source,
                });
            }
        },
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());

    let (writes_tx, writes_rx) = mpsc::channel(1024);
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
    spawn(&tracker, &cancel, async move {
        for (i, msg) in early {
            engine.on_source_msg(i, msg);
        }
        engine.run(events, writes_rx).await
    });
    let service = Arc::new(ModbusService::new(
        image.clone(),
        writes_tx,
        &config.modbus,
        config.policy.write_timeout,
        metrics.clone(),
    ));
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
                cancel.clone(),
            ));
        }
    }
    let status = HttpState {
        info: Arc::new(ConnectorInfo {
            name: config.name.clone(),
            modbus_listen: modbus_addr.to_string(),
            unit_ids: map.banks().iter().map(|b| b.unit_id).collect(),
            max_connections: config.modbus.max_connections,
        }),
        metrics: metrics.clone(),
        image: image.clone(),
        board: board.clone(),
    };
    if let (Some(l), Some(http)) = (metrics_listener, config.metrics.clone()) {
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
            tracing::info!(connector = %config.name, modbus = %modbus_addr, "serving Modbus TCP")
        }
        (true, Some(tls)) => {
            tracing::info!(connector = %config.name, modbus = %modbus_addr, modbus_security = %tls, "serving Modbus TCP and Modbus/TCP Security")
        }
        (false, _) => {
            tracing::info!(connector = %config.name, modbus_security = %modbus_addr, "serving Modbus/TCP Security only")
        }
    }
    Ok(ConnectorHandle {
        name: config.name.clone(),
        modbus_addr,
        modbus_tls_addr,
        metrics_addr,
        image,
        metrics,
        board,
        status,
        tls,
        cancel,
        tracker,
    })
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
