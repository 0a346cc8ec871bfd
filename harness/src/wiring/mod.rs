//! The wiring of a run, computed once from scenario + topology + backend kind, before
//! anything starts: every host's address, every component's listeners, the fault proxies
//! (which link each carries, where it listens, where it dials), what the third parties
//! and the harness's own observers dial, and each component's generated configuration.
//! Backends only realise it; `plan` renders it; the runner holds it for addressing.
//!
//! Ports: in the inprocess and process backends every host is a loopback alias shared
//! with the rest of the machine, so each listener gets a port free right now (two runs
//! never collide); in sim and netns each host has a network stack of its own and the
//! well-known ports are used as a real installation would.

pub mod configs;

use crate::opcua::client::UaTarget;
use crate::opcua::setup::UaSetup;
use crate::scenario::{BackendKind, Scenario};
use crate::security::RunPki;
use crate::topology::{Link, LinkKind, ListenerKind, Topology, lab_ip};
use anyhow::{Context as _, Result};
use configs::{connector_config, server_config};
use po_simulator::ServerConfig;
use smart_connector::config::ConnectorConfig;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Ports inside every host of the netns backend.
pub const NETNS_CLIENT_PORT: u16 = 7000;
pub const NETNS_SYNC_PORT: u16 = 7001;
/// Ports inside every simulated host.
pub const SIM_CLIENT_PORT: u16 = 23500;
pub const SIM_SYNC_PORT: u16 = 23501;
/// A connector's Modbus, metrics and OPC UA (IANA opc.tcp) ports on a host of its own.
pub const MODBUS_PORT: u16 = 502;
pub const METRICS_PORT: u16 = 9100;
pub const OPCUA_PORT: u16 = 4840;
/// The first port of the delay proxies inside a netns host (one port per proxy).
pub const NETNS_PROXY_PORT: u16 = 17000;

/// A port free on `ip` right now, for a component to bind: two runs (or tests) on one
/// machine then never collide. The OS does not hand out the same ephemeral port again at
/// once, so the window in which another program could take it is tiny.
pub fn free_port(ip: IpAddr) -> Result<u16> {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("binding {ip}"))?;
    Ok(l.local_addr()?.port())
}

/// How a link between two components is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// Same host: the dialler reaches the listener itself.
    Direct,
    /// A fault proxy of the harness (inprocess, process): cut, heal and delay act there.
    FaultProxy,
    /// The simulated network (sim).
    Simulated,
    /// A veth pair and the bridge (netns): faults in nftables and tc; `delay_proxy` when
    /// the scenario delays the link (no netem here), through a fault proxy.
    Kernel { delay_proxy: bool },
}

impl Carrier {
    /// How `plan` names it.
    pub fn describe(self) -> &'static str {
        match self {
            Carrier::Direct => "direct",
            Carrier::FaultProxy => "fault proxy",
            Carrier::Simulated => "simulated link",
            Carrier::Kernel { delay_proxy: true } => {
                "veth + bridge, faults in nftables/tc; fault proxy (delay)"
            }
            Carrier::Kernel { delay_proxy: false } => "veth + bridge, faults in nftables/tc",
        }
    }

    fn proxied(self) -> bool {
        matches!(
            self,
            Carrier::FaultProxy | Carrier::Kernel { delay_proxy: true }
        )
    }
}

/// A host and its address in this backend.
#[derive(Debug, Clone)]
pub struct HostWiring {
    pub name: String,
    pub address: IpAddr,
}

/// A server: its host and its complete configuration (listeners, peer, TLS).
#[derive(Debug, Clone)]
pub struct ServerWiring {
    pub host: String,
    pub config: ServerConfig,
}

/// A connector: its host, its configuration and its listeners.
#[derive(Debug, Clone)]
pub struct ConnectorWiring {
    pub name: String,
    pub host: String,
    pub config: ConnectorConfig,
    /// Its own plain Modbus listener (readiness checks, read-back).
    pub modbus: SocketAddr,
    /// Its own Modbus/TCP Security listener, with `[security] tls`.
    pub modbus_secure: Option<SocketAddr>,
    /// Its metrics/status page (the backends with connector processes).
    pub metrics: Option<SocketAddr>,
    /// Its OPC UA endpoint, with `[third_party.opcua]`.
    pub opcua: Option<UaTarget>,
    /// What the third parties dial: Modbus/TCP Security with TLS, else plain Modbus,
    /// through the Modbus link's proxy where it has one.
    pub third_party: SocketAddr,
}

