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

use crate::backend::children::ComponentChildren;
use crate::backend::proxies::ProxySet;
use crate::capability::{Capabilities, Need, Unsupported, invariants_unsupported};
use crate::child::{binaries, connector_child, server_child};
use crate::probe::{wait_listening, wait_serving};
use crate::scenario::{Fault, FaultAction, Scenario};
use crate::seam::Backend;
use crate::server_watch::ServerWatch;
use crate::topology::{ComponentKind, LinkKind, Target, Topology, lab_ip};
use crate::wiring::{MODBUS_PORT, NETNS_CLIENT_PORT, NETNS_SYNC_PORT, Wiring};
use anyhow::{Context as _, Result, anyhow, bail};
use firewall::{Firewall, LinkPath, LinkRule};
use namespaces::Namespaces;
use po_runtime::{Env, SystemClock};
use sockets::NsNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    children: ComponentChildren,
    /// Fault proxies of the links the scenario delays (no netem here), by link.
    proxies: ProxySet,
    /// Each host's namespace, by topology host name.
    host_ns: BTreeMap<String, String>,
    /// Role and epoch of each server, watched from inside its namespace (timeline).
    watches: Vec<(String, ServerWatch)>,
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
    /// Builds the namespaces and starts every component in its host's namespace, as the
    /// wiring says.
    pub async fn start(s: &Scenario, t: &Topology, w: &Wiring) -> Result<NetnsDeployment> {
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
        w.create_files(t)?;
        let paths = w.write_configs()?;
        let hosts: Vec<(String, Ipv4Addr)> = w
            .hosts
            .iter()
            .map(|h| (h.name.clone(), v4(h.address)))
            .collect();
        let namespaces = tokio::task::spawn_blocking(move || Namespaces::create(&hosts))
            .await?
            .context("creating the run's network namespaces")?;
        let host_ns: BTreeMap<String, String> = w
            .hosts
            .iter()
            .map(|h| (h.name.clone(), namespaces.name(&h.name)))
            .collect();
        let tp_ns = host_ns[&t.third_party_host.name].clone();
        let tp_net = NsNet::enter(&tp_ns).with_context(|| format!("entering {tp_ns}"))?;
        let third_party_ip = w.third_party_ip;
        let net_of = |host: Option<&str>| -> Result<Arc<dyn po_runtime::Net>> {
            let ns = &host_ns[host.context("a netns proxy lives in a host's namespace")?];
            Ok(Arc::new(
                NsNet::enter(ns).with_context(|| format!("entering {ns}"))?,
            ))
        };
        let proxies = ProxySet::start(w, net_of).await?;
        let mut d = NetnsDeployment {
            namespaces,
            firewall: Firewall::default(),
            tp_net,
            third_party_ip,
            children: ComponentChildren::default(),
            proxies,
            host_ns,
            watches: vec![],
            run_dir: w.run_dir.clone(),
        };

        // 1. Servers.
        for sw in &w.servers {
            let name = &sw.config.name;
            let ns = d.host_ns[&sw.host].clone();
            let mut child = server_child(&b, &paths[name], &w.run_dir, name, Some(ns.clone()));
            child.spawn().await?;
            d.children.servers.push((name.clone(), child));
            // Local access from the server's own address, inside its namespace.
            let net = NsNet::enter(&ns).with_context(|| format!("entering {ns}"))?;
            d.watches.push((
                name.clone(),
                ServerWatch::start(Arc::new(net), sw.config.listen.ip(), sw.config.listen),
            ));
        }
        for sw in &w.servers {
            wait_listening(&d.tp_net, Some(third_party_ip), sw.config.listen)
                .await
                .with_context(|| format!("waiting for {}", sw.config.name))?;
        }

        // 2. Connectors.
        for c in &w.connectors {
            let ns = d.host_ns[&c.host].clone();
            let metrics = c.metrics.context("a connector process serves metrics")?;
            let mut child = connector_child(
                &b,
                &paths[&c.name],
                &w.run_dir,
                &c.name,
                s.connector.threads,
                Some(ns),
            );
            child.spawn().await?;
            d.children.connectors.push((c.name.clone(), child, metrics));
        }
        for c in &w.connectors {
            wait_listening(&d.tp_net, Some(third_party_ip), c.modbus)
                .await
                .with_context(|| format!("waiting for {}", c.name))?;
            if let Some(m) = c.metrics {
                wait_serving(&d.tp_net, Some(third_party_ip), m)
                    .await
                    .with_context(|| format!("waiting for {}", c.name))?;
            }
        }
        Ok(d)
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
                LinkKind::Sync => NETNS_SYNC_PORT,
                LinkKind::Local | LinkKind::ClientAccess => NETNS_CLIENT_PORT,
                LinkKind::Modbus => MODBUS_PORT,
            },
        })
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
                let proxies = self.proxies.of(&l.name);
                if proxies.is_empty() {
                    bail!(
                        "link {} has no delay proxy (the scenario was read at start)",
                        l.name
                    );
                }
                for p in proxies {
                    p.set_delay(f.latency.unwrap_or_default());
                }
                "fault proxy holding bytes back (this kernel has no netem)".into()
            }
            (FaultAction::Heal, Target::Link(l)) => {
                self.firewall.heal_link(&l.name)?;
                for p in self.proxies.of(&l.name) {
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
                    how = self
                        .children
                        .get(&name, kind)?
                        .apply(&name, f.action)
                        .await?;
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
        self.children.kill_all().await;
        self.proxies.stop().await;
        let mut namespaces = self.namespaces;
        let _ = tokio::task::spawn_blocking(move || namespaces.remove()).await;
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

impl Backend for NetnsDeployment {
    fn env(&self) -> Env {
        Env {
            net: Arc::new(self.tp_net.clone()),
            clock: Arc::new(SystemClock),
        }
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        NetnsDeployment::apply(self, t, f).await
    }

    async fn ingest_counters(&self) -> Vec<Option<u64>> {
        self.children
            .ingest_counters(&self.tp_net, Some(self.third_party_ip))
            .await
    }

    fn server_status(&self) -> Vec<(String, Option<(po_protocol::Role, u64)>)> {
        self.watches
            .iter()
            .map(|(n, w)| (n.clone(), w.status()))
            .collect()
    }

    fn component_pids(&self) -> Vec<(String, u32)> {
        self.children.pids()
    }

    fn run_dir(&self) -> Option<&std::path::Path> {
        Some(&self.run_dir)
    }

    async fn shutdown(self, keep_logs: bool) {
        NetnsDeployment::shutdown(self, keep_logs).await
    }
}
