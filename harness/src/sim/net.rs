//! The simulated network of a host: turmoil's TCP, with the delay and loss faults of a
//! link applied to what each end receives.

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use po_runtime::{BoxListener, BoxStream, Listener, Net, Stream};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Retransmission timeout of a lost segment (Linux's minimum RTO).
pub const RTO: Duration = Duration::from_millis(200);

/// The first SYN retransmission of a connect that got no answer (Linux: 1 s, then
/// doubling).
pub const SYN_RTO: Duration = Duration::from_secs(1);

/// Delay, loss and silence currently applied to the link between two hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct LinkFault {
    pub(super) delay: Duration,
    pub(super) loss: f64,
    /// Partitioned (cut, or an end isolated): turmoil drops every message; a connect
    /// hangs, as a SYN into a black hole does, instead of being refused at once.
    pub(super) silent: bool,
}

/// Link faults by host pair (smaller address first), shared by every simulated stream.
#[derive(Debug, Default)]
pub struct LinkFaults {
    links: Mutex<BTreeMap<(IpAddr, IpAddr), LinkFault>>,
}

pub(super) fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

impl LinkFaults {
    pub(super) fn get(&self, link: (IpAddr, IpAddr)) -> Option<LinkFault> {
        self.links.lock().unwrap().get(&link).copied()
    }

    pub(super) fn update(&self, link: (IpAddr, IpAddr), f: impl FnOnce(&mut LinkFault)) {
        let mut links = self.links.lock().unwrap();
        let entry = links.entry(link).or_default();
        f(entry);
        if *entry == LinkFault::default() {
            links.remove(&link);
        }
    }

    pub(super) fn clear(&self, link: (IpAddr, IpAddr)) {
        self.links.lock().unwrap().remove(&link);
    }
}

/// The simulated network of one host.
#[derive(Debug)]
pub struct SimNet {
    /// The host this network belongs to (every connection leaves from it).
    host: IpAddr,
    faults: Arc<LinkFaults>,
    /// Seeds each stream's loss decisions: the run's seed, the host, a stream counter.
    seed: u64,
    streams: AtomicU64,
}

impl SimNet {
    pub fn new(host: IpAddr, faults: Arc<LinkFaults>, seed: u64) -> SimNet {
        SimNet {
            host,
            faults,
            seed,
            streams: AtomicU64::new(0),
        }
    }

    fn stream_seed(&self) -> u64 {
        splitmix(self.seed ^ self.streams.fetch_add(1, Ordering::Relaxed))
    }
}

impl Net for SimNet {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxListener>> {
        let faults = self.faults.clone();
        let seed = self.stream_seed();
        Box::pin(async move {
            // A turmoil host binds its own address only as "unspecified".
            let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
            let inner = turmoil::net::TcpListener::bind(any).await?;
            Ok(Box::new(SimListener {
                inner,
                faults,
                seed: AtomicU64::new(seed),
            }) as BoxListener)
        })
    }

    fn connect(
        &self,
        _from: Option<IpAddr>,
        to: SocketAddr,
    ) -> BoxFuture<'static, io::Result<BoxStream>> {
        // Every connection of a turmoil host leaves from the host's address.
        let faults = self.faults.clone();
        let seed = self.stream_seed();
        let link = pair(self.host, to.ip());
        Box::pin(async move {
            // Into a black hole the SYN is retransmitted (1 s, 2 s, 4 s, ...) until the
            // link is back or the caller gives up; turmoil itself would refuse at once.
            let mut rto = SYN_RTO;
            while faults.get(link).is_some_and(|f| f.silent) {
                tokio::time::sleep(rto).await;
                rto *= 2;
            }
            let inner = turmoil::net::TcpStream::connect(to).await?;
            let local = inner.local_addr()?;
            Ok(Box::new(SimStream::new(
                inner,
                pair(local.ip(), to.ip()),
                faults,
                seed,
            )) as BoxStream)
        })
    }
}

struct SimListener {
    inner: turmoil::net::TcpListener,
    faults: Arc<LinkFaults>,
    seed: AtomicU64,
}

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimListener")
            .field("addr", &self.inner.local_addr().ok())
            .finish()
    }
}

impl Listener for SimListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, from) = self.inner.accept().await?;
            let local = s.local_addr()?;
            let seed = splitmix(self.seed.fetch_add(1, Ordering::Relaxed));
            let stream = SimStream::new(s, pair(local.ip(), from.ip()), self.faults.clone(), seed);
            Ok((Box::new(stream) as BoxStream, from))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A simulated TCP stream whose received bytes pass through the link's delay and loss.
struct SimStream {
    inner: turmoil::net::TcpStream,
    link: (IpAddr, IpAddr),
    faults: Arc<LinkFaults>,
    rng: u64,
    /// Chunks received but held back, each with the time it may be read.
    held: VecDeque<(tokio::time::Instant, Bytes)>,
    /// The inner stream ended (EOF or error) behind the held chunks.
    ended: Option<io::Result<()>>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for SimStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimStream")
            .field("link", &self.link)
            .field("held", &self.held.len())
            .finish()
    }
}

/// splitmix64: one step of the generator behind every seeded choice of the simulation.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimStream {
    fn new(
        inner: turmoil::net::TcpStream,
        link: (IpAddr, IpAddr),
        faults: Arc<LinkFaults>,
        seed: u64,
    ) -> SimStream {
        SimStream {
            inner,
            link,
            faults,
            rng: seed,
            held: VecDeque::new(),
            ended: None,
            timer: None,
        }
    }

    fn chance(&mut self) -> f64 {
        self.rng = splitmix(self.rng);
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// When a chunk received now may be read: after the link's delay, and for each time
    /// it is lost, one more retransmission timeout (doubling), never before the chunk
    /// in front of it.
    fn release_time(&mut self, fault: LinkFault) -> tokio::time::Instant {
        let mut at = tokio::time::Instant::now() + fault.delay;
        let mut rto = RTO;
        while fault.loss > 0.0 && self.chance() < fault.loss && rto < Duration::from_secs(60) {
            at += rto;
            rto *= 2;
        }
        match self.held.back() {
            Some((last, _)) if *last > at => *last,
            _ => at,
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let fault = this.faults.get(this.link);
        if fault.is_none() && this.held.is_empty() && this.ended.is_none() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let fault = fault.unwrap_or_default();
        // Take everything that has arrived, stamping each chunk with its release time.
        while this.ended.is_none() {
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => this.ended = Some(Ok(())),
                Poll::Ready(Ok(())) => {
                    let at = this.release_time(fault);
                    this.held
                        .push_back((at, Bytes::copy_from_slice(rb.filled())));
                }
                Poll::Ready(Err(e)) => this.ended = Some(Err(e)),
                Poll::Pending => break,
            }
        }
        if let Some((at, chunk)) = this.held.front_mut() {
            if *at <= tokio::time::Instant::now() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                chunk.advance(n);
                if chunk.is_empty() {
                    this.held.pop_front();
                }
                return Poll::Ready(Ok(()));
            }
            let at = *at;
            use std::future::Future as _;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            timer.as_mut().reset(at);
            if timer.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        match this.ended.take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Stream for SimStream {
    fn set_nodelay(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
}
