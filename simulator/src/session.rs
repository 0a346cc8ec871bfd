//! One client-access session: `Hello` and licensing, then browse, subscribe, writes and
//! pings from the reader; everything the server sends goes through the writer, which
//! owns the session's `seq` and batches queued frames into one syscall.

use crate::shared::{Outgoing, SessionEntry, Shared};
use bytes::BytesMut;
use futures::StreamExt;
use po_protocol::PART_TAGS;
use po_protocol::codec::{FrameCodec, MAX_FRAME_LEN, encode_into};
use po_protocol::{Access, ErrorCode, Frame, PROTOCOL_VERSION};
use po_runtime::accept::accept_loop;
use po_runtime::admission::{AcceptCounters, ConnectionCap, Unproven, UnprovenTicket};
use po_runtime::{BoxListener, BoxStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::io::WriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

/// How long one write to a client may block before the client is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Queued frames are coalesced into one write up to about this many bytes.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

pub(crate) async fn run_listener(shared: Arc<Shared>, listener: BoxListener) {
    // Sessions and connections still to say Hello share the cap; each holds its place
    // until it ends. The loop ends with the incarnation (the caller's task is cancelled).
    let cap = ConnectionCap::new(shared.config().limits.max_clients);
    let unproven = Unproven::default();
    let counters = AcceptCounters::default();
    let name = format!("{} client access", shared.name());
    // A graceful stop ends the loop; the listener closes as this task returns.
    let draining = shared.draining.clone();
    accept_loop(
        &*listener,
        &name,
        &cap,
        &unproven,
        &counters,
        async move { draining.cancelled().await },
        |stream, from, permit, ticket| {
            let s = shared.clone();
            shared.spawn_session(async move {
                run_session(s, stream, from, ticket).await;
                drop(permit);
            });
        },
    )
    .await;
}

/// Removes the session from the registry (and frees its licence) however it ends.
struct SessionGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        let mut reg = self.shared.registry.lock().unwrap();
        if let Some(entry) = reg.sessions.remove(&self.id)
            && let Some(l) = entry.licence
        {
            reg.licences_in_use.remove(&l);
        }
    }
}

