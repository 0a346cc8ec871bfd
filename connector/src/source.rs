//! One connection to a Power Operation server: connect (from the host address),
//! `Hello`, browse, then relay frames to the engine and commands to the server.
//! Reconnects with capped exponential backoff, forever.

use crate::config::{AccessKind, ConnectorConfig};
use crate::sequence::{SeqVerdict, SequenceTracker};
use futures::{SinkExt, StreamExt};
use po_protocol::{
    Access, ErrorCode, Frame, FrameCodec, PROTOCOL_VERSION, Role, TagId, TagInfo, TagSelection,
    TagValue, Value, WriteOutcome,
};
use po_runtime::admission::LogThrottle;
use po_runtime::tls::{TlsClient, TlsSetupError, TlsVersions};
use po_runtime::{BoxStream, Net};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

/// Where and how to reach one server.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub index: usize,
    pub name: String,
    pub address: SocketAddr,
    pub access: Access,
    pub host_address: Option<IpAddr>,
    pub client_name: String,
    pub connect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A connected server silent for this long is dropped and dialled again: a black
    /// hole never closes a connection, and the selector has long switched away by then.
    pub silence_timeout: Duration,
    /// Dials the server.
    pub net: Arc<dyn Net>,
    /// TLS on the link, when configured.
    pub tls: Option<SourceTls>,
}

/// The client end of TLS and the name the server's certificate must carry.
#[derive(Debug, Clone)]
pub struct SourceTls {
    pub client: po_runtime::tls::TlsClient,
    pub server_name: String,
}

/// What the engine asks of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceCommand {
    /// Subscribe (again); the data that answers it carries `generation`, so the engine
    /// can tell it from data of an earlier subscription still on its way.
    Subscribe {
        generation: u64,
    },
    Unsubscribe,
    Write {
        request_id: u64,
        tag: TagId,
        value: Value,
    },
}

/// What a source tells the engine.
#[derive(Debug)]
pub enum SourceMsg {
    Connected {
        role: Role,
        epoch: u64,
        /// Shared, so the start-up can keep it while the engine compares it, uncopied.
        catalog: Arc<Vec<TagInfo>>,
    },
    Lost {
        reason: String,
    },
    Heartbeat {
        role: Role,
        epoch: u64,
    },
    /// A snapshot, or one part of a large one (`complete` on its final part).
    Snapshot {
        values: Vec<TagValue>,
        complete: bool,
        /// The `Subscribe` it answers.
        generation: u64,
    },
    Updates {
        batch: Vec<TagValue>,
        generation: u64,
    },
    WriteResult {
        request_id: u64,
        outcome: WriteOutcome,
    },
    /// Data frames were lost (a sequence gap) and the session subscribed again: counted
    /// in `sc_resubscribes_total`.
    Resubscribed,
}

type Link = Framed<BoxStream, FrameCodec<Frame>>;

/// How each source is dialled. With `[tls]` the certificate files are read here, so a
/// bad file stops the start with an error naming it.
pub fn source_specs(
    config: &ConnectorConfig,
    net: &Arc<dyn Net>,
) -> Result<Vec<SourceSpec>, TlsSetupError> {
    let tls = match &config.tls {
        Some(files) => Some(TlsClient::load(files, TlsVersions::Tls13)?),
        None => None,
    };
    Ok(config
        .sources
        .iter()
        .enumerate()
        .map(|(index, s)| SourceSpec {
            index,
            name: s.name.clone(),
            address: s.address,
            access: match s.access {
                AccessKind::Local => Access::Local,
                AccessKind::ClientAccess => Access::ClientAccess {
                    licence: s.licence.clone().unwrap_or_default(),
                },
            },
            host_address: config.host_address,
            client_name: config.name.clone(),
            connect_timeout: config.policy.source_timeout.max(Duration::from_millis(500)),
            reconnect_min: config.policy.reconnect_min,
            reconnect_max: config.policy.reconnect_max,
            silence_timeout: (config.policy.source_timeout * 2).max(Duration::from_secs(1)),
            net: net.clone(),
            tls: tls.clone().map(|client| SourceTls {
                client,
                server_name: s
                    .server_name
                    .clone()
                    .unwrap_or_else(|| s.address.ip().to_string()),
            }),
        })
        .collect())
}

