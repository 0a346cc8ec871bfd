//! Third-party systems: Modbus TCP masters on the tokio-modbus client (docs/design.md §7).
//!
//! A `plain` master polls the first connector. A `redundant` master reads both
//! connectors' status blocks each poll and takes data from the one serving Primary data
//! with the youngest data age (else one serving Standby data), as docs/register-map.md
//! tells integrators to do. Each master reads every mapped tag every `poll_period` and
//! writes setpoints at `writes_per_s` on a second connection (one request in flight per
//! tokio-modbus context; a write may wait seconds for a new Primary).

use crate::measure::{Recorder, is_setpoint, read_blocks};
use po_protocol::Value;
use po_runtime::Net;
use po_runtime::tls::TlsClient;
use serde::{Deserialize, Serialize};
use smart_connector::map::Point;
use smart_connector::registers::{WordOrder, encode};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThirdPartyKind {
    /// Polls one connector (the first).
    Plain,
    /// Polls both connectors' status blocks, reads data from the one serving fresh
    /// Primary data.
    Redundant,
}

#[derive(Debug, Clone)]
pub struct ThirdPartySpec {
    pub index: usize,
    pub kind: ThirdPartyKind,
    /// Connectors' Modbus addresses as this master reaches them (through proxies).
    pub targets: Vec<SocketAddr>,
    /// The third-party host's address; connections leave from it.
    pub from: Option<IpAddr>,
    pub points: Arc<Vec<Point>>,
    pub order: WordOrder,
    pub poll_period: Duration,
    pub writes_per_s: f64,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
    /// Dials the connectors (the backend's network, as seen from the third-party host).
    pub net: Arc<dyn Net>,
    /// Modbus/TCP Security: this master's TLS client end (its certificate carries its
    /// role); `None`: plain Modbus TCP.
    pub tls: Option<TlsClient>,
}

/// A Modbus context to `target`, dialled from `from` on `net`.
pub async fn connect(
    net: &dyn Net,
    target: SocketAddr,
    from: Option<IpAddr>,
    timeout: Duration,
) -> Option<Context> {
    connect_with(net, target, from, timeout, None).await
}

/// [`connect`], over Modbus/TCP Security with `tls` (the connector's certificate must
/// carry `target`'s address).
pub async fn connect_with(
    net: &dyn Net,
    target: SocketAddr,
    from: Option<IpAddr>,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> Option<Context> {
    let stream = tokio::time::timeout(timeout, net.connect(from, target))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    let stream = match tls {
        None => stream,
        Some(tls) => match tls.connect(stream, &target.ip().to_string(), timeout).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%target, "Modbus/TCP Security: {e}");
                return None;
            }
        },
    };
    Some(tcp::attach_slave(stream, Slave(1)))
}

/// A context per target, reopened after any failure (a late reply would poison it).
struct Links {
    net: Arc<dyn Net>,
    spec_targets: Vec<SocketAddr>,
    from: Option<IpAddr>,
    ctx: Vec<Option<Context>>,
    timeout: Duration,
    tls: Option<TlsClient>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("targets", &self.spec_targets)
            .finish()
    }
}

impl Links {
    fn new(spec: &ThirdPartySpec, timeout: Duration) -> Links {
        Links {
            net: spec.net.clone(),
            spec_targets: spec.targets.clone(),
            from: spec.from,
            ctx: spec.targets.iter().map(|_| None).collect(),
            timeout,
            tls: spec.tls.clone(),
        }
    }

    async fn get(&mut self, i: usize) -> Option<&mut Context> {
        if self.ctx[i].is_none() {
            self.ctx[i] = connect_with(
                &*self.net,
                self.spec_targets[i],
                self.from,
                self.timeout,
                self.tls.as_ref(),
            )
            .await;
        }
        self.ctx[i].as_mut()
    }

    async fn read(
        &mut self,
        i: usize,
        unit: u8,
        addr: u16,
        qty: u16,
        rec: &Recorder,
    ) -> Option<Vec<u16>> {
        let timeout = self.timeout;
        let ctx = self.get(i).await;
        let Some(ctx) = ctx else {
            rec.errors.fetch_add(1, Relaxed);
            return None;
        };
        ctx.set_slave(Slave(unit));
        rec.requests.fetch_add(1, Relaxed);
        match tokio::time::timeout(timeout, ctx.read_holding_registers(addr, qty)).await {
            Ok(Ok(Ok(regs))) if regs.len() == usize::from(qty) => Some(regs),
            Ok(Ok(Err(_exception))) => {
                rec.errors.fetch_add(1, Relaxed);
                None
            }
            _ => {
                rec.errors.fetch_add(1, Relaxed);
                self.ctx[i] = None;
                None
            }
        }
    }
}

