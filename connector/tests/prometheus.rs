//! A real Prometheus (Debian's `prometheus` package) scrapes a running connector, and every
//! query of the shipped Grafana dashboard returns at least one series through Prometheus's
//! HTTP API: the dashboard shows something on day one, whatever the metric names, labels
//! and PromQL functions it uses.
//!
//! Without a `prometheus` binary (on PATH, or named by `PROMETHEUS`) the test says why and
//! passes, except under CI (`CI=true`), where it fails: .ci/run installs the package.

mod common;
mod dashboard;

use smart_connector::config::ConnectorConfig;
use smart_connector::connector::start;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);
/// What Grafana's `$__rate_interval` stands for here: wide enough to hold several
/// one-second scrapes, so `rate()` and `increase()` have the two samples they need.
const RATE_INTERVAL: &str = "1m";

fn prometheus_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// A Prometheus server on a free loopback port with its storage in a temporary
/// directory; dropping it kills the process and removes the directory (on a failed
/// assertion too), printing its log when the test failed.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus with one scrape job, `smart-connector`, whose only target is
    /// `target` (not even Prometheus itself is scraped), every second.
    fn start(binary: &Path, target: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("sc-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: smart-connector\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A port the OS says is free; Prometheus binds it a moment later (on the rare
        // collision it exits and the readiness wait below fails, saying so).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Prometheus { child, dir, addr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET `path` with `query` parameters: (status, body), or None while it is not up.
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut req = agent.get(format!("http://{}{path}", self.addr));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let mut r = req.call().ok()?;
        let status = r.status().as_u16();
        Some((status, r.body_mut().read_to_string().ok()?))
    }

    /// An instant query through /api/v1/query: the `data.result` array.
    fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let (status, body) = self
            .get("/api/v1/query", &[("query", expr)])
            .unwrap_or_else(|| panic!("Prometheus went away; its log:\n{}", self.log()));
        assert_eq!(status, 200, "query {expr}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "query {expr}: {body}");
        v["data"]["result"].as_array().unwrap().clone()
    }

    /// Polls (every 100 ms, at most `PATIENCE`) until `done` holds; `what` names it.
    fn wait(&mut self, what: &str, mut done: impl FnMut(&Prometheus) -> bool) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "Prometheus exited ({status}) before {what}; its log:\n{}",
                    self.log()
                );
            }
            if done(self) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Prometheus: never {what}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("Prometheus log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The number in an instant-query sample `{"value": [time, "3"]}`.
fn sample_value(series: &serde_json::Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_a_series_from_a_real_prometheus() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no prometheus binary on PATH (nor PROMETHEUS): CI must install Debian's \
             `prometheus` package (.ci/run does)"
        );
        println!(
            "SKIPPED: no prometheus binary on PATH (nor PROMETHEUS); \
             apt-get install prometheus to run this test"
        );
        return;
    };

    let server = common::solo_server(2).await;
    let config = ConnectorConfig::parse(
        &format!(
            r#"
name = "sc-prometheus"
[[source]]
name = "po-solo"
address = "{}"
[modbus]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
"#,
            server.client_addr()
        ),
        "test.toml",
    )
    .unwrap();
    let sc = start(config, Some(Duration::from_secs(15))).await.unwrap();
    let target = sc.metrics_addr.unwrap();

    let queries = dashboard::queries(&dashboard::dashboard());
    assert!(!queries.is_empty());
    let instance = target.to_string();
    let failures = tokio::task::spawn_blocking(move || {
        let mut prom = Prometheus::start(&binary, target);
        prom.wait("became ready", |p| {
            p.get("/-/ready", &[]).is_some_and(|(s, _)| s == 200)
        });
        // Three successful scrapes of the connector: `rate()` and `increase()` then have
        // at least two samples in their window.
        let up = format!("count_over_time(up{{job=\"smart-connector\",instance=\"{instance}\"}}[{RATE_INTERVAL}])");
        prom.wait("scraped the connector three times", |p| {
            p.query(&up).first().is_some_and(|s| sample_value(s) >= 3.0)
        });
        let last_up = prom.query("up");
        assert_eq!(last_up.len(), 1, "Prometheus scrapes only the connector: {last_up:?}");
        assert_eq!(sample_value(&last_up[0]), 1.0, "the last scrape failed: {last_up:?}");

        // Grafana's variables as the dashboard is used: this connector's instance, and a
        // rate interval over several scrapes.
        let mut failures = Vec::new();
        for (title, expr) in &queries {
            let promql = expr
                .replace("$__rate_interval", RATE_INTERVAL)
                .replace("$instance", &instance);
            let result = prom.query(&promql);
            if result.is_empty() {
                failures.push(format!("panel '{title}': {promql}"));
            }
        }
        failures
    })
    .await
    .unwrap();
    sc.shutdown().await;
    assert!(
        failures.is_empty(),
        "dashboard queries with no series:\n{}",
        failures.join("\n")
    );
}
