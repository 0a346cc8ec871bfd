//! The configuration every backend gives its components: a po-sim `ServerConfig` and a
//! smart-connector `ConnectorConfig` for one component of the topology, from the
//! scenario and the addresses the wiring chose.

use crate::scenario::Scenario;
use crate::topology::{CA_LICENCES, LinkKind, Topology};
use po_simulator::config::RedundancySection as SimRedundancy;
use po_simulator::{ServerConfig, SiteSpec};
use smart_connector::config::{AccessKind, ConnectorConfig, MetricsConfig, SourceConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// Server `name`'s configuration, listening for clients on `listen` and for its peer on
/// `sync` (a redundant pair); the peer is the sync listener itself until the wiring sets it.
pub fn server_config(
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

pub fn connector_config(
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
