//! The Primary/Standby role of one server of a redundant pair, as a sans-IO state
//! machine: peer heartbeats, replicated writes, link events and `now` go in; role
//! transitions, the verdict on each replicated write and the rises of the known epoch come
//! out. No sockets, no clocks, no files: the server's tokio tasks feed it, and property
//! tests drive two of them through crashes, pauses and partitions.
//!
//! Rules, and why:
//! - A server starts (and restarts: its role is never kept) as **Standby, epoch 0**, so a
//!   returning server never claims Primary over one that took over while it was gone.
//! - **The known epoch** (the highest epoch held or heard) has one owner: this machine.
//!   Keeping it across restarts is the driver's job, told by
//!   [`RedundancyRole::poll_known_epoch_raised`] whenever it rose; the driver records it
//!   (in memory across in-process restarts, and in `state_dir` across process restarts
//!   when one is configured: `crate::state`) before it acts on the input that raised it,
//!   and hands it back to the next incarnation with [`RedundancyRole::with_known_epoch`].
//! - **Startup**: when both are Standby and hear each other, the preferred server
//!   (index 0) promotes at once, so a healthy pair settles in one heartbeat. The same rule
//!   means a pair never sits with two Standbys.
//! - **Silence**: a Standby that has heard nothing from its peer for `failover_timeout`
//!   promotes (a lone surviving server is Primary within one failover timeout).
//! - **Epochs** are unique per server: index 0 promotes only to odd epochs, index 1 only
//!   to even ones, always to the smallest such epoch above every epoch it knows. A
//!   promotion is therefore usually "epoch + 1", and two Primaries can never share an
//!   epoch, not in split brain and not after both restart at once.
//! - **Highest epoch wins**: a Primary hearing a Primary with a higher epoch demotes; a
//!   Standby's epoch is that of the Primary it follows (the highest it knows of).
//! - **Failback** (optional): the preferred server, Standby and hearing its peer without
//!   interruption for one `failover_timeout`, promotes again; the peer then demotes.
//! - **Own stall**: if this machine was not driven for longer than `failover_timeout`
//!   (the process was paused, e.g. SIGSTOP), the silence it then sees is its own fault:
//!   it grants the peer one more `failover_timeout` before promoting, and so first reads
//!   the heartbeats that queued up meanwhile. The driver must call [`RedundancyRole::poll`]
//!   at [`RedundancyRole::poll_at`], which is never more than one heartbeat away.
//! - **Fencing of replicated writes**: a write the peer replicates carries the peer's
//!   epoch; one below the known epoch comes from a superseded Primary (say, one that was
//!   paused while this server or a third epoch took over) and is refused
//!   ([`RedundancyRole::handle_replicated_write`]), so that Primary never acknowledges it.
//!   Equal is accepted: it is the epoch of the Primary this Standby follows.
//! - **Link down** (the sync connection dropped): the peer no longer counts as reachable
//!   for write replication, but promotion still waits for `failover_timeout` of silence: a
//!   cut link and a crashed peer look alike, and only time tells a pause from a crash.

use po_protocol::Role;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedundancyConfig {
    pub heartbeat: Duration,
    pub failover_timeout: Duration,
    pub failback: bool,
}

/// What a Primary does with a client's write (see [`RedundancyRole::write_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replicate to the peer, acknowledge once it confirmed.
    Replicate,
    /// The peer just fell silent: refuse for now, the client retries.
    Hold,
    /// No peer, or it is taken for dead: apply here alone.
    Solo,
}

/// What to do with a write the peer replicated (see
/// [`RedundancyRole::handle_replicated_write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicatedWrite {
    /// Apply it and acknowledge it.
    Apply,
    /// Refuse it: the sender's epoch is below `known`, the highest epoch this server
    /// has held or heard, so the sender is a superseded Primary.
    Refuse { known: u64 },
}

/// Index of a server within its pair: 0 is the preferred Primary ("a"), 1 the other ("b").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerIndex(pub u8);

impl ServerIndex {
    pub fn new(index: u8) -> Option<ServerIndex> {
        (index < 2).then_some(ServerIndex(index))
    }

    fn is_preferred(self) -> bool {
        self.0 == 0
    }

