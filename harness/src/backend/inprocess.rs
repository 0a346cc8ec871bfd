//! The inprocess backend: servers and connectors are tokio tasks of the harness on the
//! wiring's loopback addresses, links between hosts through fault proxies.

use super::proxies::ProxySet;
use super::{FaultRoute, route};
use crate::capability::{
    Capabilities, Need, Unsupported, invariants_unsupported, proxy_fault_support,
};
use crate::scenario::{Fault, FaultAction};
use crate::seam::Backend;
use crate::topology::{ComponentKind, Topology};
use crate::wiring::Wiring;
use anyhow::{Context as _, Result, anyhow, bail};
use po_protocol::Role;
use po_runtime::{Env, Net, TokioNet};
use po_simulator::ServerHandle;
use smart_connector::config::ConnectorConfig;
use smart_connector::connector::ConnectorHandle;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// How long an in-process connector may take to start.
const CONNECTOR_START: Duration = Duration::from_secs(30);

/// A running architecture as tasks of the harness.
#[derive(Debug)]
pub struct InprocessDeployment {
    servers: Vec<(String, ServerHandle)>,
    /// Each connector with its configuration (to restart it) and its handle while it runs.
    connectors: Vec<(String, ConnectorConfig, Option<ConnectorHandle>)>,
    proxies: ProxySet,
    /// Certificates only (with `[security] tls`); `None` when nothing was written.
    run_dir: Option<PathBuf>,
}

impl Capabilities for InprocessDeployment {
    fn supports(need: Need) -> Result<(), Unsupported> {
        match need {
            Need::Fault(a) => proxy_fault_support(a),
            Need::Flood => Err(Unsupported::new(
                "a flood measures what a process's descriptors and listeners withstand; the inprocess backend has no component processes",
            )),
            Need::OpcUa => Err(Unsupported::new(
                "the inprocess backend starts its connectors without their OPC UA server (an endpoint URL needs its port before the start; in-process connectors learn theirs at the start)",
            )),
            Need::Invariants => Err(invariants_unsupported("inprocess")),
            Need::Tls | Need::Tags(_) => Ok(()),
        }
    }
}

impl InprocessDeployment {
    /// Starts the proxies, the servers, then the connectors, as the wiring says.
    pub async fn start(t: &Topology, w: &Wiring) -> Result<InprocessDeployment> {
        let run_dir = if w.pki.is_some() {
            w.create_files(t)?;
            Some(w.run_dir.clone())
        } else {
            None
        };
        let net: Arc<dyn Net> = Arc::new(TokioNet);
        let proxies = ProxySet::start(w, |_| Ok(net.clone())).await?;
        let mut d = InprocessDeployment {
            servers: vec![],
            connectors: vec![],
            proxies,
            run_dir,
        };
        for s in &w.servers {
            let h = ServerHandle::start(s.config.clone())
                .await
                .with_context(|| format!("starting {}", s.config.name))?;
            d.servers.push((s.config.name.clone(), h));
        }
        for c in &w.connectors {
            let h = smart_connector::connector::start(c.config.clone(), Some(CONNECTOR_START))
                .await
                .with_context(|| format!("starting {}", c.name))?;
            d.connectors
                .push((c.name.clone(), c.config.clone(), Some(h)));
        }
        Ok(d)
    }

    async fn server_fault(&mut self, name: &str, action: FaultAction) -> Result<&'static str> {
        let (_, h) = self
            .servers
            .iter_mut()
            .find(|(n, _)| n == name)
            .ok_or_else(|| anyhow!("no server {name}"))?;
        Ok(match action {
            FaultAction::Crash => {
                h.crash_and_wait().await;
                "tasks and sockets dropped"
            }
            FaultAction::Restart => {
                if h.is_running() {
                    h.crash_and_wait().await;
                }
                h.restart().await?;
                "started again"
            }
            FaultAction::Pause => {
                h.pause();
                "tasks stop being driven"
            }
            FaultAction::Resume => {
                h.resume();
                "tasks driven again"
            }
            a => bail!("{} cannot be applied to server {name}", a.as_str()),
        })
    }

    async fn connector_fault(&mut self, name: &str, action: FaultAction) -> Result<&'static str> {
        let (_, config, handle) = self
            .connectors
            .iter_mut()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| anyhow!("no connector {name}"))?;
        Ok(match action {
            FaultAction::Crash => {
                if let Some(h) = handle.take() {
                    h.shutdown().await;
                }
                "tasks and sockets dropped"
            }
            FaultAction::Restart => {
                if let Some(h) = handle.take() {
                    h.shutdown().await;
                }
                *handle = Some(
                    smart_connector::connector::start(config.clone(), Some(CONNECTOR_START))
                        .await?,
                );
                "started again"
            }
            a => bail!("{} cannot be applied to connector {name}", a.as_str()),
        })
    }
}

impl Backend for InprocessDeployment {
    fn env(&self) -> Env {
        Env::tokio()
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        match route("inprocess", t, f)? {
            FaultRoute::Link => Ok(self.proxies.apply(f)?.into()),
            FaultRoute::Lifecycle(targets) => {
                let mut how = "";
                for (name, kind) in targets {
                    how = match kind {
                        ComponentKind::PoServer => self.server_fault(&name, f.action).await?,
                        ComponentKind::Connector => self.connector_fault(&name, f.action).await?,
                    };
                }
                Ok(how.into())
            }
        }
    }

    async fn ingest_counters(&self) -> Vec<Option<u64>> {
        self.connectors
            .iter()
            .map(|(_, _, h)| h.as_ref().map(|h| h.metrics.ingest_updates.load(Relaxed)))
            .collect()
    }

    fn server_status(&self) -> Vec<(String, Option<(Role, u64)>)> {
        self.servers
            .iter()
            .map(|(name, h)| (name.clone(), h.status().map(|s| (s.role, s.epoch))))
            .collect()
    }

    /// The harness itself: every component is a task of it.
    fn component_pids(&self) -> Vec<(String, u32)> {
        vec![("harness (all components)".into(), std::process::id())]
    }

    fn run_dir(&self) -> Option<&std::path::Path> {
        self.run_dir.as_deref()
    }

    async fn shutdown(mut self, keep_logs: bool) {
        for (_, _, handle) in &mut self.connectors {
            if let Some(h) = handle.take() {
                h.shutdown().await;
            }
        }
        for (_, h) in &mut self.servers {
            h.crash_and_wait().await;
        }
        self.proxies.stop().await;
        if !keep_logs && let Some(dir) = &self.run_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