/// Runs one master until `end`.
pub async fn run(spec: ThirdPartySpec, rec: Arc<Recorder>, end: Instant) {
    let (chosen_tx, chosen_rx) = watch::channel(None::<usize>);
    let writer = (spec.writes_per_s > 0.0)
        .then(|| tokio::spawn(writer(spec.clone(), rec.clone(), chosen_rx, end)));
    let mut links = Links::new(&spec, spec.request_timeout);
    let blocks = read_blocks(&spec.points);
    let mut next = Instant::now();
    while Instant::now() < end {
        let chosen = match spec.kind {
            ThirdPartyKind::Plain => Some(0),
            ThirdPartyKind::Redundant => choose(&mut links, &rec).await,
        };
        chosen_tx.send_replace(chosen);
        let mut newest = None;
        if let Some(i) = chosen {
            for b in &blocks {
                match links.read(i, b.unit, b.first, b.count, &rec).await {
                    Some(regs) => {
                        newest = newest.max(rec.check_block(
                            &spec.points[b.points.clone()],
                            b.first,
                            &regs,
                        ));
                    }
                    None => break,
                }
            }
        }
        rec.record_cycle(spec.index, rec.wall_ms(), newest);
        next += spec.poll_period;
        let now = Instant::now();
        if next < now {
            // Fell behind (a slow or failing poll): do not try to catch up in a burst.
            next = now;
        }
        tokio::time::sleep_until(next.min(end)).await;
    }
    if let Some(w) = writer {
        let _ = w.await;
    }
}

/// Reads both status blocks; picks Primary data with the youngest age, else Standby data.
async fn choose(links: &mut Links, rec: &Recorder) -> Option<usize> {
    let mut best: Option<(u16, u32, usize)> = None;
    for i in 0..links.ctx.len() {
        let Some(s) = links.read(i, 1, 0, 14, rec).await else {
            continue;
        };
        let state = s[1];
        let age = (u32::from(s[6]) << 16) | u32::from(s[7]);
        let rank = match state {
            1 => 0,
            2 => 1,
            _ => continue,
        };
        if best.is_none_or(|(r, a, _)| (rank, age) < (r, a)) {
            best = Some((rank, age, i));
        }
    }
    best.map(|(_, _, i)| i)
}

/// Writes unique setpoint values, round-robin over the setpoint tags, to whichever
/// connector the reader currently uses.
async fn writer(
    spec: ThirdPartySpec,
    rec: Arc<Recorder>,
    chosen: watch::Receiver<Option<usize>>,
    end: Instant,
) {
    let setpoints: Vec<&Point> = spec.points.iter().filter(|p| is_setpoint(p)).collect();
    if setpoints.is_empty() {
        return;
    }
    let mut links = Links::new(&spec, spec.request_timeout);
    let interval = Duration::from_secs_f64(1.0 / spec.writes_per_s);
    let mut next = Instant::now() + interval;
    let mut k = 0usize;
    // The last writes are read back after the run (`read_back`); stop a little early
    // so they are answered before the end.
    let stop = end - spec.poll_period * 2;
    while next < stop {
        tokio::time::sleep_until(next).await;
        // After a write that waited long (a switch), carry on at the normal pace rather
        // than firing the missed writes in a burst.
        next = (next + interval).max(Instant::now());
        let Some(i) = *chosen.borrow() else { continue };
        let p = setpoints[(spec.index + k * 7919) % setpoints.len()];
        k += 1;
        let seq = rec.next_write_seq();
        // Unique and exact in f32: 1 000 000 + sequence.
        let value = Value::Analog(1_000_000.0 + seq as f64);
        let words = encode(value, spec.order).0;
        let Some(ctx) = links.get(i).await else {
            continue;
        };
        rec.write_sent(p.tag, value, seq);
        ctx.set_slave(Slave(p.unit_id));
        let result = tokio::time::timeout(
            spec.write_timeout,
            ctx.write_multiple_registers(p.address, &words),
        )
        .await;
        tracing::debug!(client = spec.index, connector = i, seq, tag = %p.tag, ?result, "write");
        match result {
            Ok(Ok(Ok(()))) => rec.write_acked(p.tag, seq),
            Ok(Ok(Err(_exception))) => rec.write_refused(),
            _ => {
                rec.errors.fetch_add(1, Relaxed);
                links.ctx[i] = None;
            }
        }
    }
}

/// After the run, reads every written tag until each one's last acknowledged value has
/// been seen or `patience` has passed (a value acknowledged just before the end reaches
/// the register image with the server's next scan), so late writes count as applied
/// when they were.
pub async fn read_back(
    net: &dyn Net,
    target: SocketAddr,
    from: Option<IpAddr>,
    points: &[Point],
    rec: &Recorder,
    patience: Duration,
) {
    let written = rec.written_tags();
    let deadline = Instant::now() + patience;
    let mut ctx: Option<Context> = None;
    while rec.write_outcome().1 > 0 && Instant::now() < deadline {
        if ctx.is_none() {
            ctx = connect(net, target, from, Duration::from_secs(1)).await;
        }
        let Some(c) = ctx.as_mut() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        for p in points.iter().filter(|p| written.contains(&p.tag)) {
            c.set_slave(Slave(p.unit_id));
            match tokio::time::timeout(
                Duration::from_secs(1),
                c.read_holding_registers(p.address, p.words),
            )
            .await
            {
                Ok(Ok(Ok(regs))) => {
                    rec.check_block(std::slice::from_ref(p), p.address, &regs);
                }
                _ => {
                    ctx = None;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
