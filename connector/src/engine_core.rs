//! `EngineCore`: what the engine decides, without channels, tasks or clocks.
//!
//! Sources' events and `now` go in (`handle_*`), decisions come out (`poll_*`, and the
//! verdict a data event returns); `engine.rs` only carries them out. It owns:
//! - the **catalogue gate**: a server whose catalogue differs from the one the register
//!   map was built from is never used (its events do not reach the selector);
//! - the **generation rule**, the invariant everything else serves: data of a source is
//!   applied only if that source is the active one, the data answers the latest
//!   `Subscribe` sent to it (its generation), and — for updates — that subscription's
//!   snapshot has fully landed (synced). So the image never mixes two servers' data, nor
//!   two subscriptions of one server (a quick A→B→A leaves A's old data in flight);
//! - subscribe/unsubscribe on a switch, with a new generation per subscription;
//! - what the status registers say is served ([`EngineCore::status`]);
//! - which source takes writes (the active Primary, while connected), through the
//!   [`WriteQueue`].
//!
//! Property-tested against a reference model in `connector/tests/engine_core_model.rs`.

use crate::image::ServeState;
use crate::selector::{Active, SelectorConfig, SourceEvent, SourceSelector, Switch};
use crate::write_queue::{Deadline, Resolution, WriteQueue};
use po_protocol::{Role, WriteOutcome};
use std::collections::VecDeque;
use std::time::Instant;

/// What the engine must tell a source (a subscription change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Subscribe (again); the data answering it carries `generation`.
    Subscribe {
        generation: u64,
    },
    Unsubscribe,
}

/// Whether a data event's values go into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    Drop,
}

/// A decision for the driver, in the order it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this to source `.0`.
    Control(usize, Control),
    /// The active source changed, and why (in words, for the log and the status page).
    Switched { switch: Switch, reason: String },
    /// This source's catalogue differs from the register map's: it is not used.
    CatalogRefused(usize),
    /// The active source's snapshot has fully landed: `tags` values in all its parts.
    SnapshotApplied { source: usize, tags: usize },
}

/// What the status registers should say is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A newly chosen source's snapshot has not landed yet: the image still holds what
    /// it held (the previous source's data), and says so; leave the status as it is.
    Previous,
    /// Serving this source's data (1-based source, role 1 Primary / 2 Standby).
    Active {
        state: ServeState,
        source: u8,
        role: u8,
        epoch: u64,
    },
    /// No source is active: starting up, or stale.
    Nothing { stale: bool },
}

/// The status to publish: what is served and how many sources could serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub served: Served,
    /// Sources connected with the right catalogue.
    pub sources_reachable: usize,
    pub sources_configured: usize,
}

#[derive(Debug, Clone, Default)]
struct SourceState {
    name: String,
    connected: bool,
    catalog_ok: bool,
    /// The generation of the latest `Subscribe` sent to it.
    generation: u64,
}

/// What made the selector switch, for the reason given.
#[derive(Debug, Clone, Copy)]
enum Trigger<'a> {
    /// Time passed: a source fell silent, or the start-up wait ended.
    Time,
    Connected(usize, Role, u64),
    Lost(usize, &'a str),
    Heartbeat(usize, Role, u64),
    Data(usize),
}

/// The engine's decisions; `W` is a write (anything with a deadline).
#[derive(Debug)]
pub struct EngineCore<W> {
    selector: SourceSelector,
    /// The digest of the catalogue the register map was built from.
    catalog_digest: u64,
    sources: Vec<SourceState>,
    /// Whether the active source's complete snapshot has landed since it was activated.
    synced: bool,
    /// Tags received so far in the active source's snapshot (for its log line).
    snapshot_tags: usize,
    /// The last subscription generation handed out.
    generations: u64,
    writes: WriteQueue<W>,
    outputs: VecDeque<Output>,
}

impl<W: Deadline> EngineCore<W> {
    /// `names` are the sources' names, in index order (for the reasons given).
    pub fn new(
        config: SelectorConfig,
        catalog_digest: u64,
        names: Vec<String>,
        now: Instant,
    ) -> EngineCore<W> {
        let n = names.len();
        EngineCore {
            selector: SourceSelector::new(config, n, now),
            catalog_digest,
            sources: names
                .into_iter()
                .map(|name| SourceState {
                    name,
                    ..SourceState::default()
                })
                .collect(),
            synced: false,
            snapshot_tags: 0,
            generations: 0,
            writes: WriteQueue::new(n),
            outputs: VecDeque::new(),
        }
    }

