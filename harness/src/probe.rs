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
