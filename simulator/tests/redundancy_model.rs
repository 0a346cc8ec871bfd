//! Property tests of the redundancy state machine: two `RedundancyRole`s, a virtual
//! clock, a sync link that can be cut and that carries status and replicated writes, and
//! servers that crash, restart (with or without their recorded known epoch), pause and
//! resume, driven by arbitrary fault sequences.

#![allow(clippy::needless_range_loop)] // two nodes, indexed by their peer too

use po_protocol::Role;
use po_simulator::redundancy::{
    PeerStatus, RedundancyConfig, RedundancyRole, ReplicatedWrite, ServerIndex, Transition,
    TransitionReason, WriteMode,
};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const HB: u64 = 100;
const FT: u64 = 500;
const STEP: u64 = 10;

#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    Cut,
    Heal,
    Crash(usize),
    Restart(usize),
    Pause(usize),
    Resume(usize),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => Just(Fault::None),
        1 => Just(Fault::Cut),
        1 => Just(Fault::Heal),
        1 => (0usize..2).prop_map(Fault::Crash),
        1 => (0usize..2).prop_map(Fault::Restart),
        1 => (0usize..2).prop_map(Fault::Pause),
        1 => (0usize..2).prop_map(Fault::Resume),
    ]
}

struct Node {
    role: Option<RedundancyRole>,
    paused: bool,
    next_send: u64,
    /// Epoch must never decrease while the node runs (reset on restart).
    last_epoch: u64,
    /// Highest epoch this node has held or heard since it (re)started (with a recorded
    /// known epoch: ever).
    seen: u64,
    /// The peer's last claim delivered to this node since its last link-down.
    last_claim: Option<PeerStatus>,
    /// Since when this node has heard its peer with no link-down in between.
    linked_from: Option<u64>,
}

impl Node {
    fn fresh(role: RedundancyRole, now: u64, seen: u64) -> Node {
        Node {
            role: Some(role),
            paused: false,
            next_send: now,
            last_epoch: 0,
            seen,
            last_claim: None,
            linked_from: None,
        }
    }
}

/// The epoch a promotion of server `index` must take: the smallest of its parity above
/// every epoch it has held or heard.
fn promotion_epoch(index: usize, seen: u64) -> u64 {
    (seen + 1..).find(|e| e % 2 != index as u64 % 2).unwrap()
}

struct World {
    t0: Instant,
    now: u64,
    cfg: RedundancyConfig,
    nodes: [Node; 2],
    link: bool,
    transitions: Vec<(u64, usize, Transition)>,
    /// Whether a restart keeps the known epoch the driver recorded (in-process restarts,
    /// or `state_dir`); without, a restart is a process restart that forgets it.
    persist: bool,
    /// What each node's driver recorded from `poll_known_epoch_raised`.
    recorded: [u64; 2],
    /// Every epoch any node has been Primary in.
    held: BTreeSet<u64>,
    /// Replicated writes applied and refused.
    writes: [u64; 2],
}

impl World {
    fn new(failback: bool, persist: bool) -> World {
        let t0 = Instant::now();
        let cfg = RedundancyConfig {
            heartbeat: Duration::from_millis(HB),
            failover_timeout: Duration::from_millis(FT),
            failback,
        };
        let node = |i: u8| Node::fresh(RedundancyRole::new(ServerIndex(i), cfg, t0), 0, 0);
        World {
            t0,
            now: 0,
            cfg,
            nodes: [node(0), node(1)],
            link: true,
            transitions: Vec::new(),
            persist,
            recorded: [0, 0],
            held: BTreeSet::new(),
            writes: [0, 0],
        }
    }

