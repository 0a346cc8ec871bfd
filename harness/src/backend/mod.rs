//! Backends: how the components of a topology are brought to life.
//!
//! Both backends build the same wiring: every host is its own loopback address
//! 127.0.H.1, every link between hosts goes through a [`FaultProxy`], connectors reach
//! servers and third parties reach connectors through those proxies.
//! - `inprocess`: servers and connectors are tokio tasks of the harness (fast, for CI);
//!   a connector "crash" is an immediate shutdown of its tasks and sockets.
//! - `process`: the real `po-sim` and `smart-connector` binaries with generated config
//!   files; crash = SIGKILL, pause = SIGSTOP, resume = SIGCONT, restart = respawn. Children
//!   are killed when the deployment is shut down or dropped.

pub mod inprocess;
pub mod process;

use crate::child::{Binaries, ManagedChild, binaries, connector_child, server_child};
use crate::opcua::client::UaTarget;
use crate::opcua::setup::UaSetup;
use crate::probe::{self, scrape};
use crate::proxy::FaultProxy;
use crate::scenario::{BackendKind, Fault, FaultAction, Scenario};
use crate::seam::Backend;
use crate::security::RunPki;
use crate::server_watch::ServerWatch;
use crate::topology::{CA_LICENCES, ComponentKind, LinkKind, ListenerKind, Topology};
use anyhow::{Context as _, Result, anyhow, bail};
use po_protocol::Role;
use po_runtime::{Env, TokioNet};
use po_simulator::config::RedundancySection as SimRedundancy;
use po_simulator::{ServerConfig, ServerHandle, SiteSpec};
use smart_connector::config::{AccessKind, ConnectorConfig, MetricsConfig, SourceConfig};
use smart_connector::connector::ConnectorHandle;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// A port free on `ip` right now, for a child process to bind: two runs (or tests) on one
/// machine then never collide. The OS does not hand out the same ephemeral port again at
/// once, so the window in which another program could take it is tiny.
pub(crate) fn free_port(ip: IpAddr) -> Result<u16> {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("binding {ip}"))?;
    Ok(l.local_addr()?.port())
}

// One of each per component: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum ServerRun {
    InProcess(ServerHandle),
    Process(ManagedChild),
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum ConnectorRun {
    InProcess {
        config: ConnectorConfig,
        handle: Option<ConnectorHandle>,
    },
    Process {
        metrics: SocketAddr,
        child: ManagedChild,
    },
}

/// A running architecture.
#[derive(Debug)]
pub struct Deployment {
    pub backend: BackendKind,
    /// Each connector's Modbus address as the third parties reach it (a proxy).
    pub modbus: Vec<SocketAddr>,
    /// Each connector's own Modbus address (for readiness checks and read-back).
    pub modbus_direct: Vec<SocketAddr>,
    /// Each connector's own Modbus/TCP Security address (with `[security] tls`), not
    /// through a proxy.
    pub modbus_secure_direct: Vec<SocketAddr>,
    pub third_party_ip: IpAddr,
    servers: Vec<(String, ServerRun)>,
    connectors: Vec<(String, ConnectorRun)>,
    proxies: HashMap<String, Vec<FaultProxy>>,
    binaries: Option<Binaries>,
    /// Runtime threads of each connector process (also on restart).
    connector_threads: Option<usize>,
    /// Each component's listeners as the third-party host reaches them (direct, not
    /// through a proxy): flood targets.
    listeners: HashMap<(String, ListenerKind), SocketAddr>,
    /// Role and epoch of each server child (process backend), for the timeline.
    watches: HashMap<String, ServerWatch>,
    /// The run's certificates, with `[security] tls`.
    pki: Option<RunPki>,
    security: crate::scenario::SecuritySection,
    /// With `[third_party.opcua]`: the run's OPC UA set-up and each connector's endpoint.
    opcua: Option<(UaSetup, Vec<UaTarget>)>,
    pub run_dir: PathBuf,
}

fn ip(h: std::net::Ipv4Addr) -> IpAddr {
    IpAddr::V4(h)
}

