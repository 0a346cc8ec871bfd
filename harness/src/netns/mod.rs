//! The network-namespace backend (docs/design.md §12): every host a Linux network namespace on a
//! private bridge, addresses 198.18.H.1/15 reachable only inside the run's namespaces,
//! the real `po-sim` / `smart-connector` binaries inside their host's namespace with the
//! same generated configuration files as the process backend, and the harness's own
//! clients (third parties, probes) inside the third-party host's namespace.
//!
//! Network faults happen in the kernel: nftables rules (cut = silent drop, reject = TCP
//! reset, loss = random drop, isolate = every packet of a host's cable) and tc shaping
//! (bandwidth). This kernel has no netem: a link the scenario delays is routed through a
//! fault proxy living in the dialling host's namespace, and the report says so.

pub mod firewall;
pub mod namespaces;
pub mod sockets;

use crate::backend::{connector_config, server_config};
use crate::capability::{Capabilities, Need, Unsupported, invariants_unsupported};
use crate::child::{ManagedChild, binaries, connector_child, server_child};
use crate::opcua::client::UaTarget;
use crate::opcua::setup::UaSetup;
use crate::probe::{scrape, wait_listening, wait_serving};
use crate::proxy::FaultProxy;
use crate::scenario::{Fault, FaultAction, Scenario};
use crate::seam::Backend;
use crate::security::RunPki;
use crate::server_watch::ServerWatch;
use crate::topology::{ComponentKind, LinkKind, ListenerKind, Target, Topology, lab_ip};
use anyhow::{Context as _, Result, anyhow, bail};
use firewall::{Firewall, LinkPath, LinkRule};
use namespaces::Namespaces;
use po_runtime::{Env, SystemClock};
use sockets::NsNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Each connector's OPC UA port in its namespace (the IANA port of opc.tcp).
const OPCUA_PORT: u16 = 4840;

/// Ports inside every host namespace: each host has a network stack of its own, so the
/// well-known ports can be used as a real installation would.
pub const CLIENT_PORT: u16 = 7000;
pub const SYNC_PORT: u16 = 7001;
pub const MODBUS_PORT: u16 = 502;
pub const METRICS_PORT: u16 = 9100;

/// The netns backend cannot run here (not root, a tool missing): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotPermitted(pub String);

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("lab addresses are IPv4"),
    }
}

/// A running architecture in namespaces.
#[derive(Debug)]
pub struct NetnsDeployment {
    /// Removed last (on shutdown or drop).
    namespaces: Namespaces,
    firewall: Firewall,
    /// The third-party host's network: the runner's clients live there.
    tp_net: NsNet,
    third_party_ip: IpAddr,
    servers: Vec<(String, ManagedChild)>,
    /// Each connector with its metrics address.
    connectors: Vec<(String, ManagedChild, SocketAddr)>,
    modbus: Vec<SocketAddr>,
    modbus_direct: Vec<SocketAddr>,
    /// Fault proxies of the links the scenario delays (no netem here), by link.
    proxies: BTreeMap<String, Vec<FaultProxy>>,
    /// Each host's namespace, by topology host name.
    host_ns: BTreeMap<String, String>,
    /// Each component's address (its host's).
    component_ip: BTreeMap<String, IpAddr>,
    /// Role and epoch of each server, watched from inside its namespace (timeline).
    watches: Vec<(String, ServerWatch)>,
    /// The run's certificates, with `[security] tls`.
    pki: Option<RunPki>,
    security: crate::scenario::SecuritySection,
    /// Each connector's Modbus/TCP Security address (with TLS): what third parties use.
    modbus_secure: Vec<SocketAddr>,
    /// With `[third_party.opcua]`: the run's OPC UA set-up and each connector's endpoint.
    opcua: Option<(UaSetup, Vec<UaTarget>)>,
    pub run_dir: PathBuf,
}

impl Capabilities for NetnsDeployment {
    /// Real network stacks and the real binaries: everything but the invariants, which
    /// are observed inside the simulation only.
    fn supports(need: Need) -> Result<(), Unsupported> {
        match need {
            Need::Invariants => Err(invariants_unsupported("netns")),
            _ => Ok(()),
        }
    }
}

