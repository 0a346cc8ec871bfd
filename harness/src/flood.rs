//! Connection floods (`harness flood`, and `[[flood]]` in scenarios): many connections to
//! one listener, held the way scanners, misconfigured pollers and attackers hold them, so
//! a run can show the data path holding while a side port is flooded.

use po_runtime::{BoxStream, Net};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How each connection behaves once open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FloodMode {
    /// Connect and say nothing.
    #[default]
    Idle,
    /// Send one byte of a request every few seconds, never finishing it (defeats a
    /// server that only times out idle connections).
    Slowloris,
    /// Send random bytes continuously, reading and discarding whatever comes back.
    Garbage,
    /// Start a TLS handshake (a ClientHello record header and part of its body) and stall.
    TlsStall,
}

impl FloodMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FloodMode::Idle => "idle",
            FloodMode::Slowloris => "slowloris",
            FloodMode::Garbage => "garbage",
            FloodMode::TlsStall => "tls-stall",
        }
    }
}

/// One flood.
#[derive(Debug, Clone)]
pub struct FloodSpec {
    pub target: SocketAddr,
    /// Connections to hold open at once.
    pub connections: usize,
    pub mode: FloodMode,
    /// Where the connections leave from (the third-party host in scenarios).
    pub from: Option<IpAddr>,
    /// After the listener closed or refused a connection, wait this long before opening
    /// it again (each of the `connections` slots on its own).
    pub reconnect_delay: Duration,
    pub net: Arc<dyn Net>,
}

/// What a flood saw (all counters since it started).
#[derive(Debug, Default)]
pub struct FloodStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// The most open at once.
    pub max_open: AtomicU64,
    /// Connections established.
    pub connected: AtomicU64,
    /// Connect attempts that failed (refused, timed out, out of descriptors).
    pub connect_failed: AtomicU64,
    /// Established connections the listener closed.
    pub closed_by_peer: AtomicU64,
}

/// The summary of a flood as reports give it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FloodSummary {
    pub target: String,
    pub mode: String,
    pub connections: usize,
    pub max_open: u64,
    pub connected: u64,
    pub connect_failed: u64,
    pub closed_by_peer: u64,
}

impl FloodStats {
    pub fn summary(&self, target: &str, spec: &FloodSpec) -> FloodSummary {
        FloodSummary {
            target: target.to_string(),
            mode: spec.mode.as_str().to_string(),
            connections: spec.connections,
            max_open: self.max_open.load(Relaxed),
            connected: self.connected.load(Relaxed),
            connect_failed: self.connect_failed.load(Relaxed),
            closed_by_peer: self.closed_by_peer.load(Relaxed),
        }
    }
}

/// Runs `spec` until `stop` completes; every connection is closed on return.
pub async fn run_flood(spec: FloodSpec, stats: Arc<FloodStats>, stop: impl Future<Output = ()>) {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    for slot in 0..spec.connections {
        let (spec, stats, cancel) = (spec.clone(), stats.clone(), cancel.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = hold_slot(&spec, &stats, slot as u64) => {}
            }
        });
        // Opening thousands at once would mostly measure the listen backlog; a short
        // stagger every 100 connections still reaches any count within a second or two.
        if slot % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.await;
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

/// Keeps one connection open: connect, behave as the mode says until the listener closes
/// it, wait, connect again.
async fn hold_slot(spec: &FloodSpec, stats: &FloodStats, slot: u64) {
    let mut rng = slot.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    loop {
        let connect = tokio::time::timeout(
            Duration::from_secs(5),
            spec.net.connect(spec.from, spec.target),
        );
        match connect.await {
            Ok(Ok(stream)) => {
                stats.connected.fetch_add(1, Relaxed);
                let open = stats.open.fetch_add(1, Relaxed) + 1;
                stats.max_open.fetch_max(open, Relaxed);
                behave(stream, spec.mode, &mut rng).await;
                stats.open.fetch_sub(1, Relaxed);
                stats.closed_by_peer.fetch_add(1, Relaxed);
            }
            _ => {
                stats.connect_failed.fetch_add(1, Relaxed);
            }
        }
        tokio::time::sleep(spec.reconnect_delay).await;
    }
}

/// Returns when the listener closed the connection (or it failed).
async fn behave(mut stream: BoxStream, mode: FloodMode, rng: &mut u64) {
    let mut sink = [0u8; 4096];
    match mode {
        FloodMode::Idle => {
            // Reading only notices the close; nothing is ever sent.
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    return;
                }
            }
        }
        FloodMode::Slowloris => {
            // An HTTP request line and a Modbus MBAP header both start here; neither is
            // ever finished.
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ".iter().cycle() {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::select! {
                    r = stream.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { return },
                    _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                }
            }
        }
        FloodMode::Garbage => loop {
            let mut chunk = [0u8; 512];
            for b in chunk.iter_mut() {
                // xorshift: cheap noise, different per slot.
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                *b = *rng as u8;
            }
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::select! {
                r = stream.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { return },
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        },
        FloodMode::TlsStall => {
            // A handshake record announcing 512 bytes, of which a few arrive.
            let hello = [
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            if stream.write_all(&hello).await.is_err() {
                return;
            }
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    return;
                }
            }
        }
    }
}