/// A fault proxy: the link it carries, where it listens and what it relays to.
#[derive(Debug, Clone)]
pub struct ProxyWiring {
    pub link: String,
    /// The host whose network it lives in (netns: the dialling host's namespace); `None`
    /// for the harness's own network.
    pub host: Option<String>,
    pub listen: SocketAddr,
    /// Where its outbound connections leave from (the dialling host's address).
    pub from: Option<IpAddr>,
    pub target: SocketAddr,
}

/// Everything about where a run's components are and how they reach each other.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub backend: BackendKind,
    /// Generated configs, certificates and component logs (created by the backend).
    pub run_dir: PathBuf,
    /// The topology's hosts, then the third-party host.
    pub hosts: Vec<HostWiring>,
    pub third_party_ip: IpAddr,
    /// In topology order.
    pub servers: Vec<ServerWiring>,
    /// In topology order.
    pub connectors: Vec<ConnectorWiring>,
    pub proxies: Vec<ProxyWiring>,
    /// Each link of the topology with how it is carried, in topology order.
    pub links: Vec<(Link, Carrier)>,
    /// Every listener a third-party host can flood, by component.
    pub listeners: BTreeMap<(String, ListenerKind), SocketAddr>,
    /// The run's certificates (with `[security] tls`), made by the backend in `run_dir`.
    pub pki: Option<RunPki>,
    pub security: crate::scenario::SecuritySection,
    /// The run's OPC UA set-up (with `[third_party.opcua]`), made by the backend.
    pub opcua: Option<UaSetup>,
}

impl Wiring {
    /// The wiring a run uses: free ports are picked now (inprocess, process).
    pub fn compute(s: &Scenario, t: &Topology, backend: BackendKind) -> Result<Wiring> {
        Wiring::build(s, t, backend, true)
    }

    /// The wiring as `plan` shows it: the same, with the ports a run picks at its start
    /// left 0 (nothing is bound).
    pub fn preview(s: &Scenario, t: &Topology, backend: BackendKind) -> Result<Wiring> {
        Wiring::build(s, t, backend, false)
    }