impl NetnsDeployment {
    /// Builds the namespaces and starts every component in its host's namespace.
    pub async fn start(s: &Scenario, t: &Topology) -> Result<NetnsDeployment> {
        namespaces::check_privileges().map_err(NotPermitted)?;
        let stale = tokio::task::spawn_blocking(namespaces::remove_stale).await?;
        if !stale.is_empty() {
            eprintln!(
                "harness: removed {} namespaces left behind by a killed run ({} …)",
                stale.len(),
                stale[0]
            );
        }
        let b = binaries()?;
        let run_dir =
            std::env::temp_dir().join(format!("harness-{}-{}-netns", s.name, std::process::id()));
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let hosts: Vec<(String, Ipv4Addr)> = t
            .hosts
            .iter()
            .chain(std::iter::once(&t.third_party_host))
            .map(|h| (h.name.clone(), v4(lab_ip(h.address))))
            .collect();
        let namespaces = tokio::task::spawn_blocking(move || Namespaces::create(&hosts))
            .await?
            .context("creating the run's network namespaces")?;
        let host_ns: BTreeMap<String, String> = t
            .hosts
            .iter()
            .chain(std::iter::once(&t.third_party_host))
            .map(|h| (h.name.clone(), namespaces.name(&h.name)))
            .collect();
        let tp_ns = host_ns[&t.third_party_host.name].clone();
        let tp_net = NsNet::enter(&tp_ns).with_context(|| format!("entering {tp_ns}"))?;
        let third_party_ip = lab_ip(t.third_party_host.address);
        let mut d = NetnsDeployment {
            namespaces,
            firewall: Firewall::default(),
            tp_net,
            third_party_ip,
            servers: vec![],
            connectors: vec![],
            modbus: vec![],
            modbus_direct: vec![],
            proxies: BTreeMap::new(),
            host_ns,
            component_ip: t
                .components
                .iter()
                .map(|c| (c.name.clone(), lab_ip(t.hosts[c.host].address)))
                .collect(),
            watches: vec![],
            pki: None,
            security: s.security.clone(),
            opcua: None,
            modbus_secure: vec![],
            run_dir,
        };
        if s.security.tls {
            d.pki = Some(RunPki::create(&d.run_dir.join("certs"), t)?);
        }
        if let Some(o) = &s.third_party.opcua {
            d.opcua = Some((UaSetup::create(&d.run_dir, o)?, vec![]));
        }
        let delayed = s.delayed_links();
        let ip_of = |component: &str| lab_ip(t.host_of(component).expect("in topology").address);
        let ns_of = |d: &NetnsDeployment, component: &str| {
            d.host_ns[&t.host_of(component).expect("in topology").name].clone()
        };

        // 1. Servers, with the sync link through a proxy where the scenario delays it.
        let redundant = t.architecture > 1;
        let mut configs = Vec::new();
        for c in t.servers() {
            let ip = ip_of(&c.name);
            let sync = redundant.then(|| SocketAddr::new(ip, SYNC_PORT));
            let mut config = server_config(s, t, &c.name, SocketAddr::new(ip, CLIENT_PORT), sync);
            if let Some(pki) = &d.pki {
                pki.secure_server(&mut config, t);
            }
            configs.push(config);
        }
        if let Some(sync) = t.links.iter().find(|l| l.kind == LinkKind::Sync) {
            for (from, to) in [(&sync.from, &sync.to), (&sync.to, &sync.from)] {
                let target = SocketAddr::new(ip_of(to), SYNC_PORT);
                let peer = if delayed.contains(sync.name.as_str()) {
                    d.proxy(&sync.name, &ns_of(&d, from), ip_of(from), target)
                        .await?
                } else {
                    target
                };
                if let Some(r) = configs
                    .iter_mut()
                    .find(|c| &c.name == from)
                    .and_then(|c| c.redundancy.as_mut())
                {
                    r.peer = peer;
                }
            }
        }
        for config in &configs {
            let path = d.run_dir.join(format!("{}.toml", config.name));
            std::fs::write(&path, toml::to_string(config)?)?;
            let ns = ns_of(&d, &config.name);
            let mut child = server_child(&b, &path, &d.run_dir, &config.name, Some(ns.clone()));
            child.spawn().await?;
            d.servers.push((config.name.clone(), child));
            // Local access from the server's own address, inside its namespace.
            let net = NsNet::enter(&ns).with_context(|| format!("entering {ns}"))?;
            d.watches.push((
                config.name.clone(),
                ServerWatch::start(Arc::new(net), config.listen.ip(), config.listen),
            ));
        }
        for config in &configs {
            wait_listening(&d.tp_net, Some(third_party_ip), config.listen)
                .await
                .with_context(|| format!("waiting for {}", config.name))?;
        }

        // 2. Connectors, reaching their servers directly (or through a delay proxy).
        for c in t.connectors() {
            let ip = ip_of(&c.name);
            let ns = ns_of(&d, &c.name);
            let mut sources = Vec::new();
            for l in t.sources_of(&c.name) {
                let target = SocketAddr::new(ip_of(&l.to), CLIENT_PORT);
                let addr = if delayed.contains(l.name.as_str()) {
                    d.proxy(&l.name, &ns, ip, target).await?
                } else {
                    target
                };
                sources.push((l.to.clone(), addr));
            }
            let modbus = SocketAddr::new(ip, MODBUS_PORT);
            let metrics = SocketAddr::new(ip, METRICS_PORT);
            let mut config = connector_config(s, t, &c.name, sources, modbus, Some(metrics));
            if let Some(pki) = &d.pki {
                let secure = SocketAddr::new(ip, smart_connector::config::MODBUS_SECURITY_PORT);
                pki.secure_connector(&mut config, secure);
                d.modbus_secure.push(secure);
            }
            if let Some((setup, targets)) = &mut d.opcua {
                let addr = SocketAddr::new(ip, OPCUA_PORT);
                setup.enable(t, &mut config, addr)?;
                targets.push(UaTarget { addr });
            }
            let path = d.run_dir.join(format!("{}.toml", c.name));
            std::fs::write(&path, toml::to_string(&config)?)?;
            let mut child = connector_child(
                &b,
                &path,
                &d.run_dir,
                &c.name,
                s.connector.threads,
                Some(ns),
            );
            child.spawn().await?;
            d.modbus_direct.push(modbus);
            d.connectors.push((c.name.clone(), child, metrics));
        }

        // 3. Modbus links from the third-party host.
        for (i, (name, _, metrics)) in d.connectors.iter().enumerate() {
            let direct = d.modbus_direct[i];
            wait_listening(&d.tp_net, Some(third_party_ip), direct)
                .await
                .with_context(|| format!("waiting for {name}"))?;
            wait_serving(&d.tp_net, Some(third_party_ip), *metrics)
                .await
                .with_context(|| format!("waiting for {name}"))?;
        }
        for i in 0..d.connectors.len() {
            let link = format!("tp->{}", d.connectors[i].0);
            // Third parties use Modbus/TCP Security with TLS; the harness's own observers
            // stay on plain Modbus.
            let direct = d
                .modbus_secure
                .get(i)
                .copied()
                .unwrap_or(d.modbus_direct[i]);
            let addr = if delayed.contains(link.as_str()) {
                let tp_ns = d.host_ns[&t.third_party_host.name].clone();
                d.proxy(&link, &tp_ns, third_party_ip, direct).await?
            } else {
                direct
            };
            d.modbus.push(addr);
        }
        Ok(d)
    }

