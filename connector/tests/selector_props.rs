//! Property tests of the `SourceSelector` over arbitrary event sequences.

use po_protocol::Role;
use proptest::prelude::*;
use smart_connector::selector::{Active, SelectorConfig, SourceEvent, SourceSelector};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Step {
    Advance(u64),
    Event(usize, SourceEvent),
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Primary), Just(Role::Standby)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..1500).prop_map(Step::Advance),
        (0usize..2, role(), 0u64..6)
            .prop_map(|(s, role, epoch)| Step::Event(s, SourceEvent::Connected { role, epoch })),
        (0usize..2).prop_map(|s| Step::Event(s, SourceEvent::Lost)),
        (0usize..2, role(), 0u64..6)
            .prop_map(|(s, role, epoch)| Step::Event(s, SourceEvent::Heartbeat { role, epoch })),
        (0usize..2).prop_map(|s| Step::Event(s, SourceEvent::Data)),
    ]
}

/// The rules' view of one source, kept independently of the selector.
#[derive(Debug, Clone, Copy, Default)]
struct Model {
    connected: bool,
    role: Option<Role>,
    epoch: u64,
    heard: Option<u64>,
}

const TIMEOUT: u64 = 500;
const STALE: u64 = 2000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_selector_obeys_its_rules(
        serve_standby in any::<bool>(),
        // Staleness may come before or after a source times out.
        (timeout, stale) in prop_oneof![Just((TIMEOUT, STALE)), (100u64..1000, 50u64..3000)],
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let t0 = Instant::now();
        let cfg = SelectorConfig {
            source_timeout: Duration::from_millis(timeout),
            stale_after: Duration::from_millis(stale),
            serve_standby,
        };
        let mut sel = SourceSelector::new(cfg, 2, t0);
        let mut model = [Model::default(); 2];
        let mut now = 0u64;
        let mut fresh_until = 0u64;
        // Start-up settling: Standby data only once both sources reported, source_timeout
        // passed, or something was already active.
        let mut reported = [false; 2];
        let mut settled = false;
        // The highest epoch any source claimed Primary with, and the highest Primary
        // epoch served: a Primary below the former is superseded (counts as a Standby),
        // and the latter never goes down.
        let mut highest_primary = 0u64;
        let mut served_primary = 0u64;
        for step in steps {
            let before = sel.active();
            let switches_before = sel.switch_count();
            let switch = match step {
                Step::Advance(ms) => {
                    now += ms;
                    sel.tick(t0 + Duration::from_millis(now))
                }
                Step::Event(i, ev) => {
                    if matches!(ev, SourceEvent::Connected { .. } | SourceEvent::Lost) {
                        reported[i] = true;
                    }
                    let m = &mut model[i];
                    if let SourceEvent::Connected { role: Role::Primary, epoch }
                    | SourceEvent::Heartbeat { role: Role::Primary, epoch } = ev
                        && (m.connected || matches!(ev, SourceEvent::Connected { .. }))
                    {
                        highest_primary = highest_primary.max(epoch);
                    }
                    match ev {
                        SourceEvent::Connected { role, epoch } => {
                            *m = Model { connected: true, role: Some(role), epoch, heard: Some(now) }
                        }
                        SourceEvent::Lost => {
                            m.connected = false;
                            m.heard = None;
                        }
                        SourceEvent::Heartbeat { role, epoch } if m.connected => {
                            m.role = Some(role);
                            m.epoch = epoch;
                            m.heard = Some(now);
                        }
                        SourceEvent::Data if m.connected => m.heard = Some(now),
                        _ => {}
                    }
                    sel.handle(t0 + Duration::from_millis(now), i, ev)
                }
            };
            let healthy = |m: &Model| m.connected && m.heard.is_some_and(|h| now - h < timeout);
            let effective = |m: &Model| match m.role {
                Some(Role::Primary) if m.epoch < highest_primary => Some(Role::Standby),
                r => r,
            };
            let best = |role: Role| {
                (0..2)
                    .filter(|i| healthy(&model[*i]) && effective(&model[*i]) == Some(role))
                    .map(|i| model[i].epoch)
                    .max()
            };
            let active = sel.active();
            let may_serve_standby = settled || now >= timeout || reported.iter().all(|r| *r);

            // At most one active source (by construction), and it is healthy.
            if let Some(a) = active {
                prop_assert!(healthy(&model[a.source]), "active source {} is not healthy", a.source);
                prop_assert_eq!(Some(a.role), effective(&model[a.source]));
                prop_assert_eq!(a.epoch, model[a.source].epoch);
                if a.role == Role::Primary {
                    prop_assert!(a.epoch >= served_primary, "served Primary epoch {} after {}", a.epoch, served_primary);
                    served_primary = a.epoch;
                }
            }
            // A healthy Primary with the highest epoch is chosen at once.
            match best(Role::Primary) {
                Some(epoch) => {
                    let a = active.expect("a healthy Primary exists but nothing is active");
                    prop_assert_eq!(a.role, Role::Primary);
                    prop_assert_eq!(a.epoch, epoch, "not the highest epoch");
                }
                None => match (serve_standby, best(Role::Standby)) {
                    (true, Some(_)) if may_serve_standby => prop_assert_eq!(active.map(|a| a.role), Some(Role::Standby)),
                    _ => prop_assert_eq!(active, None),
                },
            }
            // No switch without a cause: reported exactly when the active source or its
            // role changed.
            let changed = match (before, active) {
                (Some(a), Some(b)) => a.source != b.source || a.role != b.role,
                (None, None) => false,
                _ => true,
            };
            prop_assert_eq!(switch.is_some(), changed);
            if let Some(sw) = switch {
                prop_assert_eq!(sw.from, before);
                prop_assert_eq!(sw.to, active);
            }
            let counted = matches!((before, active), (Some(a), Some(b)) if a.source != b.source);
            prop_assert_eq!(sel.switch_count(), switches_before + u64::from(counted));
            settled |= active.is_some();
            // Stale exactly when nothing has been active for stale_after.
            if active.is_some() || before.is_some() {
                fresh_until = now;
            }
            prop_assert_eq!(
                sel.is_stale(),
                active.is_none() && now >= fresh_until + stale,
                "stale verdict at {}ms (fresh until {}ms)", now, fresh_until
            );
            // The engine sleeps until poll_at: the next instant at which time alone can
            // change something: a connected source timing out, data going stale while
            // nothing is active, the start-up settling ending.
            let timeouts = model.iter().filter(|m| m.connected).filter_map(|m| m.heard).map(|h| h + timeout);
            let staleness = (active.is_none() && !sel.is_stale()).then_some(fresh_until + stale);
            let settling = (!settled).then_some(timeout);
            let next = timeouts.chain(staleness).chain(settling).filter(|t| *t > now).min();
            prop_assert_eq!(sel.poll_at(), next.map(|t| t0 + Duration::from_millis(t)), "poll_at at {}ms", now);
        }
    }

    #[test]
    fn equal_epoch_primaries_do_not_flap(epoch in 1u64..10, beats in 1usize..50) {
        let t0 = Instant::now();
        let cfg = SelectorConfig {
            source_timeout: Duration::from_millis(TIMEOUT),
            stale_after: Duration::from_millis(STALE),
            serve_standby: false,
        };
        let mut sel = SourceSelector::new(cfg, 2, t0);
        sel.handle(t0, 1, SourceEvent::Connected { role: Role::Primary, epoch });
        sel.handle(t0, 0, SourceEvent::Connected { role: Role::Primary, epoch });
        let first: Option<Active> = sel.active();
        prop_assert_eq!(first.map(|a| a.source), Some(1));
        for k in 0..beats {
            let now = t0 + Duration::from_millis(100 * k as u64);
            let switch = sel.handle(now, k % 2, SourceEvent::Heartbeat { role: Role::Primary, epoch });
            prop_assert!(switch.is_none());
        }
        prop_assert_eq!(sel.switch_count(), 0);
    }
}

