//! A redundant pair in one process: two [`ServerHandle`]s wired by their sync link.
//! Used by `po-sim pair`, the integration tests and the harness's in-process backend.

use crate::config::{RedundancySection, ServerConfig};
use crate::field::SiteSpec;
use crate::server::{ServerError, ServerHandle};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Everything that differs between a pair and two hand-written config files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSpec {
    pub names: [String; 2],
    pub seed: u64,
    pub site: SiteSpec,
    pub heartbeat: Duration,
    pub failover_timeout: Duration,
    pub failback: bool,
    pub licences: Vec<String>,
    /// Client-access addresses of server a and b (port 0: any free port).
    pub listen: [SocketAddr; 2],
    /// Sync-link addresses of server a and b (port 0: any free port).
    pub sync_listen: [SocketAddr; 2],
    pub client_queue: usize,
}

impl PairSpec {
    /// A pair on 127.0.0.1 with free ports: what tests want.
    pub fn loopback(seed: u64, site: SiteSpec) -> PairSpec {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        PairSpec {
            names: ["po-a".into(), "po-b".into()],
            seed,
            site,
            heartbeat: Duration::from_millis(50),
            failover_timeout: Duration::from_millis(300),
            failback: false,
            licences: vec!["CA-1".into(), "CA-2".into()],
            listen: [any, any],
            sync_listen: [any, any],
            client_queue: 256,
        }
    }

    /// The two servers' configuration files.
    pub fn server_configs(&self) -> [ServerConfig; 2] {
        [0usize, 1].map(|i| ServerConfig {
            limits: Default::default(),
            tls: None,
            name: self.names[i].clone(),
            listen: self.listen[i],
            host_address: None,
            licences: self.licences.clone(),
            seed: self.seed,
            field_epoch_us: 0,
            heartbeat: self.heartbeat,
            client_queue: self.client_queue,
            site: self.site.clone(),
            redundancy: Some(RedundancySection {
                index: i as u8,
                sync_listen: self.sync_listen[i],
                peer: self.sync_listen[1 - i],
                failover_timeout: self.failover_timeout,
                failback: self.failback,
            }),
        })
    }
}

/// Both servers of a running pair.
#[derive(Debug, Clone)]
pub struct PairHandle {
    pub a: ServerHandle,
    pub b: ServerHandle,
}

impl PairHandle {
    pub async fn start(spec: &PairSpec) -> Result<PairHandle, ServerError> {
        let [ca, cb] = spec.server_configs();
        let a = ServerHandle::start(ca).await?;
        let b = ServerHandle::start(cb).await?;
        // With port 0 the peers learn each other's real sync address only now.
        if let (Some(sa), Some(sb)) = (a.sync_addr(), b.sync_addr()) {
            a.set_peer(sb);
            b.set_peer(sa);
        }
        Ok(PairHandle { a, b })
    }

    /// Waits until the pair has settled with server a as Primary: b is Standby at a's
    /// epoch and a hears b (so a write a acknowledges is already on b). Seeing a Primary
    /// once is not enough: each server may promote itself before the sync links are up,
    /// and a write acknowledged then is not replicated. False when not settled within
    /// `patience`.
    pub async fn a_is_primary(&self, patience: std::time::Duration) -> bool {
        use crate::redundancy::WriteMode;
        use po_protocol::Role;
        let settled = || match (self.a.status(), self.b.status()) {
            (Some(a), Some(b)) => {
                a.role == Role::Primary
                    && b.role == Role::Standby
                    && b.epoch == a.epoch
                    && self.a.write_mode() == Some(WriteMode::Replicate)
            }
            _ => false,
        };
        // The peer-heard state has no watch of its own; a short poll bounded by
        // `patience` (tokio's timer, no clock read here) awaits it.
        tokio::time::timeout(patience, async {
            while !settled() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Server by index (0 = a, 1 = b).
    pub fn server(&self, index: usize) -> &ServerHandle {
        if index == 0 { &self.a } else { &self.b }
    }

    pub fn servers(&self) -> [&ServerHandle; 2] {
        [&self.a, &self.b]
    }

    /// Partitions the sync link (both directions): split brain if both are alive.
    pub fn cut_sync(&self) {
        self.a.cut_sync();
        self.b.cut_sync();
    }

    pub fn heal_sync(&self) {
        self.a.heal_sync();
        self.b.heal_sync();
    }

    pub async fn shutdown(&self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
    }
}
