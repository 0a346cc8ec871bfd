//! How long a web page takes while something else runs: `harness load --probe-http`
//! fetches a connector's status page on a fixed period during the Modbus load and reports
//! the latency distribution (docs/design.md §14: the page must answer within its own limits
//! under load, and never stall Modbus serving; the load's own figures show the latter).

use crate::probe::http_get;
use hdrhistogram::Histogram;
use po_runtime::Net;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What was fetched and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageLatency {
    pub url: String,
    /// Answered with 200.
    pub fetched: u64,
    /// Failed, timed out (5 s) or answered with another status.
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub bytes: usize,
}

/// Runs `work` to completion while fetching `http://addr{path}` every `period` (one at
/// a time, each on a new connection, as a browser's refresh does).
pub async fn probe_during<T>(
    net: &dyn Net,
    addr: SocketAddr,
    path: &str,
    period: Duration,
    work: impl Future<Output = T>,
) -> (T, PageLatency) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let (mut failed, mut bytes) = (0, 0);
    let probing = async {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            match http_get(net, None, addr, path, Duration::from_secs(5)).await {
                Some((200, body)) => {
                    hist.saturating_record(started.elapsed().as_micros().max(1) as u64);
                    bytes = body.len();
                }
                _ => failed += 1,
            }
        }
    };
    let out = tokio::select! {
        out = work => out,
        () = probing => unreachable!("probing loops until the work is done"),
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = PageLatency {
        url: format!("http://{addr}{path}"),
        fetched: hist.len(),
        failed,
        p50_ms: ms(hist.value_at_quantile(0.5)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
        bytes,
    };
    (out, latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_timed_while_the_work_runs_and_failures_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The work ends once five pages have been answered, not after a fixed time: the
        // probe fetches one page at a time, so by then it has recorded the first four (two
        // successes, two failures) however slowly the machine runs.
        let (answered_tx, mut answered) = tokio::sync::watch::channel(0usize);
        let served = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            for n in 0.. {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let status = if n % 2 == 0 { "200 OK" } else { "503 No" };
                let _ = s
                    .write_all(format!("HTTP/1.0 {status}\r\n\r\nhello").as_bytes())
                    .await;
                drop(s);
                answered_tx.send_replace(n + 1);
            }
        });
        let env = po_runtime::Env::tokio();
        let (out, latency) = probe_during(&*env.net, addr, "/", Duration::from_millis(5), async {
            let five = answered.wait_for(|n| *n >= 5);
            tokio::time::timeout(Duration::from_secs(10), five)
                .await
                .expect("the probe stopped fetching pages")
                .unwrap();
            7
        })
        .await;
        assert_eq!(out, 7);
        assert!(latency.fetched >= 2, "{latency:?}");
        assert!(latency.failed >= 2, "the 503s are failures: {latency:?}");
        assert_eq!(latency.bytes, 5);
        assert!(latency.max_ms >= latency.p50_ms);
        served.abort();
    }
}
