//! What a third party is told about redundancy, computed once (docs/design.md "Service
//! level"): the OPC UA `ServiceLevel` byte of Part 4 §6.6.2 (0 maintenance, 1 no data,
//! 2-199 degraded, 200-255 healthy), also in Modbus status register 14, `/api/status`
//! and `sc_service_level`. A redundancy-aware client stays on, or moves to, the connector
//! that announces the highest level, so the levels order the connectors of a site by how
//! good their data is: every connector computes it with this one function.
//!
//! Sans-IO: the connector's state in, a level out.

/// What the served data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// No catalogue or no snapshot yet.
    NotYet,
    /// No healthy source: the last values, marked stale.
    Stale,
    /// Live data of the Primary (the highest epoch the selector knows).
    Primary,
    /// Live data of a Standby (`serve_standby`).
    Standby,
}

/// The inputs of [`service_level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelInputs {
    /// Shutting down on SIGTERM (maintenance).
    pub draining: bool,
    pub serving: Serving,
    /// Sources in the configuration (1 in architectures 1 and 2, 2 in architecture 3).
    pub sources_configured: usize,
    /// Sources connected now whose catalogue matches the map.
    pub sources_reachable: usize,
}

/// Healthy with every source reachable.
pub const FULL: u8 = 255;
/// Healthy, but one more fault leaves the connector without data.
pub const ONE_SOURCE_LOST: u8 = 200;
/// Degraded: a Standby's data.
pub const STANDBY_DATA: u8 = 100;
/// No data (starting, or every source lost).
pub const NO_DATA: u8 = 1;
/// Maintenance: draining on SIGTERM.
pub const MAINTENANCE: u8 = 0;

/// The level, by the table of docs/register-map.md "Service level".
pub fn service_level(i: &LevelInputs) -> u8 {
    if i.draining {
        return MAINTENANCE;
    }
    match i.serving {
        Serving::NotYet | Serving::Stale => NO_DATA,
        // The broken core of the checker tests (`test-switches`; compiled away otherwise).
        Serving::Standby if crate::switches::standby_level_healthy() => FULL,
        Serving::Standby => STANDBY_DATA,
        Serving::Primary if i.sources_reachable >= i.sources_configured => FULL,
        Serving::Primary => ONE_SOURCE_LOST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serving() -> impl Strategy<Value = Serving> {
        prop_oneof![
            Just(Serving::NotYet),
            Just(Serving::Stale),
            Just(Serving::Primary),
            Just(Serving::Standby)
        ]
    }

    fn inputs() -> impl Strategy<Value = LevelInputs> {
        (any::<bool>(), serving(), 1usize..=2, 0usize..=2).prop_map(
            |(draining, serving, configured, reachable)| LevelInputs {
                draining,
                serving,
                sources_configured: configured,
                sources_reachable: reachable.min(configured),
            },
        )
    }

    #[test]
    fn the_table() {
        let at = |draining, serving, configured, reachable| {
            service_level(&LevelInputs {
                draining,
                serving,
                sources_configured: configured,
                sources_reachable: reachable,
            })
        };
        // Architecture 1 and 2 (one source each).
        assert_eq!(at(false, Serving::Primary, 1, 1), 255);
        assert_eq!(at(false, Serving::Standby, 1, 1), 100);
        assert_eq!(at(false, Serving::Stale, 1, 0), 1);
        assert_eq!(at(false, Serving::NotYet, 1, 0), 1);
        // Architecture 3 (two sources each).
        assert_eq!(at(false, Serving::Primary, 2, 2), 255);
        assert_eq!(at(false, Serving::Primary, 2, 1), 200);
        assert_eq!(at(false, Serving::Stale, 2, 0), 1);
        // Draining beats everything.
        assert_eq!(at(true, Serving::Primary, 2, 2), 0);
    }

    proptest! {
        /// The ranges of Part 4 §6.6.2: healthy (≥ 200) only with live Primary data,
        /// no data is exactly 1, maintenance exactly 0.
        #[test]
        fn levels_fall_in_the_standard_ranges(i in inputs()) {
            let l = service_level(&i);
            prop_assert_eq!(l >= 200, !i.draining && i.serving == Serving::Primary);
            prop_assert_eq!(l == 0, i.draining);
            prop_assert_eq!(
                l == 1,
                !i.draining && matches!(i.serving, Serving::NotYet | Serving::Stale)
            );
        }

        /// Losing a source never raises the level; serving Primary data is never worse
        /// than serving a Standby's, which is never worse than no data.
        #[test]
        fn more_trouble_never_ranks_higher(i in inputs()) {
            let l = service_level(&i);
            if i.sources_reachable > 0 {
                let fewer = LevelInputs { sources_reachable: i.sources_reachable - 1, ..i };
                prop_assert!(service_level(&fewer) <= l);
            }
            let rank = |s| service_level(&LevelInputs { serving: s, ..i });
            prop_assert!(rank(Serving::Primary) >= rank(Serving::Standby));
            prop_assert!(rank(Serving::Standby) >= rank(Serving::Stale));
            prop_assert_eq!(rank(Serving::Stale), rank(Serving::NotYet));
        }
    }
}
