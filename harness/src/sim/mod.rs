//! The simulation backend (docs/design.md §11): every host of the topology is a turmoil host,
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

mod clock;
mod host;
mod net;

pub use clock::{LogTimer, SIM_EPOCH, SimClock};
pub use net::{LinkFaults, RTO, SimNet};

use crate::capability::{Capabilities, Need, Unsupported};
use crate::invariants::Invariants;
use crate::observed::Observed;
use crate::report::{Expectation, Report, SimInfo};
use crate::scenario::{BackendKind, Fault, FaultAction, Scenario};
use crate::seam::Backend;
use crate::topology::{LinkKind, Target, Topology, lab_ip};
use crate::wiring::Wiring;
use anyhow::{Context as _, Result, anyhow, bail};
use host::{HostCmd, Shared, host_main};
use net::pair;
pub(crate) use net::splitmix;
use po_runtime::Env;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Virtual time per simulation step. Not less: tokio's timers have millisecond
/// resolution, so a shorter step would let tokio's clock run ahead of the simulation's.
/// A request and its answer take one step, so a Modbus master completes at most one
/// request per millisecond in the simulation.
pub const TICK: Duration = Duration::from_millis(1);

/// The deployment as the runner (a turmoil client on the third-party host) sees it.
#[derive(Debug)]
pub struct SimDeployment {
    inboxes: BTreeMap<String, mpsc::UnboundedSender<HostCmd>>,
    observed: Shared<Observed>,
    faults: Arc<LinkFaults>,
    env: Env,
    connectors: Vec<String>,
    /// The servers, in topology order.
    servers: Vec<String>,
    /// Each link's two host addresses.
    links: BTreeMap<String, (IpAddr, IpAddr)>,
}

/// The largest site the sim backend takes: a million-tag site would run every
/// component's work on one thread (minutes of wall time per simulated second).
pub const SIM_MAX_TAGS: u64 = 200_000;

