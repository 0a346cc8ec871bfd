//! Model-based property test of `EngineCore`: arbitrary sequences of source events
//! (connect, lose, heartbeats, catalogues right or wrong, data in flight from earlier
//! subscriptions, time, writes) checked step by step against a simple reference model.
//!
//! The key property is the generation rule: the served image never holds data from a
//! source other than the one selected when it was applied, nor data answering an earlier
//! subscription than the latest (no mixing across a switch, even A→B→A), and updates only
//! on top of that subscription's complete snapshot.

use po_protocol::{Role, WriteOutcome};
use proptest::prelude::*;
use smart_connector::engine_core::{Control, EngineCore, Output, Served, Verdict};
use smart_connector::selector::SelectorConfig;
use smart_connector::write_queue::{Deadline, Resolution};
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

const SOURCES: usize = 2;
const DIGEST: u64 = 0xC0FFEE;
const TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct TestWrite {
    id: u32,
    deadline: Instant,
}

impl Deadline for TestWrite {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// What a server puts on its link, in order; delivered later (or never, if lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    Snapshot { generation: u64, complete: bool },
    Updates { generation: u64 },
}

#[derive(Debug, Clone)]
enum Step {
    Advance(u64),
    Connect {
        source: usize,
        role: Role,
        epoch: u64,
        right_catalog: bool,
    },
    Lose(usize),
    Heartbeat(usize, Role, u64),
    /// The server sends an update batch for its current subscription.
    Produce(usize),
    /// The oldest frame on the source's link reaches the engine.
    Deliver(usize),
    Write,
    /// The source answers its oldest write in flight.
    Answer(usize, bool),
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Primary), Just(Role::Standby)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0u64..1200).prop_map(Step::Advance),
        2 => (0..SOURCES, role(), 0u64..4, prop::bool::weighted(0.9)).prop_map(
            |(source, role, epoch, right_catalog)| Step::Connect {
                source,
                role,
                epoch,
                right_catalog
            }
        ),
        1 => (0..SOURCES).prop_map(Step::Lose),
        2 => (0..SOURCES, role(), 0u64..4).prop_map(|(s, r, e)| Step::Heartbeat(s, r, e)),
        2 => (0..SOURCES).prop_map(Step::Produce),
        5 => (0..SOURCES).prop_map(Step::Deliver),
        1 => Just(Step::Write),
        1 => (0..SOURCES, any::<bool>()).prop_map(|(s, ok)| Step::Answer(s, ok)),
    ]
}

/// One simulated server, as the model sees it.
#[derive(Debug, Default)]
struct Server {
    connected: bool,
    right_catalog: bool,
    /// The subscription it currently answers (None: unsubscribed).
    subscribed: Option<u64>,
    /// Frames on their way to the engine.
    link: VecDeque<Data>,
    /// Writes sent to it: (request id, write).
    writes: VecDeque<(u64, u32)>,
}

