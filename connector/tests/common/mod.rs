//! Shared by the connector's integration tests.

use po_protocol::Role;
use po_simulator::{ServerConfig, ServerHandle, SiteSpec};
use std::time::Duration;

/// A standalone simulated server (always Primary) with `devices` meters of 16 tags, on
/// an OS-chosen loopback port.
pub async fn solo_server(devices: u32) -> ServerHandle {
    let config = ServerConfig {
        limits: Default::default(),
        tls: None,
        name: "po-solo".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        host_address: None,
        licences: vec![],
        seed: 5,
        field_epoch_us: 0,
        heartbeat: Duration::from_millis(50),
        client_queue: 64,
        site: SiteSpec {
            devices,
            tags_per_device: 16,
            scan_period: Duration::from_millis(50),
        },
        redundancy: None,
    };
    let s = ServerHandle::start(config).await.unwrap();
    assert_eq!(s.status().unwrap().role, Role::Primary);
    s
}