pub(crate) fn server_config(
    s: &Scenario,
    t: &Topology,
    name: &str,
    listen: SocketAddr,
    sync: Option<SocketAddr>,
) -> ServerConfig {
    let c = t.component(name).expect("server in topology");
    ServerConfig {
        limits: Default::default(),
        tls: None,
        name: name.to_string(),
        listen,
        // The host's address is where the server listens (the backend chose it).
        host_address: Some(listen.ip()),
        licences: if t.licences.client_access > 0 {
            CA_LICENCES.iter().map(|l| l.to_string()).collect()
        } else {
            vec![]
        },
        seed: s.seed,
        field_epoch_us: 0,
        heartbeat: s.redundancy.heartbeat,
        client_queue: 256,
        site: SiteSpec {
            devices: s.site.devices,
            tags_per_device: s.site.tags_per_device,
            scan_period: s.site.scan_period,
        },
        redundancy: sync.map(|sync_listen| SimRedundancy {
            index: c.index as u8,
            sync_listen,
            // Replaced once the proxies exist.
            peer: sync_listen,
            failover_timeout: s.redundancy.failover_timeout,
            failback: s.redundancy.failback,
        }),
    }
}

pub(crate) fn connector_config(
    s: &Scenario,
    t: &Topology,
    name: &str,
    sources: Vec<(String, SocketAddr)>,
    modbus: SocketAddr,
    metrics: Option<SocketAddr>,
) -> ConnectorConfig {
    let c = t.component(name).expect("connector in topology");
    let mut config: ConnectorConfig =
        toml::from_str(&format!("name = \"{name}\"")).expect("minimal config");
    // The host's address is where the connector serves Modbus (the backend chose it).
    config.host_address = Some(modbus.ip());
    let links = t.sources_of(name);
    config.sources = sources
        .into_iter()
        .zip(links)
        .map(|((server, address), link)| SourceConfig {
            name: server,
            address,
            access: if link.kind == LinkKind::ClientAccess {
                AccessKind::ClientAccess
            } else {
                AccessKind::Local
            },
            licence: (link.kind == LinkKind::ClientAccess)
                .then(|| CA_LICENCES[c.index].to_string()),
            server_name: None,
        })
        .collect();
    config.policy.source_timeout = s.connector.source_timeout;
    config.policy.stale_after = s.connector.stale_after;
    config.policy.write_timeout = s.connector.write_timeout;
    config.policy.reconnect_min = Duration::from_millis(50);
    config.policy.reconnect_max = Duration::from_millis(500);
    config.modbus.listen = modbus;
    config.modbus.word_order = s.connector.word_order;
    config.modbus.max_connections = 64;
    config.metrics = metrics.map(MetricsConfig::at);
    config
}

impl Deployment {
    /// The run's lab PKI (with `[security] tls`).
    pub fn certs_dir(&self) -> Option<PathBuf> {
        self.pki.as_ref().map(|_| self.run_dir.join("certs"))
    }

    /// The TLS client end of third-party master `index` (with `[security] tls`).
    pub fn master_tls(&self, index: usize) -> Result<Option<po_runtime::tls::TlsClient>> {
        match &self.pki {
            Some(pki) => pki.master_for(&self.security, index),
            None => Ok(None),
        }
    }

