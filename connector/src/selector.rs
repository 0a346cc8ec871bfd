//! `SourceSelector`: which Power Operation server the connector takes its data from.
//!
//! A sans-IO state machine: source events and `now` go in, decisions come out; no
//! sockets, no clocks. The connector's engine task drives it, and property tests drive it
//! with arbitrary event sequences.
//!
//! Rules (docs/design.md §6):
//! - a source is *healthy* while connected and its last heartbeat or data frame is
//!   younger than `source_timeout`;
//! - the active source is the healthy source claiming Primary with the highest epoch;
//!   between equal epochs (split brain with equal epochs cannot come from our servers,
//!   but a third-party server might) the current source is kept, else the lower index;
//! - a Primary claim with an epoch below the highest Primary epoch ever heard is a
//!   superseded Primary (the loser of a split brain that has not heard of the winner
//!   yet): it counts as a Standby, so the connector never goes back to a lower epoch and
//!   never forwards a write to a server whose writes the pair will overrule;
//! - with no healthy Primary, a healthy Standby is served if `serve_standby` is set
//!   (the current one kept if it qualifies, else the highest epoch, then lower index);
//! - nothing changes without a cause: the decision is a function of the sources' state,
//!   so it only moves when an event or the passage of time changes that state;
//! - at start-up a Standby is not served until every source has reported (connected or
//!   failed) or `source_timeout` has passed, so a connector whose Standby answers first
//!   does not flap Standby → Primary within its first milliseconds;
//! - with no healthy source, tags go `Stale` once `stale_after` has passed since the last
//!   moment a source was active and healthy.

use po_protocol::Role;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorConfig {
    pub source_timeout: Duration,
    pub stale_after: Duration,
    pub serve_standby: bool,
}

/// What a source task reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEvent {
    /// Session established (`Welcome` received) with this role and epoch.
    Connected { role: Role, epoch: u64 },
    /// Connection lost or refused: unhealthy immediately.
    Lost,
    /// A heartbeat with the server's current claim.
    Heartbeat { role: Role, epoch: u64 },
    /// A data frame arrived: proof of life, as good as a heartbeat.
    Data,
}

/// Whose data the connector serves, and in what capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    pub source: usize,
    pub role: Role,
    pub epoch: u64,
}

/// A change of the active source; the engine resubscribes accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub from: Option<Active>,
    pub to: Option<Active>,
}

#[derive(Debug, Clone, Copy, Default)]
struct SourceState {
    connected: bool,
    role: Option<Role>,
    epoch: u64,
    last_heard: Option<Instant>,
}

impl SourceState {
    fn healthy(&self, now: Instant, timeout: Duration) -> bool {
        self.connected
            && self
                .last_heard
                .is_some_and(|t| now.saturating_duration_since(t) < timeout)
    }
}

#[derive(Debug, Clone)]
pub struct SourceSelector {
    config: SelectorConfig,
    sources: Vec<SourceState>,
    active: Option<Active>,
    /// Last instant at which an active source was healthy (or the start).
    fresh_until: Instant,
    stale: bool,
    switches: u64,
    /// The latest `now` seen; deadlines already passed are not reported by `poll_at`.
    last_now: Instant,
    /// Start-up: which sources have reported at least once, and until when to wait for them.
    reported: Vec<bool>,
    settle_until: Instant,
    settled: bool,
    /// The highest epoch any source has claimed Primary with.
    highest_primary_epoch: u64,
}

impl SourceSelector {
    pub fn new(config: SelectorConfig, sources: usize, now: Instant) -> SourceSelector {
        SourceSelector {
            config,
            sources: vec![SourceState::default(); sources],
            active: None,
            fresh_until: now,
            stale: false,
            switches: 0,
            last_now: now,
            reported: vec![false; sources],
            settle_until: now + config.source_timeout,
            settled: false,
            highest_primary_epoch: 0,
        }
    }

    pub fn config(&self) -> &SelectorConfig {
        &self.config
    }

    pub fn active(&self) -> Option<Active> {
        self.active
    }

    /// Whether every tag should now be reported `Stale`.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Number of switches between two sources (not counting the first activation, nor
    /// losing the only source).
    pub fn switch_count(&self) -> u64 {
        self.switches
    }

