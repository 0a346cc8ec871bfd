//! Looking at a component from the outside, through any backend's network: is it
//! listening yet, and what does its Prometheus endpoint say.

use anyhow::{Result, bail};
use po_runtime::Net;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits until something accepts connections at `addr` (a child has started), up to 30 s.
pub async fn wait_listening(
    net: &dyn Net,
    from: Option<IpAddr>,
    addr: SocketAddr,
) -> Result<SocketAddr> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(1), net.connect(from, addr));
        if let Ok(Ok(_)) = attempt.await {
            return Ok(addr);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "nothing listens on {addr} after 30 s (see the component's log in the run directory)"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the connector whose HTTP listener is `http` serves data (its
/// `/api/status` state is no longer `starting`), up to 30 s. A connector listens before
/// its catalogue arrives (answering the status block only), so an open port alone does
/// not mean that third parties can read tags yet.
pub async fn wait_serving(net: &dyn Net, from: Option<IpAddr>, http: SocketAddr) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no answer");
    loop {
        if let Some((_, body)) =
            http_get(net, from, http, "/api/status", Duration::from_secs(1)).await
        {
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(doc) if doc["state"] != "starting" => return Ok(()),
                Ok(doc) => last = doc["reason"].as_str().unwrap_or("starting").to_string(),
                Err(e) => last = format!("not a status document: {e}"),
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the connector at {http} is not serving after 30 s: {last} (see its log in the run directory)"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads one counter from a connector's Prometheus endpoint (`None` when it does not
/// answer within a second).
pub async fn scrape(
    net: &dyn Net,
    from: Option<IpAddr>,
    addr: SocketAddr,
    name: &str,
) -> Option<u64> {
    let (_, body) = http_get(net, from, addr, "/metrics", Duration::from_secs(1)).await?;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

/// One HTTP/1.0 `GET path` to `addr`: the status code and the body, or `None` when the
/// exchange fails or takes longer than `timeout`.
pub async fn http_get(
    net: &dyn Net,
    from: Option<IpAddr>,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let fut = async {
        let mut s = net.connect(from, addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).await.ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    tokio::time::timeout(timeout, fut).await.ok().flatten()
}