    fn at(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now)
    }

    fn running(&self, i: usize) -> bool {
        self.nodes[i].role.is_some() && !self.nodes[i].paused
    }

    fn status(&self, i: usize) -> Option<PeerStatus> {
        self.nodes[i].role.as_ref().map(|r| r.status())
    }

    fn record(&mut self, i: usize, t: Option<Transition>) {
        if let Some(t) = t {
            assert_ne!(t.from, t.to, "a transition must change role or epoch");
            let n = &self.nodes[i];
            if t.to.role == Role::Primary {
                // Every promotion takes an epoch of its own parity above every epoch the
                // server has seen or held (the smallest such), so two Primaries never
                // share one, and a re-promotion never reuses an old epoch. Only a
                // Primary's peer knowing a higher epoch makes a Primary promote again.
                assert!(
                    t.from.role == Role::Standby || t.reason == TransitionReason::HigherEpochKnown,
                    "{t:?}"
                );
                // With the known epoch kept across restarts, no epoch is ever held twice.
                assert!(
                    self.held.insert(t.to.epoch) || !self.persist,
                    "node {i} reused epoch {}",
                    t.to.epoch
                );
                assert_eq!(
                    t.to.epoch,
                    promotion_epoch(i, n.seen),
                    "node {i} promoted to {} having seen epoch {}",
                    t.to.epoch,
                    n.seen
                );
            }
            if t.reason == TransitionReason::Failback {
                // Failback: only the preferred server, only when enabled, only from a
                // Primary peer heard over a link up for a whole failover timeout.
                assert!(self.cfg.failback && i == 0, "failback by node {i}: {t:?}");
                assert_eq!(
                    n.last_claim.map(|c| c.role),
                    Some(Role::Primary),
                    "failback without a Primary peer"
                );
                let since = n.linked_from.expect("failback while the link is down");
                assert!(
                    self.now >= since + FT,
                    "failback at {}ms, linked only since {since}ms",
                    self.now
                );
            }
            self.nodes[i].seen = self.nodes[i].seen.max(t.to.epoch);
            self.transitions.push((self.now, i, t));
            // Like the real driver: a transition is announced at once.
            self.nodes[i].next_send = self.now;
        }
        self.record_known(i);
    }

    /// Like the real driver after every input: records the known epoch if it rose. The
    /// role reports exactly the rises of what the node held or heard, and its known
    /// epoch never goes down (across restarts, too, when it is recorded).
    fn record_known(&mut self, i: usize) {
        let role = self.nodes[i].role.as_mut().unwrap();
        if let Some(known) = role.poll_known_epoch_raised() {
            assert!(
                known > self.recorded[i],
                "node {i} reported {known}, recorded {}",
                self.recorded[i]
            );
            self.recorded[i] = known;
        }
        assert_eq!(role.poll_known_epoch_raised(), None, "reported twice");
        assert_eq!(
            role.known_epoch(),
            self.recorded[i],
            "node {i}: rise not reported"
        );
        assert_eq!(
            role.known_epoch(),
            self.nodes[i].seen,
            "node {i}: known epoch"
        );
    }

    fn link_down(&mut self) {
        for i in 0..2 {
            self.link_down_at(i);
        }
    }

    /// Node `i`'s sync connection drops (not noticed while it is paused).
    fn link_down_at(&mut self, i: usize) {
        let at = self.at();
        let n = &mut self.nodes[i];
        if let Some(r) = n.role.as_mut()
            && !n.paused
        {
            r.on_link_down(at);
            n.last_claim = None;
            n.linked_from = None;
            self.record_known(i);
        }
    }

    /// Delivers `i`'s status, then the highest epoch it knows, to its peer (one
    /// `Status` frame of the sync link).
    fn deliver(&mut self, i: usize, st: PeerStatus, known: u64) {
        let j = 1 - i;
        let (now, at) = (self.now, self.at());
        let n = &mut self.nodes[j];
        n.seen = n.seen.max(st.epoch);
        n.last_claim = Some(st);
        n.linked_from.get_or_insert(now);
        let t = n.role.as_mut().unwrap().on_peer_status(at, st);
        self.record(j, t);
        let n = &mut self.nodes[j];
        n.seen = n.seen.max(known);
        let t = n.role.as_mut().unwrap().on_peer_known_epoch(at, known);
        self.record(j, t);
    }

    /// Primary `i` replicates a write to its peer, with its epoch: the peer applies it
    /// exactly when no epoch above the sender's was ever held or heard there (since it
    /// started, or ever when the known epoch is kept), so a superseded Primary never has
    /// a write confirmed.
    fn replicate(&mut self, i: usize, epoch: u64) {
        let j = 1 - i;
        let at = self.at();
        let n = &mut self.nodes[j];
        let known = n.seen;
        let got = n.role.as_mut().unwrap().handle_replicated_write(at, epoch);
        if epoch < known {
            assert_eq!(
                got,
                ReplicatedWrite::Refuse { known },
                "epoch {epoch} at node {j}"
            );
            self.writes[1] += 1;
        } else {
            assert_eq!(
                got,
                ReplicatedWrite::Apply,
                "epoch {epoch} at node {j} knowing {known}"
            );
            n.seen = epoch;
            self.writes[0] += 1;
        }
        self.record_known(j);
    }

    fn apply(&mut self, f: Fault) {
        let at = self.at();
        match f {
            Fault::None => {}
            Fault::Cut => {
                self.link = false;
                self.link_down();
            }
            Fault::Heal => self.link = true,
            Fault::Crash(i) => {
                self.nodes[i].role = None;
                self.nodes[i].paused = false;
                // The peer's TCP sees the connection close.
                self.link_down_at(1 - i);
            }
            Fault::Restart(i) => {
                if self.nodes[i].role.is_none() {
                    if !self.persist {
                        self.recorded[i] = 0; // a process restart without `state_dir`
                    }
                    let kept = self.recorded[i];
                    let role = RedundancyRole::new(ServerIndex(i as u8), self.cfg, at)
                        .with_known_epoch(kept);
                    self.nodes[i] = Node::fresh(role, self.now, kept);
                    self.record_known(i);
                }
            }
            Fault::Pause(i) => self.nodes[i].paused = self.nodes[i].role.is_some(),
            Fault::Resume(i) => self.nodes[i].paused = false,
        }
    }

    /// One STEP of virtual time: sends, deliveries (zero latency), polls.
    fn step(&mut self) {
        self.now += STEP;
        let at = self.at();
        for i in 0..2 {
            if !self.running(i) {
                continue;
            }
            // A Primary replicates a client's write every step, before anything else it
            // sends: a resumed, superseded Primary's first frames are writes.
            let st = self.status(i).unwrap();
            if st.role == Role::Primary && self.link && self.running(1 - i) {
                self.replicate(i, st.epoch);
            }
            if self.now >= self.nodes[i].next_send {
                self.nodes[i].next_send = self.now + HB;
                let st = self.status(i).unwrap();
                let known = self.nodes[i].role.as_ref().unwrap().known_epoch();
                if self.link && self.running(1 - i) {
                    self.deliver(i, st, known);
                }
            }
            let due = self.nodes[i].role.as_ref().unwrap().poll_at();
            if at >= due {
                let t = self.nodes[i].role.as_mut().unwrap().poll(at);
                self.record(i, t);
                // The driver sleeps until poll_at: it must lie ahead (else the driver
                // spins) and within a heartbeat (else a stall could go unnoticed).
                let next = self.nodes[i].role.as_ref().unwrap().poll_at();
                assert!(
                    next > at && next <= at + self.cfg.heartbeat,
                    "node {i} polled at {}ms asks to be polled again at {:?}ms",
                    self.now,
                    next.duration_since(self.t0).as_millis()
                );
            }
        }
        for i in 0..2 {
            if let Some(s) = self.status(i) {
                assert!(
                    s.epoch >= self.nodes[i].last_epoch,
                    "epoch went down on node {i}"
                );
                self.nodes[i].last_epoch = s.epoch;
            }
        }
    }

    fn primaries(&self) -> Vec<PeerStatus> {
        (0..2)
            .filter_map(|i| self.status(i))
            .filter(|s| s.role == Role::Primary)
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn redundancy_invariants_hold_under_any_faults(
        failback in any::<bool>(),
        persist in any::<bool>(),
        script in prop::collection::vec((fault(), 0u64..1500), 1..25),
    ) {
        let mut w = World::new(failback, persist);
        // When the current stretch of "both running, link up" began.
        let mut healthy_since: Option<u64> = Some(0);
        // When the current stretch of "i running, peer crashed" began.
        let mut alone_since: [Option<u64>; 2] = [None, None];
        let mut last_fault = 0u64;
        for (f, wait) in script {
            w.apply(f);
            if !matches!(f, Fault::None) {
                last_fault = w.now;
            }
            let end = w.now + wait;
            while w.now < end {
                w.step();
                let both = w.running(0) && w.running(1) && w.link;
                healthy_since = match (both, healthy_since) {
                    (true, None) => Some(w.now),
                    (true, s) => s,
                    (false, _) => None,
                };
                for i in 0..2 {
                    let alone = w.running(i) && w.nodes[1 - i].role.is_none();
                    alone_since[i] = match (alone, alone_since[i]) {
                        (true, None) => Some(w.now),
                        (true, s) => s,
                        (false, _) => None,
                    };
                }

                // 1. Never two Primaries with the same epoch.
                let p = w.primaries();
                if p.len() == 2 {
                    prop_assert_ne!(p[0].epoch, p[1].epoch, "two Primaries share epoch at {}ms", w.now);
                }
                // 2. Once healed with both running, exactly one Primary within one
                //    failover timeout (+ a heartbeat for delivery). Failback may hand the
                //    role over later, so the check is made without it.
                if let Some(since) = healthy_since
                    && !failback
                    && w.now >= since + FT + HB
                {
                    prop_assert_eq!(p.len(), 1, "{} Primaries {}ms after the pair became healthy", p.len(), w.now - since);
                }
                // 2b. With failback, a healthy pair settles with the preferred server as
                //     Primary: one failover timeout of uninterrupted link, plus heartbeats
                //     for it to be heard, the role taken and the peer to demote.
                if let Some(since) = healthy_since
                    && failback
                    && w.now >= since + FT + 3 * HB
                {
                    prop_assert_eq!(w.status(0).unwrap().role, Role::Primary, "no failback {}ms after the pair became healthy", w.now - since);
                    prop_assert_eq!(w.status(1).unwrap().role, Role::Standby);
                }
                // 3. A lone survivor is Primary within one failover timeout (+ a heartbeat
                //    of poll granularity).
                for (i, since) in alone_since.iter().enumerate() {
                    if let Some(since) = since && w.now >= since + FT + HB {
                        prop_assert_eq!(w.status(i).unwrap().role, Role::Primary, "lone node {} not Primary", i);
                    }
                }
                // 4. No transition without a cause: a long healthy stretch is quiet.
                if !failback && healthy_since.is_some_and(|s| w.now >= s + 2 * FT + 2 * HB)
                    && w.now >= last_fault + 2 * FT + 2 * HB
                {
                    let recent = w.transitions.iter().filter(|(t, _, _)| *t == w.now).count();
                    prop_assert_eq!(recent, 0, "transition at {}ms with nothing going on", w.now);
                }
            }
        }
    }

    #[test]
    fn failback_decides_who_ends_up_primary(failback in any::<bool>(), down_for in 600u64..3000) {
        let mut w = World::new(failback, false);
        for _ in 0..20 { w.step(); }
        prop_assert_eq!(w.status(0).unwrap().role, Role::Primary);
        w.apply(Fault::Crash(0));
        for _ in 0..down_for / STEP { w.step(); }
        prop_assert_eq!(w.status(1).unwrap().role, Role::Primary);
        w.apply(Fault::Restart(0));
        for _ in 0..(3 * FT) / STEP { w.step(); }
        let (a, b) = (w.status(0).unwrap(), w.status(1).unwrap());
        if failback {
            prop_assert_eq!(a.role, Role::Primary, "the preferred server takes the role back");
            prop_assert_eq!(b.role, Role::Standby);
        } else {
            prop_assert_eq!(a.role, Role::Standby, "without failback a returning server stays Standby");
            prop_assert_eq!(b.role, Role::Primary);
        }
        prop_assert_eq!(a.epoch, b.epoch);
    }
}