impl Capabilities for SimDeployment {
    fn supports(need: Need) -> Result<(), Unsupported> {
        match need {
            Need::Fault(FaultAction::Reject) => Err(Unsupported::new(
                "it needs a kernel that answers with TCP resets",
            )),
            Need::Fault(FaultAction::Bandwidth) => {
                Err(Unsupported::new("it needs a kernel traffic shaper"))
            }
            Need::Flood => Err(Unsupported::new(
                "a flood measures what a process's descriptors and listeners withstand; the sim backend has no component processes",
            )),
            Need::OpcUa => Err(Unsupported::new(
                "the sim backend cannot run the OPC UA stack: async-opcua dials and listens on tokio's sockets and clocks, not the simulated network and virtual time",
            )),
            Need::Tls => Err(Unsupported::new(
                "the sim backend runs no TLS (virtual time would make its cost meaningless)",
            )),
            Need::Tags(tags) if tags > SIM_MAX_TAGS => Err(Unsupported(format!(
                "{tags} tags: the sim backend runs every component on one thread in virtual time and takes sites up to {SIM_MAX_TAGS} tags"
            ))),
            _ => Ok(()),
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

    /// Starts every component on its host, servers first, configured as the wiring says.
    async fn start(
        t: &Topology,
        w: &Wiring,
        inboxes: BTreeMap<String, mpsc::UnboundedSender<HostCmd>>,
        observed: Shared<Observed>,
        faults: Arc<LinkFaults>,
        env: Env,
    ) -> Result<SimDeployment> {
        let mut links = BTreeMap::new();
        for (l, _) in &w.links {
            let from = if l.kind == LinkKind::Modbus {
                w.third_party_ip
            } else {
                lab_ip(t.host_of(&l.from).expect("component has a host").address)
            };
            let to = lab_ip(t.host_of(&l.to).expect("component has a host").address);
            links.insert(l.name.clone(), (from, to));
        }
        let d = SimDeployment {
            inboxes,
            observed,
            faults,
            env,
            connectors: w.connector_names(),
            servers: w.servers.iter().map(|s| s.config.name.clone()).collect(),
            links,
        };
        for sw in &w.servers {
            let (name, config) = (&sw.config.name, sw.config.clone());
            d.command(name, |tx| HostCmd::StartServer(Box::new(config), tx))
                .await
                .with_context(|| format!("starting {name}"))?;
        }
        for c in &w.connectors {
            let config = c.config.clone();
            d.command(&c.name, |tx| HostCmd::StartConnector(Box::new(config), tx))
                .await
                .with_context(|| format!("starting {}", c.name))?;
        }
        Ok(d)
    }

    /// What the hosts publish (server status, connector images), for invariant checks.
    pub fn observed(&self) -> &Shared<Observed> {
        &self.observed
    }
}

impl Backend for SimDeployment {
    fn env(&self) -> Env {
        self.env.clone()
    }

    async fn apply(&mut self, t: &Topology, f: &Fault) -> Result<String> {
        self.observed
            .lock()
            .unwrap()
            .faults
            .push((turmoil::elapsed(), f.label()));
        let link = self.links.get(&f.target).copied();
        match (f.action, link) {
            (
                FaultAction::Cut | FaultAction::Heal | FaultAction::Delay | FaultAction::Loss,
                Some((a, b)),
            ) => Ok(match f.action {
                FaultAction::Cut => {
                    turmoil::partition(a, b);
                    self.faults.update(pair(a, b), |l| l.silent = true);
                    "turmoil partition (silent; connects hang)"
                }
                FaultAction::Heal => {
                    turmoil::repair(a, b);
                    self.faults.clear(pair(a, b));
                    "turmoil repair"
                }
                FaultAction::Delay => {
                    let latency = f.latency.unwrap_or_default();
                    self.faults.update(pair(a, b), |l| l.delay = latency);
                    "simulated stream latency"
                }
                _ => {
                    let fraction = f.fraction.unwrap_or_default();
                    self.faults.update(pair(a, b), |l| l.loss = fraction);
                    "simulated segment loss"
                }
            }
            .into()),
            (FaultAction::Isolate | FaultAction::Heal, None)
                if t.target(&f.target)
                    .is_some_and(|x| matches!(x, Target::Host(..))) =>
            {
                let Some(Target::Host(host, _)) = t.target(&f.target) else {
                    unreachable!()
                };
                let me = lab_ip(host.address);
                let others = t
                    .hosts
                    .iter()
                    .chain(std::iter::once(&t.third_party_host))
                    .map(|h| lab_ip(h.address))
                    .filter(|ip| *ip != me);
                let on = f.action == FaultAction::Isolate;
                for other in others {
                    if on {
                        turmoil::partition(me, other);
                    } else {
                        turmoil::repair(me, other);
                    }
                    self.faults.update(pair(me, other), |l| l.silent = on);
                }
                Ok(if f.action == FaultAction::Isolate {
                    "turmoil partition from every host (silent)"
                } else {
                    "turmoil repair with every host"
                }
                .into())
            }
            (
                FaultAction::Crash
                | FaultAction::Restart
                | FaultAction::Pause
                | FaultAction::Resume,
                _,
            ) => {
                let names: Vec<String> = t
                    .components_of_target(&f.target)
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                for name in names {
                    self.command(&name, |tx| HostCmd::Lifecycle(name.clone(), f.action, tx))
                        .await?;
                }
                Ok("host software stopped/started".into())
            }
            (a, _) => bail!(
                "the sim backend cannot apply `{}` to {}",
                a.as_str(),
                f.target
            ),
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
                    .map(|c| c.metrics.ingest_updates.load(Relaxed))
            })
            .collect()
    }

    fn server_status(&self) -> Vec<(String, Option<(po_protocol::Role, u64)>)> {
        let observed = self.observed.lock().unwrap();
        self.servers
            .iter()
            .map(|n| {
                let st = observed
                    .servers
                    .get(n)
                    .and_then(|h| h.status())
                    .map(|s| (s.role, s.epoch));
                (n.clone(), st)
            })
            .collect()
    }

    fn component_pids(&self) -> Vec<(String, u32)> {
        vec![]
    }

    fn run_dir(&self) -> Option<&std::path::Path> {
        None
    }

    /// The simulation ends with the run: nothing to stop.
    async fn shutdown(self, _keep_logs: bool) {}
}

/// Runs one scenario in the simulation and returns its report (expectations judged).
pub fn run_scenario(s: &Scenario, quiet: bool) -> Result<Report> {
    if s.security.tls {
        // turmoil's virtual time would make TLS figures meaningless and the seam has no
        // certificates to give; the other three backends run it.
        anyhow::bail!(
            "{}: [security] tls runs under the inprocess, process and netns backends, not sim",
            s.name
        );
    }
    let check = s.expect.invariants == Some(true);
    let mut invariants = Invariants::new(recovery_window(s));
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
            limit: "hold (docs/design.md §11)".into(),
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
                lab_ip(host.address),
                faults.clone(),
                splitmix(s.seed ^ (i as u64 + 1)),
            )),
            clock: Arc::new(SimClock),
        };
        let observed = observed.clone();
        sim.host(lab_ip(host.address), move || {
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
            net: Arc::new(SimNet::new(
                lab_ip(t.third_party_host.address),
                faults.clone(),
                splitmix(s.seed),
            )),
            clock: Arc::new(SimClock),
        };
        sim.client(lab_ip(t.third_party_host.address), async move {
            let r = async {
                let w = Wiring::compute(&s, &t, BackendKind::Sim)?;
                let mut d = SimDeployment::start(&t, &w, inboxes, observed, faults, env)
                    .await
                    .with_context(|| format!("deploying {} (sim backend)", s.name))?;
                crate::runner::drive(&s, &t, &w, &mut d, quiet).await
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