    /// Parity of the epochs this server may promote to.
    fn owns(self, epoch: u64) -> bool {
        epoch % 2 == if self.0 == 0 { 1 } else { 0 }
    }
}

/// A role claim: what a server says about itself on the sync link and to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    pub role: Role,
    pub epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionReason {
    /// The peer was silent for `failover_timeout`.
    PeerSilent,
    /// Both started as Standby; the preferred server took the role.
    PreferredAtStartup,
    /// A higher epoch was heard: demote, or follow it.
    HigherEpochSeen,
    /// The preferred server took the role back.
    Failback,
    /// A Primary learnt that its peer knows a higher epoch than the one it holds (one
    /// the peer held while they were apart): it takes an epoch above it, so clients that
    /// saw that epoch follow it again.
    HigherEpochKnown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: PeerStatus,
    pub to: PeerStatus,
    pub reason: TransitionReason,
}

#[derive(Debug, Clone)]
pub struct RedundancyRole {
    index: ServerIndex,
    config: RedundancyConfig,
    role: Role,
    epoch: u64,
    /// Highest epoch heard or held (never below `epoch`: `set` raises it).
    max_known: u64,
    /// The known epoch last reported by `poll_known_epoch_raised` (or handed in by
    /// `with_known_epoch`): the driver has recorded it.
    known_reported: u64,
    /// Last time the peer was heard (or the grace start: boot, own stall).
    last_heard: Instant,
    /// The peer's last claim, while the link is up.
    peer: Option<PeerStatus>,
    /// Whether the peer has ever been heard (a server alone from the start writes solo).
    peer_ever_heard: bool,
    /// Since when the peer has been heard without interruption.
    linked_since: Option<Instant>,
    last_input: Instant,
}

impl RedundancyRole {
    /// A freshly started server (also after a restart): Standby, epoch 0.
    pub fn new(index: ServerIndex, config: RedundancyConfig, now: Instant) -> RedundancyRole {
        RedundancyRole {
            index,
            config,
            role: Role::Standby,
            epoch: 0,
            max_known: 0,
            known_reported: 0,
            last_heard: now,
            peer_ever_heard: false,
            peer: None,
            linked_since: None,
            last_input: now,
        }
    }

    /// A restarted server that remembers the highest epoch it held or heard before: its
    /// next promotion goes above it, so epochs never repeat across restarts (a connector
    /// that served epoch 5 is never offered a "new" Primary with epoch 3).
    /// The epoch handed in is the driver's record, so it is not reported again.
    pub fn with_known_epoch(mut self, epoch: u64) -> RedundancyRole {
        self.max_known = self.max_known.max(epoch);
        self.known_reported = self.known_reported.max(epoch);
        self
    }

    pub fn index(&self) -> ServerIndex {
        self.index
    }

