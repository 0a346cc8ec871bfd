//! The service level in each state of architectures 1, 2 and 3 (docs/register-map.md
//! "Service level", docs/opcua.md "ServiceLevel"): read from status register 14 by a
//! Modbus master, it equals `/api/status`'s `service_level`, the `sc_service_level` gauge
//! and OPC UA's `Server.ServiceLevel` as a client from another project (python asyncua)
//! reads it.

mod common;

use po_simulator::pair::{PairHandle, PairSpec};
use po_simulator::{ServerHandle, SiteSpec};
use smart_connector::config::{AccessKind, ConnectorConfig, SourceConfig};
use smart_connector::connector::{ConnectorHandle, start};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

const PATIENCE: Duration = Duration::from_secs(15);

fn config(name: &str, sources: Vec<SourceConfig>) -> ConnectorConfig {
    let mut c: ConnectorConfig = toml::from_str(&format!(
        "name = \"{name}\"\n[policy]\nsource_timeout = \"300ms\"\nstale_after = \"1s\"\n\
         [modbus]\nlisten = \"127.0.0.1:0\"\n[opcua]\nlisten = \"127.0.0.1:0\"\nanonymous = true\n"
    ))
    .unwrap();
    c.sources = sources;
    c
}

fn source(s: &ServerHandle, licence: Option<&str>) -> SourceConfig {
    SourceConfig {
        name: s.name().to_string(),
        address: s.client_addr(),
        access: if licence.is_some() {
            AccessKind::ClientAccess
        } else {
            AccessKind::Local
        },
        licence: licence.map(str::to_string),
        server_name: None,
    }
}

async fn pair() -> PairHandle {
    let site = SiteSpec {
        devices: 2,
        tags_per_device: 16,
        scan_period: Duration::from_millis(50),
    };
    let pair = PairHandle::start(&PairSpec::loopback(33, site))
        .await
        .unwrap();
    assert!(pair.a_is_primary(PATIENCE).await, "po-a never Primary");
    pair
}

/// Waits until register 14, `/api/status`, the gauge, its rendering and (with asyncua)
/// OPC UA's `Server.ServiceLevel` all read `want` at once. All come from one publication,
/// but a level may pass through another value on its way (e.g. 200 while the lost
/// Primary's last data is still served, 100 once the Standby's snapshot lands, 200 after
/// its promotion), so one reading of 14 followed by the others could straddle a change.
async fn level_is(sc: &ConnectorHandle, ctx: &mut Context, want: u16, state: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r14 = ctx.read_holding_registers(14, 1).await.unwrap().unwrap()[0];
        let api = u16::from(sc.status_doc().service_level);
        let gauge = sc.metrics.service_level.load(Relaxed);
        let rendered = sc
            .metrics
            .render()
            .contains(&format!("\nsc_service_level {want}\n"));
        let others_agree = api == want && gauge == i64::from(want) && rendered;
        if r14 == want && others_agree {
            match opcua_service_level(sc).await {
                Some(ua) if ua != want => {
                    assert!(
                        Instant::now() < deadline,
                        "{}: {state}: OPC UA Server.ServiceLevel is {ua}, expected {want}",
                        sc.name
                    );
                }
                _ => return,
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}: {state}: register 14 is {r14}, /api/status {api}, sc_service_level {gauge} (rendered as {want}: {rendered}), expected {want}",
            sc.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `Server.ServiceLevel` read by python asyncua (`None`: asyncua is not installed, which
/// only outside CI is allowed).
async fn opcua_service_level(sc: &ConnectorHandle) -> Option<u16> {
    if !common::python_module_ready("asyncua", "pip install asyncua==1.1.8") {
        return None;
    }
    let url = format!(
        "opc.tcp://{}/",
        sc.opcua.as_ref().expect("OPC UA is on").addr
    );
    let out = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/opcua_asyncua_client.py"
        ))
        .args(["--url", &url, "--service-level"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(doc["service_level"].as_u64().expect("a number") as u16)
}

async fn master(sc: &ConnectorHandle) -> Context {
    tcp::connect_slave(sc.modbus_addr, Slave(1)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn architecture_1() {
    let server = common::solo_server(1).await;
    let sc = start(config("sc", vec![source(&server, None)]), Some(PATIENCE))
        .await
        .unwrap();
    let mut ctx = master(&sc).await;
    level_is(&sc, &mut ctx, 255, "serving its server's data").await;
    server.crash_and_wait().await;
    level_is(&sc, &mut ctx, 1, "its server is down").await;
    sc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn architecture_2() {
    let pair = pair().await;
    // Each connector on its own server (Client Access here: the pair's servers share
    // one loopback address, which is not what Local access checks).
    let sc_a = start(
        config("sc-a", vec![source(&pair.a, Some("CA-1"))]),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    let sc_b = start(
        config("sc-b", vec![source(&pair.b, Some("CA-2"))]),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    let (mut a, mut b) = (master(&sc_a).await, master(&sc_b).await);
    level_is(&sc_a, &mut a, 255, "on the Primary").await;
    level_is(&sc_b, &mut b, 100, "on the Standby (serve_standby)").await;
    pair.a.crash_and_wait().await;
    level_is(&sc_b, &mut b, 255, "on the new Primary").await;
    level_is(&sc_a, &mut a, 1, "its server crashed").await;
    sc_a.shutdown().await;
    sc_b.shutdown().await;
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn architecture_3() {
    let pair = pair().await;
    let sc = start(
        config(
            "sc-a",
            vec![source(&pair.a, Some("CA-1")), source(&pair.b, Some("CA-1"))],
        ),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    let mut ctx = master(&sc).await;
    level_is(&sc, &mut ctx, 255, "both servers reachable").await;
    pair.b.crash_and_wait().await;
    level_is(&sc, &mut ctx, 200, "the Standby lost: one more fault").await;
    pair.b.restart().await.unwrap();
    level_is(&sc, &mut ctx, 255, "the Standby back").await;
    pair.a.crash_and_wait().await;
    level_is(&sc, &mut ctx, 200, "the Primary lost, the Standby promoted").await;
    pair.b.crash_and_wait().await;
    level_is(&sc, &mut ctx, 1, "both servers lost").await;
    sc.shutdown().await;
    pair.shutdown().await;
}