    /// Feeds one event; returns the switch it causes, if any.
    pub fn handle(&mut self, now: Instant, source: usize, event: SourceEvent) -> Option<Switch> {
        let s = self.sources.get_mut(source)?;
        if matches!(event, SourceEvent::Connected { .. } | SourceEvent::Lost) {
            self.reported[source] = true;
        }
        if let SourceEvent::Connected {
            role: Role::Primary,
            epoch,
        }
        | SourceEvent::Heartbeat {
            role: Role::Primary,
            epoch,
        } = event
            && (s.connected || matches!(event, SourceEvent::Connected { .. }))
        {
            self.highest_primary_epoch = self.highest_primary_epoch.max(epoch);
        }
        match event {
            SourceEvent::Connected { role, epoch } => {
                s.connected = true;
                s.role = Some(role);
                s.epoch = epoch;
                s.last_heard = Some(now);
            }
            SourceEvent::Lost => {
                s.connected = false;
                s.last_heard = None;
            }
            SourceEvent::Heartbeat { role, epoch } => {
                if s.connected {
                    s.role = Some(role);
                    s.epoch = epoch;
                    s.last_heard = Some(now);
                }
            }
            SourceEvent::Data => {
                if s.connected {
                    s.last_heard = Some(now);
                }
            }
        }
        self.evaluate(now)
    }

    /// Lets time pass: sources fall silent, data goes stale.
    pub fn tick(&mut self, now: Instant) -> Option<Switch> {
        self.evaluate(now)
    }

    /// The next instant at which `tick` could change something.
    pub fn poll_at(&self) -> Option<Instant> {
        let timeouts = self
            .sources
            .iter()
            .filter(|s| s.connected)
            .filter_map(|s| s.last_heard.map(|t| t + self.config.source_timeout));
        let stale = (!self.stale && self.active.is_none())
            .then_some(self.fresh_until + self.config.stale_after);
        let settle = (!self.settled).then_some(self.settle_until);
        timeouts
            .chain(stale)
            .chain(settle)
            .filter(|t| *t > self.last_now)
            .min()
    }

    fn choose(&self, now: Instant) -> Option<Active> {
        let timeout = self.config.source_timeout;
        let healthy = |i: &usize| self.sources[*i].healthy(now, timeout);
        // A superseded Primary (epoch below the highest Primary epoch heard) counts as a
        // Standby.
        let broken = crate::switches::prefer_lowest_epoch();
        let role_of = |s: &SourceState| match s.role {
            Some(Role::Primary) if s.epoch < self.highest_primary_epoch && !broken => {
                Some(Role::Standby)
            }
            r => r,
        };
        let claim = |i: usize, role: Role| {
            let s = &self.sources[i];
            (role_of(s) == Some(role)).then_some(Active {
                source: i,
                role,
                epoch: s.epoch,
            })
        };
        let pick = |role: Role| -> Option<Active> {
            let candidates: Vec<Active> = (0..self.sources.len())
                .filter(healthy)
                .filter_map(|i| claim(i, role))
                .collect();
            let best = if broken {
                candidates.iter().map(|c| c.epoch).min()?
            } else {
                candidates.iter().map(|c| c.epoch).max()?
            };
            let tied: Vec<&Active> = candidates.iter().filter(|c| c.epoch == best).collect();
            if let Some(cur) = self.active
                && let Some(c) = tied.iter().find(|c| c.source == cur.source)
            {
                return Some(**c);
            }
            tied.first().map(|c| **c)
        };
        pick(Role::Primary).or_else(|| {
            let settled =
                self.settled || now >= self.settle_until || self.reported.iter().all(|r| *r);
            if !self.config.serve_standby || !settled {
                return None;
            }
            pick(Role::Standby)
        })
    }