/// The same reconnection failure is warned about at most this often.
const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// Runs a source forever (until the engine goes away).
pub async fn run_source(
    spec: SourceSpec,
    mut commands: mpsc::Receiver<SourceCommand>,
    events: mpsc::Sender<(usize, SourceMsg)>,
) {
    let mut backoff = spec.reconnect_min;
    let mut first_attempt = true;
    // How the last reconnection attempt failed (None after a session that was up).
    let mut last_failure: Option<String> = None;
    let mut repeats = LogThrottle::new(REPEAT_EVERY);
    loop {
        let outcome = session(&spec, &mut commands, &events).await;
        let (reason, established) = match outcome {
            Ok(()) => ("connection closed by the server".to_string(), true),
            Err(SessionError::EngineGone) => return,
            Err(SessionError::Lost {
                reason,
                established,
            }) => (reason, established),
        };
        if established {
            backoff = spec.reconnect_min;
        }
        // One warning per loss and each time the way reconnecting fails changes (refused,
        // then timing out: the server's host went silent); the same failure again is
        // warned at most once per 10 s with the number of attempts not logged, so a
        // connector that cannot reach its server keeps saying so (docs/connector.md).
        let changed = last_failure.as_deref() != Some(reason.as_str());
        if established || first_attempt || changed {
            repeats = LogThrottle::new(REPEAT_EVERY);
            repeats.handle_event(tokio::time::Instant::now());
            if established || first_attempt {
                tracing::warn!(source = %spec.name, addr = %spec.address, %reason, retry_in = ?backoff, "source lost");
            } else {
                tracing::warn!(source = %spec.name, addr = %spec.address, %reason, retry_in = ?backoff, "source still unreachable");
            }
        } else if let Some(not_logged) = repeats.handle_event(tokio::time::Instant::now()) {
            tracing::warn!(source = %spec.name, addr = %spec.address, %reason, retry_in = ?backoff, not_logged, "source still unreachable");
        } else {
            tracing::debug!(source = %spec.name, addr = %spec.address, %reason, retry_in = ?backoff, "source still unreachable");
        }
        first_attempt = false;
        last_failure = (!established).then(|| reason.clone());
        if events
            .send((spec.index, SourceMsg::Lost { reason }))
            .await
            .is_err()
        {
            return;
        }
        // Commands sent while disconnected cannot be delivered; the engine re-routes
        // writes on `Lost`, so drop them here.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                c = commands.recv() => if c.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(spec.reconnect_max);
    }
}

enum SessionError {
    EngineGone,
    Lost { reason: String, established: bool },
}

fn lost(reason: impl Into<String>) -> SessionError {
    SessionError::Lost {
        reason: reason.into(),
        established: false,
    }
}

