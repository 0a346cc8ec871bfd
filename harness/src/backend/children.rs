//! The child processes of a run's components (process and netns backends), by name: the
//! lifecycle faults, counters, process ids and teardown both backends share.

use crate::child::ManagedChild;
use crate::probe::scrape;
use crate::topology::ComponentKind;
use anyhow::{Result, anyhow};
use po_runtime::Net;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Default)]
pub struct ComponentChildren {
    pub servers: Vec<(String, ManagedChild)>,
    /// Each connector with its metrics address.
    pub connectors: Vec<(String, ManagedChild, SocketAddr)>,
}

impl ComponentChildren {
    /// Component `name` of `kind`.
    pub fn get(&mut self, name: &str, kind: ComponentKind) -> Result<&mut ManagedChild> {
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

    /// Each connector's ingest counter scraped from its metrics through `net` from
    /// `from`, `None` while it is down.
    pub async fn ingest_counters(&self, net: &dyn Net, from: Option<IpAddr>) -> Vec<Option<u64>> {
        let mut out = Vec::with_capacity(self.connectors.len());
        for (_, child, metrics) in &self.connectors {
            out.push(if child.is_running() {
                scrape(net, from, *metrics, "sc_ingest_updates_total").await
            } else {
                None
            });
        }
        out
    }

    /// Each running component's process id.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let servers = self.servers.iter().map(|(n, c)| (n, c));
        let connectors = self.connectors.iter().map(|(n, c, _)| (n, c));
        servers
            .chain(connectors)
            .filter_map(|(n, c)| c.pid().map(|p| (n.clone(), p)))
            .collect()
    }

    /// Kills and reaps every child, connectors first.
    pub async fn kill_all(&mut self) {
        for (_, c, _) in &mut self.connectors {
            c.kill().await;
        }
        for (_, c) in &mut self.servers {
            c.kill().await;
        }
    }
}