#[test]
fn a_standby_answering_first_at_start_up_is_not_served_before_the_primary() {
    let t0 = Instant::now();
    let cfg = SelectorConfig {
        source_timeout: Duration::from_millis(TIMEOUT),
        stale_after: Duration::from_millis(STALE),
        serve_standby: true,
    };
    let mut sel = SourceSelector::new(cfg, 2, t0);
    assert_eq!(
        sel.handle(
            t0,
            1,
            SourceEvent::Connected {
                role: Role::Standby,
                epoch: 1
            }
        ),
        None
    );
    assert_eq!(
        sel.poll_at(),
        Some(t0 + Duration::from_millis(TIMEOUT)),
        "wakes to end the settling"
    );
    let sw = sel
        .handle(
            t0,
            0,
            SourceEvent::Connected {
                role: Role::Primary,
                epoch: 1,
            },
        )
        .unwrap();
    assert_eq!(sw.to.map(|a| a.source), Some(0));
    assert_eq!(sel.switch_count(), 0);
    // Had the Primary never answered, the Standby is served once source_timeout passes.
    let mut sel = SourceSelector::new(cfg, 2, t0);
    sel.handle(
        t0,
        1,
        SourceEvent::Connected {
            role: Role::Standby,
            epoch: 1,
        },
    );
    sel.handle(
        t0 + Duration::from_millis(100),
        1,
        SourceEvent::Heartbeat {
            role: Role::Standby,
            epoch: 1,
        },
    );
    let sw = sel.tick(t0 + Duration::from_millis(TIMEOUT)).unwrap();
    assert_eq!(sw.to.map(|a| (a.source, a.role)), Some((1, Role::Standby)));
}