/// The case fencing exists for: a Primary paused while its peer took over resumes and
/// replicates writes at its old epoch before it hears of the new one. Each is refused,
/// then it demotes; with its known epoch kept, a restarted server never reuses an epoch.
#[test]
fn a_resumed_superseded_primary_has_its_writes_refused() {
    let mut w = World::new(false, true);
    for _ in 0..20 {
        w.step();
    }
    assert_eq!(
        w.status(0),
        Some(PeerStatus {
            role: Role::Primary,
            epoch: 1
        })
    );
    let applied = w.writes[0];
    assert!(applied > 0, "a healthy pair replicates");
    w.apply(Fault::Pause(0));
    for _ in 0..(2 * FT) / STEP {
        w.step();
    }
    assert_eq!(
        w.status(1),
        Some(PeerStatus {
            role: Role::Primary,
            epoch: 2
        })
    );
    w.apply(Fault::Resume(0));
    w.step();
    assert_eq!(
        w.writes[1], 1,
        "the resumed Primary's write at epoch 1 is refused"
    );
    for _ in 0..(2 * HB) / STEP {
        w.step();
    }
    assert_eq!(
        w.status(0),
        Some(PeerStatus {
            role: Role::Standby,
            epoch: 2
        })
    );
    // Both restart knowing epoch 2: the next promotion is above it, never 1 or 2 again.
    w.apply(Fault::Crash(0));
    w.apply(Fault::Crash(1));
    w.apply(Fault::Restart(0));
    w.apply(Fault::Restart(1));
    for _ in 0..20 {
        w.step();
    }
    assert_eq!(
        w.status(0),
        Some(PeerStatus {
            role: Role::Primary,
            epoch: 3
        })
    );
}