    /// A fault proxy for `link` inside namespace `ns`, listening on and dialling from
    /// `ip` (the dialling host's address), relaying to `target`.
    async fn proxy(
        &mut self,
        link: &str,
        ns: &str,
        ip: IpAddr,
        target: SocketAddr,
    ) -> Result<SocketAddr> {
        let net = NsNet::enter(ns).with_context(|| format!("entering {ns}"))?;
        let p = FaultProxy::start_in(Arc::new(net), link, ip, Some(ip), target).await?;
        let listen = p.listen;
        self.proxies.entry(link.to_string()).or_default().push(p);
        Ok(listen)
    }

    /// Where link `name` is enforced and what it matches.
    fn path(&self, t: &Topology, name: &str) -> Result<LinkPath> {
        let l = t.link(name).ok_or_else(|| anyhow!("no link {name}"))?;
        if !l.crosses_hosts {
            bail!("link {name} does not cross hosts: its traffic never leaves the host");
        }
        let from_host = match l.kind {
            LinkKind::Modbus => &t.third_party_host,
            _ => t.host_of(&l.from).expect("in topology"),
        };
        let to_host = t.host_of(&l.to).expect("in topology");
        Ok(LinkPath {
            ns: self.host_ns[&from_host.name].clone(),
            local: v4(lab_ip(from_host.address)),
            peer_ns: self.host_ns[&to_host.name].clone(),
            peer: v4(lab_ip(to_host.address)),
            port: match l.kind {
                LinkKind::Sync => SYNC_PORT,
                LinkKind::Local | LinkKind::ClientAccess => CLIENT_PORT,
                LinkKind::Modbus => MODBUS_PORT,
            },
        })
    }

