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
    let fut = async {
        let mut s = net.connect(from, addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
    };
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .ok()
        .flatten()
}