async fn run_session(
    shared: Arc<Shared>,
    stream: BoxStream,
    from: SocketAddr,
    unproven: UnprovenTicket,
) {
    let _ = stream.set_nodelay(true);
    shared.wait_unpaused().await;
    let hello_timeout = shared.config().limits.handshake_timeout;
    // The TLS handshake and the Hello share one deadline: a client that stalls in either
    // holds its place for no longer than the handshake timeout.
    let deadline = shared.deadline_in(hello_timeout);
    let (stream, identity) = match &shared.tls {
        None => (stream, None),
        Some(tls) => {
            let accepted = tokio::select! {
                r = tls.server.accept(stream, hello_timeout) => r,
                _ = unproven.evicted() => return,
                _ = shared.draining.cancelled() => return,
            };
            match accepted {
                Ok((s, identity)) => (s, Some(identity)),
                Err(e) => return tls.log_refusal(&shared, "client access", from, &e),
            }
        }
    };
    let (read, mut write) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read, FrameCodec::<Frame>::new());

    // Until its Hello the connection may be closed to make room for another.
    let hello = tokio::select! {
        h = tokio::time::timeout_at(deadline, frames.next()) => h,
        _ = unproven.evicted() => return,
        _ = shared.draining.cancelled() => {
            return refuse(&mut write, ErrorCode::ShuttingDown, shutting_down(&shared)).await;
        }
    };
    drop(unproven);
    let first = match hello {
        Ok(Some(Ok(f))) => f,
        Ok(Some(Err(e))) => {
            return refuse(&mut write, ErrorCode::Malformed, e.to_string()).await;
        }
        Ok(None) => return,
        Err(_) => {
            let msg = format!(
                "no Hello within {}",
                humantime::format_duration(hello_timeout)
            );
            return refuse(&mut write, ErrorCode::UnexpectedFrame, msg).await;
        }
    };
    let Frame::Hello {
        version,
        client_name,
        access,
    } = first
    else {
        let msg = format!("expected Hello as the first frame, got {}", first.kind());
        return refuse(&mut write, ErrorCode::UnexpectedFrame, msg).await;
    };
    if version != PROTOCOL_VERSION {
        let msg = format!(
            "protocol version {version} is not supported; server {} speaks version {PROTOCOL_VERSION}",
            shared.name()
        );
        return refuse(&mut write, ErrorCode::UnsupportedVersion, msg).await;
    }

    if let Err((code, msg)) = check_licence_holder(&shared, &access, identity.as_ref()) {
        tracing::warn!(server = %shared.name(), client = %client_name, %from, %code, "refused: {msg}");
        return refuse(&mut write, code, msg).await;
    }

    let id = shared.next_session_id();
    let (tx, rx) = mpsc::channel(shared.config().client_queue);
    let (kill_tx, kill_rx) = oneshot::channel();
    let admitted = {
        let mut reg = shared.registry.lock().unwrap();
        // Checked under the registry lock that a graceful stop takes to tell every
        // session: a client is either told by the stop or refused here, never missed.
        let admission = if shared.is_draining() {
            Err((ErrorCode::ShuttingDown, shutting_down(&shared)))
        } else {
            take_over_own_licence(&mut reg, &client_name, &access, from);
            admit(&shared, &reg.licences_in_use, &client_name, &access, from)
        };
        match admission {
            Ok(licence) => {
                // Queued before the session is visible to the publisher: `Welcome` is
                // the first frame, never a heartbeat broadcast in between.
                let status = shared.status();
                let _ = tx.try_send(Outgoing::Frame(Frame::Welcome {
                    server_name: shared.name().to_string(),
                    role: status.role,
                    epoch: status.epoch,
                }));
                if let Some(l) = &licence {
                    reg.licences_in_use
                        .insert(l.clone(), (client_name.clone(), from));
                }
                reg.sessions.insert(
                    id,
                    SessionEntry {
                        tx: tx.clone(),
                        kill: Some(kill_tx),
                        subscription: None,
                        client_name: client_name.clone(),
                        licence: licence.clone(),
                    },
                );
                Ok(licence)
            }
            Err(refusal) => Err(refusal),
        }
    };
    let licence = match admitted {
        Ok(l) => l,
        Err((code, msg)) => {
            tracing::warn!(server = %shared.name(), client = %client_name, %from, %code, "refused: {msg}");
            return refuse(&mut write, code, msg).await;
        }
    };
    let _guard = SessionGuard {
        shared: &shared,
        id,
    };
    tracing::info!(server = %shared.name(), client = %client_name, %from, licence = ?licence, "client connected");

    let writer = run_writer(&shared, write, rx, kill_rx);
    let reader = run_reader(&shared, &mut frames, tx, id);
    // The writer ends the session (it drains, then closes); the reader ending only
    // drops its queue handle so the writer finishes what is queued.
    tokio::pin!(writer);
    tokio::select! {
        _ = &mut writer => {
            if shared.is_draining() {
                // The goodbye and our FIN are out: read (and drop) until the client
                // closes its end, so it reads the goodbye and our close is no reset. The
                // stop bounds this wait with `limits.drain_timeout`.
                while let Some(Ok(_)) = frames.next().await {}
            }
        }
        _ = reader => {
            // The session is gone from the registry once the guard drops; the writer
            // flushes what the reader queued (an Error, say) and stops.
            drop(_guard);
            let _ = tokio::time::timeout(WRITE_TIMEOUT, writer).await;
        }
    }
    tracing::info!(server = %shared.name(), client = %client_name, %from, "client disconnected");
}

fn shutting_down(shared: &Shared) -> String {
    format!("server {} is shutting down", shared.name())
}

/// Over TLS, a licence serves only the client whose certificate's common name is its
/// holder (docs/protocol.md §Licensing). Checked before anything else about the licence,
/// so a client cannot take over, or learn the state of, a licence issued to another.
fn check_licence_holder(
    shared: &Shared,
    access: &Access,
    identity: Option<&po_runtime::tls::PeerIdentity>,
) -> Result<(), (ErrorCode, String)> {
    let (Some(tls), Access::ClientAccess { licence }) = (&shared.config().tls, access) else {
        return Ok(());
    };
    let Some(holder) = tls.licence_holders.get(licence) else {
        return Ok(()); // not installed: `admit` says so
    };
    let presented = identity.and_then(|i| i.common_name.as_deref());
    if presented == Some(holder.as_str()) {
        return Ok(());
    }
    Err((
        ErrorCode::LicenceIdentityMismatch,
        format!(
            "Client Access licence '{licence}' on server {} is issued to CN={holder}; this client's certificate is {}",
            shared.name(),
            identity.map_or_else(|| "absent".to_string(), |i| i.describe())
        ),
    ))
}