async fn connect(spec: &SourceSpec) -> Result<BoxStream, SessionError> {
    // TCP and TLS share one deadline: `connect_timeout` bounds the whole attempt.
    let deadline = tokio::time::Instant::now() + spec.connect_timeout;
    let dial = spec.net.connect(spec.host_address, spec.address);
    let stream = tokio::time::timeout(spec.connect_timeout, dial)
        .await
        .map_err(|_| {
            lost(format!(
                "connect timed out after {:?}",
                spec.connect_timeout
            ))
        })?
        .map_err(|e| lost(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    match &spec.tls {
        None => Ok(stream),
        Some(tls) => tls
            .client
            .connect(
                stream,
                &tls.server_name,
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            )
            .await
            .map_err(|e| lost(e.to_string())),
    }
}

async fn next_frame(
    link: &mut Link,
    timeout: Duration,
    waiting_for: &str,
) -> Result<Frame, SessionError> {
    match tokio::time::timeout(timeout, link.next()).await {
        Err(_) => Err(lost(format!("no {waiting_for} within {timeout:?}"))),
        Ok(None) => Err(lost(format!(
            "server closed the connection before {waiting_for}"
        ))),
        Ok(Some(Err(e))) => Err(lost(format!("bad frame from server: {e}"))),
        Ok(Some(Ok(Frame::Error { code, message }))) => Err(lost(refusal(code, &message))),
        Ok(Some(Ok(f))) => Ok(f),
    }
}

fn refusal(code: ErrorCode, message: &str) -> String {
    // A graceful stop is no refusal: the log should say the server is going away.
    if code == ErrorCode::ShuttingDown {
        return format!("server shutting down ({code}): {message}");
    }
    format!("server refused ({code}): {message}")
}

async fn session(
    spec: &SourceSpec,
    commands: &mut mpsc::Receiver<SourceCommand>,
    events: &mpsc::Sender<(usize, SourceMsg)>,
) -> Result<(), SessionError> {
    let stream = connect(spec).await?;
    let mut link = Framed::new(stream, FrameCodec::<Frame>::new());
    let send_err = |e: po_protocol::CodecError| lost(format!("send: {e}"));
    link.send(Frame::Hello {
        version: PROTOCOL_VERSION,
        client_name: spec.client_name.clone(),
        access: spec.access.clone(),
    })
    .await
    .map_err(send_err)?;
    let (mut role, mut epoch) = match next_frame(&mut link, spec.connect_timeout, "Welcome").await?
    {
        Frame::Welcome { role, epoch, .. } => (role, epoch),
        other => return Err(lost(format!("expected Welcome, got {}", other.kind()))),
    };
    link.send(Frame::Browse).await.map_err(send_err)?;
    // A large catalogue comes in parts, each within `connect_timeout` of the last.
    let mut catalog = Vec::new();
    loop {
        match next_frame(&mut link, spec.connect_timeout, "Catalog").await? {
            Frame::CatalogPart { tags } => catalog.extend(tags),
            Frame::Catalog { tags } => {
                catalog.extend(tags);
                break;
            }
            Frame::Heartbeat {
                role: r, epoch: e, ..
            } => {
                role = r;
                epoch = e;
            }
            other => return Err(lost(format!("expected Catalog, got {}", other.kind()))),
        }
    }
    tracing::info!(source = %spec.name, addr = %spec.address, %role, epoch, tags = catalog.len(), "source connected");
    events
        .send((
            spec.index,
            SourceMsg::Connected {
                role,
                epoch,
                catalog: Arc::new(catalog),
            },
        ))
        .await
        .map_err(|_| SessionError::EngineGone)?;

    let established = |reason: String| SessionError::Lost {
        reason,
        established: true,
    };
    // Data frames must be numbered without gaps.
    let mut seq = SequenceTracker::default();
    // The engine's latest `Subscribe` on this session.
    let mut generation = 0u64;
    let resubscribe = Frame::Subscribe {
        tags: TagSelection::All,
    };
    loop {
        tokio::select! {
            frame = tokio::time::timeout(spec.silence_timeout, link.next()) => {
                let Ok(frame) = frame else {
                    return Err(established(format!("server silent for {:?}", spec.silence_timeout)));
                };
                let frame = match frame {
                    None => return Err(established("server closed the connection".into())),
                    Some(Err(e)) => return Err(established(format!("bad frame from server: {e}"))),
                    Some(Ok(f)) => f,
                };
                let msg = match frame {
                    Frame::Heartbeat { role, epoch, seq: announced, .. } => {
                        let last = seq.last();
                        if seq.handle_heartbeat(announced) == SeqVerdict::Resubscribe {
                            tracing::warn!(source = %spec.name, ?last, announced, "data frames lost; resubscribing");
                            link.send(resubscribe.clone()).await.map_err(|e| established(format!("send: {e}")))?;
                            events.send((spec.index, SourceMsg::Resubscribed)).await.map_err(|_| SessionError::EngineGone)?;
                        }
                        SourceMsg::Heartbeat { role, epoch }
                    }
                    Frame::Snapshot { seq: at, values } => {
                        seq.handle_snapshot(at);
                        SourceMsg::Snapshot { values, complete: true, generation }
                    }
                    Frame::SnapshotPart { seq: at, part, last, values } => match seq.handle_snapshot_part(at, part, last) {
                        SeqVerdict::Accept => SourceMsg::Snapshot { values, complete: last, generation },
                        SeqVerdict::Drop => continue,
                        SeqVerdict::Resubscribe => {
                            tracing::warn!(source = %spec.name, got = at, part, "snapshot part lost; resubscribing");
                            link.send(resubscribe.clone()).await.map_err(|e| established(format!("send: {e}")))?;
                            events.send((spec.index, SourceMsg::Resubscribed)).await.map_err(|_| SessionError::EngineGone)?;
                            continue;
                        }
                    },
                    Frame::Updates { seq: at, batch } => {
                        let expected = seq.last().map(|s| s + 1);
                        match seq.handle_updates(at) {
                            SeqVerdict::Accept => SourceMsg::Updates { batch, generation },
                            SeqVerdict::Drop => continue,
                            SeqVerdict::Resubscribe => {
                                tracing::warn!(source = %spec.name, ?expected, got = at, "sequence gap; resubscribing");
                                link.send(resubscribe.clone()).await.map_err(|e| established(format!("send: {e}")))?;
                            events.send((spec.index, SourceMsg::Resubscribed)).await.map_err(|_| SessionError::EngineGone)?;
                                continue;
                            }
                        }
                    }
                    Frame::WriteResult { request_id, outcome } => SourceMsg::WriteResult { request_id, outcome },
                    Frame::Error { code, message } => return Err(established(refusal(code, &message))),
                    other => {
                        tracing::warn!(source = %spec.name, frame = other.kind(), "unexpected frame from server; ignored");
                        continue;
                    }
                };
                events.send((spec.index, msg)).await.map_err(|_| SessionError::EngineGone)?;
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Err(SessionError::EngineGone) };
                let frame = match cmd {
                    // Until the Snapshot arrives, updates still in flight from an
                        // earlier subscription are dropped, not mistaken for a gap.
                    SourceCommand::Subscribe { generation: g } => {
                        generation = g;
                        seq.handle_subscribe();
                        resubscribe.clone()
                    }
                    SourceCommand::Unsubscribe => {
                        seq.handle_subscribe();
                        Frame::Unsubscribe
                    }
                    SourceCommand::Write { request_id, tag, value } => Frame::Write { request_id, tag, value },
                };
                link.send(frame).await.map_err(|e| established(format!("send: {e}")))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A network on which every server refuses at once.
    #[derive(Debug)]
    struct Refusing;

    impl Net for Refusing {
        fn bind(
            &self,
            _: SocketAddr,
        ) -> futures::future::BoxFuture<'static, std::io::Result<po_runtime::BoxListener>> {
            unreachable!("a source never listens")
        }
        fn connect(
            &self,
            _: Option<IpAddr>,
            _: SocketAddr,
        ) -> futures::future::BoxFuture<'static, std::io::Result<BoxStream>> {
            Box::pin(async { Err(std::io::ErrorKind::ConnectionRefused.into()) })
        }
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// docs/connector.md: a server that keeps refusing is warned about at once, then at
    /// most once per 10 s with the number of attempts not logged (virtual time: exact).
    #[tokio::test(start_paused = true)]
    async fn a_server_that_keeps_refusing_is_warned_about_once_per_10_s() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::WARN)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let spec = SourceSpec {
            index: 0,
            name: "po-down".into(),
            address: "127.0.0.1:9".parse().unwrap(),
            access: Access::Local,
            host_address: None,
            client_name: "sc".into(),
            connect_timeout: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(2),
            net: Arc::new(Refusing),
            tls: None,
        };
        let (_commands_tx, commands) = mpsc::channel(4);
        let (events_tx, mut events) = mpsc::channel(1024);
        let source = tokio::spawn(run_source(spec, commands, events_tx));
        let start = tokio::time::Instant::now();
        let mut attempts = 0;
        // 35 s of refusals: about 35 attempts once the backoff reaches 1 s.
        while start.elapsed() < Duration::from_secs(35) {
            match events.recv().await.unwrap() {
                (0, SourceMsg::Lost { .. }) => attempts += 1,
                (_, other) => panic!("unexpected {other:?}"),
            }
        }
        source.abort();
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let warned: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        // At 0 s ("source lost"), then at 10, 20 and 30 s ("still unreachable").
        assert_eq!(warned.len(), 4, "{text}");
        assert!(warned[0].contains("source lost"), "{text}");
        let not_logged: u64 = warned[1..]
            .iter()
            .map(|l| {
                assert!(l.contains("source still unreachable"), "{l}");
                let n = l
                    .split("not_logged=")
                    .nth(1)
                    .expect("the count of quiet attempts");
                n.split_whitespace().next().unwrap().parse::<u64>().unwrap()
            })
            .sum();
        // Every attempt is either warned about or counted in a later warning, except the
        // quiet ones since the last warning.
        assert!(attempts > 20, "{attempts} attempts");
        assert!(
            not_logged + 4 <= attempts && attempts - (not_logged + 4) <= 10,
            "{attempts} attempts, {not_logged} not logged"
        );
    }

    #[test]
    fn a_shutting_down_server_is_logged_as_such_not_as_a_refusal() {
        use po_protocol::ErrorCode;
        let msg = super::refusal(ErrorCode::ShuttingDown, "server po-a is shutting down");
        assert_eq!(
            msg,
            "server shutting down (ShuttingDown): server po-a is shutting down"
        );
    }
}
