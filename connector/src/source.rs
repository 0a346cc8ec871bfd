//! One connection to a Power Operation server: connect (from the host address),
//! `Hello`, browse, then relay frames to the engine and commands to the server.
//! Reconnects with capped exponential backoff, forever. A thin driver: every decision
//! (backoff, handshake, sequence gaps and resubscribing, silence) is in
//! `source_session.rs`, which gets `now` from the connector's clock.

use crate::config::{AccessKind, ConnectorConfig};
use crate::source_session::{Action, Handshake, HandshakeStep, Notice, Reconnect, Session};
use futures::{SinkExt, StreamExt};
use po_protocol::{Access, Frame, FrameCodec, PROTOCOL_VERSION};
use po_runtime::tls::{TlsClient, TlsSetupError, TlsVersions};
use po_runtime::{BoxStream, Clock, Net};
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
    /// The connector's clock: the session's decisions take `now` from it.
    pub clock: Arc<dyn Clock>,
    /// TLS on the link, when configured.
    pub tls: Option<SourceTls>,
}

/// The client end of TLS and the name the server's certificate must carry.
#[derive(Debug, Clone)]
pub struct SourceTls {
    pub client: po_runtime::tls::TlsClient,
    pub server_name: String,
}

pub use crate::source_session::{SourceCommand, SourceMsg};

type Link = Framed<BoxStream, FrameCodec<Frame>>;

/// How each source is dialled. With `[tls]` the certificate files are read here, so a
/// bad file stops the start with an error naming it.
pub fn source_specs(
    config: &ConnectorConfig,
    net: &Arc<dyn Net>,
    clock: &Arc<dyn Clock>,
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
            clock: clock.clone(),
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

/// Runs a source forever (until the engine goes away).
pub async fn run_source(
    spec: SourceSpec,
    mut commands: mpsc::Receiver<SourceCommand>,
    events: mpsc::Sender<(usize, SourceMsg)>,
) {
    let mut reconnect = Reconnect::new(spec.reconnect_min, spec.reconnect_max);
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
        let retry = reconnect.handle_session_end(spec.clock.now(), &reason, established);
        let retry_in = retry.wait;
        // docs/connector.md: a connector that cannot reach its server keeps saying so,
        // without a line per attempt.
        match retry.notice {
            Notice::Lost => {
                tracing::warn!(source = %spec.name, addr = %spec.address, %reason, ?retry_in, "source lost")
            }
            Notice::StillUnreachable { not_logged: None } => {
                tracing::warn!(source = %spec.name, addr = %spec.address, %reason, ?retry_in, "source still unreachable")
            }
            Notice::StillUnreachable {
                not_logged: Some(not_logged),
            } => {
                tracing::warn!(source = %spec.name, addr = %spec.address, %reason, ?retry_in, not_logged, "source still unreachable")
            }
            Notice::Quiet => {
                tracing::debug!(source = %spec.name, addr = %spec.address, %reason, ?retry_in, "source still unreachable")
            }
        }
        if events
            .send((spec.index, SourceMsg::Lost { reason }))
            .await
            .is_err()
        {
            return;
        }
        // Commands sent while disconnected cannot be delivered; the engine re-routes
        // writes on `Lost`, so drop them here.
        let wait = tokio::time::sleep(retry.wait);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                c = commands.recv() => if c.is_none() { return },
            }
        }
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
    let deadline = spec.clock.tokio_now() + spec.connect_timeout;
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
                deadline.saturating_duration_since(spec.clock.tokio_now()),
            )
            .await
            .map_err(|e| lost(e.to_string())),
    }
}

/// The next frame of the handshake, each within `timeout` of the last.
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
        Ok(Some(Ok(f))) => Ok(f),
    }
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
    let mut handshake = Handshake::default();
    let (role, epoch, catalog) = loop {
        let frame = next_frame(&mut link, spec.connect_timeout, handshake.waiting_for()).await?;
        match handshake.handle_frame(frame).map_err(lost)? {
            HandshakeStep::Send(f) => link.send(f).await.map_err(send_err)?,
            HandshakeStep::Wait => {}
            HandshakeStep::Done {
                role,
                epoch,
                catalog,
            } => break (role, epoch, catalog),
        }
    };
    tracing::info!(source = %spec.name, addr = %spec.address, %role, epoch, tags = catalog.len(), "source connected");
    events
        .send((
            spec.index,
            SourceMsg::Connected {
                role,
                epoch,
                catalog,
            },
        ))
        .await
        .map_err(|_| SessionError::EngineGone)?;

    let established = |reason: String| SessionError::Lost {
        reason,
        established: true,
    };
    let mut core = Session::new(&spec.name, spec.silence_timeout, spec.clock.now());
    // One timer for the whole session, moved only when it fires early (frames came
    // meanwhile), not rebuilt on every frame.
    let silence = tokio::time::sleep_until(core.poll_timeout().into());
    tokio::pin!(silence);
    loop {
        tokio::select! {
            () = &mut silence => {
                core.handle_timeout(spec.clock.now()).map_err(established)?;
                silence.as_mut().reset(core.poll_timeout().into());
            }
            frame = link.next() => {
                let frame = match frame {
                    None => return Err(established("server closed the connection".into())),
                    Some(Err(e)) => return Err(established(format!("bad frame from server: {e}"))),
                    Some(Ok(f)) => f,
                };
                core.handle_frame(spec.clock.now(), frame).map_err(established)?;
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Err(SessionError::EngineGone) };
                core.handle_command(cmd);
            }
        }
        while let Some(action) = core.poll_action() {
            match action {
                Action::Send(frame) => link
                    .send(frame)
                    .await
                    .map_err(|e| established(format!("send: {e}")))?,
                Action::Tell(msg) => events
                    .send((spec.index, msg))
                    .await
                    .map_err(|_| SessionError::EngineGone)?,
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
            clock: Arc::new(po_runtime::SystemClock),
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
        let msg =
            crate::source_session::refusal(ErrorCode::ShuttingDown, "server po-a is shutting down");
        assert_eq!(
            msg,
            "server shutting down (ShuttingDown): server po-a is shutting down"
        );
    }
}
