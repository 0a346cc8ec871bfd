//! The redundant OPC UA client's choice of server (OPC UA Part 4 §6.6.2.4.5, the
//! non-transparent redundancy client rule), without IO: the driver hands in each server's
//! latest ServiceLevel (or that it is unreachable) and asks which server to be on.
//!
//! - only a server with a level of 2 or more serves data (0 maintenance, 1 no data);
//! - the follower moves to the server with the highest level;
//! - on a tie it keeps its current server (moving would cost a gap for nothing);
//! - with no server serving data it stays where it is (its monitored items then resume
//!   as soon as that server serves again, and a better server is still taken at once).

/// The lowest ServiceLevel of a server that serves data (Part 5 §6.3.34: 0 maintenance,
/// 1 no data, 2..=199 degraded, 200..=255 healthy).
pub const SERVING: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// Per server: its last ServiceLevel, `None` while unreachable (or not read yet).
    levels: Vec<Option<u8>>,
    current: Option<usize>,
}

impl Follower {
    /// A follower of `servers` servers, on none yet.
    pub fn new(servers: usize) -> Follower {
        Follower {
            levels: vec![None; servers],
            current: None,
        }
    }

    /// Server `server` announced `level`, or (`None`) could not be reached.
    pub fn handle_level(&mut self, server: usize, level: Option<u8>) {
        if let Some(l) = self.levels.get_mut(server) {
            *l = level;
        }
    }

    /// The server to be on now; moves the follower there. `None` only before any server
    /// ever served data.
    pub fn poll_choice(&mut self) -> Option<usize> {
        let best = self
            .levels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.filter(|l| *l >= SERVING).map(|l| (l, i)))
            // Highest level; among equals the lowest index (max_by_key takes the last).
            .max_by_key(|(l, i)| (*l, std::cmp::Reverse(*i)));
        let Some((best_level, best)) = best else {
            return self.current;
        };
        let current_level = self.current.and_then(|c| self.levels[c]);
        if current_level != Some(best_level) {
            self.current = Some(best);
        }
        self.current
    }

    pub fn current(&self) -> Option<usize> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn follows_the_highest_level_and_keeps_its_server_on_a_tie() {
        let mut f = Follower::new(2);
        assert_eq!(f.poll_choice(), None, "nothing known yet");
        f.handle_level(0, Some(255));
        f.handle_level(1, Some(100));
        assert_eq!(f.poll_choice(), Some(0));
        f.handle_level(0, None);
        assert_eq!(
            f.poll_choice(),
            Some(1),
            "the current server is unreachable"
        );
        f.handle_level(0, Some(100));
        assert_eq!(f.poll_choice(), Some(1), "a tie keeps the current server");
        f.handle_level(1, Some(1));
        assert_eq!(f.poll_choice(), Some(0), "no data is no server to stay on");
        f.handle_level(0, Some(0));
        assert_eq!(f.poll_choice(), Some(0), "nobody serves: stay");
    }

    fn level() -> impl Strategy<Value = Option<u8>> {
        prop_oneof![Just(None), any::<u8>().prop_map(Some), Just(Some(255))]
    }

    proptest! {
        /// After every event: the chosen server has the highest serving level of all
        /// (if any serves), a tie never moves the follower, and with no server serving
        /// it stays where it was.
        #[test]
        fn the_choice_is_the_best_and_moves_only_for_better(
            servers in 1usize..4,
            events in prop::collection::vec((0usize..4, level()), 1..60),
        ) {
            let mut f = Follower::new(servers);
            let mut levels = vec![None; servers];
            for (server, l) in events {
                let server = server % servers;
                let before = f.current();
                f.handle_level(server, l);
                levels[server] = l;
                let chosen = f.poll_choice();
                let best = levels.iter().flatten().filter(|l| **l >= SERVING).max().copied();
                match best {
                    None => prop_assert_eq!(chosen, before, "nobody serves: stay"),
                    Some(best) => {
                        let c = chosen.expect("a server serves");
                        prop_assert_eq!(levels[c], Some(best), "not on the best server");
                        if let Some(b) = before && levels[b] == Some(best) {
                            prop_assert_eq!(c, b, "moved on a tie");
                        }
                    }
                }
                // Asking again without news changes nothing.
                prop_assert_eq!(f.poll_choice(), chosen);
            }
        }
    }
}