    fn evaluate(&mut self, now: Instant) -> Option<Switch> {
        self.last_now = self.last_now.max(now);
        let next = self.choose(now);
        let previous = self.active;
        if next.is_some() {
            self.fresh_until = now;
            self.stale = false;
        } else if previous.is_some() {
            // The active source just went away: data is fresh up to now.
            self.fresh_until = now;
        } else if !self.stale && now >= self.fresh_until + self.config.stale_after {
            self.stale = true;
        }
        self.active = next;
        if next.is_some() {
            self.settled = true;
        }
        let changed = match (previous, next) {
            (Some(a), Some(b)) => a.source != b.source || a.role != b.role,
            (None, None) => false,
            _ => true,
        };
        // A new epoch from the same source in the same role is not a switch: its data
        // stream continues on the same session.
        if !changed {
            return None;
        }
        if let (Some(a), Some(b)) = (previous, next)
            && a.source != b.source
        {
            self.switches += 1;
        }
        Some(Switch {
            from: previous,
            to: next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SelectorConfig {
        SelectorConfig {
            source_timeout: Duration::from_millis(500),
            stale_after: Duration::from_secs(2),
            serve_standby: true,
        }
    }

    #[test]
    fn follows_the_primary_and_switches_on_loss() {
        let t0 = Instant::now();
        let mut s = SourceSelector::new(cfg(), 2, t0);
        let sw = s.handle(
            t0,
            1,
            SourceEvent::Connected {
                role: Role::Standby,
                epoch: 1,
            },
        );
        assert_eq!(sw, None, "start-up: the Standby waits for the other source");
        let sw = s.handle(
            t0,
            0,
            SourceEvent::Connected {
                role: Role::Primary,
                epoch: 1,
            },
        );
        assert_eq!(
            sw.unwrap().to,
            Some(Active {
                source: 0,
                role: Role::Primary,
                epoch: 1
            })
        );
        assert_eq!(s.switch_count(), 0, "the first activation is not a switch");
        let sw = s.handle(t0, 0, SourceEvent::Lost).unwrap();
        assert_eq!(sw.to.unwrap().source, 1);
        assert_eq!(s.switch_count(), 1);
        let sw = s
            .handle(
                t0,
                1,
                SourceEvent::Heartbeat {
                    role: Role::Primary,
                    epoch: 2,
                },
            )
            .unwrap();
        assert_eq!(
            sw.to,
            Some(Active {
                source: 1,
                role: Role::Primary,
                epoch: 2
            })
        );
    }

    #[test]
    fn silence_is_loss_after_source_timeout_and_staleness_follows() {
        let t0 = Instant::now();
        let mut s = SourceSelector::new(cfg(), 1, t0);
        s.handle(
            t0,
            0,
            SourceEvent::Connected {
                role: Role::Primary,
                epoch: 1,
            },
        );
        assert!(s.tick(t0 + Duration::from_millis(499)).is_none());
        assert_eq!(s.poll_at(), Some(t0 + Duration::from_millis(500)));
        let sw = s.tick(t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(sw.to, None);
        assert!(!s.is_stale());
        assert_eq!(s.poll_at(), Some(t0 + Duration::from_millis(2500)));
        s.tick(t0 + Duration::from_millis(2499));
        assert!(!s.is_stale());
        s.tick(t0 + Duration::from_millis(2500));
        assert!(s.is_stale());
    }

    #[test]
    fn split_brain_follows_the_highest_epoch_and_keeps_the_current_on_a_tie() {
        let t0 = Instant::now();
        let mut s = SourceSelector::new(cfg(), 2, t0);
        s.handle(
            t0,
            0,
            SourceEvent::Connected {
                role: Role::Primary,
                epoch: 3,
            },
        );
        s.handle(
            t0,
            1,
            SourceEvent::Connected {
                role: Role::Standby,
                epoch: 3,
            },
        );
        let sw = s
            .handle(
                t0,
                1,
                SourceEvent::Heartbeat {
                    role: Role::Primary,
                    epoch: 4,
                },
            )
            .unwrap();
        assert_eq!(sw.to.unwrap().source, 1);
        assert!(
            s.handle(
                t0,
                0,
                SourceEvent::Heartbeat {
                    role: Role::Primary,
                    epoch: 3
                }
            )
            .is_none()
        );
        // Equal epochs: no flapping.
        assert!(
            s.handle(
                t0,
                0,
                SourceEvent::Heartbeat {
                    role: Role::Primary,
                    epoch: 4
                }
            )
            .is_none()
        );
        assert_eq!(s.active().unwrap().source, 1);
    }
}