    pub fn config(&self) -> &RedundancyConfig {
        &self.config
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn status(&self) -> PeerStatus {
        PeerStatus {
            role: self.role,
            epoch: self.epoch,
        }
    }

    /// How a Primary may treat a client's write now.
    ///
    /// While the peer is heard from, writes are replicated before they are acknowledged.
    /// Once it falls silent the Primary cannot tell a dead peer from a partition, in which
    /// the peer promotes itself with a higher epoch and wins when the link heals: a write
    /// acknowledged here alone would then be lost. So writes are held (refused as
    /// `NotPrimary`, which makes clients retry at whichever server is Primary) until the
    /// silence has lasted `failover_timeout` plus two heartbeats, time enough for clients to
    /// see a promoted peer; only then is the peer taken for dead and writes applied here alone.
    pub fn write_mode(&self, now: Instant) -> WriteMode {
        if !self.peer_ever_heard {
            return WriteMode::Solo;
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if silent < self.config.failover_timeout {
            WriteMode::Replicate
        } else if silent < self.config.failover_timeout + 2 * self.config.heartbeat {
            WriteMode::Hold
        } else {
            WriteMode::Solo
        }
    }

    /// Registers that the machine is being driven, detecting our own stalls.
    fn touch(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_input) > self.config.failover_timeout {
            // We were not running: the silence we see is ours, not the peer's.
            self.last_heard = self.last_heard.max(now);
            self.linked_since = None;
        }
        self.last_input = self.last_input.max(now);
    }

    pub fn on_peer_status(&mut self, now: Instant, peer: PeerStatus) -> Option<Transition> {
        self.touch(now);
        self.peer_ever_heard = true;
        self.last_heard = self.last_heard.max(now);
        if self.peer.is_none() || self.linked_since.is_none() {
            self.linked_since = Some(now);
        }
        self.peer = Some(peer);
        self.max_known = self.max_known.max(peer.epoch);
        match (self.role, peer.role) {
            (Role::Primary, Role::Primary) => {
                // Equal epochs cannot come from two parity-respecting servers; if they
                // do, the non-preferred one yields.
                let yields = peer.epoch > self.epoch
                    || (peer.epoch == self.epoch && !self.index.is_preferred());
                yields
                    .then(|| self.set(Role::Standby, peer.epoch, TransitionReason::HigherEpochSeen))
            }
            (Role::Primary, Role::Standby) => None,
            (Role::Standby, Role::Primary) => {
                if peer.epoch > self.epoch {
                    return Some(self.set(
                        Role::Standby,
                        peer.epoch,
                        TransitionReason::HigherEpochSeen,
                    ));
                }
                self.failback_due(now)
                    .then(|| self.promote(TransitionReason::Failback))
            }
            (Role::Standby, Role::Standby) => self
                .index
                .is_preferred()
                .then(|| self.promote(TransitionReason::PreferredAtStartup)),
        }
    }

    /// The highest epoch the peer has held or heard (sent with its status). A Primary
    /// holding a lower epoch re-promotes above it.
    pub fn on_peer_known_epoch(&mut self, now: Instant, known: u64) -> Option<Transition> {
        self.touch(now);
        self.max_known = self.max_known.max(known);
        (self.role == Role::Primary && known > self.epoch)
            .then(|| self.promote(TransitionReason::HigherEpochKnown))
    }

    /// The highest epoch held or heard (sent to the peer with every status).
    pub fn known_epoch(&self) -> u64 {
        self.max_known
    }

    /// The known epoch, once each time it has risen since the last call: the driver must
    /// record it (see the module docs) before it announces a transition or answers the
    /// input that raised it, so no epoch is heard of before it is kept.
    pub fn poll_known_epoch_raised(&mut self) -> Option<u64> {
        (self.max_known > self.known_reported).then(|| {
            self.known_reported = self.max_known;
            self.max_known
        })
    }

    /// A write the peer replicated, sent while it held `sender_epoch`: applied unless a
    /// higher epoch is known (held here, or heard), in which case the sender is a
    /// superseded Primary and must not acknowledge the write. The sender's epoch counts
    /// as heard.
    pub fn handle_replicated_write(&mut self, now: Instant, sender_epoch: u64) -> ReplicatedWrite {
        self.touch(now);
        if sender_epoch < self.max_known {
            return ReplicatedWrite::Refuse {
                known: self.max_known,
            };
        }
        self.max_known = sender_epoch;
        ReplicatedWrite::Apply
    }

    pub fn on_link_down(&mut self, now: Instant) {
        self.touch(now);
        self.peer = None;
        self.linked_since = None;
    }

    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        self.touch(now);
        if self.role == Role::Primary {
            return None;
        }
        if now.saturating_duration_since(self.last_heard) >= self.config.failover_timeout {
            return Some(self.promote(TransitionReason::PeerSilent));
        }
        if self.failback_due(now) && self.peer.is_some_and(|p| p.role == Role::Primary) {
            return Some(self.promote(TransitionReason::Failback));
        }
        None
    }

    /// When `poll` next has something to decide. Never more than one heartbeat away, so
    /// that a gap longer than `failover_timeout` between inputs really is a stall.
    pub fn poll_at(&self) -> Instant {
        let mut at = self.last_input + self.config.heartbeat;
        if self.role == Role::Standby {
            at = at.min(self.last_heard + self.config.failover_timeout);
            if let Some(due) = self.failback_at() {
                at = at.min(due);
            }
        }
        at.max(self.last_input)
    }

    fn failback_at(&self) -> Option<Instant> {
        if !self.config.failback || !self.index.is_preferred() || self.role != Role::Standby {
            return None;
        }
        self.linked_since.map(|t| t + self.config.failover_timeout)
    }

    fn failback_due(&self, now: Instant) -> bool {
        self.failback_at().is_some_and(|due| now >= due)
    }

