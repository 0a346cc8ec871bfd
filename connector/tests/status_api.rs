//! The status page and JSON API on the metrics listener, against a real simulated server
//! pair over loopback sockets, read with a standard HTTP client (ureq) and the real
//! `smart-connector points --from`.

mod common;

use po_simulator::SiteSpec;
use po_simulator::pair::{PairHandle, PairSpec};
use smart_connector::api::{PointsPage, StatusDoc};
use smart_connector::config::{AccessKind, ConnectorConfig, MetricsConfig, SourceConfig};
use smart_connector::connector::{ConnectorHandle, start};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_modbus::prelude::*;

const PATIENCE: Duration = Duration::from_secs(15);

fn config(sources: Vec<SourceConfig>) -> ConnectorConfig {
    let mut c: ConnectorConfig = toml::from_str(
        r#"
name = "sc-status"
[policy]
source_timeout = "300ms"
stale_after = "1s"
[modbus]
listen = "127.0.0.1:0"
"#,
    )
    .unwrap();
    c.sources = sources;
    c.metrics = Some(MetricsConfig::at("127.0.0.1:0".parse().unwrap()));
    c
}

/// GET `path`: (status code, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(PATIENCE))
            .build()
            .into();
        let mut r = agent.get(&url).call().unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

async fn status(addr: SocketAddr) -> StatusDoc {
    let (code, body) = get(addr, "/api/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `/api/status` until `want` holds.
async fn wait_status(addr: SocketAddr, what: &str, want: impl Fn(&StatusDoc) -> bool) -> StatusDoc {
    let mut last = None;
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            let s = status(addr).await;
            if want(&s) {
                return s;
            }
            last = Some(s);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("/api/status never showed {what}: {last:#?}"))
}

async fn pair() -> PairHandle {
    let site = SiteSpec {
        devices: 4,
        tags_per_device: 16,
        scan_period: Duration::from_millis(50),
    };
    let pair = PairHandle::start(&PairSpec::loopback(31, site))
        .await
        .unwrap();
    assert!(
        pair.a_is_primary(PATIENCE).await,
        "po-a never became Primary"
    );
    pair
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_api_shows_sources_masters_and_a_primary_crash() {
    let pair = pair().await;
    let sources = pair
        .servers()
        .iter()
        .map(|s| SourceConfig {
            name: s.name().to_string(),
            address: s.client_addr(),
            access: AccessKind::ClientAccess,
            licence: Some("CA-1".to_string()),
            server_name: None,
        })
        .collect();
    let sc: ConnectorHandle = start(config(sources), Some(PATIENCE)).await.unwrap();
    let http = sc.metrics_addr.unwrap();

    // Both sources are dialled at once; po-b's role is known only once its
    // connection has said Hello, which may come after po-a is already active.
    let before = wait_status(http, "po-a active and po-b heard as Standby", |s| {
        s.active.as_ref().is_some_and(|a| a.source == "po-a")
            && s.sources
                .get(1)
                .is_some_and(|b| b.role.as_deref() == Some("standby"))
    })
    .await;
    assert_eq!(before.connector, "sc-status");
    assert_eq!(before.state, "primary");
    let a = &before.sources[0];
    assert_eq!((a.name.as_str(), a.health.as_str()), ("po-a", "healthy"));
    assert_eq!(a.role.as_deref(), Some("primary"));
    assert_eq!(a.licence.as_deref(), Some("CA-1"));
    assert_eq!(before.sources[1].role.as_deref(), Some("standby"));
    assert_eq!(before.points.total, 64);
    // The first choice is listed, but it is not a switch between servers: the count and
    // the list agree on what a switch is.
    assert_eq!(before.switches_total, 0);
    assert_eq!(before.switches.len(), 1, "{:#?}", before.switches);
    assert_eq!(before.switches[0].kind, "initial selection");

    // A master polling shows up with its address and request count.
    let mut master = tcp::connect_slave(sc.modbus_addr, Slave(1)).await.unwrap();
    for _ in 0..3 {
        master.read_holding_registers(0, 14).await.unwrap().unwrap();
    }
    let local = wait_status(http, "the master", |s| {
        s.modbus.clients.iter().any(|c| c.requests >= 3)
    })
    .await;
    assert_eq!(local.modbus.clients.len(), 1);

    // The Primary crashes: the status shows po-b serving, and says why it switched.
    pair.a.crash();
    let after = wait_status(http, "po-b active as Primary", |s| {
        s.active
            .as_ref()
            .is_some_and(|a| a.source == "po-b" && a.role == "primary")
    })
    .await;
    assert!(after.switches_total >= 1);
    let switch = after
        .switches
        .iter()
        .find(|w| {
            w.from.as_ref().is_some_and(|f| f.source == "po-a")
                && w.to.as_ref().is_some_and(|t| t.source == "po-b")
        })
        .unwrap_or_else(|| panic!("no switch from po-a to po-b listed: {:#?}", after.switches));
    assert!(
        switch.reason.contains("po-a"),
        "the reason names what happened to po-a: {}",
        switch.reason
    );
    assert_eq!(switch.kind, "switch");
    assert_eq!(
        after.switches.iter().filter(|w| w.kind == "switch").count() as u64,
        after.switches_total,
        "switches_total counts the listed switches: {:#?}",
        after.switches
    );
    let a = &after.sources[0];
    assert_ne!(a.health, "healthy");

    // The human page carries the same facts and refreshes itself.
    let (code, page) = get(http, "/").await;
    assert_eq!(code, 200);
    assert!(
        page.contains(&format!(
            "({} switch{} between servers in all)",
            after.switches_total,
            if after.switches_total == 1 { "" } else { "es" }
        )),
        "the page counts switches as the API does"
    );
    for want in [
        "id=\"sources\"",
        "id=\"switches\"",
        "id=\"clients\"",
        "id=\"points\"",
        "po-b",
        "setInterval",
    ] {
        assert!(page.contains(want), "the page lacks {want}");
    }
    assert!(
        !page.contains("src=\"http"),
        "nothing is loaded from the network"
    );

    drop(master);
    sc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_are_paged_filtered_and_bad_queries_are_refused() {
    let server = common::solo_server(4).await;
    let sources = vec![SourceConfig {
        name: "po-solo".into(),
        address: server.client_addr(),
        access: AccessKind::Local,
        licence: None,
        server_name: None,
    }];
    let sc = start(config(sources), Some(PATIENCE)).await.unwrap();
    let http = sc.metrics_addr.unwrap();

    let (code, body) = get(http, "/api/points?offset=10&limit=5").await;
    assert_eq!(code, 200, "{body}");
    let page: PointsPage = serde_json::from_str(&body).unwrap();
    assert_eq!((page.total, page.offset, page.points.len()), (64, 10, 5));
    assert_eq!(page.next_offset, Some(15));
    let offline = smart_connector::points::rows(sc.image.map());
    assert_eq!(page.points[0].row, offline[10]);

    let last: PointsPage =
        serde_json::from_str(&get(http, "/api/points?offset=60").await.1).unwrap();
    assert_eq!((last.points.len(), last.next_offset), (4, None));

    // The filter matches tag names, case-insensitively.
    let name = offline[17].tag.clone();
    let filtered: PointsPage = serde_json::from_str(
        &get(http, &format!("/api/points?filter={}", name.to_uppercase()))
            .await
            .1,
    )
    .unwrap();
    assert!(filtered.points.iter().any(|p| p.row.tag == name));
    assert!(filtered.total < 64);

    // Values go live: every point gets a quality and an age once data flows.
    let live = tokio::time::timeout(PATIENCE, async {
        loop {
            let p: PointsPage =
                serde_json::from_str(&get(http, "/api/points?limit=64").await.1).unwrap();
            if p.points
                .iter()
                .all(|p| p.quality == "good" && p.age_ms.is_some())
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every point good with an age");
    assert_eq!(live.points.len(), 64);

    let (code, body) = get(http, "/api/points?limit=0").await;
    assert_eq!(code, 400);
    assert!(body.contains("limit must be between 1 and 10000"), "{body}");
    let (code, body) = get(http, "/api/points?limt=5").await;
    assert_eq!(code, 400);
    assert!(
        body.contains("limt"),
        "the unknown parameter is named: {body}"
    );
    let (code, body) = get(http, "/nope").await;
    assert_eq!(code, 404);
    assert!(body.contains("/api/status"), "{body}");
    let (code, body) = get(http, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("sc_ingest_updates_total"));

    // `points --from` prints exactly what `points --config` prints, in both formats.
    let dir = std::env::temp_dir().join(format!("sc-points-from-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("connector.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"sc-offline\"\n[modbus]\nlisten = \"127.0.0.1:0\"\n[[source]]\nname = \"po-solo\"\naddress = \"{}\"\naccess = \"local\"\n",
            server.client_addr()
        ),
    )
    .unwrap();
    for format in ["csv", "json"] {
        let run = |args: &[&str]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_smart-connector"))
                .args(["points", "--format", format])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let url = format!("http://{http}");
        let (from, config) = tokio::task::spawn_blocking({
            let cfg = cfg.clone();
            move || {
                (
                    run(&["--from", &url]),
                    run(&["--config", cfg.to_str().unwrap()]),
                )
            }
        })
        .await
        .unwrap();
        assert_eq!(from, config, "{format}");
        assert!(from.lines().count() >= 64);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    sc.shutdown().await;
}

#[test]
fn points_from_a_bad_address_says_what_is_wrong() {
    let run = |url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_smart-connector"))
            .args(["points", "--timeout", "2s", "--from", url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    insta::assert_snapshot!(run("ftp://example"), @"smart-connector: error: `ftp://example` is not an http:// URL (e.g. http://127.0.0.1:9100, the connector's metrics address)");
    // A port nobody listens on: refused at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = run(&format!("http://{addr}"));
    assert!(
        err.contains(&format!("cannot read http://{addr}/api/points")),
        "{err}"
    );
}
