//! The process backend: the real `po-sim` and `smart-connector` binaries with the
//! wiring's generated config files, links between hosts through fault proxies.

use super::children::ComponentChildren;
use super::proxies::ProxySet;
use super::{FaultRoute, route};
use crate::capability::{
    Capabilities, Need, Unsupported, invariants_unsupported, proxy_fault_support,
};
use crate::child::{binaries, connector_child, server_child};
use crate::probe::{wait_listening, wait_serving};
use crate::scenario::{Fault, Scenario};
use crate::seam::Backend;
use crate::server_watch::ServerWatch;
use crate::topology::Topology;
use crate::wiring::Wiring;
use anyhow::{Context as _, Result};
use po_protocol::Role;
use po_runtime::{Env, Net, TokioNet};
use std::path::PathBuf;
use std::sync::Arc;

/// A running architecture as child processes.
#[derive(Debug)]
pub struct ProcessDeployment {
    children: ComponentChildren,
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
            children: ComponentChildren::default(),
            watches: vec![],
            proxies,
            run_dir: w.run_dir.clone(),
        };
        for sw in &w.servers {
            let name = &sw.config.name;
            let mut child = server_child(&b, &paths[name], &w.run_dir, name, None);
            child.spawn().await?;
            d.children.servers.push((name.clone(), child));
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
            d.children.connectors.push((c.name.clone(), child, metrics));
        }
        Ok(d)
    }
}

impl Backend for ProcessDeployment {
    fn env(&self) -> Env {
        Env::tokio()
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        match route("process", t, f)? {
            FaultRoute::Link => Ok(self.proxies.apply(f)?.into()),
            FaultRoute::Lifecycle(targets) => {
                let mut how = "";
                for (name, kind) in targets {
                    how = self
                        .children
                        .get(&name, kind)?
                        .apply(&name, f.action)
                        .await?;
                }
                Ok(how.into())
            }
        }
    }

    async fn ingest_counters(&self) -> Vec<Option<u64>> {
        self.children.ingest_counters(&TokioNet, None).await
    }

    fn server_status(&self) -> Vec<(String, Option<(Role, u64)>)> {
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

    async fn shutdown(mut self, keep_logs: bool) {
        self.watches.clear();
        self.children.kill_all().await;
        self.proxies.stop().await;
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}