    /// The source whose data is served, if any.
    pub fn active(&self) -> Option<Active> {
        self.selector.active()
    }

    /// Whether every tag should be reported `Stale`.
    pub fn is_stale(&self) -> bool {
        self.selector.is_stale()
    }

    /// Switches between two sources so far.
    pub fn switch_count(&self) -> u64 {
        self.selector.switch_count()
    }

    /// Whether the active source's snapshot has landed (its updates are applied).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Writes waiting for a Primary.
    pub fn queued_writes(&self) -> usize {
        self.writes.queued_len()
    }

    /// A session was established; `catalog_digest` is that of the server's catalogue.
    /// Returns whether the catalogue matches (the server is used).
    pub fn handle_connected(
        &mut self,
        now: Instant,
        i: usize,
        role: Role,
        epoch: u64,
        catalog_digest: u64,
    ) -> bool {
        let ok = catalog_digest == self.catalog_digest;
        let s = &mut self.sources[i];
        s.connected = true;
        s.catalog_ok = ok;
        if !ok {
            self.outputs.push_back(Output::CatalogRefused(i));
            return false;
        }
        self.feed(
            now,
            i,
            SourceEvent::Connected { role, epoch },
            Trigger::Connected(i, role, epoch),
        );
        true
    }

    /// The session ended (`reason` in words).
    pub fn handle_lost(&mut self, now: Instant, i: usize, reason: &str) {
        self.sources[i].connected = false;
        self.writes.handle_source_lost(i);
        self.feed(now, i, SourceEvent::Lost, Trigger::Lost(i, reason));
    }

    pub fn handle_heartbeat(&mut self, now: Instant, i: usize, role: Role, epoch: u64) {
        self.feed(
            now,
            i,
            SourceEvent::Heartbeat { role, epoch },
            Trigger::Heartbeat(i, role, epoch),
        );
    }

    /// A snapshot (or one part of it: `complete` on the last) of `tags` values answering
    /// subscription `generation`. Returns whether to apply it.
    pub fn handle_snapshot(
        &mut self,
        now: Instant,
        i: usize,
        generation: u64,
        complete: bool,
        tags: usize,
    ) -> Verdict {
        // Judged before the selector hears of it: the data belongs to what was served
        // when it arrived.
        let verdict = if self.answers_latest_subscription(i, generation) {
            self.snapshot_tags += tags;
            if complete {
                self.synced = true;
                self.outputs.push_back(Output::SnapshotApplied {
                    source: i,
                    tags: self.snapshot_tags,
                });
                self.snapshot_tags = 0;
            }
            Verdict::Apply
        } else {
            Verdict::Drop
        };
        self.feed(now, i, SourceEvent::Data, Trigger::Data(i));
        verdict
    }

    /// Updates answering subscription `generation`. Returns whether to apply them.
    pub fn handle_updates(&mut self, now: Instant, i: usize, generation: u64) -> Verdict {
        let verdict = if self.synced && self.answers_latest_subscription(i, generation) {
            Verdict::Apply
        } else {
            Verdict::Drop
        };
        self.feed(now, i, SourceEvent::Data, Trigger::Data(i));
        verdict
    }

    /// The generation rule, less the snapshot: `i` is active and this is the data of the
    /// latest subscription sent to it.
    fn answers_latest_subscription(&self, i: usize, generation: u64) -> bool {
        self.is_active(i) && generation == self.sources[i].generation
    }

    /// A server answered write `request_id`: the write, when it is done with.
    pub fn handle_write_result(
        &mut self,
        now: Instant,
        i: usize,
        request_id: u64,
        outcome: WriteOutcome,
    ) -> Option<(W, Resolution)> {
        let done = self.writes.handle_result(now, i, request_id, outcome);
        self.feed(now, i, SourceEvent::Data, Trigger::Data(i));
        done
    }

    /// A new write from a master.
    pub fn handle_write(&mut self, w: W) {
        self.writes.handle_write(w);
    }