    fn build(s: &Scenario, t: &Topology, backend: BackendKind, pick: bool) -> Result<Wiring> {
        use BackendKind::*;
        let lab = matches!(backend, Sim | Netns);
        let address = |a: Ipv4Addr| if lab { lab_ip(a) } else { IpAddr::V4(a) };
        let run_dir = std::env::temp_dir().join(match backend {
            Netns => format!("harness-{}-{}-netns", s.name, std::process::id()),
            _ => format!("harness-{}-{}", s.name, std::process::id()),
        });
        // A listener's port: free now on a shared loopback, the well-known one on a host
        // of its own.
        let port = |ip: IpAddr, fixed: u16| -> Result<u16> {
            match backend {
                Inprocess | Process if pick => free_port(ip),
                Inprocess | Process => Ok(0),
                Sim | Netns => Ok(fixed),
            }
        };
        let (client_port, sync_port) = match backend {
            Sim => (SIM_CLIENT_PORT, SIM_SYNC_PORT),
            _ => (NETNS_CLIENT_PORT, NETNS_SYNC_PORT),
        };
        let delayed = s.delayed_links();
        let links: Vec<(Link, Carrier)> = t
            .links
            .iter()
            .map(|l| {
                let carrier = match (backend, l.crosses_hosts) {
                    (_, false) => Carrier::Direct,
                    (Inprocess | Process, true) => Carrier::FaultProxy,
                    (Sim, true) => Carrier::Simulated,
                    (Netns, true) => Carrier::Kernel {
                        delay_proxy: delayed.contains(l.name.as_str()),
                    },
                };
                (l.clone(), carrier)
            })
            .collect();
        let carrier_of = |name: &str| links.iter().find(|(l, _)| l.name == name).map(|(_, c)| *c);
        let hosts: Vec<HostWiring> = t
            .hosts
            .iter()
            .chain(std::iter::once(&t.third_party_host))
            .map(|h| HostWiring {
                name: h.name.clone(),
                address: address(h.address),
            })
            .collect();
        let host_ip = |name: &str| -> IpAddr {
            address(t.host_of(name).expect("component in topology").address)
        };
        let host_name = |name: &str| t.host_of(name).expect("component in topology").name.clone();
        let third_party_ip = address(t.third_party_host.address);
        let pki = (s.security.tls && backend != Sim).then(|| RunPki::at(&run_dir.join("certs")));
        let opcua = match (&s.third_party.opcua, backend) {
            (Some(o), Process | Netns) => Some(UaSetup::at(&run_dir, o)),
            _ => None,
        };
        let mut proxies: Vec<ProxyWiring> = Vec::new();
        // A proxy for `link` from host `from` (dialling) to `target` on host `to`: on the
        // destination's address in the harness's network (inprocess, process), inside
        // the dialling host's namespace on its address (netns).
        let mut proxy = |link: &str,
                         from: (&str, IpAddr),
                         to_ip: IpAddr,
                         target: SocketAddr|
         -> Result<SocketAddr> {
            let (host, listen) = match backend {
                Netns => (
                    Some(from.0.to_string()),
                    SocketAddr::new(from.1, NETNS_PROXY_PORT + proxies.len() as u16),
                ),
                _ => (None, SocketAddr::new(to_ip, port(to_ip, 0)?)),
            };
            proxies.push(ProxyWiring {
                link: link.to_string(),
                host,
                listen,
                from: Some(from.1),
                target,
            });
            Ok(listen)
        };
        let mut listeners = BTreeMap::new();

        // Servers, then the sync link's two directions (each server dials its peer).
        let mut servers = Vec::new();
        for c in t.servers() {
            let ip = host_ip(&c.name);
            let client = SocketAddr::new(ip, port(ip, client_port)?);
            let sync = if t.architecture > 1 {
                Some(SocketAddr::new(ip, port(ip, sync_port)?))
            } else {
                None
            };
            let mut config = server_config(s, t, &c.name, client, sync);
            if let Some(pki) = &pki {
                pki.secure_server(&mut config, t);
            }
            if backend != Sim {
                listeners.insert((c.name.clone(), ListenerKind::Client), client);
                if let Some(a) = sync {
                    listeners.insert((c.name.clone(), ListenerKind::Sync), a);
                }
            }
            servers.push(ServerWiring {
                host: host_name(&c.name),
                config,
            });
        }
        if let Some(sync) = t.links.iter().find(|l| l.kind == LinkKind::Sync) {
            for (from, to) in [(&sync.from, &sync.to), (&sync.to, &sync.from)] {
                let target = sync_listen(&servers, to);
                let peer = if carrier_of(&sync.name).is_some_and(Carrier::proxied) {
                    proxy(
                        &sync.name,
                        (&host_name(from), host_ip(from)),
                        host_ip(to),
                        target,
                    )?
                } else {
                    target
                };
                if let Some(r) = servers
                    .iter_mut()
                    .find(|w| &w.config.name == from)
                    .and_then(|w| w.config.redundancy.as_mut())
                {
                    r.peer = peer;
                }
            }
        }

        // Connectors, reaching their servers directly or through the link's proxy, and
        // reached by the third parties the same way.
        let mut connectors = Vec::new();
        for c in t.connectors() {
            let ip = host_ip(&c.name);
            let mut sources = Vec::new();
            for l in t.sources_of(&c.name) {
                let target = servers
                    .iter()
                    .find(|w| w.config.name == l.to)
                    .expect("source is a server")
                    .config
                    .listen;
                let addr = if carrier_of(&l.name).is_some_and(Carrier::proxied) {
                    proxy(&l.name, (&host_name(&c.name), ip), host_ip(&l.to), target)?
                } else {
                    target
                };
                sources.push((l.to.clone(), addr));
            }
            let modbus = SocketAddr::new(ip, port(ip, MODBUS_PORT)?);
            let metrics = match backend {
                Process | Netns => Some(SocketAddr::new(ip, port(ip, METRICS_PORT)?)),
                Inprocess | Sim => None,
            };
            let mut config = connector_config(s, t, &c.name, sources, modbus, metrics);
            let modbus_secure = match &pki {
                Some(pki) => {
                    let a = SocketAddr::new(
                        ip,
                        port(ip, smart_connector::config::MODBUS_SECURITY_PORT)?,
                    );
                    pki.secure_connector(&mut config, a);
                    Some(a)
                }
                None => None,
            };
            let opcua_target = match &opcua {
                Some(setup) => {
                    let addr = SocketAddr::new(ip, port(ip, OPCUA_PORT)?);
                    setup.enable(t, &mut config, addr)?;
                    Some(UaTarget { addr })
                }
                None => None,
            };
            if backend != Sim {
                listeners.insert((c.name.clone(), ListenerKind::Modbus), modbus);
                if let Some(m) = metrics {
                    listeners.insert((c.name.clone(), ListenerKind::Http), m);
                }
            }
            // Third parties use Modbus/TCP Security with TLS; the harness's own observers
            // (status block, read-back) stay on plain Modbus.
            let direct = modbus_secure.unwrap_or(modbus);
            let link = format!("tp->{}", c.name);
            let third_party = if carrier_of(&link).is_some_and(Carrier::proxied) {
                proxy(
                    &link,
                    (&t.third_party_host.name, third_party_ip),
                    ip,
                    direct,
                )?
            } else {
                direct
            };
            connectors.push(ConnectorWiring {
                name: c.name.clone(),
                host: host_name(&c.name),
                config,
                modbus,
                modbus_secure,
                metrics,
                opcua: opcua_target,
                third_party,
            });
        }
        Ok(Wiring {
            backend,
            run_dir,
            hosts,
            third_party_ip,
            servers,
            connectors,
            proxies,
            links,
            listeners,
            pki,
            security: s.security.clone(),
            opcua,
        })
    }