/// The reference model: whose data may be served, from what the engine told the world.
#[derive(Debug, Default)]
struct Model {
    servers: Vec<Server>,
    /// The source selected (from the switches announced).
    selected: Option<usize>,
    selected_role: Option<Role>,
    /// The latest subscription sent, and to whom.
    latest: Option<(usize, u64)>,
    /// Whether that subscription's complete snapshot has been applied.
    synced: bool,
    /// The image: for every batch applied since the latest subscription, whose it was.
    image: Vec<(usize, u64)>,
    /// Every generation handed out so far.
    generations: Vec<u64>,
    /// Switches from one source to another (not first activations, nor losing one).
    switches: u64,
    /// Writes waiting for a Primary.
    queued: BTreeSet<u32>,
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let mut now = start;
    let config = SelectorConfig {
        source_timeout: TIMEOUT,
        stale_after: Duration::from_secs(2),
        serve_standby: true,
    };
    let mut core: EngineCore<TestWrite> =
        EngineCore::new(config, DIGEST, vec!["po-a".into(), "po-b".into()], now);
    let mut m = Model {
        servers: (0..SOURCES).map(|_| Server::default()).collect(),
        ..Model::default()
    };
    let mut next_write = 0u32;
    for step in steps {
        // The selection when data is judged: the one it must belong to.
        let selected_before = m.selected;
        match step {
            Step::Advance(ms) => {
                now += Duration::from_millis(ms);
                core.handle_timeout(now);
            }
            Step::Connect {
                source,
                role,
                epoch,
                right_catalog,
            } => {
                let s = &mut m.servers[source];
                if s.connected {
                    continue;
                }
                *s = Server {
                    connected: true,
                    right_catalog,
                    ..Server::default()
                };
                let digest = if right_catalog { DIGEST } else { DIGEST + 1 };
                let used = core.handle_connected(now, source, role, epoch, digest);
                prop_assert_eq!(used, right_catalog, "catalogue gate");
            }
            Step::Lose(source) => {
                let s = &mut m.servers[source];
                if !s.connected {
                    continue;
                }
                // What was on the link is gone with the connection.
                s.connected = false;
                s.subscribed = None;
                s.link.clear();
                // Writes in flight there wait for the next Primary.
                m.queued.extend(s.writes.drain(..).map(|(_, w)| w));
                core.handle_lost(now, source, "cut");
            }
            Step::Heartbeat(source, role, epoch) => {
                if !m.servers[source].connected {
                    continue;
                }
                core.handle_heartbeat(now, source, role, epoch);
            }
            Step::Produce(source) => {
                let s = &mut m.servers[source];
                if let (true, Some(generation)) = (s.connected, s.subscribed) {
                    s.link.push_back(Data::Updates { generation });
                }
            }
            Step::Deliver(source) => {
                let Some(data) = m.servers[source].link.pop_front() else {
                    continue;
                };
                let (verdict, generation, snapshot, complete) = match data {
                    Data::Snapshot {
                        generation,
                        complete,
                    } => (
                        core.handle_snapshot(now, source, generation, complete, 3),
                        generation,
                        true,
                        complete,
                    ),
                    Data::Updates { generation } => (
                        core.handle_updates(now, source, generation),
                        generation,
                        false,
                        false,
                    ),
                };
                // The reference: data of the selected source, answering its latest
                // subscription; updates only once that subscription's snapshot is whole.
                let belongs = selected_before == Some(source)
                    && m.latest == Some((source, generation))
                    && (snapshot || m.synced);
                let expected = if belongs {
                    Verdict::Apply
                } else {
                    Verdict::Drop
                };
                prop_assert_eq!(verdict, expected, "verdict on {:?} from {}", data, source);
                if verdict == Verdict::Apply {
                    m.image.push((source, generation));
                    if complete {
                        m.synced = true;
                    }
                }
                // The key property, on the image itself: since the latest subscription
                // only that subscription's data has been applied, and it came from the
                // source selected when it was applied.
                for &(s, g) in &m.image {
                    prop_assert_eq!(Some((s, g)), m.latest, "mixed image {:?}", m.image);
                }
                if verdict == Verdict::Apply {
                    prop_assert_eq!(selected_before, Some(source));
                }
            }
            Step::Write => {
                next_write += 1;
                m.queued.insert(next_write);
                core.handle_write(TestWrite {
                    id: next_write,
                    deadline: now + Duration::from_secs(1),
                });
            }
            Step::Answer(source, ok) => {
                let Some((id, write)) = m.servers[source].writes.pop_front() else {
                    continue;
                };
                let outcome = if ok {
                    WriteOutcome::Applied
                } else {
                    WriteOutcome::NotPrimary
                };
                match core.handle_write_result(now, source, id, outcome) {
                    Some((w, resolution)) => {
                        prop_assert_eq!(resolution, Resolution::Applied);
                        prop_assert!(ok);
                        prop_assert_eq!(w.id, write);
                    }
                    // NotPrimary: retried, at whichever source is Primary later.
                    None => {
                        prop_assert!(!ok);
                        m.queued.insert(write);
                    }
                }
            }
        }
        // Carry out the decisions, as the engine does, checking each.
        while let Some(out) = core.poll_output() {
            match out {
                Output::Switched { switch, reason } => {
                    prop_assert!(!reason.is_empty());
                    prop_assert_eq!(switch.from.map(|a| a.source), m.selected);
                    if let (Some(from), Some(to)) = (switch.from, switch.to)
                        && from.source != to.source
                    {
                        m.switches += 1;
                    }
                    if let Some(to) = switch.to {
                        let s = &m.servers[to.source];
                        prop_assert!(s.connected && s.right_catalog, "catalogue gate: {:?}", to);
                    }
                    m.selected = switch.to.map(|a| a.source);
                    m.selected_role = switch.to.map(|a| a.role);
                }
                Output::Control(source, Control::Subscribe { generation }) => {
                    prop_assert_eq!(Some(source), m.selected, "subscribes the selected source");
                    prop_assert!(
                        m.generations.iter().all(|&g| g < generation),
                        "a fresh generation"
                    );
                    m.generations.push(generation);
                    m.latest = Some((source, generation));
                    m.synced = false;
                    m.image.clear();
                    let s = &mut m.servers[source];
                    if s.connected {
                        s.subscribed = Some(generation);
                        s.link.push_back(Data::Snapshot {
                            generation,
                            complete: false,
                        });
                        s.link.push_back(Data::Snapshot {
                            generation,
                            complete: true,
                        });
                    }
                }
                Output::Control(source, Control::Unsubscribe) => {
                    prop_assert_ne!(Some(source), m.selected, "unsubscribes the previous one");
                    prop_assert!(m.servers[source].connected);
                    m.servers[source].subscribed = None;
                }
                Output::CatalogRefused(source) => {
                    prop_assert!(!m.servers[source].right_catalog);
                }
                Output::SnapshotApplied { source, tags } => {
                    prop_assert_eq!(Some(source), m.selected);
                    prop_assert_eq!(tags, 6, "both parts counted");
                }
            }
        }
        prop_assert_eq!(core.active().map(|a| a.source), m.selected);
        prop_assert_eq!(core.is_synced(), m.synced && m.latest.is_some());
        // Status: a source is shown as served only once its snapshot is whole.
        let status = core.status();
        match status.served {
            Served::Active { source, role, .. } => {
                prop_assert!(m.synced);
                prop_assert_eq!(Some(usize::from(source) - 1), m.selected);
                let want = if m.selected_role == Some(Role::Primary) {
                    1
                } else {
                    2
                };
                prop_assert_eq!(role, want);
            }
            Served::Previous => prop_assert!(m.selected.is_some() && !m.synced),
            Served::Nothing { stale } => {
                prop_assert!(m.selected.is_none());
                prop_assert_eq!(stale, core.is_stale());
            }
        }
        let reachable = m
            .servers
            .iter()
            .filter(|s| s.connected && s.right_catalog)
            .count();
        prop_assert_eq!(status.sources_reachable, reachable);
        prop_assert_eq!(status.sources_configured, SOURCES);
        // Writes go only to the selected Primary, and only while it is connected.
        while let Some((source, id, w)) = core.poll_transmit(now) {
            prop_assert_eq!(Some(source), m.selected);
            prop_assert_eq!(m.selected_role, Some(Role::Primary));
            prop_assert!(m.servers[source].connected);
            prop_assert!(w.deadline > now, "write {} sent past its deadline", w.id);
            prop_assert!(m.queued.remove(&w.id), "write {} was queued", w.id);
            m.servers[source].writes.push_back((id, w.id));
            core.handle_sent(source, id, w);
        }
        for w in core.poll_expired(now) {
            prop_assert!(w.deadline <= now);
            m.queued.remove(&w.id);
            for s in &mut m.servers {
                s.writes.retain(|&(_, id)| id != w.id);
            }
        }
        prop_assert_eq!(core.switch_count(), m.switches);
        prop_assert_eq!(core.queued_writes(), m.queued.len());
        if let Some(at) = core.poll_timeout() {
            prop_assert!(at > start, "a deadline in the past");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_image_never_mixes_sources_or_subscriptions(
        steps in prop::collection::vec(step(), 1..120)
    ) {
        run(steps)?;
    }
}

/// The case the generation rule exists for: A, then B, then A again while A's data of
/// the first subscription is still on its way. That old data must not be applied.
#[test]
fn data_of_an_earlier_subscription_is_dropped_after_a_quick_a_b_a() {
    let t0 = Instant::now();
    let config = SelectorConfig {
        source_timeout: TIMEOUT,
        stale_after: Duration::from_secs(2),
        serve_standby: false,
    };
    let mut core: EngineCore<TestWrite> =
        EngineCore::new(config, DIGEST, vec!["po-a".into(), "po-b".into()], t0);
    let mut controls = Vec::new();
    let mut drain = |core: &mut EngineCore<TestWrite>| {
        while let Some(o) = core.poll_output() {
            if let Output::Control(s, c) = o {
                controls.push((s, c));
            }
        }
    };
    assert!(core.handle_connected(t0, 0, Role::Primary, 1, DIGEST));
    drain(&mut core);
    assert!(core.handle_connected(t0, 1, Role::Standby, 1, DIGEST));
    drain(&mut core);
    // A (0) is Primary at epoch 1: subscribed with generation 1.
    assert_eq!(core.active().map(|a| a.source), Some(0));
    // B claims Primary at epoch 2: A is unsubscribed, B subscribed (generation 2).
    core.handle_heartbeat(t0, 1, Role::Primary, 2);
    drain(&mut core);
    assert_eq!(core.active().map(|a| a.source), Some(1));
    // A claims Primary at epoch 3: back to A, generation 3.
    core.handle_heartbeat(t0, 0, Role::Primary, 3);
    drain(&mut core);
    assert_eq!(
        controls,
        vec![
            (0, Control::Subscribe { generation: 1 }),
            (0, Control::Unsubscribe),
            (1, Control::Subscribe { generation: 2 }),
            (1, Control::Unsubscribe),
            (0, Control::Subscribe { generation: 3 }),
        ]
    );
    // A's first snapshot, still in flight, arrives now: dropped.
    assert_eq!(core.handle_snapshot(t0, 0, 1, true, 5), Verdict::Drop);
    assert_eq!(core.handle_updates(t0, 0, 1), Verdict::Drop);
    assert!(!core.is_synced());
    assert_eq!(core.status().served, Served::Previous);
    // B's data, still in flight: dropped too.
    assert_eq!(core.handle_snapshot(t0, 1, 2, true, 5), Verdict::Drop);
    // Updates of the right generation before its snapshot: dropped.
    assert_eq!(core.handle_updates(t0, 0, 3), Verdict::Drop);
    // The snapshot answering generation 3, in two parts, then updates: applied.
    assert_eq!(core.handle_snapshot(t0, 0, 3, false, 5), Verdict::Apply);
    assert!(!core.is_synced());
    assert_eq!(core.handle_snapshot(t0, 0, 3, true, 4), Verdict::Apply);
    assert!(core.is_synced());
    assert!(
        core.poll_output()
            .is_some_and(|o| o == Output::SnapshotApplied { source: 0, tags: 9 })
    );
    assert_eq!(core.handle_updates(t0, 0, 3), Verdict::Apply);
    assert!(matches!(
        core.status().served,
        Served::Active {
            source: 1,
            role: 1,
            epoch: 3,
            ..
        }
    ));
}

/// Each switch says what caused it (the log line and the status page show it).
#[test]
fn every_switch_says_why() {
    let t0 = Instant::now();
    let config = SelectorConfig {
        source_timeout: TIMEOUT,
        stale_after: Duration::from_secs(2),
        serve_standby: true,
    };
    let mut core: EngineCore<TestWrite> =
        EngineCore::new(config, DIGEST, vec!["po-a".into(), "po-b".into()], t0);
    let reasons = |core: &mut EngineCore<TestWrite>| -> Vec<String> {
        std::iter::from_fn(|| core.poll_output())
            .filter_map(|o| match o {
                Output::Switched { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    };
    // A Standby alone is served once the start-up wait is over.
    assert!(core.handle_connected(t0, 1, Role::Standby, 1, DIGEST));
    assert!(reasons(&mut core).is_empty());
    core.handle_heartbeat(t0 + TIMEOUT / 2, 1, Role::Standby, 1);
    assert!(reasons(&mut core).is_empty());
    let t = t0 + TIMEOUT;
    core.handle_timeout(t);
    assert_eq!(
        reasons(&mut core),
        ["start-up: waited 500ms for every server to report"]
    );
    core.handle_connected(t, 0, Role::Primary, 2, DIGEST);
    assert_eq!(reasons(&mut core), ["po-a connected as Primary (epoch 2)"]);
    core.handle_heartbeat(t, 1, Role::Primary, 3);
    assert_eq!(reasons(&mut core), ["po-b announced Primary (epoch 3)"]);
    core.handle_lost(t, 1, "reset by peer");
    assert_eq!(
        reasons(&mut core),
        ["connection to po-b lost: reset by peer"]
    );
    let t = t + TIMEOUT;
    core.handle_timeout(t);
    assert_eq!(reasons(&mut core), ["nothing heard from po-a for 500ms"]);
    assert_eq!(core.active(), None);
    core.handle_updates(t, 0, 0);
    assert_eq!(reasons(&mut core), ["data from po-a"]);
    // A wrong catalogue is refused, and that source never reaches the selector.
    core.handle_lost(t, 0, "cut");
    reasons(&mut core);
    assert!(!core.handle_connected(t, 0, Role::Primary, 9, DIGEST + 1));
    assert_eq!(core.poll_output(), Some(Output::CatalogRefused(0)));
    core.handle_heartbeat(t, 0, Role::Primary, 9);
    assert_eq!(core.poll_output(), None);
    assert_eq!(core.active(), None);
}

/// Writes go to the active Primary only, and the core asks to be woken for the start-up
/// wait and for write deadlines.
#[test]
fn writes_wait_for_the_primary_and_deadlines_wake_the_engine() {
    let t0 = Instant::now();
    let config = SelectorConfig {
        source_timeout: TIMEOUT,
        stale_after: Duration::from_secs(2),
        serve_standby: true,
    };
    let mut core: EngineCore<TestWrite> =
        EngineCore::new(config, DIGEST, vec!["po-a".into(), "po-b".into()], t0);
    // The start-up wait.
    assert_eq!(core.poll_timeout(), Some(t0 + TIMEOUT));
    let deadline = t0 + Duration::from_millis(100);
    core.handle_write(TestWrite { id: 1, deadline });
    assert_eq!(core.queued_writes(), 1);
    assert_eq!(core.poll_timeout(), Some(deadline));
    // No Primary yet: nothing is sent.
    assert!(core.poll_transmit(t0).is_none());
    core.handle_connected(t0, 1, Role::Standby, 1, DIGEST);
    assert!(core.poll_transmit(t0).is_none(), "never to a Standby");
    core.handle_connected(t0, 0, Role::Primary, 2, DIGEST);
    let (source, id, w) = core.poll_transmit(t0).expect("sent to the Primary");
    assert_eq!((source, w.id), (0, 1));
    assert_eq!(core.queued_writes(), 0);
    core.handle_sent(source, id, w);
    // The Primary is lost before it answers: the write is queued again, and goes to
    // the next Primary.
    core.handle_lost(t0, 0, "cut");
    assert_eq!(core.queued_writes(), 1);
    core.handle_heartbeat(t0, 1, Role::Primary, 3);
    let (source, id, w) = core.poll_transmit(t0).expect("sent to the new Primary");
    assert_eq!((source, w.id), (1, 1));
    core.handle_not_sent(w);
    assert_eq!(core.queued_writes(), 1, "not sent: still queued");
    let (source, id2, w) = core.poll_transmit(t0).expect("sent again");
    assert!(id2 > id);
    core.handle_sent(source, id2, w);
    let (w, resolution) = core
        .handle_write_result(t0, 1, id2, WriteOutcome::Applied)
        .expect("answered");
    assert_eq!((w.id, resolution), (1, Resolution::Applied));
    // A write nobody takes expires at its deadline, and wakes the engine for it.
    core.handle_lost(t0, 1, "cut");
    core.handle_write(TestWrite { id: 2, deadline });
    assert_eq!(core.poll_timeout(), Some(deadline));
    assert!(core.poll_expired(t0).is_empty());
    let expired = core.poll_expired(deadline);
    assert_eq!(expired.iter().map(|w| w.id).collect::<Vec<_>>(), [2]);
    assert_eq!(core.queued_writes(), 0);
}