    fn child(&mut self, name: &str, kind: ComponentKind) -> Result<&mut ManagedChild> {
        let found = match kind {
            ComponentKind::PoServer => self
                .servers
                .iter_mut()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c),
            ComponentKind::Connector => self
                .connectors
                .iter_mut()
                .find(|(n, _, _)| n == name)
                .map(|(_, c, _)| c),
        };
        found.ok_or_else(|| anyhow!("no component {name}"))
    }

    /// Applies one fault; returns the mechanism.
    pub async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        let target = t
            .target(&f.target)
            .ok_or_else(|| anyhow!("no target {}", f.target))?;
        let how: String = match (f.action, target) {
            (FaultAction::Cut | FaultAction::Reject | FaultAction::Loss, Target::Link(l)) => {
                let (rule, how) = match f.action {
                    FaultAction::Cut => (
                        LinkRule::Drop,
                        "nftables drop, both directions (silent black hole)".to_string(),
                    ),
                    FaultAction::Reject => (
                        LinkRule::Reject,
                        "nftables reject with tcp reset".to_string(),
                    ),
                    _ => {
                        let x = f.fraction.unwrap_or_default();
                        (
                            LinkRule::Loss(x),
                            format!("nftables random drop of {:.1} % of packets", x * 100.0),
                        )
                    }
                };
                let path = self.path(t, &l.name)?;
                self.firewall.set_link(&l.name, path, rule)?;
                how
            }
            (FaultAction::Bandwidth, Target::Link(l)) => {
                let rate = f.rate.clone().unwrap_or_default();
                let path = self.path(t, &l.name)?;
                self.firewall.shape(&l.name, path, &rate)?;
                format!("tc htb class of {rate}, both directions")
            }
            (FaultAction::Delay, Target::Link(l)) => {
                let proxies = self.proxies.get(&l.name).ok_or_else(|| {
                    anyhow!(
                        "link {} has no delay proxy (the scenario was read at start)",
                        l.name
                    )
                })?;
                for p in proxies {
                    p.set_delay(f.latency.unwrap_or_default());
                }
                "fault proxy holding bytes back (this kernel has no netem)".into()
            }
            (FaultAction::Heal, Target::Link(l)) => {
                self.firewall.heal_link(&l.name)?;
                for p in self.proxies.get(&l.name).into_iter().flatten() {
                    p.set_delay(Duration::ZERO);
                }
                "nftables rules, tc classes and proxy delay removed".into()
            }
            (FaultAction::Isolate | FaultAction::Heal, Target::Host(h, _)) => {
                let ns = self.host_ns[&h.name].clone();
                let on = f.action == FaultAction::Isolate;
                self.firewall.isolate(&ns, on)?;
                if on {
                    "nftables drop of everything on eth0 (pulled cable)".into()
                } else {
                    "eth0 rules removed".into()
                }
            }
            (
                FaultAction::Crash
                | FaultAction::Restart
                | FaultAction::Pause
                | FaultAction::Resume,
                _,
            ) => {
                let components: Vec<(String, ComponentKind)> = t
                    .components_of_target(&f.target)
                    .iter()
                    .map(|c| (c.name.clone(), c.kind))
                    .collect();
                let mut how = "";
                for (name, kind) in components {
                    how = self.child(&name, kind)?.apply(&name, f.action).await?;
                }
                how.into()
            }
            (a, _) => bail!("`{}` cannot be applied to {}", a.as_str(), f.target),
        };
        Ok(how)
    }

    /// Stops everything and removes the namespaces (with their links and rules); the
    /// run directory (configs, logs) stays when `keep_logs`.
    pub async fn shutdown(mut self, keep_logs: bool) {
        self.watches.clear();
        for (_, c, _) in &mut self.connectors {
            c.kill().await;
        }
        for (_, c) in &mut self.servers {
            c.kill().await;
        }
        for p in self.proxies.values().flatten() {
            p.stop().await;
        }
        let mut namespaces = self.namespaces;
        let _ = tokio::task::spawn_blocking(move || namespaces.remove()).await;
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

impl Backend for NetnsDeployment {
    fn name(&self) -> &'static str {
        "netns"
    }

    fn env(&self) -> Env {
        Env {
            net: Arc::new(self.tp_net.clone()),
            clock: Arc::new(SystemClock),
        }
    }

    fn third_party_ip(&self) -> IpAddr {
        self.third_party_ip
    }

    fn modbus_targets(&self) -> Vec<SocketAddr> {
        self.modbus.clone()
    }

    fn modbus_direct(&self) -> Vec<SocketAddr> {
        self.modbus_direct.clone()
    }

    fn opcua(&self) -> Option<(Vec<UaTarget>, &UaSetup)> {
        self.opcua.as_ref().map(|(s, t)| (t.clone(), s))
    }

    fn master_tls(&self, index: usize) -> Result<Option<po_runtime::tls::TlsClient>> {
        match &self.pki {
            Some(pki) => pki.master_for(&self.security, index),
            None => Ok(None),
        }
    }

    fn connector_names(&self) -> Vec<String> {
        self.connectors.iter().map(|(n, _, _)| n.clone()).collect()
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        NetnsDeployment::apply(self, t, f).await
    }

    async fn ingest_counters(&self) -> Vec<Option<u64>> {
        let mut out = Vec::with_capacity(self.connectors.len());
        for (_, child, metrics) in &self.connectors {
            out.push(if child.is_running() {
                scrape(
                    &self.tp_net,
                    Some(self.third_party_ip),
                    *metrics,
                    "sc_ingest_updates_total",
                )
                .await
            } else {
                None
            });
        }
        out
    }

    fn server_status(&self) -> Vec<(String, Option<(po_protocol::Role, u64)>)> {
        self.watches
            .iter()
            .map(|(n, w)| (n.clone(), w.status()))
            .collect()
    }

    fn component_pids(&self) -> Vec<(String, u32)> {
        let servers = self.servers.iter().map(|(n, c)| (n, c));
        let connectors = self.connectors.iter().map(|(n, c, _)| (n, c));
        servers
            .chain(connectors)
            .filter_map(|(n, c)| c.pid().map(|p| (n.clone(), p)))
            .collect()
    }

    fn run_dir(&self) -> Option<&std::path::Path> {
        Some(&self.run_dir)
    }

    fn listener_addr(&self, component: &str, listener: ListenerKind) -> Option<SocketAddr> {
        let ip = self.component_ip.get(component)?;
        let port = match listener {
            ListenerKind::Client => CLIENT_PORT,
            ListenerKind::Sync => SYNC_PORT,
            ListenerKind::Modbus => MODBUS_PORT,
            ListenerKind::Http => METRICS_PORT,
        };
        Some(SocketAddr::new(*ip, port))
    }

    async fn shutdown(self, keep_logs: bool) {
        NetnsDeployment::shutdown(self, keep_logs).await
    }
}