    /// Each connector's name, in topology order.
    pub fn connector_names(&self) -> Vec<String> {
        self.connectors.iter().map(|c| c.name.clone()).collect()
    }

    /// What the third parties dial, one address per connector.
    pub fn modbus_targets(&self) -> Vec<SocketAddr> {
        self.connectors.iter().map(|c| c.third_party).collect()
    }

    /// Each connector's own plain Modbus listener (readiness checks, read-back).
    pub fn modbus_direct(&self) -> Vec<SocketAddr> {
        self.connectors.iter().map(|c| c.modbus).collect()
    }

    /// Each connector's OPC UA endpoint and the run's OPC UA set-up, with
    /// `[third_party.opcua]`.
    pub fn opcua(&self) -> Option<(Vec<UaTarget>, &UaSetup)> {
        let setup = self.opcua.as_ref()?;
        Some((
            self.connectors
                .iter()
                .filter_map(|c| c.opcua.clone())
                .collect(),
            setup,
        ))
    }

    /// The TLS client end of third-party master `index`: `None` for plain Modbus.
    pub fn master_tls(&self, index: usize) -> Result<Option<po_runtime::tls::TlsClient>> {
        match &self.pki {
            Some(pki) => pki.master_for(&self.security, index),
            None => Ok(None),
        }
    }

    /// Where a component's listener is reachable from the third-party host.
    pub fn listener_addr(&self, component: &str, listener: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .get(&(component.to_string(), listener))
            .copied()
    }

