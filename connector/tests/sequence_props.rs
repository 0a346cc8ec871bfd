//! Property tests of the session's sequence tracking: a server stream with frames lost at
//! random, and subscriptions at random.

use proptest::prelude::*;
use smart_connector::sequence::{SeqVerdict, SequenceTracker};

#[derive(Debug, Clone, Copy)]
enum Step {
    /// The server sends a snapshot / an update / a heartbeat; `lost` drops it on the way.
    Snapshot {
        lost: bool,
    },
    Update {
        lost: bool,
    },
    Heartbeat,
    /// The client (re)subscribes.
    Subscribe,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => any::<bool>().prop_map(|lost| Step::Snapshot { lost }),
        6 => prop::bool::weighted(0.15).prop_map(|lost| Step::Update { lost }),
        2 => Just(Step::Heartbeat),
        1 => Just(Step::Subscribe),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn accepted_data_has_no_holes_and_every_visible_hole_asks_for_one_resubscription(
        steps in prop::collection::vec(step(), 1..120)
    ) {
        let mut t = SequenceTracker::default();
        let mut server_seq = 0u64;
        // The last accepted data frame since the last accepted snapshot.
        let mut accepted: Option<u64> = None;
        // A data frame after `accepted` was lost (the stream has a hole).
        let mut hole = false;
        let mut asked = 0;
        for s in steps {
            // What the tracker last accepted is what the model last accepted.
            prop_assert_eq!(t.last(), accepted);
            match s {
                Step::Subscribe => {
                    t.handle_subscribe();
                    accepted = None;
                    hole = false;
                    asked = 0;
                }
                Step::Snapshot { lost } | Step::Update { lost } => {
                    server_seq += 1;
                    let is_snapshot = matches!(s, Step::Snapshot { .. });
                    if lost {
                        hole |= accepted.is_some();
                        continue;
                    }
                    if is_snapshot {
                        prop_assert_eq!(t.handle_snapshot(server_seq), SeqVerdict::Accept);
                        accepted = Some(server_seq);
                        hole = false;
                        asked = 0;
                        continue;
                    }
                    match t.handle_updates(server_seq) {
                        SeqVerdict::Accept => {
                            prop_assert_eq!(accepted.map(|a| a + 1), Some(server_seq), "a hole was accepted");
                            prop_assert!(!hole);
                            accepted = Some(server_seq);
                        }
                        SeqVerdict::Resubscribe => {
                            asked += 1;
                            prop_assert!(asked == 1, "asked twice before a snapshot");
                        }
                        SeqVerdict::Drop => {}
                    }
                }
                Step::Heartbeat => {
                    if t.handle_heartbeat(server_seq) == SeqVerdict::Resubscribe {
                        asked += 1;
                        prop_assert!(asked == 1, "asked twice before a snapshot");
                        prop_assert!(hole, "resubscribed without a hole");
                    }
                    // A heartbeat makes a hole visible: it must have been asked for.
                    if hole {
                        prop_assert_eq!(asked, 1, "a visible hole was not reported");
                    }
                }
            }
        }
    }
}

/// What the server sends in the second property: a whole snapshot, a snapshot in parts
/// (part 0, 1, …, the last one marked) with `lost` marking parts dropped on the way, or an
/// update batch.
#[derive(Debug, Clone)]
enum Sent {
    Whole { lost: bool },
    Parts { lost: Vec<bool> },
    Update { lost: bool },
    Subscribe,
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        1 => any::<bool>().prop_map(|lost| Sent::Whole { lost }),
        2 => prop::collection::vec(prop::bool::weighted(0.1), 2..6).prop_map(|lost| Sent::Parts { lost }),
        6 => prop::bool::weighted(0.1).prop_map(|lost| Sent::Update { lost }),
        1 => Just(Sent::Subscribe),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Snapshots in parts: every accepted frame that does not start a stream (a whole
    /// snapshot or part 0) directly follows the previous accepted one, and a snapshot
    /// whose parts all arrive is taken.
    #[test]
    fn snapshot_parts_never_hide_a_hole_and_a_complete_one_is_taken(
        steps in prop::collection::vec(sent(), 1..80)
    ) {
        let mut t = SequenceTracker::default();
        let mut seq = 0u64;
        let mut prev: Option<u64> = None;
        for s in steps {
            match s {
                Sent::Subscribe => {
                    t.handle_subscribe();
                    prev = None;
                }
                Sent::Whole { lost } | Sent::Update { lost } => {
                    seq += 1;
                    if lost {
                        continue;
                    }
                    if matches!(s, Sent::Whole { .. }) {
                        if t.handle_snapshot(seq) == SeqVerdict::Accept {
                            prev = Some(seq);
                        }
                    } else if t.handle_updates(seq) == SeqVerdict::Accept {
                        prop_assert_eq!(prev.map(|p| p + 1), Some(seq), "an update after a hole");
                        prev = Some(seq);
                    }
                }
                Sent::Parts { lost } => {
                    let n = lost.len();
                    let mut all_in = true;
                    for (k, gone) in lost.iter().enumerate() {
                        seq += 1;
                        if *gone {
                            all_in = false;
                            continue;
                        }
                        let verdict = t.handle_snapshot_part(seq, k as u32, k + 1 == n);
                        if verdict == SeqVerdict::Accept {
                            if k > 0 {
                                prop_assert_eq!(prev.map(|p| p + 1), Some(seq), "part {} accepted after a hole", k);
                            }
                            prev = Some(seq);
                        }
                    }
                    if all_in {
                        prop_assert_eq!(t.last(), Some(seq), "a complete snapshot was not taken");
                    }
                }
            }
        }
    }
}
