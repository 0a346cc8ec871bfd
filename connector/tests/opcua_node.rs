//! Interop (docs/testing.md): node-opcua's client (npm, pinned in
//! tests/interop/package.json and its lock), a stack nobody here wrote, browses a
//! connector's address space to a tag, reads it, subscribes to it and writes a breaker
//! command that the Primary server applies.

use po_protocol::Value;
use po_simulator::SiteSpec;
use po_simulator::pair::{PairHandle, PairSpec};
use serde_json::Value as Json;
use smart_connector::config::{AccessKind, ConnectorConfig, SourceConfig};
use smart_connector::connector::start;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(15);
const PACKAGE: &str = include_str!("interop/package.json");
const LOCK: &str = include_str!("interop/package-lock.json");
const TAG: &str = "Feeder01.Meter1.kW";
const BREAKER: &str = "Feeder01.Meter1.BreakerCmd";

/// node-opcua-client as pinned, installed under the target directory (where .ci/run
/// installs it too); `None` when there is no npm here (outside CI: the test is skipped).
fn node_modules() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-opcua");
    // Written after a successful install: a changed lock means a reinstall.
    let marker = dir.join(".installed");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == LOCK) {
        return Some(dir.join("node_modules"));
    }
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("node") || !have("npm") {
        assert!(
            std::env::var_os("CI").is_none(),
            "node or npm is missing: .ci/run installs them (apt-get install nodejs npm)"
        );
        eprintln!("skipped: node-opcua needs node and npm (apt-get install nodejs npm)");
        return None;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("package.json"), PACKAGE).unwrap();
    std::fs::write(dir.join("package-lock.json"), LOCK).unwrap();
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "npm ci in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&marker, LOCK).unwrap();
    Some(dir.join("node_modules"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_opcua_browses_reads_subscribes_and_writes() {
    let Some(modules) = node_modules() else {
        return;
    };
    let site = SiteSpec {
        devices: 2,
        tags_per_device: 16,
        scan_period: Duration::from_millis(50),
    };
    let pair = PairHandle::start(&PairSpec::loopback(43, site))
        .await
        .unwrap();
    assert!(pair.a_is_primary(PATIENCE).await, "po-a never Primary");
    // Architecture 3; anonymous sessions get the operator role, which may write.
    let mut config: ConnectorConfig = toml::from_str(
        r#"
name = "sc-a"
[policy]
source_timeout = "300ms"
stale_after = "1s"
write_timeout = "2s"
[modbus]
listen = "127.0.0.1:0"
[[modbus.role]]
name = "operator"
read = true
write = true
[opcua]
listen = "127.0.0.1:0"
anonymous = true
anonymous_role = "operator"
security = ["none"]
"#,
    )
    .unwrap();
    config.sources = pair
        .servers()
        .iter()
        .map(|s| SourceConfig {
            name: s.name().to_string(),
            address: s.client_addr(),
            access: AccessKind::ClientAccess,
            licence: Some("CA-1".into()),
            server_name: None,
        })
        .collect();
    let sc = start(config, Some(PATIENCE)).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while sc.status_doc().service_level != 255 {
        assert!(Instant::now() < deadline, "the connector never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("opc.tcp://{}", sc.opcua.as_ref().unwrap().addr);
    let pki = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-opcua-pki");

    let out = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/node_opcua_client.js"
        ))
        .arg(&url)
        .arg(&pki)
        .args([TAG, BREAKER])
        .env("NODE_PATH", &modules)
        .kill_on_drop(true)
        .output();
    // Only there to fail rather than hang (the script bounds its own waits too).
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the node-opcua client finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}"));
    eprintln!("node-opcua: {r:#}");

    // Browsed: Objects -> Tags -> Feeder01/ -> Feeder01.Meter1/ -> the tag.
    assert!(
        r["tags_folder"]["browse_name"]
            .as_str()
            .unwrap()
            .ends_with("Tags"),
        "{r}"
    );
    assert_eq!(r["browse_path"].as_array().unwrap().len(), 3, "{r}");
    let ns = r["namespace_index"].as_u64().unwrap();
    assert_eq!(r["tag_node_id"], format!("ns={ns};s={TAG}"), "{r}");
    // Read: a Good Double.
    assert_eq!(r["read"]["status"], "Good", "{r}");
    assert_eq!(r["read"]["type"], "Double", "{r}");
    assert!(r["read"]["value"].is_f64(), "{r}");
    assert_eq!(r["service_level"], 255, "{r}");
    // Subscribed: three Good data changes, each a newer sample.
    let changes = r["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "{r}");
    assert!(changes.iter().all(|c| c["status"] == "Good"), "{r}");
    let times: Vec<&str> = changes
        .iter()
        .map(|c| c["source_timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    // Written: Good only once the Primary applied it.
    assert_eq!(r["write"], "Good", "{r}");
    let breaker = pair
        .a
        .model()
        .catalog()
        .iter()
        .find(|t| t.name == BREAKER)
        .unwrap()
        .id;
    assert_eq!(pair.a.setpoint(breaker), Some(Value::Digital(true)));

    sc.shutdown().await;
    pair.shutdown().await;
}
