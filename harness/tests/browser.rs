//! A real browser (headless Chromium) loads the HTML report of a run with a fault and the
//! live status page of a running connector: no console message of any kind (a script
//! error, a blocked or failed load, a log line), and drawn content. The screenshots are
//! kept in the target directory; `UPDATE_SCREENSHOTS=1` also copies them into
//! `docs/images/` (the README shows one).
//!
//! Without Chromium the tests say `skipped: …` and pass, except under `CI`, where a
//! missing browser is a failure (`.ci/run` installs the Debian `chromium` package).

use po_protocol::Role;
use po_simulator::SiteSpec;
use po_simulator::pair::{PairHandle, PairSpec};
use smart_connector::config::{AccessKind, ConnectorConfig, MetricsConfig, SourceConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Chromium for the browser checks (apt-get install chromium)"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium)");
    }
    found
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the browser saw: the DOM after scripts ran, its console messages, a screenshot.
struct Visit {
    dom: String,
    console: Vec<String>,
    screenshot: PathBuf,
}

/// Loads `url` in headless Chromium for `budget` of virtual time (timers and fetches
/// run), dumps the DOM and takes a full-width screenshot.
fn visit(browser: &Path, url: &str, name: &str, budget: Duration) -> Visit {
    let dir = out_dir();
    let profile = dir.join(format!("profile-{name}"));
    let screenshot = dir.join(format!("{name}.png"));
    let common = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            // Nothing but the page: no update checks, sync, or other traffic off loopback.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()));
    };
    let mut dump = Command::new(browser);
    common(&mut dump);
    let out = dump.arg("--dump-dom").arg(url).output().unwrap();
    assert!(out.status.success(), "chromium failed on {url}");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let mut shot = Command::new(browser);
    common(&mut shot);
    let out = shot
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium screenshot of {url} failed");
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&screenshot, docs.join(format!("{name}.png"))).unwrap();
    }
    Visit {
        dom,
        console,
        screenshot,
    }
}

/// The share of a screenshot's pixels that differ from its most common colour (the
/// page background): drawn content, not a blank page.
fn drawn_share(png_path: &Path) -> f64 {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let mut counts = std::collections::HashMap::new();
    for p in buf[..info.buffer_size()].chunks(px) {
        *counts.entry(p[..3].to_vec()).or_insert(0u64) += 1;
    }
    let total: u64 = counts.values().sum();
    let background = counts.values().max().copied().unwrap_or(0);
    (total - background) as f64 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_status_page_renders_and_refreshes_without_console_errors() {
    let Some(browser) = chromium() else { return };
    let site = SiteSpec {
        devices: 10,
        tags_per_device: 16,
        scan_period: Duration::from_millis(100),
    };
    let pair = PairHandle::start(&PairSpec::loopback(41, site))
        .await
        .unwrap();
    assert!(
        pair.a_is_primary(PATIENCE).await,
        "po-a never became Primary"
    );
    let mut config: ConnectorConfig = toml::from_str(
        "name = \"sc-a\"\n[policy]\nsource_timeout = \"300ms\"\n[modbus]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    config.sources = pair
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
    config.metrics = Some(MetricsConfig::at("127.0.0.1:0".parse().unwrap()));
    let sc = smart_connector::connector::start(config, Some(PATIENCE))
        .await
        .unwrap();
    // A master polling, and a switch in the history: what a user comes to the page for.
    let mut master =
        tokio_modbus::client::tcp::connect_slave(sc.modbus_addr, tokio_modbus::Slave(1))
            .await
            .unwrap();
    use tokio_modbus::client::Reader as _;
    master.read_holding_registers(0, 14).await.unwrap().unwrap();
    pair.a.crash();
    let mut switched = false;
    for _ in 0..500 {
        master.read_holding_registers(0, 14).await.unwrap().unwrap();
        if sc
            .image
            .active()
            .is_some_and(|(i, r, _)| i == 2 && r == Role::Primary)
        {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(switched, "sc-a never followed po-b");

    let url = format!("http://{}/", sc.metrics_addr.unwrap());
    let visit = tokio::task::spawn_blocking(move || {
        // Five seconds of virtual time: the page refreshes itself twice meanwhile.
        visit(&browser, &url, "status-page", Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(visit.console.is_empty(), "console: {:#?}", visit.console);
    for want in [
        "id=\"sources\"",
        "id=\"switches\"",
        "id=\"clients\"",
        "po-b",
        "connection to po-a lost",
    ] {
        assert!(visit.dom.contains(want), "the page shows {want}");
    }
    // The refresh script writes into #reach only when a refresh fails.
    let reach = visit
        .dom
        .split("id=\"reach\"")
        .nth(1)
        .and_then(|rest| rest.split_once('>'))
        .and_then(|(_, rest)| rest.split_once("</span>"))
        .map(|(text, _)| text.to_string());
    assert_eq!(
        reach.as_deref(),
        Some(""),
        "the refreshes reached the connector"
    );
    let drawn = drawn_share(&visit.screenshot);
    assert!(drawn > 0.05, "the page is nearly blank: {drawn}");
    drop(master);
    sc.shutdown().await;
}

/// Architecture 3 on a small site; the Primary crashes at 2 s of 5 (virtual time).
const CRASH: &str = include_str!("data/short-crash.toml");

#[test]
fn the_html_report_renders_its_charts_without_console_errors() {
    let Some(browser) = chromium() else { return };
    let dir = out_dir();
    let scenario = dir.join("crash.toml");
    std::fs::write(&scenario, CRASH).unwrap();
    let html = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "-q", "--backend", "sim"])
        .arg(&scenario)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("file://{}", html.display());
    let visit = visit(&browser, &url, "report", Duration::from_secs(1));
    assert!(visit.console.is_empty(), "console: {:#?}", visit.console);
    // Each chart, as the browser parsed it, holds drawn lines.
    for chart in [
        "chart-rates",
        "chart-freshness",
        "chart-timeline",
        "chart-writes",
    ] {
        let at = visit
            .dom
            .find(chart)
            .unwrap_or_else(|| panic!("{chart} missing"));
        let svg = &visit.dom[at..];
        let svg = &svg[..svg.find("</svg>").expect("the chart is an inline svg")];
        let drawn = svg.matches("<polyline").count()
            + svg.matches("<path").count()
            + svg.matches("<rect").count();
        assert!(drawn >= 4, "{chart} has {drawn} drawn elements");
    }
    let drawn = drawn_share(&visit.screenshot);
    assert!(drawn > 0.05, "the report is nearly blank: {drawn}");
}
