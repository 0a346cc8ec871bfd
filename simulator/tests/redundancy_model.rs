//! Property tests of the redundancy state machine: two `RedundancyRole`s, a virtual
//! clock, a sync link that can be cut, and servers that crash, restart, pause and resume,
//! driven by arbitrary fault sequences.

#![allow(clippy::needless_range_loop)] // two nodes, indexed by their peer too

use po_protocol::Role;
use po_simulator::redundancy::{
    PeerStatus, RedundancyConfig, RedundancyRole, ServerIndex, Transition,
};
use proptest::prelude::*;
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
}

struct World {
    t0: Instant,
    now: u64,
    cfg: RedundancyConfig,
    nodes: [Node; 2],
    link: bool,
    transitions: Vec<(u64, usize, Transition)>,
}

impl World {
    fn new(failback: bool) -> World {
        let t0 = Instant::now();
        let cfg = RedundancyConfig {
            heartbeat: Duration::from_millis(HB),
            failover_timeout: Duration::from_millis(FT),
            failback,
        };
        let node = |i: u8| Node {
            role: Some(RedundancyRole::new(ServerIndex(i), cfg, t0)),
            paused: false,
            next_send: 0,
            last_epoch: 0,
        };
        World {
            t0,
            now: 0,
            cfg,
            nodes: [node(0), node(1)],
            link: true,
            transitions: Vec::new(),
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
            self.transitions.push((self.now, i, t));
            // Like the real driver: a transition is announced at once.
            self.nodes[i].next_send = self.now;
        }
    }

    fn link_down(&mut self) {
        let at = self.at();
        for n in &mut self.nodes {
            if let Some(r) = n.role.as_mut()
                && !n.paused
            {
                r.on_link_down(at);
            }
        }
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
                if let Some(r) = self.nodes[1 - i].role.as_mut()
                    && !self.nodes[1 - i].paused
                {
                    r.on_link_down(at);
                }
            }
            Fault::Restart(i) => {
                if self.nodes[i].role.is_none() {
                    self.nodes[i].role =
                        Some(RedundancyRole::new(ServerIndex(i as u8), self.cfg, at));
                    self.nodes[i].next_send = self.now;
                    self.nodes[i].last_epoch = 0;
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
            if self.now >= self.nodes[i].next_send {
                self.nodes[i].next_send = self.now + HB;
                let st = self.status(i).unwrap();
                let j = 1 - i;
                if self.link && self.running(j) {
                    let t = self.nodes[j].role.as_mut().unwrap().on_peer_status(at, st);
                    self.record(j, t);
                }
            }
            let due = self.nodes[i].role.as_ref().unwrap().poll_at();
            if at >= due {
                let t = self.nodes[i].role.as_mut().unwrap().poll(at);
                self.record(i, t);
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
        script in prop::collection::vec((fault(), 0u64..1500), 1..25),
    ) {
        let mut w = World::new(failback);
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
        let mut w = World::new(failback);
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
