//! Shared by the connector's integration tests.

// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

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

/// Whether python3 can import `module` (an interop client from another project, pinned
/// in .ci/run). Missing outside CI: says so and the caller skips; missing under CI (which
/// installs it): fails, naming the install command.
pub fn python_module_ready(module: &str, install: &str) -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{module} is missing: .ci/run installs it ({install})"
    );
    eprintln!("skipped: {module} is not installed ({install})");
    false
}