/// A client that presents a licence its own earlier session still holds, from the same
/// host, has lost that session (a black hole never closes it: this server may keep
/// writing into it for minutes before TCP gives up). The earlier session is ended so the
/// licence serves the client that is evidently alive (docs/protocol.md §Licensing).
fn take_over_own_licence(
    reg: &mut crate::shared::Registry,
    client_name: &str,
    access: &Access,
    from: SocketAddr,
) {
    let Access::ClientAccess { licence } = access else {
        return;
    };
    let Some((holder, holder_addr)) = reg.licences_in_use.get(licence) else {
        return;
    };
    if holder != client_name || holder_addr.ip() != from.ip() {
        return;
    }
    let earlier = reg
        .sessions
        .iter()
        .find(|(_, e)| e.licence.as_deref() == Some(licence.as_str()))
        .map(|(id, _)| *id);
    if let Some(id) = earlier {
        reg.kill(
            id,
            ErrorCode::LicenceInUse,
            format!(
                "Client Access licence '{licence}' taken over by a new session of '{client_name}' from {}; this session is closed",
                from.ip()
            ),
        );
    }
}

/// Licensing (`docs/protocol.md` §Licensing). Returns the licence to hold, if any.
fn admit(
    shared: &Shared,
    in_use: &std::collections::HashMap<String, (String, SocketAddr)>,
    client_name: &str,
    access: &Access,
    from: SocketAddr,
) -> Result<Option<String>, (ErrorCode, String)> {
    let server = shared.name();
    match access {
        Access::Local => {
            let local = shared.config().local_addresses();
            if local.contains(&from.ip()) {
                Ok(None)
            } else {
                let list: Vec<String> = local.iter().map(|a| a.to_string()).collect();
                Err((
                    ErrorCode::LocalAccessDenied,
                    format!(
                        "Local access to server {server} is accepted only from its own host address ({}); client '{client_name}' connected from {} and needs a Client Access licence",
                        list.join(", "),
                        from.ip()
                    ),
                ))
            }
        }
        Access::ClientAccess { licence } => {
            let installed = &shared.config().licences;
            if licence.trim().is_empty() {
                return Err((
                    ErrorCode::LicenceMissing,
                    format!(
                        "client '{client_name}' presented no Client Access licence; server {server} has {} installed",
                        installed.len()
                    ),
                ));
            }
            if !installed.iter().any(|l| l == licence) {
                return Err((
                    ErrorCode::LicenceMissing,
                    format!(
                        "Client Access licence '{licence}' is not installed on server {server} ({} installed)",
                        installed.len()
                    ),
                ));
            }
            if let Some((holder, holder_addr)) = in_use.get(licence) {
                return Err((
                    ErrorCode::LicenceInUse,
                    format!(
                        "Client Access licence '{licence}' on server {server} is already in use by '{holder}' from {}",
                        holder_addr.ip()
                    ),
                ));
            }
            Ok(Some(licence.clone()))
        }
    }
}

/// Sends one `Error` and closes: for sessions refused before they were admitted.
async fn refuse(write: &mut WriteHalf<BoxStream>, code: ErrorCode, message: String) {
    let mut buf = BytesMut::new();
    if encode_into(&Frame::Error { code, message }, &mut buf, MAX_FRAME_LEN).is_ok() {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&buf)).await;
    }
    let _ = write.shutdown().await;
}