    pub async fn start(s: &Scenario, t: &Topology, backend: BackendKind) -> Result<Deployment> {
        let run_dir =
            std::env::temp_dir().join(format!("harness-{}-{}", s.name, std::process::id()));
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let binaries = match backend {
            BackendKind::Process => Some(binaries()?),
            BackendKind::Inprocess => None,
            BackendKind::Sim | BackendKind::Netns => {
                bail!(
                    "the {} backend has a deployment of its own",
                    backend.as_str()
                )
            }
        };
        let mut d = Deployment {
            backend,
            modbus: vec![],
            modbus_direct: vec![],
            modbus_secure_direct: vec![],
            third_party_ip: ip(t.third_party_host.address),
            servers: vec![],
            connectors: vec![],
            proxies: HashMap::new(),
            binaries,
            connector_threads: s.connector.threads,
            listeners: HashMap::new(),
            watches: HashMap::new(),
            pki: None,
            security: s.security.clone(),
            opcua: None,
            run_dir,
        };
        if s.security.tls {
            d.pki = Some(RunPki::create(&d.run_dir.join("certs"), t)?);
        }
        // OPC UA clients reach each connector's own endpoint from the third-party host
        // (the process backend only: in-process connectors refuse such scenarios).
        if let (Some(o), BackendKind::Process) = (&s.third_party.opcua, backend) {
            d.opcua = Some((UaSetup::create(&d.run_dir, o)?, vec![]));
        }
        // Each connector's Modbus/TCP Security address (with TLS): what third parties use.
        let mut modbus_secure: Vec<SocketAddr> = Vec::new();
        let redundant = t.architecture > 1;
        // 1. Servers: where they listen.
        let mut client_addr: HashMap<String, SocketAddr> = HashMap::new();
        let mut sync_addr: HashMap<String, SocketAddr> = HashMap::new();
        let mut configs = Vec::new();
        for c in t.servers() {
            let host = ip(t.hosts[c.host].address);
            let port = || -> Result<u16> {
                if backend == BackendKind::Process {
                    free_port(host)
                } else {
                    Ok(0)
                }
            };
            let client = SocketAddr::new(host, port()?);
            let sync = if redundant {
                Some(SocketAddr::new(host, port()?))
            } else {
                None
            };
            let mut config = server_config(s, t, &c.name, client, sync);
            if let Some(pki) = &d.pki {
                pki.secure_server(&mut config, t);
            }
            configs.push(config);
        }
        if backend == BackendKind::Inprocess {
            for config in &configs {
                let h = ServerHandle::start(config.clone())
                    .await
                    .with_context(|| format!("starting {}", config.name))?;
                client_addr.insert(config.name.clone(), h.client_addr());
                if let Some(a) = h.sync_addr() {
                    sync_addr.insert(config.name.clone(), a);
                }
                d.servers
                    .push((config.name.clone(), ServerRun::InProcess(h)));
            }
        } else {
            for config in &configs {
                client_addr.insert(config.name.clone(), config.listen);
                if let Some(r) = &config.redundancy {
                    sync_addr.insert(config.name.clone(), r.sync_listen);
                }
            }
        }
        for (name, a) in &client_addr {
            d.listeners.insert((name.clone(), ListenerKind::Client), *a);
        }
        for (name, a) in &sync_addr {
            d.listeners.insert((name.clone(), ListenerKind::Sync), *a);
        }
        // 2. Sync link proxies: one per direction (each server dials its peer).
        if redundant {
            let sync = t
                .links
                .iter()
                .find(|l| l.kind == LinkKind::Sync)
                .expect("sync link");
            let mut peers = HashMap::new();
            for (from, to) in [(&sync.from, &sync.to), (&sync.to, &sync.from)] {
                let to_host = ip(t.host_of(to).expect("host").address);
                let from_host = ip(t.host_of(from).expect("host").address);
                let p =
                    FaultProxy::start(&sync.name, to_host, Some(from_host), sync_addr[to]).await?;
                peers.insert(from.clone(), p.listen);
                d.proxies.entry(sync.name.clone()).or_default().push(p);
            }
            for (name, run) in &d.servers {
                if let ServerRun::InProcess(h) = run {
                    h.set_peer(peers[name]);
                }
            }
            for config in &mut configs {
                if let Some(r) = &mut config.redundancy {
                    r.peer = peers[&config.name];
                }
            }
        }
        if backend == BackendKind::Process {
            for config in &configs {
                let path = d.run_dir.join(format!("{}.toml", config.name));
                std::fs::write(&path, toml::to_string(config)?)?;
                let b = d.binaries.as_ref().expect("process backend");
                let mut child = server_child(b, &path, &d.run_dir, &config.name, None);
                child.spawn().await?;
                d.servers
                    .push((config.name.clone(), ServerRun::Process(child)));
                d.watches.insert(
                    config.name.clone(),
                    ServerWatch::start(
                        std::sync::Arc::new(TokioNet),
                        config.listen.ip(),
                        config.listen,
                    ),
                );
            }
        }
        // 3. Connectors, through client-access proxies where the link crosses hosts.
        for c in t.connectors() {
            let host = ip(t.hosts[c.host].address);
            let mut sources = Vec::new();
            for l in t.sources_of(&c.name) {
                let target = wait_listening(client_addr[&l.to], backend).await?;
                let addr = if l.crosses_hosts {
                    let to_host = ip(t.host_of(&l.to).expect("host").address);
                    let p = FaultProxy::start(&l.name, to_host, Some(host), target).await?;
                    let a = p.listen;
                    d.proxies.entry(l.name.clone()).or_default().push(p);
                    a
                } else {
                    target
                };
                sources.push((l.to.clone(), addr));
            }
            match backend {
                BackendKind::Inprocess | BackendKind::Sim | BackendKind::Netns => {
                    let mut config =
                        connector_config(s, t, &c.name, sources, SocketAddr::new(host, 0), None);
                    if let Some(pki) = &d.pki {
                        pki.secure_connector(&mut config, SocketAddr::new(host, 0));
                    }
                    let h = smart_connector::connector::start(
                        config.clone(),
                        Some(Duration::from_secs(30)),
                    )
                    .await
                    .with_context(|| format!("starting {}", c.name))?;
                    config.modbus.listen = h.modbus_addr;
                    if let (Some(t), Some(a)) = (config.modbus.tls.as_mut(), h.modbus_tls_addr) {
                        t.listen = Some(a);
                        modbus_secure.push(a);
                    }
                    d.modbus_direct.push(h.modbus_addr);
                    d.connectors.push((
                        c.name.clone(),
                        ConnectorRun::InProcess {
                            config,
                            handle: Some(h),
                        },
                    ));
                }
                BackendKind::Process => {
                    let modbus = SocketAddr::new(host, free_port(host)?);
                    let metrics = SocketAddr::new(host, free_port(host)?);
                    let mut config =
                        connector_config(s, t, &c.name, sources, modbus, Some(metrics));
                    if let Some(pki) = &d.pki {
                        let a = SocketAddr::new(host, free_port(host)?);
                        pki.secure_connector(&mut config, a);
                        modbus_secure.push(a);
                    }
                    if let Some((setup, targets)) = &mut d.opcua {
                        let addr = SocketAddr::new(host, free_port(host)?);
                        setup.enable(t, &mut config, addr)?;
                        targets.push(UaTarget { addr });
                    }
                    let path = d.run_dir.join(format!("{}.toml", c.name));
                    std::fs::write(&path, toml::to_string(&config)?)?;
                    let b = d.binaries.as_ref().expect("process backend");
                    let mut child =
                        connector_child(b, &path, &d.run_dir, &c.name, d.connector_threads, None);
                    child.spawn().await?;
                    probe::wait_serving(&TokioNet, None, metrics)
                        .await
                        .with_context(|| format!("waiting for {}", c.name))?;
                    d.modbus_direct.push(modbus);
                    d.listeners
                        .insert((c.name.clone(), ListenerKind::Modbus), modbus);
                    d.listeners
                        .insert((c.name.clone(), ListenerKind::Http), metrics);
                    d.connectors
                        .push((c.name.clone(), ConnectorRun::Process { metrics, child }));
                }
            }
        }
        d.modbus_secure_direct = modbus_secure.clone();
        // 4. Modbus links from the third-party host.
        for (i, (name, _)) in d.connectors.iter().enumerate() {
            let link = format!("tp->{name}");
            // Third parties use Modbus/TCP Security with TLS; the harness's own
            // observers (status block, read-back) stay on plain Modbus.
            let direct = modbus_secure.get(i).copied().unwrap_or(d.modbus_direct[i]);
            let addr = if t.link(&link).is_some() {
                let target = wait_listening(direct, backend).await?;
                let p =
                    FaultProxy::start(&link, direct.ip(), Some(d.third_party_ip), target).await?;
                let a = p.listen;
                d.proxies.entry(link).or_default().push(p);
                a
            } else {
                direct
            };
            d.modbus.push(addr);
        }
        Ok(d)
    }

