//! `harness load --protocol opcua` against a real connector (in-process, fed by an
//! in-process po-sim): it finds the tags by browsing, counts notifications, and its JSON
//! has the documented shape; too few variables is an error that says how many there were.

use po_simulator::{ServerConfig, ServerHandle, SiteSpec};
use smart_connector::config::{AccessKind, ConnectorConfig, SourceConfig};
use smart_connector::connector::{ConnectorHandle, start};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

/// A standalone po-sim with 128 tags changing every 50 ms, and a connector serving them
/// over OPC UA to anonymous clients.
async fn connector() -> (ServerHandle, ConnectorHandle) {
    let server = ServerHandle::start(ServerConfig {
        limits: Default::default(),
        tls: None,
        name: "po-load".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        host_address: None,
        licences: vec![],
        seed: 5,
        field_epoch_us: 0,
        heartbeat: Duration::from_millis(50),
        client_queue: 64,
        site: SiteSpec {
            devices: 8,
            tags_per_device: 16,
            scan_period: Duration::from_millis(50),
        },
        redundancy: None,
    })
    .await
    .unwrap();
    let mut c: ConnectorConfig = toml::from_str(
        "name = \"sc-load\"\n[modbus]\nlisten = \"127.0.0.1:0\"\n\
         [opcua]\nlisten = \"127.0.0.1:0\"\nanonymous = true\n",
    )
    .unwrap();
    c.sources = vec![SourceConfig {
        name: server.name().to_string(),
        address: server.client_addr(),
        access: AccessKind::Local,
        licence: None,
        server_name: None,
    }];
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    let sc = start(c, Some(PATIENCE)).await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while sc.image.service_level() != 255 {
        assert!(std::time::Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, sc)
}

async fn load(url: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["load", "--protocol", "opcua", "--target", url, "--quiet"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// The keys of a JSON object, nested objects' keys after a dot.
fn shape(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(o) = v.as_object() {
        for (k, v) in o {
            let key = format!("{prefix}{k}");
            out.push(key.clone());
            shape(v, &format!("{key}."), out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opcua_load_counts_notifications_from_a_connector() {
    let (_server, sc) = connector().await;
    let url = format!("opc.tcp://{}/", sc.opcua.as_ref().unwrap().addr);
    let json = std::env::temp_dir().join(format!("harness-opcua-load-{}.json", std::process::id()));
    let out = load(
        &url,
        &[
            "--sessions",
            "2",
            "--items",
            "50",
            "--duration",
            "2s",
            "--publishing",
            "50ms",
            "--json",
            json.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(r, written, "--json writes what stdout shows");
    assert!(r["notifications"].as_u64().unwrap() > 0, "{r}");
    assert!(r["notifications_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["latency"]["samples"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        r["latency_to_server"]["samples"], r["latency"]["samples"],
        "the connector stamps every value with its receipt (ServerTimestamp): {r}"
    );
    assert!(
        r["latency_to_server"]["p99_ms"].as_f64() <= r["latency"]["max_ms"].as_f64(),
        "the part before the server is part of the whole: {r}"
    );
    assert_eq!(r["monitored_items"], 100);
    assert_eq!(
        r["variables_found"], 100,
        "the browse stops once it has enough"
    );
    assert_eq!(
        (r["errors"].as_u64(), r["bad_status"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(r["security"], "none");
    let mut keys = Vec::new();
    shape(&r, "", &mut keys);
    insta::assert_snapshot!(keys.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_variables_is_an_error_that_says_how_many_were_found() {
    let (_server, sc) = connector().await;
    let url = format!("opc.tcp://{}/", sc.opcua.as_ref().unwrap().addr);
    let out = load(&url, &["--items", "100000", "--duration", "1s"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let found: usize = err
        .split("found only ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {err}"));
    // The 8 × 16 tags, and whatever else the address space has below Objects.
    assert!((128..200).contains(&found), "{err}");
    assert!(
        err.contains("Variable node(s) below Objects (the Server object skipped); --items 100000 needs 100000"),
        "{err}"
    );
}