/// What one server is told, in the single-machine model below.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// A claim from the peer arrives after `ms`.
    Hear(u64, PeerStatus),
    /// The sync link drops after `ms`.
    LinkDown(u64),
    /// The driver polls after `ms` (possibly a long stall).
    Poll(u64),
    /// The driver polls when asked to, at `poll_at`.
    PollWhenDue,
    /// The peer says, after `ms`, that it knows this epoch (with its status).
    PeerKnows(u64, u64),
    /// A write the peer replicated at this epoch arrives after `ms`.
    Replicated(u64, u64),
}

fn claim() -> impl Strategy<Value = PeerStatus> {
    (
        prop_oneof![Just(Role::Primary), Just(Role::Standby)],
        0u64..8,
    )
        .prop_map(|(role, epoch)| PeerStatus { role, epoch })
}

fn input(ft: u64) -> impl Strategy<Value = Input> {
    // Mostly shorter gaps than the failover timeout, sometimes a stall.
    let gap = prop_oneof![4 => 0..ft, 1 => 0..3 * ft];
    prop_oneof![
        4 => (gap.clone(), claim()).prop_map(|(ms, c)| Input::Hear(ms, c)),
        1 => gap.clone().prop_map(Input::LinkDown),
        2 => gap.clone().prop_map(Input::Poll),
        3 => Just(Input::PollWhenDue),
        1 => (gap.clone(), 0u64..10).prop_map(|(ms, e)| Input::PeerKnows(ms, e)),
        2 => (gap, 0u64..10).prop_map(|(ms, e)| Input::Replicated(ms, e)),
    ]
}

