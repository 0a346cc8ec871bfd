//! The sync link between the two servers of a pair: heartbeats carrying role and epoch,
//! write replication, and the Primary's setpoint store pushed to a (re)joining peer.
//!
//! Each server dials the peer's `sync_listen` address and sends on that connection
//! (status, replication requests); it reads the peer's connection to its own listener
//! (peer status, replication it must apply and acknowledge). Two one-way streams keep
//! the ownership simple: nothing needs to decide which side "owns" a shared socket.

use crate::redundancy::ReplicatedWrite;
use crate::setpoints::Setpoint;
use crate::shared::{ReplicateRequest, Shared};
use bytes::BytesMut;
use futures::StreamExt;
use po_protocol::codec::{FrameCodec, MAX_FRAME_LEN, encode_into};
use po_protocol::{Role, TagId, Timestamp};
use po_runtime::accept::accept_loop;
use po_runtime::admission::{AcceptCounters, ConnectionCap, Unproven};
use po_runtime::{BoxListener, BoxStream};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Frames of the server-to-server sync link (never seen by clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SyncFrame {
    Hello {
        server_name: String,
        index: u8,
    },
    Status {
        role: Role,
        epoch: u64,
        /// The highest epoch the sender has held or heard.
        known: u64,
        sent_at: Timestamp,
    },
    /// A write to apply before the sender acknowledges it; `epoch` is the sender's.
    Replicate {
        id: u64,
        tag: TagId,
        entry: Setpoint,
        epoch: u64,
    },
    ReplicateAck {
        id: u64,
    },
    /// Not applied: the sender's epoch is below one the receiver knows, so the sender is
    /// a superseded Primary (say, one that was paused while its peer took over) and must
    /// not acknowledge the write.
    ReplicateRefused {
        id: u64,
        known: u64,
    },
    /// The sender's whole setpoint store, sent whenever its link to the peer comes up;
    /// the receiver merges it (per tag the later write wins), so a restarted Standby and
    /// both sides of a healed split brain converge. `epoch` is the sender's, for logs.
    Setpoints {
        epoch: u64,
        values: Vec<(TagId, Setpoint)>,
    },
}

/// Dials the peer and keeps the outgoing half of the link alive until the incarnation ends.
pub(crate) async fn run_outbound(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<ReplicateRequest>,
) {
    let mut cut = shared.sync_cut.subscribe();
    let mut next_id = 1u64;
    loop {
        wait_cut(&mut cut, false).await;
        shared.wait_unpaused().await;
        let peer = shared.peer_addr();
        let stream = tokio::select! {
            r = tokio::time::timeout(shared.heartbeat(), shared.net().connect(shared.host_address(), peer)) => match r {
                Ok(Ok(s)) => s,
                _ => {
                    tokio::time::sleep(shared.heartbeat()).await;
                    continue;
                }
            },
            _ = wait_cut(&mut cut, true) => continue,
        };
        let _ = stream.set_nodelay(true);
        let stream = match &shared.tls {
            None => stream,
            // The peer's certificate must carry the address dialled; a handshake gets
            // the liveness period, as a silent peer does.
            Some(tls) => {
                let name = peer.ip().to_string();
                let handshake = tls.client.connect(stream, &name, shared.sync_liveness());
                let done = tokio::select! {
                    r = handshake => r,
                    _ = wait_cut(&mut cut, true) => continue,
                };
                match done {
                    Ok(s) => s,
                    Err(e) => {
                        // A peer that refuses us, or that we refuse, leaves the pair to
                        // split: worth a (throttled) warning, not a debug line.
                        tls.log_refusal(&shared, "sync link to the peer", peer, &e);
                        tokio::time::sleep(shared.heartbeat()).await;
                        continue;
                    }
                }
            }
        };
        tracing::debug!(server = %shared.name(), %peer, "sync link to peer up");
        let since = shared.clock().now();
        serve_outbound(&shared, stream, &mut requests, &mut cut, &mut next_id).await;
        // A connection that ends at once (a proxy in front of a dead peer) is a failed
        // attempt, not a link going down: not worth an info line every heartbeat.
        if shared.clock().now().saturating_duration_since(since) >= shared.heartbeat() {
            tracing::info!(server = %shared.name(), %peer, "sync link to peer down");
        } else {
            tracing::debug!(server = %shared.name(), %peer, "sync link attempt ended at once");
        }
        shared.link_down();
        tokio::time::sleep(shared.heartbeat()).await;
    }
}

async fn serve_outbound(
    shared: &Arc<Shared>,
    stream: BoxStream,
    requests: &mut mpsc::Receiver<ReplicateRequest>,
    cut: &mut tokio::sync::watch::Receiver<bool>,
    next_id: &mut u64,
) {
    let connected_at = shared.clock().now();
    let (read, mut write) = tokio::io::split(stream);
    let mut acks = FramedRead::new(read, FrameCodec::<SyncFrame>::new());
    let mut status = shared.status_rx();
    // Ordered: on disconnect the waiting writers are released in the order they wrote.
    let mut pending: BTreeMap<u64, oneshot::Sender<()>> = BTreeMap::new();
    let mut buf = BytesMut::new();
    let mut interval = tokio::time::interval(shared.heartbeat());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let hello = SyncFrame::Hello {
        server_name: shared.name().to_string(),
        index: shared.index(),
    };
    push(&mut buf, &hello);
    // The whole store first, then whatever changes: writes applied here alone while the
    // peer was unreachable reach it as soon as the link carries frames again.
    let mut told = 0;
    push_setpoint_changes(shared, &mut buf, &mut told);
    loop {
        if !buf.is_empty() {
            shared.wait_unpaused().await;
            if write.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
        }
        tokio::select! {
            _ = wait_cut(cut, true) => return,
            _ = interval.tick() => {
                shared.wait_unpaused().await;
                // Nothing heard from the peer (on its connection to us) for the liveness
                // period since this connection came up: ours may be black-holed too;
                // dial again rather than write into the void.
                if shared.peer_silent_since(connected_at) {
                    tracing::debug!(server = %shared.name(), "peer silent; redialling the sync link");
                    return;
                }
                push_setpoint_changes(shared, &mut buf, &mut told);
                push(&mut buf, &status_frame(shared));
            }
            changed = status.changed() => {
                if changed.is_err() { return; }
                push(&mut buf, &status_frame(shared));
            }
            req = requests.recv() => {
                let Some(req) = req else { return };
                if req.deadline <= shared.clock().now() {
                    continue; // its writer has given up waiting; the store push covers it
                }
                let id = *next_id;
                *next_id += 1;
                push(&mut buf, &SyncFrame::Replicate { id, tag: req.tag, entry: req.entry, epoch: shared.status().epoch });
                pending.insert(id, req.done);
            }
            frame = acks.next() => match frame {
                Some(Ok(SyncFrame::ReplicateAck { id })) => {
                    if let Some(done) = pending.remove(&id) {
                        let _ = done.send(());
                    }
                }
                Some(Ok(SyncFrame::ReplicateRefused { id, known })) => {
                    // Dropping the waiter refuses the write at once.
                    tracing::info!(server = %shared.name(), known, "peer refused a write: it knows a higher epoch");
                    pending.remove(&id);
                }
                Some(Ok(other)) => {
                    tracing::warn!(server = %shared.name(), frame = ?other, "unexpected frame from peer on the sync link; closing it");
                    return;
                }
                Some(Err(e)) if e.is_protocol_violation() => {
                    tracing::warn!(server = %shared.name(), error = %e, "bad bytes from peer on the sync link; closing it");
                    return;
                }
                Some(Err(e)) => {
                    tracing::debug!(server = %shared.name(), error = %e, "sync link connection failed");
                    return;
                }
                None => return,
            }
        }
    }
}

/// Queues the setpoint entries changed since the peer was last told (`told`).
fn push_setpoint_changes(shared: &Shared, buf: &mut BytesMut, told: &mut u64) {
    let (values, version) = shared.setpoint_changes_since(*told);
    *told = version;
    if !values.is_empty() {
        let epoch = shared.status().epoch;
        push(buf, &SyncFrame::Setpoints { epoch, values });
    }
}

fn status_frame(shared: &Shared) -> SyncFrame {
    let s = shared.status();
    SyncFrame::Status {
        role: s.role,
        epoch: s.epoch,
        known: shared.known_epoch(),
        sent_at: shared.clock().wall(),
    }
}

fn push(buf: &mut BytesMut, frame: &SyncFrame) {
    // Sync frames are small except Setpoints, bounded by the tag count.
    if let Err(e) = encode_into(frame, buf, MAX_FRAME_LEN) {
        tracing::error!(error = %e, "cannot encode sync frame");
    }
}

/// The one inbound sync connection that speaks for the peer. A connection that has said
/// the peer's Hello takes over: the one it replaces is cancelled, and stops at once (or,
/// if it was holding a frame it read before the takeover, drops that frame). Only the
/// live connection ending means the link is down.
#[derive(Debug, Default)]
struct LiveInbound {
    /// The live connection's number and its cancellation; under one lock, so a takeover
    /// and the end of the connection it replaces are ordered without further thought.
    current: std::sync::Mutex<(u64, CancellationToken)>,
}

impl LiveInbound {
    /// Makes the caller the live connection; its number and the token cancelled when it
    /// is replaced.
    fn take_over(&self) -> (u64, CancellationToken) {
        let mut current = self.current.lock().unwrap();
        current.1.cancel();
        let mine = (current.0 + 1, CancellationToken::new());
        *current = mine.clone();
        mine
    }

    /// Whether connection `mine` was still the live one when it ended.
    fn ended(&self, mine: u64) -> bool {
        self.current.lock().unwrap().0 == mine
    }
}

/// Accepts the peer's sync connections. A new connection replaces the current one only
/// once it has said Hello as the peer (the other index) within the handshake timeout: a
/// stray or flooding client on the sync port can neither take the link over nor, with
/// the connection cap, exhaust descriptors.
pub(crate) async fn run_inbound(shared: Arc<Shared>, listener: BoxListener) {
    let live = Arc::new(LiveInbound::default());
    let cap = ConnectionCap::new(shared.config().limits.max_sync_connections);
    let unproven = Unproven::default();
    let counters = AcceptCounters::default();
    let name = format!("{} sync link", shared.name());
    accept_loop(
        &*listener,
        &name,
        &cap,
        &unproven,
        &counters,
        std::future::pending(),
        |stream, from, permit, ticket| {
            if *shared.sync_cut.borrow() {
                return;
            }
            let (shared, live) = (shared.clone(), live.clone());
            shared.clone().spawn(async move {
                let _permit = permit;
                let _ = stream.set_nodelay(true);
                let timeout = shared.config().limits.handshake_timeout;
                // TLS and the Hello share one deadline, as on the client-access link.
                let deadline = shared.deadline_in(timeout);
                let stream = match &shared.tls {
                    None => stream,
                    Some(tls) => {
                        let accepted = tokio::select! {
                            r = tls.server.accept(stream, timeout) => r,
                            _ = ticket.evicted() => return,
                        };
                        match accepted {
                            // Every certificate of the site's CA passes the handshake
                            // (connectors', masters'); only the peer's names the address
                            // this server knows the peer by.
                            Ok((s, peer)) if peer.ips.contains(&shared.peer_addr().ip()) => s,
                            Ok((_, peer)) => {
                                let why = format!(
                                    "the certificate ({}) is not the peer server's: it does not carry the peer's address {}",
                                    peer.describe(),
                                    shared.peer_addr().ip()
                                );
                                return tls.log_refusal(&shared, "sync link", from, &why);
                            }
                            Err(e) => return tls.log_refusal(&shared, "sync link", from, &e),
                        }
                    }
                };
                let (read, write) = tokio::io::split(stream);
                let mut frames = FramedRead::new(read, FrameCodec::<SyncFrame>::new());
                // Until its Hello the connection may be closed to make room.
                let hello = tokio::select! {
                    h = tokio::time::timeout_at(deadline, frames.next()) => h,
                    _ = ticket.evicted() => return,
                };
                drop(ticket);
                match hello {
                    Ok(Some(Ok(SyncFrame::Hello { index, .. }))) if index != shared.index() => {}
                    _ => {
                        tracing::debug!(server = %shared.name(), %from, "sync connection without the peer's Hello; closed");
                        return;
                    }
                }
                shared.wait_unpaused().await;
                let (mine, replaced) = live.take_over();
                shared.peer_heard();
                serve_inbound(&shared, frames, write, from, &replaced).await;
                if live.ended(mine) {
                    shared.link_down();
                }
            });
        },
    )
    .await;
}

/// Serves the live inbound connection until it fails, falls silent, is cut, or is
/// `replaced` by a newer one.
async fn serve_inbound(
    shared: &Arc<Shared>,
    mut frames: FramedRead<tokio::io::ReadHalf<BoxStream>, FrameCodec<SyncFrame>>,
    mut write: tokio::io::WriteHalf<BoxStream>,
    from: SocketAddr,
    replaced: &CancellationToken,
) {
    let mut cut = shared.sync_cut.subscribe();
    let mut buf = BytesMut::new();
    loop {
        shared.wait_unpaused().await;
        // A peer that says nothing for the liveness period is gone, whether or not its
        // connection closed: a black hole never closes it, and after the network heals a
        // stream that lost segments in it may never deliver again. Closing lets the
        // peer's next write fail and both sides dial afresh.
        let liveness = shared.sync_liveness();
        let frame = tokio::select! {
            _ = wait_cut(&mut cut, true) => return,
            _ = replaced.cancelled() => return,
            f = tokio::time::timeout(liveness, frames.next()) => match f {
                Ok(f) => f,
                Err(_) => {
                    tracing::debug!(server = %shared.name(), %from, ?liveness, "peer silent on the sync link; closing it");
                    return;
                }
            },
        };
        shared.wait_unpaused().await;
        if replaced.is_cancelled() {
            return; // replaced while this frame waited (say, while paused): it is stale
        }
        shared.peer_heard();
        match frame {
            Some(Ok(SyncFrame::Hello { server_name, index })) => {
                tracing::debug!(server = %shared.name(), peer = %server_name, index, %from, "peer joined the sync link");
            }
            Some(Ok(SyncFrame::Status {
                role, epoch, known, ..
            })) => {
                shared.on_peer_status(crate::redundancy::PeerStatus { role, epoch });
                shared.on_peer_known_epoch(known);
            }
            Some(Ok(SyncFrame::Replicate {
                id,
                tag,
                entry,
                epoch,
            })) => {
                buf.clear();
                match shared.fence_replicated_write(epoch) {
                    ReplicatedWrite::Apply => {
                        shared.apply_replicated(tag, entry);
                        push(&mut buf, &SyncFrame::ReplicateAck { id });
                    }
                    ReplicatedWrite::Refuse { known } => {
                        tracing::info!(server = %shared.name(), %from, peer_epoch = epoch, known, "write from a superseded Primary refused");
                        push(&mut buf, &SyncFrame::ReplicateRefused { id, known });
                    }
                }
                if write.write_all(&buf).await.is_err() {
                    return;
                }
            }
            Some(Ok(SyncFrame::Setpoints { epoch, values })) => {
                tracing::debug!(server = %shared.name(), peer_epoch = epoch, entries = values.len(), "merging the peer's setpoint store");
                shared.merge_setpoints(values);
            }
            Some(Ok(SyncFrame::ReplicateAck { .. } | SyncFrame::ReplicateRefused { .. })) => {
                tracing::warn!(server = %shared.name(), %from, "unexpected replication answer on inbound sync link; closing it");
                return;
            }
            Some(Err(e)) if e.is_protocol_violation() => {
                tracing::warn!(server = %shared.name(), %from, error = %e, "bad bytes on the sync link; closing it");
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(server = %shared.name(), %from, error = %e, "sync link connection failed");
                return;
            }
            None => return,
        }
    }
}

/// Waits until the sync link's cut flag is `want`. Returns nothing, so no borrow of
/// the watch value lives across an await.
pub(crate) async fn wait_cut(rx: &mut tokio::sync::watch::Receiver<bool>, want: bool) {
    let _ = rx.wait_for(|c| *c == want).await;
}