    /// The address of host `name` in this backend.
    pub fn host_address(&self, name: &str) -> Option<IpAddr> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.address)
    }

    /// The run's certificate directory, with `[security] tls`.
    pub fn certs_dir(&self) -> Option<PathBuf> {
        self.pki.as_ref().map(|_| self.run_dir.join("certs"))
    }

    /// Makes the run directory and the files the configurations name (certificates,
    /// OPC UA keys), for the backends that start components from them.
    pub fn create_files(&self, t: &Topology) -> Result<()> {
        std::fs::create_dir_all(&self.run_dir)
            .with_context(|| format!("creating {}", self.run_dir.display()))?;
        if let Some(pki) = &self.pki {
            pki.create(t)?;
        }
        if let Some(setup) = &self.opcua {
            setup.create()?;
            for c in &self.connectors {
                if let Some(o) = &c.config.opcua {
                    setup.make_server_certs(&c.name, o)?;
                }
            }
        }
        Ok(())
    }

    /// Writes each component's configuration into the run directory; returns the path
    /// of each, by component name.
    pub fn write_configs(&self) -> Result<BTreeMap<String, PathBuf>> {
        let mut out = BTreeMap::new();
        for w in &self.servers {
            out.insert(
                w.config.name.clone(),
                self.write(&w.config.name, &toml::to_string(&w.config)?)?,
            );
        }
        for c in &self.connectors {
            out.insert(
                c.name.clone(),
                self.write(&c.name, &toml::to_string(&c.config)?)?,
            );
        }
        Ok(out)
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.run_dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// Server `name`'s sync listener.
fn sync_listen(servers: &[ServerWiring], name: &str) -> SocketAddr {
    servers
        .iter()
        .find(|w| w.config.name == name)
        .and_then(|w| w.config.redundancy.as_ref())
        .map(|r| r.sync_listen)
        .expect("a redundant server")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(extra: &str) -> Scenario {
        let text = format!("name = \"w\"\narchitecture = 3\nduration = \"10s\"\n{extra}");
        Scenario::parse(&text, "w.toml").unwrap()
    }

    fn proxy_to(w: &Wiring, link: &str, target: SocketAddr) -> ProxyWiring {
        let found: Vec<&ProxyWiring> = w
            .proxies
            .iter()
            .filter(|p| p.link == link && p.target == target)
            .collect();
        assert_eq!(found.len(), 1, "{link} → {target}: {:?}", w.proxies);
        found[0].clone()
    }

    #[test]
    fn proxy_backends_route_every_link_between_hosts_through_its_proxy() {
        let s = scenario("[third_party]\nkind = \"redundant\"\n");
        let t = s.topology();
        let w = Wiring::compute(&s, &t, BackendKind::Process).unwrap();
        let server = |name: &str| {
            &w.servers
                .iter()
                .find(|s| s.config.name == name)
                .unwrap()
                .config
        };
        // Each server dials its peer through the sync link's proxy for that direction,
        // which listens on the peer's host and dials from the server's own.
        for (me, peer) in [("po-a", "po-b"), ("po-b", "po-a")] {
            let sync = server(peer).redundancy.as_ref().unwrap().sync_listen;
            let p = proxy_to(&w, "po-a<->po-b", sync);
            assert_eq!(server(me).redundancy.as_ref().unwrap().peer, p.listen);
            assert_eq!(p.listen.ip(), sync.ip());
            assert_eq!(p.from, Some(server(me).listen.ip()));
            assert_ne!(p.listen.port(), 0);
        }
        // Connectors reach both servers through their client-access proxies, and third
        // parties reach each connector through its Modbus link's proxy.
        for c in &w.connectors {
            for (name, addr) in c.config.sources.iter().map(|s| (&s.name, s.address)) {
                let p = proxy_to(&w, &format!("{}->{name}", c.name), server(name).listen);
                assert_eq!(addr, p.listen);
                assert_eq!(p.from, Some(c.modbus.ip()));
            }
            let tp = proxy_to(&w, &format!("tp->{}", c.name), c.modbus);
            assert_eq!(c.third_party, tp.listen);
            assert_eq!(tp.from, Some(w.third_party_ip));
        }
        assert_eq!(w.proxies.len(), 8);
    }

    #[test]
    fn netns_proxies_only_a_delayed_link_inside_the_dialling_host() {
        let s = scenario(
            "[[fault]]\nat = \"1s\"\naction = \"delay\"\ntarget = \"sc-a->po-b\"\nlatency = \"50ms\"\n",
        );
        let t = s.topology();
        let w = Wiring::compute(&s, &t, BackendKind::Netns).unwrap();
        let [p] = w.proxies.as_slice() else {
            panic!("one proxy: {:?}", w.proxies)
        };
        let sc_a = &w.connectors[0];
        assert_eq!(p.host.as_deref(), Some(sc_a.host.as_str()));
        assert_eq!(
            p.listen,
            SocketAddr::new(sc_a.modbus.ip(), NETNS_PROXY_PORT)
        );
        assert_eq!(
            p.target,
            SocketAddr::new(lab_ip([127, 0, 2, 1].into()), 7000)
        );
        let po_b = sc_a
            .config
            .sources
            .iter()
            .find(|s| s.name == "po-b")
            .unwrap();
        assert_eq!(po_b.address, p.listen);
        // Everything else is direct, on the well-known ports.
        assert_eq!(
            sc_a.third_party,
            SocketAddr::new(sc_a.modbus.ip(), MODBUS_PORT)
        );
        assert_eq!(
            w.listener_addr("po-a", ListenerKind::Sync)
                .map(|a| a.port()),
            Some(7001)
        );
    }
}