/// The rules of `RedundancyRole` (see its module docs), restated on what one server was
/// told, independently of its implementation.
#[derive(Debug)]
struct Reference {
    index: usize,
    cfg: RedundancyConfig,
    /// Milliseconds since the start.
    last_input: u64,
    last_heard: u64,
    ever_heard: bool,
    /// The peer's last claim, while the link is up.
    peer: Option<PeerStatus>,
    linked_since: Option<u64>,
    /// Highest epoch held or heard.
    seen: u64,
}

impl Reference {
    fn ms(&self, d: Duration) -> u64 {
        d.as_millis() as u64
    }

    /// Own stall: a gap of more than a failover timeout between inputs is our fault, and
    /// grants the peer a new failover timeout.
    fn input(&mut self, now: u64) {
        if now - self.last_input > self.ms(self.cfg.failover_timeout) {
            self.last_heard = self.last_heard.max(now);
            self.linked_since = None;
        }
        self.last_input = now;
    }

    fn failback_due(&self, now: u64, role: Role) -> bool {
        self.cfg.failback
            && self.index == 0
            && role == Role::Standby
            && self
                .linked_since
                .is_some_and(|t| now >= t + self.ms(self.cfg.failover_timeout))
    }

    fn promotion(&self, from: PeerStatus, reason: TransitionReason) -> Option<Transition> {
        Some(Transition {
            from,
            to: PeerStatus {
                role: Role::Primary,
                epoch: promotion_epoch(self.index, self.seen),
            },
            reason,
        })
    }