    fn promote(&mut self, reason: TransitionReason) -> Transition {
        let mut epoch = self.max_known + 1;
        if !self.index.owns(epoch) {
            epoch += 1;
        }
        self.set(Role::Primary, epoch, reason)
    }

    fn set(&mut self, role: Role, epoch: u64, reason: TransitionReason) -> Transition {
        let from = self.status();
        self.role = role;
        self.epoch = epoch;
        self.max_known = self.max_known.max(epoch);
        Transition {
            from,
            to: self.status(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(100);
    const FT: Duration = Duration::from_millis(500);

    fn cfg(failback: bool) -> RedundancyConfig {
        RedundancyConfig {
            heartbeat: HB,
            failover_timeout: FT,
            failback,
        }
    }

    fn standby(epoch: u64) -> PeerStatus {
        PeerStatus {
            role: Role::Standby,
            epoch,
        }
    }

    fn primary(epoch: u64) -> PeerStatus {
        PeerStatus {
            role: Role::Primary,
            epoch,
        }
    }

    #[test]
    fn a_restarted_server_promotes_above_every_epoch_it_knew() {
        let t = Instant::now();
        let mut b = RedundancyRole::new(ServerIndex(1), cfg(false), t).with_known_epoch(6);
        let p = b.poll(t + FT).expect("a silent peer means promotion");
        assert_eq!(p.to.role, Role::Primary);
        assert!(p.to.epoch > 6 && ServerIndex(1).owns(p.to.epoch), "{p:?}");
    }

    #[test]
    fn a_primary_re_promotes_above_an_epoch_its_peer_knows() {
        let t = Instant::now();
        let mut a = RedundancyRole::new(ServerIndex(0), cfg(false), t);
        a.on_peer_status(t, standby(0))
            .expect("preferred takes the role");
        assert_eq!(a.status(), primary(1));
        // The peer held epoch 4 while they were apart and has restarted since.
        let up = a.on_peer_known_epoch(t, 4).expect("re-promotion");
        assert_eq!(up.reason, TransitionReason::HigherEpochKnown);
        assert_eq!(a.status().role, Role::Primary);
        assert_eq!(a.epoch(), 5);
        assert_eq!(a.known_epoch(), 5);
        assert_eq!(
            a.on_peer_known_epoch(t, 5),
            None,
            "nothing above ours: no change"
        );
        // A Standby only remembers.
        let mut b = RedundancyRole::new(ServerIndex(1), cfg(false), t);
        assert_eq!(b.on_peer_known_epoch(t, 9), None);
        assert_eq!(b.status(), standby(0));
        assert_eq!(b.known_epoch(), 9);
    }

    #[test]
    fn a_write_from_a_superseded_primary_is_refused() {
        let t = Instant::now();
        let mut b = RedundancyRole::new(ServerIndex(1), cfg(false), t);
        b.on_peer_status(t, primary(1));
        assert_eq!(b.handle_replicated_write(t, 1), ReplicatedWrite::Apply);
        // b took over (epoch 2) while a was paused; a resumes and replicates at epoch 1.
        b.poll(t + FT).expect("promotion");
        assert_eq!(
            b.handle_replicated_write(t + FT, 1),
            ReplicatedWrite::Refuse { known: 2 }
        );
        assert_eq!(b.handle_replicated_write(t + FT, 2), ReplicatedWrite::Apply);
        // A higher sender epoch is news: it is known from then on.
        assert_eq!(b.handle_replicated_write(t + FT, 3), ReplicatedWrite::Apply);
        assert_eq!(b.known_epoch(), 3);
        assert_eq!(
            b.handle_replicated_write(t + FT, 2),
            ReplicatedWrite::Refuse { known: 3 }
        );
    }

    #[test]
    fn each_rise_of_the_known_epoch_is_reported_once() {
        let t = Instant::now();
        let mut a = RedundancyRole::new(ServerIndex(0), cfg(false), t).with_known_epoch(4);
        assert_eq!(
            a.poll_known_epoch_raised(),
            None,
            "handed in: recorded already"
        );
        a.on_peer_status(t, standby(2));
        assert_eq!(a.poll_known_epoch_raised(), Some(5), "its own promotion");
        assert_eq!(a.poll_known_epoch_raised(), None);
        a.on_peer_known_epoch(t, 5);
        assert_eq!(a.poll_known_epoch_raised(), None, "nothing new");
        a.handle_replicated_write(t, 8);
        assert_eq!(a.poll_known_epoch_raised(), Some(8));
    }

    #[test]
    fn writes_are_held_while_the_peer_may_be_promoting() {
        let t = Instant::now();
        let mut a = RedundancyRole::new(ServerIndex(0), cfg(false), t);
        assert_eq!(
            a.write_mode(t),
            WriteMode::Solo,
            "no peer ever heard: alone"
        );
        a.on_peer_status(t, standby(0));
        a.on_link_down(t);
        assert_eq!(
            a.write_mode(t + FT - Duration::from_millis(1)),
            WriteMode::Replicate,
            "the link going down is no proof the peer is dead"
        );
        assert_eq!(a.write_mode(t + FT), WriteMode::Hold);
        assert_eq!(
            a.write_mode(t + FT + 2 * HB - Duration::from_millis(1)),
            WriteMode::Hold
        );
        assert_eq!(a.write_mode(t + FT + 2 * HB), WriteMode::Solo);
    }

    #[test]
    fn the_preferred_server_promotes_when_both_start_together() {
        let t = Instant::now();
        let mut a = RedundancyRole::new(ServerIndex(0), cfg(false), t);
        let mut b = RedundancyRole::new(ServerIndex(1), cfg(false), t);
        assert_eq!(b.on_peer_status(t, a.status()), None, "b waits");
        let tr = a.on_peer_status(t, b.status()).unwrap();
        assert_eq!(tr.to, primary(1));
        assert_eq!(tr.reason, TransitionReason::PreferredAtStartup);
        let tr = b.on_peer_status(t, a.status()).unwrap();
        assert_eq!(tr.to, standby(1), "b follows epoch 1");
    }

    #[test]
    fn a_silent_peer_means_promotion_after_the_failover_timeout_with_own_parity() {
        let t = Instant::now();
        let mut b = RedundancyRole::new(ServerIndex(1), cfg(false), t);
        b.on_peer_status(t, primary(1));
        for k in 1..5 {
            assert_eq!(b.poll(t + HB * k), None);
        }
        assert!(b.poll_at() <= t + FT);
        let tr = b.poll(t + FT).unwrap();
        assert_eq!(tr.to, primary(2));
        assert_eq!(tr.reason, TransitionReason::PeerSilent);
        // a comes back knowing epoch 1 and promotes to 3, not 2.
        let mut a = RedundancyRole::new(ServerIndex(0), cfg(false), t);
        a.on_peer_status(t, standby(2));
        assert_eq!(a.epoch(), 3);
    }

    #[test]
    fn a_stalled_standby_does_not_promote_on_its_own_silence() {
        let t = Instant::now();
        let mut b = RedundancyRole::new(ServerIndex(1), cfg(false), t);
        b.on_peer_status(t, primary(1));
        // Paused for 5 s: the first poll after the pause grants the peer a grace period.
        let resumed = t + Duration::from_secs(5);
        assert_eq!(b.poll(resumed), None);
        assert_eq!(b.on_peer_status(resumed, primary(1)), None);
        assert_eq!(b.role(), Role::Standby);
        // Without heartbeats it does promote, one failover timeout after resuming.
        assert!(b.poll(resumed + FT).is_some());
    }

    #[test]
    fn failback_takes_the_role_back_only_when_enabled() {
        for failback in [false, true] {
            let t = Instant::now();
            let mut a = RedundancyRole::new(ServerIndex(0), cfg(failback), t);
            a.on_peer_status(t, primary(2));
            let mut now = t;
            let mut promoted = None;
            for _ in 0..20 {
                now += HB;
                if let Some(tr) = a.on_peer_status(now, primary(2)).or_else(|| a.poll(now)) {
                    promoted = Some(tr);
                    break;
                }
            }
            match (failback, promoted) {
                (true, Some(tr)) => {
                    assert_eq!(tr.reason, TransitionReason::Failback);
                    assert_eq!(tr.to, primary(3));
                    assert!(now >= t + FT);
                }
                (false, None) => assert_eq!(a.status(), standby(2)),
                other => panic!("failback={failback}: {other:?}"),
            }
        }
    }
}
