//! The process backend: the real `po-sim` and `smart-connector` binaries with the
//! wiring's generated config files, links between hosts through fault proxies.

use super::lifecycle_targets;
use super::proxies::ProxySet;
use crate::capability::{
    Capabilities, Need, Unsupported, invariants_unsupported, proxy_fault_support,
};
use crate::child::{ManagedChild, binaries, connector_child, server_child};
use crate::probe::{scrape, wait_listening, wait_serving};
use crate::scenario::{Fault, FaultAction, Scenario};
use crate::seam::Backend;
use crate::server_watch::ServerWatch;
use crate::topology::{ComponentKind, Topology};
use crate::wiring::Wiring;
use anyhow::{Context as _, Result, anyhow, bail};
use po_protocol::Role;
use po_runtime::{Env, Net, TokioNet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A running architecture as child processes.
#[derive(Debug)]
pub struct ProcessDeployment {
    servers: Vec<(String, ManagedChild)>,
    /// Each connector with its metrics address.
    connectors: Vec<(String, ManagedChild, SocketAddr)>,
    /// Role and epoch of each server, from a watching session (timeline).
    watches: Vec<(String, ServerWatch)>,
    proxies: ProxySet,
    run_dir: PathBuf,
}

impl Capabilities for ProcessDeployment {
    fn supports(need: Need) -> Result<(), Unsupported> {
        match need {
            Need::Fault(a) => proxy_fault_support(a),
            Need::Invariants => Err(invariants_unsupported("process")),
            Need::Flood | Need::OpcUa | Need::Tls | Need::Tags(_) => Ok(()),
        }
    }
}

impl ProcessDeployment {
    /// Writes the configs, starts the proxies, the servers, then the connectors, and
    /// waits until each listens.
    pub async fn start(s: &Scenario, t: &Topology, w: &Wiring) -> Result<ProcessDeployment> {
        let b = binaries()?;
        w.create_files(t)?;
        let paths = w.write_configs()?;
        let net: Arc<dyn Net> = Arc::new(TokioNet);
        let proxies = ProxySet::start(w, |_| Ok(net.clone())).await?;
        let mut d = ProcessDeployment {
            servers: vec![],
            connectors: vec![],
            watches: vec![],
            proxies,
            run_dir: w.run_dir.clone(),
        };
        for sw in &w.servers {
            let name = &sw.config.name;
            let mut child = server_child(&b, &paths[name], &w.run_dir, name, None);
            child.spawn().await?;
            d.servers.push((name.clone(), child));
            d.watches.push((
                name.clone(),
                ServerWatch::start(net.clone(), sw.config.listen.ip(), sw.config.listen),
            ));
        }
        for sw in &w.servers {
            wait_listening(&TokioNet, None, sw.config.listen)
                .await
                .with_context(|| format!("waiting for {}", sw.config.name))?;
        }
        for c in &w.connectors {
            let metrics = c.metrics.context("a connector process serves metrics")?;
            let mut child = connector_child(
                &b,
                &paths[&c.name],
                &w.run_dir,
                &c.name,
                s.connector.threads,
                None,
            );
            child.spawn().await?;
            wait_serving(&TokioNet, None, metrics)
                .await
                .with_context(|| format!("waiting for {}", c.name))?;
            wait_listening(&TokioNet, None, c.modbus_secure.unwrap_or(c.modbus))
                .await
                .with_context(|| format!("waiting for {}", c.name))?;
            d.connectors.push((c.name.clone(), child, metrics));
        }
        Ok(d)
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
}

impl Backend for ProcessDeployment {
    fn env(&self) -> Env {
        Env::tokio()
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        match f.action {
            FaultAction::Cut | FaultAction::Heal | FaultAction::Delay
                if t.link(&f.target).is_some() =>
            {
                Ok(self.proxies.apply(f)?.into())
            }
            FaultAction::Crash
            | FaultAction::Restart
            | FaultAction::Pause
            | FaultAction::Resume => {
                let mut how = "";
                for (name, kind) in lifecycle_targets(t, f) {
                    how = self.child(&name, kind)?.apply(&name, f.action).await?;
                }
                Ok(how.into())
            }
            a => bail!(
                "the process backend cannot apply `{}` to {}",
                a.as_str(),
                f.target
            ),
        }
    }

    async fn ingest_counters(&self) -> Vec<Option<u64>> {
        let mut out = Vec::with_capacity(self.connectors.len());
        for (_, child, metrics) in &self.connectors {
            out.push(if child.is_running() {
                scrape(&TokioNet, None, *metrics, "sc_ingest_updates_total").await
            } else {
                None
            });
        }
        out
    }

    fn server_status(&self) -> Vec<(String, Option<(Role, u64)>)> {
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

    async fn shutdown(mut self, keep_logs: bool) {
        self.watches.clear();
        for (_, c, _) in &mut self.connectors {
            c.kill().await;
        }
        for (_, c) in &mut self.servers {
            c.kill().await;
        }
        self.proxies.stop().await;
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}