    fn follow(from: PeerStatus, epoch: u64) -> Option<Transition> {
        Some(Transition {
            from,
            to: PeerStatus {
                role: Role::Standby,
                epoch,
            },
            reason: TransitionReason::HigherEpochSeen,
        })
    }

    /// What hearing `claim` at `now` must do to a server in `me`.
    fn hear(&mut self, now: u64, me: PeerStatus, claim: PeerStatus) -> Option<Transition> {
        self.input(now);
        self.ever_heard = true;
        self.last_heard = now;
        if self.peer.is_none() || self.linked_since.is_none() {
            self.linked_since = Some(now);
        }
        self.peer = Some(claim);
        self.seen = self.seen.max(claim.epoch);
        match (me.role, claim.role) {
            // Highest epoch wins; between equal epochs (which only a misconfigured pair
            // can produce) the non-preferred server yields.
            (Role::Primary, Role::Primary) => (claim.epoch > me.epoch
                || (claim.epoch == me.epoch && self.index == 1))
                .then(|| Reference::follow(me, claim.epoch))
                .flatten(),
            (Role::Primary, Role::Standby) => None,
            (Role::Standby, Role::Primary) if claim.epoch > me.epoch => {
                Reference::follow(me, claim.epoch)
            }
            (Role::Standby, Role::Primary) => {
                if self.failback_due(now, me.role) {
                    self.promotion(me, TransitionReason::Failback)
                } else {
                    None
                }
            }
            (Role::Standby, Role::Standby) if self.index == 0 => {
                self.promotion(me, TransitionReason::PreferredAtStartup)
            }
            (Role::Standby, Role::Standby) => None,
        }
    }

    fn link_down(&mut self, now: u64) {
        self.input(now);
        self.peer = None;
        self.linked_since = None;
    }

    /// The peer knows `known`: remembered; a Primary below it promotes above it.
    fn peer_knows(&mut self, now: u64, me: PeerStatus, known: u64) -> Option<Transition> {
        self.input(now);
        self.seen = self.seen.max(known);
        if me.role == Role::Primary && known > me.epoch {
            self.promotion(me, TransitionReason::HigherEpochKnown)
        } else {
            None
        }
    }

    /// A replicated write from a sender at `epoch`: refused when a higher epoch was held
    /// or heard, else applied, and its epoch is heard.
    fn replicated(&mut self, now: u64, epoch: u64) -> ReplicatedWrite {
        self.input(now);
        if epoch < self.seen {
            ReplicatedWrite::Refuse { known: self.seen }
        } else {
            self.seen = epoch;
            ReplicatedWrite::Apply
        }
    }

    fn poll(&mut self, now: u64, me: PeerStatus) -> Option<Transition> {
        self.input(now);
        if me.role == Role::Primary {
            None
        } else if now - self.last_heard >= self.ms(self.cfg.failover_timeout) {
            self.promotion(me, TransitionReason::PeerSilent)
        } else if self.failback_due(now, me.role)
            && self.peer.is_some_and(|p| p.role == Role::Primary)
        {
            self.promotion(me, TransitionReason::Failback)
        } else {
            None
        }
    }

    /// The earliest instant at which `poll` could decide something, capped at one
    /// heartbeat after the last input.
    fn poll_at(&self, me: PeerStatus) -> u64 {
        let mut at = self.last_input + self.ms(self.cfg.heartbeat);
        if me.role == Role::Standby {
            at = at.min(self.last_heard + self.ms(self.cfg.failover_timeout));
            if self.failback_due(u64::MAX, me.role) {
                at = at.min(self.linked_since.unwrap() + self.ms(self.cfg.failover_timeout));
            }
        }
        at.max(self.last_input)
    }