    /// Time passed (call at [`Self::poll_timeout`], or after any event).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(sw) = self.selector.tick(now) {
            self.on_switch(sw, Trigger::Time);
        }
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.selector.poll_at(), self.writes.poll_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next decision to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next write to send, to which source and under which request id: only to the
    /// active Primary while connected. Hand it back with [`Self::handle_sent`] or
    /// [`Self::handle_not_sent`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(usize, u64, W)> {
        let primary = self
            .selector
            .active()
            .filter(|a| a.role == Role::Primary && self.sources[a.source].connected)
            .map(|a| a.source);
        let (request_id, w) = self.writes.poll_transmit(now, primary)?;
        let source = primary.expect("a write is released only to a Primary");
        Some((source, request_id, w))
    }

    pub fn handle_sent(&mut self, source: usize, request_id: u64, w: W) {
        self.writes.handle_sent(source, request_id, w);
    }

    /// The write could not be sent now: it waits at the front of the queue.
    pub fn handle_not_sent(&mut self, w: W) {
        self.writes.handle_not_sent(w);
    }

    /// Writes past their deadline: answer them as timed out.
    pub fn poll_expired(&mut self, now: Instant) -> Vec<W> {
        self.writes.poll_expired(now)
    }

    /// What the status registers should say now.
    pub fn status(&self) -> Status {
        let served = match self.selector.active() {
            Some(_) if !self.synced => Served::Previous,
            Some(a) => {
                let (state, role) = match a.role {
                    Role::Primary => (ServeState::Primary, 1),
                    Role::Standby => (ServeState::Standby, 2),
                };
                Served::Active {
                    state,
                    source: a.source as u8 + 1,
                    role,
                    epoch: a.epoch,
                }
            }
            None => Served::Nothing {
                stale: self.selector.is_stale(),
            },
        };
        Status {
            served,
            sources_reachable: self
                .sources
                .iter()
                .filter(|s| s.connected && s.catalog_ok)
                .count(),
            sources_configured: self.sources.len(),
        }
    }

    fn is_active(&self, i: usize) -> bool {
        self.selector.active().is_some_and(|a| a.source == i)
    }

    /// The catalogue gate: only a source with the right catalogue reaches the selector.
    fn feed(&mut self, now: Instant, i: usize, event: SourceEvent, trigger: Trigger<'_>) {
        if self.sources[i].catalog_ok
            && let Some(sw) = self.selector.handle(now, i, event)
        {
            self.on_switch(sw, trigger);
        }
    }

    fn on_switch(&mut self, sw: Switch, trigger: Trigger<'_>) {
        let reason = self.reason(sw, trigger);
        self.outputs
            .push_back(Output::Switched { switch: sw, reason });
        if let Some(from) = sw.from
            && sw.to.map(|t| t.source) != Some(from.source)
            && self.sources[from.source].connected
        {
            self.outputs
                .push_back(Output::Control(from.source, Control::Unsubscribe));
        }
        if let Some(to) = sw.to
            && sw.from.map(|f| f.source) != Some(to.source)
        {
            self.synced = false;
            self.snapshot_tags = 0;
            self.generations += 1;
            self.sources[to.source].generation = self.generations;
            self.outputs.push_back(Output::Control(
                to.source,
                Control::Subscribe {
                    generation: self.generations,
                },
            ));
        }
    }

    /// Why the selector switched, in words: what had just happened.
    fn reason(&self, sw: Switch, trigger: Trigger<'_>) -> String {
        let name = |i: usize| self.sources[i].name.as_str();
        let timeout = humantime::format_duration(self.selector.config().source_timeout);
        match trigger {
            // Time alone never takes the connector from nothing to nothing, and only the
            // start-up wait ends on its own with a source to serve.
            Trigger::Time => match sw.from {
                Some(f) => format!("nothing heard from {} for {timeout}", name(f.source)),
                None => format!("start-up: waited {timeout} for every server to report"),
            },
            Trigger::Lost(i, why) => format!("connection to {} lost: {why}", name(i)),
            Trigger::Connected(i, role, epoch) => {
                format!("{} connected as {role} (epoch {epoch})", name(i))
            }
            Trigger::Heartbeat(i, role, epoch) => {
                format!("{} announced {role} (epoch {epoch})", name(i))
            }
            Trigger::Data(i) => format!("data from {}", name(i)),
        }
    }
}
