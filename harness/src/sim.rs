//! The simulation backend (DESIGN §11): every host of the topology is a turmoil host,
//! the third parties and the runner itself run on the third-party host as a turmoil
//! client, time is virtual and everything runs on one thread. The same seed gives the
//! same run, byte for byte.
//!
//! Components are the real simulator server and connector, started with a simulated
//! network ([`SimNet`]) and virtual clocks ([`SimClock`]) through the seam of
//! `po-runtime`. Faults:
//! - lifecycle (crash, restart, pause, resume): commands to the host, which applies them
//!   through the component's own handle, exactly as the in-process backend does;
//! - `cut`/`heal`: a turmoil partition between the two hosts: packets vanish, no FIN, no
//!   RST, `connect()` hangs (a black hole); `heal` repairs it and clears delay and loss;
//! - `delay`: every chunk received over the link is held back by the latency;
//! - `loss`: a received chunk is lost with the given probability and, as TCP would,
//!   delivered after a retransmission timeout ([`RTO`], doubling while it keeps being
//!   lost), with everything behind it held back (head-of-line blocking).

use crate::backend::{connector_config, server_config};
use crate::invariants::Invariants;
pub use crate::observed::{Observed, RunningConnector};
use crate::report::{Expectation, Report, SimInfo};
use crate::scenario::{Fault, FaultAction, Scenario};
use crate::seam::Backend;
use crate::topology::{LinkKind, Topology};
use anyhow::{Context as _, Result, anyhow, bail};
use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use po_protocol::Timestamp;
use po_runtime::{BoxListener, BoxStream, Clock, Env, Listener, Net, Stream};
use po_simulator::{ServerConfig, ServerHandle};
use smart_connector::config::ConnectorConfig;
use smart_connector::connector::ConnectorHandle;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

/// The wall clock of every simulated run starts at 2026-01-01T00:00:00Z.
pub const SIM_EPOCH: Duration = Duration::from_secs(1_767_225_600);
/// Retransmission timeout of a lost segment (Linux's minimum RTO).
pub const RTO: Duration = Duration::from_millis(200);
/// Virtual time per simulation step. Not less: tokio's timers have millisecond
/// resolution, so a shorter step would let tokio's clock run ahead of the simulation's.
/// A request and its answer take one step, so a Modbus master completes at most one
/// request per millisecond in the simulation.
pub const TICK: Duration = Duration::from_millis(1);

const CLIENT_PORT: u16 = 23500;
const SYNC_PORT: u16 = 23501;
const MODBUS_PORT: u16 = 502;

/// A topology host's address in the simulation: 198.18.H.1 for 127.0.H.1. Loopback
/// addresses cannot be used: turmoil treats them as the host itself.
pub fn sim_ip(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, a.octets()[2], 1))
}

/// Virtual time: monotonic time is the host runtime's paused tokio clock, wall time the
/// simulation's elapsed time after [`SIM_EPOCH`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    fn wall(&self) -> Timestamp {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        Timestamp((SIM_EPOCH + elapsed).as_micros() as u64)
    }
}

/// Log timestamps: virtual time (`sim+12.345678s`) inside a simulation, so the logs of a
/// replay line up with the report's fault times; the system clock elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogTimer;

impl tracing_subscriber::fmt::time::FormatTime for LogTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "sim+{:.6}s", t.as_secs_f64()),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// Delay and loss currently applied to the link between two hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct LinkFault {
    delay: Duration,
    loss: f64,
}

/// Link faults by host pair (smaller address first), shared by every simulated stream.
#[derive(Debug, Default)]
pub struct LinkFaults {
    links: Mutex<BTreeMap<(IpAddr, IpAddr), LinkFault>>,
}

fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

impl LinkFaults {
    fn get(&self, link: (IpAddr, IpAddr)) -> Option<LinkFault> {
        self.links.lock().unwrap().get(&link).copied()
    }

    fn update(&self, link: (IpAddr, IpAddr), f: impl FnOnce(&mut LinkFault)) {
        let mut links = self.links.lock().unwrap();
        let entry = links.entry(link).or_default();
        f(entry);
        if *entry == LinkFault::default() {
            links.remove(&link);
        }
    }