    fn write_mode(&self, now: u64) -> WriteMode {
        let (ft, hb) = (
            self.ms(self.cfg.failover_timeout),
            self.ms(self.cfg.heartbeat),
        );
        let silent = now - self.last_heard;
        if !self.ever_heard {
            WriteMode::Solo
        } else if silent < ft {
            WriteMode::Replicate
        } else if silent < ft + 2 * hb {
            WriteMode::Hold
        } else {
            WriteMode::Solo
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// One server, told arbitrary claims (equal epochs, stale epochs, a Standby peer),
    /// link drops and polls at arbitrary times, including its own stalls: every
    /// transition, `poll_at` and `write_mode` are exactly those the rules prescribe.
    #[test]
    fn one_server_follows_the_rules_exactly(
        index in 0usize..2,
        failback in any::<bool>(),
        hb in 20u64..200,
        ft_beats in 2u64..6,
        extra in 0u64..100,
        inputs in prop::collection::vec(input(1000), 1..60),
    ) {
        let cfg = RedundancyConfig {
            heartbeat: Duration::from_millis(hb),
            failover_timeout: Duration::from_millis(hb * ft_beats + extra),
            failback,
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut role = RedundancyRole::new(ServerIndex(index as u8), cfg, t0);
        let mut model = Reference {
            index, cfg, last_input: 0, last_heard: 0, ever_heard: false, peer: None,
            linked_since: None, seen: 0,
        };
        let mut now = 0u64;
        let mut reported = 0u64;
        prop_assert_eq!(role.status(), PeerStatus { role: Role::Standby, epoch: 0 });
        for i in inputs {
            let me = role.status();
            let (got, want) = match i {
                Input::Hear(ms, c) => {
                    now += ms;
                    (role.on_peer_status(at(now), c), model.hear(now, me, c))
                }
                Input::LinkDown(ms) => {
                    now += ms;
                    role.on_link_down(at(now));
                    model.link_down(now);
                    (None, None)
                }
                Input::Poll(ms) => {
                    now += ms;
                    (role.poll(at(now)), model.poll(now, me))
                }
                Input::PollWhenDue => {
                    now = now.max(role.poll_at().duration_since(t0).as_millis() as u64);
                    (role.poll(at(now)), model.poll(now, me))
                }
                Input::PeerKnows(ms, known) => {
                    now += ms;
                    (role.on_peer_known_epoch(at(now), known), model.peer_knows(now, me, known))
                }
                Input::Replicated(ms, epoch) => {
                    now += ms;
                    let got = role.handle_replicated_write(at(now), epoch);
                    prop_assert_eq!(got, model.replicated(now, epoch), "write at epoch {} at {}ms", epoch, now);
                    (None, None)
                }
            };
            prop_assert_eq!(got, want, "after {:?} at {}ms in {:?}", i, now, me);
            if let Some(t) = want {
                model.seen = model.seen.max(t.to.epoch);
            }
            prop_assert_eq!(role.status(), want.map_or(me, |t| t.to));
            // The known epoch is what was held or heard, reported once per rise; it
            // never goes down.
            prop_assert_eq!(role.known_epoch(), model.seen);
            let raised = role.poll_known_epoch_raised();
            prop_assert_eq!(raised, (model.seen > reported).then_some(model.seen));
            prop_assert!(model.seen >= reported);
            reported = model.seen;
            prop_assert_eq!(role.poll_at(), at(model.poll_at(role.status())), "poll_at after {:?} at {}ms", i, now);
            if matches!(i, Input::Poll(_) | Input::PollWhenDue) {
                prop_assert!(role.poll_at() > at(now), "a poll must not ask to be polled again at once");
            }
            for later in [0, hb, model.ms(cfg.failover_timeout), model.ms(cfg.failover_timeout) + 2 * hb] {
                prop_assert_eq!(role.write_mode(at(now + later)), model.write_mode(now + later));
            }
        }
    }
}