async fn run_reader(
    shared: &Arc<Shared>,
    frames: &mut FramedRead<tokio::io::ReadHalf<BoxStream>, FrameCodec<Frame>>,
    tx: mpsc::Sender<Outgoing>,
    id: u64,
) {
    loop {
        shared.wait_unpaused().await;
        let frame = match frames.next().await {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                let code = if e.is_protocol_violation() {
                    ErrorCode::Malformed
                } else {
                    return;
                };
                tracing::warn!(server = %shared.name(), error = %e, "ending session: bad bytes");
                let _ = tx.try_send(Outgoing::Frame(Frame::Error {
                    code,
                    message: e.to_string(),
                }));
                return;
            }
            None => return,
        };
        shared.wait_unpaused().await;
        let reply = match frame {
            Frame::Browse => {
                // A large catalogue goes out in parts; the last one is the `Catalog`.
                let catalog = shared.model.catalog();
                let mut parts = catalog.chunks(PART_TAGS).peekable();
                let mut last = Vec::new();
                while let Some(part) = parts.next() {
                    if parts.peek().is_none() {
                        last = part.to_vec();
                    } else if tx
                        .send(Outgoing::Frame(Frame::CatalogPart {
                            tags: part.to_vec(),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Outgoing::Frame(Frame::Catalog { tags: last })
            }
            Frame::Subscribe { tags } => match shared.subscribe(id, &tags) {
                Ok(()) => continue,
                Err(message) => Outgoing::Frame(Frame::Error {
                    code: ErrorCode::UnknownTag,
                    message,
                }),
            },
            Frame::Write {
                request_id,
                tag,
                value,
            } => {
                let outcome = shared.write(tag, value).await;
                tracing::debug!(server = %shared.name(), %tag, %value, ?outcome, "write");
                Outgoing::Frame(Frame::WriteResult {
                    request_id,
                    outcome,
                })
            }
            Frame::Ping => Outgoing::Heartbeat,
            Frame::Unsubscribe => {
                shared.unsubscribe(id);
                continue;
            }
            other => {
                let _ = tx.try_send(Outgoing::Frame(Frame::Error {
                    code: ErrorCode::UnexpectedFrame,
                    message: format!("a client may not send {} here", other.kind()),
                }));
                return;
            }
        };
        let is_error = matches!(reply, Outgoing::Frame(Frame::Error { .. }));
        if tx.send(reply).await.is_err() || is_error {
            return;
        }
    }
}

async fn run_writer(
    shared: &Arc<Shared>,
    mut write: WriteHalf<BoxStream>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut kill: oneshot::Receiver<Frame>,
) {
    let mut seq = 0u64;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // The kill switch is dropped unused when the session ends normally; only a frame
    // sent through it means "say this and stop now".
    let mut armed = true;
    // A large snapshot taken off the queue while batching: written on its own next.
    let mut held: Option<Outgoing> = None;
    loop {
        let first = if let Some(m) = held.take() {
            m
        } else {
            tokio::select! {
            biased;
            goodbye = &mut kill, if armed => {
                let Ok(frame) = goodbye else {
                    armed = false;
                    continue;
                };
                buf.clear();
                if encode_into(&frame, &mut buf, MAX_FRAME_LEN).is_ok() {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&buf)).await;
                }
                break;
            }
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            }
        };
        // A large snapshot goes out part by part, each written (and timed) on its own:
        // a slow link needs only to take one part within the write timeout, and the
        // client hears from the server once per part.
        if let Outgoing::Snapshot(values) = &first
            && values.len() > PART_TAGS
        {
            let parts = values.len().div_ceil(PART_TAGS);
            for (part, chunk) in values.chunks(PART_TAGS).enumerate() {
                buf.clear();
                seq += 1;
                let frame = Frame::SnapshotPart {
                    seq,
                    part: part as u32,
                    last: part + 1 == parts,
                    values: chunk.to_vec(),
                };
                if let Err(e) = encode_into(&frame, &mut buf, MAX_FRAME_LEN) {
                    tracing::error!(server = %shared.name(), error = %e, "cannot encode snapshot part");
                }
                if !write_within(shared, &mut write, &buf).await {
                    return;
                }
            }
            continue;
        }
        buf.clear();
        encode(shared, first, &mut seq, &mut buf);
        while buf.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(Outgoing::Snapshot(v)) if v.len() > PART_TAGS => {
                    held = Some(Outgoing::Snapshot(v));
                    break;
                }
                Ok(m) => encode(shared, m, &mut seq, &mut buf),
                Err(_) => break,
            }
        }
        if !write_within(shared, &mut write, &buf).await {
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// Writes `buf` once the server is not paused, within `WRITE_TIMEOUT`; false when the
/// session must end (the client failed or did not read).
async fn write_within(shared: &Shared, write: &mut WriteHalf<BoxStream>, buf: &[u8]) -> bool {
    shared.wait_unpaused().await;
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(buf)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::warn!(server = %shared.name(), "client did not read for {}s; closing", WRITE_TIMEOUT.as_secs());
            false
        }
    }
}

fn encode(shared: &Shared, m: Outgoing, seq: &mut u64, buf: &mut BytesMut) {
    let result = match m {
        // Large ones are written part by part by the writer.
        Outgoing::Snapshot(values) => {
            *seq += 1;
            encode_into(&Frame::Snapshot { seq: *seq, values }, buf, MAX_FRAME_LEN)
        }
        Outgoing::Updates(batch) => {
            *seq += 1;
            batch.encode_frame(*seq, buf)
        }
        Outgoing::OwnUpdates(batch) => {
            *seq += 1;
            encode_into(&Frame::Updates { seq: *seq, batch }, buf, MAX_FRAME_LEN)
        }
        Outgoing::Heartbeat => {
            let s = shared.status();
            encode_into(
                &Frame::Heartbeat {
                    role: s.role,
                    epoch: s.epoch,
                    seq: *seq,
                    sent_at: shared.clock().wall(),
                },
                buf,
                MAX_FRAME_LEN,
            )
        }
        Outgoing::Frame(f) => encode_into(&f, buf, MAX_FRAME_LEN),
    };
    if let Err(e) = result {
        // Only an impossible oversize frame gets here; the seq gap it leaves tells the
        // client to resubscribe rather than trust a stream with a hole.
        tracing::error!(server = %shared.name(), error = %e, "cannot encode frame for client");
    }
}
