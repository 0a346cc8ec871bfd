//! An OPC UA scenario end to end in the process backend: a redundant OPC UA client beside
//! a Modbus master, the connector the client is on killed. The client's values are
//! checked against the field model, it recovers on the other connector, its writes are
//! applied, and the timeline carries each connector's service level.

use std::process::Command;

const SCENARIO: &str = r#"name = "opcua-proc"
architecture = 3
backend = "process"
duration = "5s"
[site]
devices = 2
tags_per_device = 16
scan_period = "50ms"
[redundancy]
heartbeat = "50ms"
failover_timeout = "300ms"
[third_party]
kind = "redundant"
poll_period = "50ms"
[third_party.opcua]
kind = "redundant"
publishing_interval = "50ms"
writes_per_s = 5
[[fault]]
at = "2s"
action = "crash"
target = "sc-a"
[expect]
max_values_wrong = 0
max_writes_lost = 0
"#;

#[test]
fn a_redundant_opcua_client_survives_its_connector_and_is_measured() {
    let dir = std::env::temp_dir().join(format!("harness-opcua-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("opcua-proc.toml");
    let json = dir.join("report.json");
    std::fs::write(&path, SCENARIO).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "-q"])
        .arg(&path)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["passed"], true, "{stdout}");
    assert!(r["integrity"]["values_checked"].as_u64().unwrap() > 0);
    assert_eq!(r["integrity"]["values_wrong"], 0);
    let gaps = r["failovers"][0]["by_third_party"].as_array().unwrap();
    let names: Vec<&str> = gaps
        .iter()
        .map(|g| g["third_party"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["modbus 0", "opcua 0"]);
    assert!(
        gaps.iter().all(|g| g["recovered"] == true),
        "a third party never read fresh data again: {gaps:?}"
    );
    assert!(r["writes"]["applied"].as_u64().unwrap() > 0, "{stdout}");
    // sc-b announced 255 with both servers reachable.
    let sc_b = &r["timeline"]["connectors"][1]["bands"];
    assert!(
        sc_b.as_array()
            .unwrap()
            .iter()
            .any(|b| b["service_level"] == 255),
        "{sc_b}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_sim_backend_refuses_an_opcua_scenario_naming_those_that_run_it() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/arch3-opcua-tls.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", file, "--backend", "sim"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("third_party.opcua: the sim backend cannot run the OPC UA stack")
            && stderr.contains("backends that can run it: process, netns"),
        "{stderr}"
    );
}