    /// Each component's process id: the children in the process backend, the harness
    /// itself (all components together) in-process.
    pub fn component_pids(&self) -> Vec<(String, u32)> {
        if self.backend == BackendKind::Inprocess {
            return vec![("harness (all components)".into(), std::process::id())];
        }
        let s = self.servers.iter().filter_map(|(n, r)| match r {
            ServerRun::Process(c) => c.pid().map(|p| (n.clone(), p)),
            _ => None,
        });
        let c = self.connectors.iter().filter_map(|(n, r)| match r {
            ConnectorRun::Process { child, .. } => child.pid().map(|p| (n.clone(), p)),
            _ => None,
        });
        s.chain(c).collect()
    }

    /// Applies one fault of the scenario; returns how it was applied (for the report).
    pub async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        match f.action {
            FaultAction::Cut | FaultAction::Heal | FaultAction::Delay
                if t.link(&f.target).is_some() =>
            {
                let proxies = self.proxies.get(&f.target).ok_or_else(|| {
                    anyhow!(
                        "link {} has no fault proxy (it does not cross hosts)",
                        f.target
                    )
                })?;
                for p in proxies {
                    match f.action {
                        FaultAction::Cut => p.cut(),
                        FaultAction::Heal => {
                            p.heal();
                            p.set_delay(Duration::ZERO);
                        }
                        _ => p.set_delay(f.latency.unwrap_or_default()),
                    }
                }
                Ok(match f.action {
                    FaultAction::Cut => "fault proxy: connections closed, new ones refused",
                    FaultAction::Heal => "fault proxy: relaying again",
                    _ => "fault proxy: bytes held back",
                }
                .into())
            }
            FaultAction::Crash
            | FaultAction::Restart
            | FaultAction::Pause
            | FaultAction::Resume => {
                let names: Vec<(String, ComponentKind)> = t
                    .components_of_target(&f.target)
                    .iter()
                    .map(|c| (c.name.clone(), c.kind))
                    .collect();
                let mut how = "";
                for (name, kind) in names {
                    how = match kind {
                        ComponentKind::PoServer => self.server_fault(&name, f.action).await?,
                        ComponentKind::Connector => self.connector_fault(&name, f.action).await?,
                    };
                }
                Ok(how.into())
            }
            a => bail!(
                "the {} backend cannot apply `{}` to {}",
                self.backend.as_str(),
                a.as_str(),
                f.target
            ),
        }
    }

    async fn server_fault(&mut self, name: &str, action: FaultAction) -> Result<&'static str> {
        let (_, run) = self
            .servers
            .iter_mut()
            .find(|(n, _)| n == name)
            .ok_or_else(|| anyhow!("no server {name}"))?;
        Ok(match (run, action) {
            (ServerRun::Process(child), a) => child.apply(name, a).await?,
            (ServerRun::InProcess(h), FaultAction::Crash) => {
                h.crash_and_wait().await;
                "tasks and sockets dropped"
            }
            (ServerRun::InProcess(h), FaultAction::Restart) => {
                if h.is_running() {
                    h.crash_and_wait().await;
                }
                h.restart().await?;
                "started again"
            }
            (ServerRun::InProcess(h), FaultAction::Pause) => {
                h.pause();
                "tasks stop being driven"
            }
            (ServerRun::InProcess(h), FaultAction::Resume) => {
                h.resume();
                "tasks driven again"
            }
            (_, a) => bail!("{} cannot be applied to server {name}", a.as_str()),
        })
    }

    async fn connector_fault(&mut self, name: &str, action: FaultAction) -> Result<&'static str> {
        let (_, run) = self
            .connectors
            .iter_mut()
            .find(|(n, _)| n == name)
            .ok_or_else(|| anyhow!("no connector {name}"))?;
        Ok(match (run, action) {
            (ConnectorRun::Process { child, .. }, a) => child.apply(name, a).await?,
            (ConnectorRun::InProcess { handle, .. }, FaultAction::Crash) => {
                if let Some(h) = handle.take() {
                    h.shutdown().await;
                }
                "tasks and sockets dropped"
            }
            (ConnectorRun::InProcess { handle, config }, FaultAction::Restart) => {
                if let Some(h) = handle.take() {
                    h.shutdown().await;
                }
                *handle = Some(
                    smart_connector::connector::start(
                        config.clone(),
                        Some(Duration::from_secs(30)),
                    )
                    .await?,
                );
                "started again"
            }
            (_, a) => bail!("{} cannot be applied to connector {name}", a.as_str()),
        })
    }

    /// Each connector's ingest counter (tag updates accepted), `None` while it is down.
    pub async fn ingest_counters(&self) -> Vec<Option<u64>> {
        let mut out = Vec::with_capacity(self.connectors.len());
        for (_, c) in &self.connectors {
            out.push(match c {
                ConnectorRun::InProcess { handle, .. } => handle
                    .as_ref()
                    .map(|h| h.metrics.ingest_updates.load(Relaxed)),
                ConnectorRun::Process { metrics, child } if child.is_running() => {
                    scrape(&TokioNet, None, *metrics, "sc_ingest_updates_total").await
                }
                ConnectorRun::Process { .. } => None,
            });
        }
        out
    }

    pub fn connector_names(&self) -> Vec<String> {
        self.connectors.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Each server's role and epoch: from its handle in-process, from a watching session
    /// for a child process.
    pub fn server_status(&self) -> Vec<(String, Option<(Role, u64)>)> {
        self.servers
            .iter()
            .map(|(name, run)| {
                let st = match run {
                    ServerRun::InProcess(h) => h.status().map(|s| (s.role, s.epoch)),
                    ServerRun::Process(_) => self.watches.get(name).and_then(ServerWatch::status),
                };
                (name.clone(), st)
            })
            .collect()
    }

    /// Stops everything; every child is killed and reaped, every socket closed. The run
    /// directory (configs, logs) is removed unless `keep_logs`.
    pub async fn shutdown(mut self, keep_logs: bool) {
        self.watches.clear();
        for (_, c) in &mut self.connectors {
            match c {
                ConnectorRun::InProcess { handle, .. } => {
                    if let Some(h) = handle.take() {
                        h.shutdown().await;
                    }
                }
                ConnectorRun::Process { child, .. } => child.kill().await,
            }
        }
        for (_, s) in &mut self.servers {
            match s {
                ServerRun::InProcess(h) => h.crash_and_wait().await,
                ServerRun::Process(child) => child.kill().await,
            }
        }
        for ps in self.proxies.values() {
            for p in ps {
                p.stop().await;
            }
        }
        if !keep_logs && self.backend == BackendKind::Process {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

/// In-process components listen before `start` returns; children are waited for.
async fn wait_listening(addr: SocketAddr, backend: BackendKind) -> Result<SocketAddr> {
    if backend == BackendKind::Inprocess {
        return Ok(addr);
    }
    probe::wait_listening(&TokioNet, None, addr).await
}

impl Backend for Deployment {
    fn name(&self) -> &'static str {
        self.backend.as_str()
    }

    fn env(&self) -> Env {
        Env::tokio()
    }

    fn third_party_ip(&self) -> IpAddr {
        self.third_party_ip
    }

    fn modbus_targets(&self) -> Vec<SocketAddr> {
        self.modbus.clone()
    }

    fn master_tls(&self, index: usize) -> Result<Option<po_runtime::tls::TlsClient>> {
        Deployment::master_tls(self, index)
    }

    fn modbus_direct(&self) -> Vec<SocketAddr> {
        self.modbus_direct.clone()
    }

    fn opcua(&self) -> Option<(Vec<UaTarget>, &UaSetup)> {
        self.opcua.as_ref().map(|(s, t)| (t.clone(), s))
    }

    fn connector_names(&self) -> Vec<String> {
        Deployment::connector_names(self)
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        Deployment::apply(self, t, f).await
    }

    async fn ingest_counters(&self) -> Vec<Option<u64>> {
        Deployment::ingest_counters(self).await
    }

    fn server_status(&self) -> Vec<(String, Option<(Role, u64)>)> {
        Deployment::server_status(self)
    }

    fn component_pids(&self) -> Vec<(String, u32)> {
        Deployment::component_pids(self)
    }

    fn run_dir(&self) -> Option<&std::path::Path> {
        (self.backend == BackendKind::Process).then_some(self.run_dir.as_path())
    }

    fn listener_addr(&self, component: &str, listener: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .get(&(component.to_string(), listener))
            .copied()
    }

    async fn shutdown(self, keep_logs: bool) {
        Deployment::shutdown(self, keep_logs).await
    }
}