    fn clear(&self, link: (IpAddr, IpAddr)) {
        self.links.lock().unwrap().remove(&link);
    }
}

/// The simulated network of one host.
#[derive(Debug)]
pub struct SimNet {
    faults: Arc<LinkFaults>,
    /// Seeds each stream's loss decisions: the run's seed, the host, a stream counter.
    seed: u64,
    streams: AtomicU64,
}

impl SimNet {
    pub fn new(faults: Arc<LinkFaults>, seed: u64) -> SimNet {
        SimNet {
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
        Box::pin(async move {
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

fn splitmix(mut x: u64) -> u64 {
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

/// What the runner asks of a simulated host; the host carries it out in its own runtime
/// (binding and dialling need the host's network context).
enum HostCmd {
    StartServer(ServerConfig, oneshot::Sender<Result<(), String>>),
    StartConnector(ConnectorConfig, oneshot::Sender<Result<(), String>>),
    Lifecycle(String, FaultAction, oneshot::Sender<Result<(), String>>),
}

type Shared<T> = Arc<Mutex<T>>;

/// The software of one simulated host: starts components and applies lifecycle faults
/// on command.
async fn host_main(
    inbox: Rc<RefCell<Option<mpsc::UnboundedReceiver<HostCmd>>>>,
    env: Env,
    observed: Shared<Observed>,
) {
    let Some(mut inbox) = inbox.borrow_mut().take() else {
        return std::future::pending().await;
    };
    let mut servers: BTreeMap<String, ServerHandle> = BTreeMap::new();
    let mut connectors: BTreeMap<String, ConnectorSlot> = BTreeMap::new();
    while let Some(cmd) = inbox.recv().await {
        match cmd {
            HostCmd::StartServer(config, reply) => {
                let name = config.name.clone();
                let r = ServerHandle::start_in(config, env.clone()).await;
                let r = r.map(|h| {
                    observed
                        .lock()
                        .unwrap()
                        .servers
                        .insert(name.clone(), h.clone());
                    servers.insert(name, h);
                });
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            HostCmd::StartConnector(config, reply) => {
                let wait = Some(Duration::from_secs(30));
                let r = start_connector(&config, wait, &env, &observed).await;
                let ok = r.as_ref().map(|_| ()).map_err(|e| e.clone());
                let slot = ConnectorSlot {
                    config: config.clone(),
                    running: Rc::new(RefCell::new(r.ok())),
                    starting: None,
                };
                connectors.insert(config.name.clone(), slot);
                let _ = reply.send(ok);
            }
            HostCmd::Lifecycle(name, action, reply) => {
                let r = if let Some(h) = servers.get(&name) {
                    server_fault(h, action).await
                } else if let Some(slot) = connectors.get_mut(&name) {
                    slot.fault(action, &env, &observed).await
                } else {
                    Err(format!("no component {name} on this host"))
                };
                let _ = reply.send(r);
            }
        }
    }
}

async fn start_connector(
    config: &ConnectorConfig,
    catalog_wait: Option<Duration>,
    env: &Env,
    observed: &Shared<Observed>,
) -> Result<ConnectorHandle, String> {
    let h = smart_connector::connector::start_in(config.clone(), catalog_wait, env.clone())
        .await
        .map_err(|e| format!("{e:#}"))?;
    observed.lock().unwrap().connectors.insert(
        config.name.clone(),
        Some((h.metrics.clone(), h.image.clone())),
    );
    Ok(h)
}

async fn server_fault(h: &ServerHandle, action: FaultAction) -> Result<(), String> {
    match action {
        FaultAction::Crash => h.crash_and_wait().await,
        FaultAction::Restart => {
            if h.is_running() {
                h.crash_and_wait().await;
            }
            h.restart().await.map_err(|e| e.to_string())?;
        }
        FaultAction::Pause => h.pause(),
        FaultAction::Resume => h.resume(),
        a => return Err(format!("{} is not a lifecycle fault", a.as_str())),
    }
    Ok(())
}

/// A connector of a simulated host.
struct ConnectorSlot {
    config: ConnectorConfig,
    running: Rc<RefCell<Option<ConnectorHandle>>>,
    /// A restart in progress: like the binary, a restarted connector waits for a
    /// catalogue as long as it takes (its servers may be unreachable for a while).
    starting: Option<tokio::task::JoinHandle<()>>,
}

impl ConnectorSlot {
    async fn fault(
        &mut self,
        action: FaultAction,
        env: &Env,
        observed: &Shared<Observed>,
    ) -> Result<(), String> {
        if !matches!(action, FaultAction::Crash | FaultAction::Restart) {
            return Err(format!(
                "{} cannot be applied to connector {}",
                action.as_str(),
                self.config.name
            ));
        }
        if let Some(start) = self.starting.take() {
            start.abort();
        }
        let running = self.running.borrow_mut().take();
        if let Some(h) = running {
            h.shutdown().await;
        }
        observed
            .lock()
            .unwrap()
            .connectors
            .insert(self.config.name.clone(), None);
        if action == FaultAction::Restart {
            let (config, env, observed, slot) = (
                self.config.clone(),
                env.clone(),
                observed.clone(),
                self.running.clone(),
            );
            self.starting = Some(tokio::task::spawn_local(async move {
                match start_connector(&config, None, &env, &observed).await {
                    Ok(h) => *slot.borrow_mut() = Some(h),
                    Err(e) => {
                        tracing::warn!(connector = %config.name, error = %e, "restart failed")
                    }
                }
            }));
        }
        Ok(())
    }
}

/// The deployment as the runner (a turmoil client on the third-party host) sees it.
#[derive(Debug)]
pub struct SimDeployment {
    inboxes: BTreeMap<String, mpsc::UnboundedSender<HostCmd>>,
    observed: Shared<Observed>,
    faults: Arc<LinkFaults>,
    env: Env,
    third_party_ip: IpAddr,
    modbus: Vec<SocketAddr>,
    connectors: Vec<String>,
    /// Each link's two host addresses.
    links: BTreeMap<String, (IpAddr, IpAddr)>,
}

impl std::fmt::Debug for HostCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostCmd::StartServer(c, _) => write!(f, "StartServer({})", c.name),
            HostCmd::StartConnector(c, _) => write!(f, "StartConnector({})", c.name),
            HostCmd::Lifecycle(n, a, _) => write!(f, "Lifecycle({n}, {})", a.as_str()),
        }
    }
}

impl SimDeployment {
    async fn command(
        &self,
        component: &str,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> HostCmd,
    ) -> Result<()> {
        let inbox = self
            .inboxes
            .get(component)
            .ok_or_else(|| anyhow!("no component {component}"))?;
        let (tx, rx) = oneshot::channel();
        inbox
            .send(make(tx))
            .map_err(|_| anyhow!("host of {component} is gone"))?;
        rx.await
            .map_err(|_| anyhow!("host of {component} dropped the command"))?
            .map_err(|e| anyhow!("{component}: {e}"))
    }

    /// Starts every component on its host, servers first.
    async fn start(
        s: &Scenario,
        t: &Topology,
        inboxes: BTreeMap<String, mpsc::UnboundedSender<HostCmd>>,
        observed: Shared<Observed>,
        faults: Arc<LinkFaults>,
        env: Env,
    ) -> Result<SimDeployment> {
        let ip_of = |component: &str| -> IpAddr {
            sim_ip(t.host_of(component).expect("component has a host").address)
        };
        let redundant = t.architecture > 1;
        let servers: Vec<String> = t.servers().map(|c| c.name.clone()).collect();
        let mut links = BTreeMap::new();
        for l in &t.links {
            let from = if l.kind == LinkKind::Modbus {
                sim_ip(t.third_party_host.address)
            } else {
                ip_of(&l.from)
            };
            links.insert(l.name.clone(), (from, ip_of(&l.to)));
        }
        let mut d = SimDeployment {
            inboxes,
            observed,
            faults,
            env,
            third_party_ip: sim_ip(t.third_party_host.address),
            modbus: vec![],
            connectors: vec![],
            links,
        };
        for name in &servers {
            let ip = ip_of(name);
            let listen = SocketAddr::new(ip, CLIENT_PORT);
            let sync = redundant.then(|| SocketAddr::new(ip, SYNC_PORT));
            let mut config: ServerConfig = server_config(s, t, name, listen, sync);
            config.host_address = Some(ip);
            if let Some(r) = &mut config.redundancy {
                let peer = servers.iter().find(|p| *p != name).expect("a pair");
                r.peer = SocketAddr::new(ip_of(peer), SYNC_PORT);
            }
            d.command(name, |tx| HostCmd::StartServer(config, tx))
                .await
                .with_context(|| format!("starting {name}"))?;
        }
        for c in t.connectors() {
            let ip = ip_of(&c.name);
            let sources = t
                .sources_of(&c.name)
                .iter()
                .map(|l| (l.to.clone(), SocketAddr::new(ip_of(&l.to), CLIENT_PORT)))
                .collect();
            let modbus = SocketAddr::new(ip, MODBUS_PORT);
            let mut config = connector_config(s, t, &c.name, sources, modbus, None);
            config.host_address = Some(ip);
            let name = c.name.clone();
            d.command(&name, |tx| HostCmd::StartConnector(config, tx))
                .await
                .with_context(|| format!("starting {name}"))?;
            d.modbus.push(modbus);
            d.connectors.push(name);
        }
        Ok(d)
    }

    /// What the hosts publish (server status, connector images), for invariant checks.
    pub fn observed(&self) -> &Shared<Observed> {
        &self.observed
    }
}

impl Backend for SimDeployment {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn env(&self) -> Env {
        self.env.clone()
    }

    fn third_party_ip(&self) -> IpAddr {
        self.third_party_ip
    }

    fn modbus_targets(&self) -> Vec<SocketAddr> {
        self.modbus.clone()
    }

    fn modbus_direct(&self) -> Vec<SocketAddr> {
        self.modbus.clone()
    }

    fn connector_names(&self) -> Vec<String> {
        self.connectors.clone()
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<()> {
        match f.action {
            FaultAction::Cut | FaultAction::Heal | FaultAction::Delay | FaultAction::Loss
                if self.links.contains_key(&f.target) =>
            {
                let (a, b) = self.links[&f.target];
                match f.action {
                    FaultAction::Cut => turmoil::partition(a, b),
                    FaultAction::Heal => {
                        turmoil::repair(a, b);
                        self.faults.clear(pair(a, b));
                    }
                    FaultAction::Delay => {
                        let latency = f.latency.unwrap_or_default();
                        self.faults.update(pair(a, b), |l| l.delay = latency);
                    }
                    _ => {
                        let fraction = f.fraction.unwrap_or_default();
                        self.faults.update(pair(a, b), |l| l.loss = fraction);
                    }
                }
                Ok(())
            }
            FaultAction::Cut | FaultAction::Heal | FaultAction::Delay | FaultAction::Loss => {
                bail!("{} is not a link of this topology", f.target)
            }
            action => {
                let names: Vec<String> = t
                    .components_of_target(&f.target)
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                for name in names {
                    self.command(&name, |tx| HostCmd::Lifecycle(name.clone(), action, tx))
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn ingest_counters(&self) -> Vec<Option<u64>> {
        let observed = self.observed.lock().unwrap();
        self.connectors
            .iter()
            .map(|n| {
                observed
                    .connectors
                    .get(n)
                    .and_then(|c| c.as_ref())
                    .map(|(m, _)| m.ingest_updates.load(Relaxed))
            })
            .collect()
    }

    fn component_pids(&self) -> Vec<(String, u32)> {
        vec![]
    }
}

/// Runs one scenario in the simulation and returns its report (expectations judged).
pub fn run_scenario(s: &Scenario, quiet: bool) -> Result<Report> {
    let check = s.expect.invariants == Some(true);
    let mut invariants = Invariants::default();
    let (mut report, observed) = run_with(s, quiet, |at, o| {
        if check {
            invariants.observe(at, o)
        }
    })?;
    if check {
        invariants.finish(
            &report,
            &observed.lock().unwrap(),
            recovery_window(s),
            s.architecture == 3,
        );
        let held = invariants.violations.is_empty();
        report.expectations.push(Expectation {
            name: "invariants".into(),
            limit: "hold (DESIGN §11)".into(),
            actual: if held {
                "held".into()
            } else {
                invariants.violations.join("; ")
            },
            passed: held,
        });
        report.passed = report.expectations.iter().all(|e| e.passed);
    }
    Ok(report)
}

/// After the last fault, third parties must read fresh data again within this.
pub fn recovery_window(s: &Scenario) -> Duration {
    s.redundancy.failover_timeout + s.connector.source_timeout + Duration::from_secs(1)
}

/// Runs one scenario; `observe` is called after every simulation step with the virtual
/// time and what the hosts publish (the explorer checks its invariants there).
pub fn run_with(
    s: &Scenario,
    quiet: bool,
    mut observe: impl FnMut(Duration, &Observed),
) -> Result<(Report, Shared<Observed>)> {
    let wall = std::time::Instant::now();
    let t = s.topology();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(s.duration + Duration::from_secs(600))
        .tick_duration(TICK)
        .rng_seed(s.seed)
        .epoch(std::time::UNIX_EPOCH + SIM_EPOCH)
        // A LAN: messages arrive at the next step (the default draws up to 100 ms).
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .tcp_capacity(4096)
        .build();
    let faults = Arc::new(LinkFaults::default());
    let observed: Shared<Observed> = Arc::default();
    let mut inboxes = BTreeMap::new();
    for (i, host) in t.hosts.iter().enumerate() {
        let components: Vec<String> = t
            .servers()
            .chain(t.connectors())
            .filter(|c| c.host == i)
            .map(|c| c.name.clone())
            .collect();
        if components.is_empty() {
            continue;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Rc::new(RefCell::new(Some(rx)));
        let env = Env {
            net: Arc::new(SimNet::new(
                faults.clone(),
                splitmix(s.seed ^ (i as u64 + 1)),
            )),
            clock: Arc::new(SimClock),
        };
        let observed = observed.clone();
        sim.host(sim_ip(host.address), move || {
            let (rx, env, observed) = (rx.clone(), env.clone(), observed.clone());
            async move {
                host_main(rx, env, observed).await;
                Ok(())
            }
        });
        for c in components {
            inboxes.insert(c, tx.clone());
        }
    }
    let out: Rc<RefCell<Option<Result<Report>>>> = Rc::default();
    {
        let (s, t, out, observed, faults) = (
            s.clone(),
            t.clone(),
            out.clone(),
            observed.clone(),
            faults.clone(),
        );
        let env = Env {
            net: Arc::new(SimNet::new(faults.clone(), splitmix(s.seed))),
            clock: Arc::new(SimClock),
        };
        sim.client(sim_ip(t.third_party_host.address), async move {
            let r = async {
                let mut d = SimDeployment::start(&s, &t, inboxes, observed, faults, env)
                    .await
                    .with_context(|| format!("deploying {} (sim backend)", s.name))?;
                crate::runner::drive(&s, &t, &mut d, quiet).await
            }
            .await;
            *out.borrow_mut() = Some(r);
            Ok(())
        });
    }
    loop {
        match sim.step() {
            Ok(done) => {
                observe(sim.elapsed(), &observed.lock().unwrap());
                if done {
                    break;
                }
            }
            Err(e) => bail!("simulation of {} failed: {e}", s.name),
        }
    }
    let virtual_time = sim.elapsed();
    let result = out
        .borrow_mut()
        .take()
        .ok_or_else(|| anyhow!("the simulated run of {} produced no report", s.name))?;
    let mut report = result?;
    report.sim = Some(SimInfo {
        seed: s.seed,
        virtual_s: virtual_time.as_secs_f64(),
        wall_s: wall.elapsed().as_secs_f64(),
    });
    Ok((report, observed))
}
