//! One OPC UA session to one connector on async-opcua's client, dialled over the
//! backend's network ([`Net`]: loopback, or from the third-party namespace in the netns
//! backend) with a security policy, mode and user identity.

use crate::scenario::{MasterRole, OpcUaSecurity};
use anyhow::{Context as _, Result, anyhow};
use opcua::client::transport::{
    Connector, OutgoingMessage, SecureChannelState, StreamConnection, StreamConnector,
    StreamTransport, TransportConfiguration,
};
use opcua::client::{
    Client, ClientBuilder, ConnectionSource, IdentityToken, Session, SessionEventLoop,
};
use opcua::core::comms::tcp_codec::TcpCodec;
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    DecodingOptions, EndpointDescription, Error as UaError, MessageSecurityMode, StatusCode,
};
use po_runtime::Net;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

/// The namespace of the site's tags, the same on every connector (docs/opcua.md).
pub const TAGS_NAMESPACE: &str = "urn:smart-connector:tags";

/// The password of the harness's UserName user `role` (its Argon2 hash is in every
/// connector's configuration; a lab secret, like the run's certificates).
pub fn password_of(role: MasterRole) -> String {
    format!("{}-lab-password", role.as_str())
}

/// What a client needs to reach one connector's OPC UA endpoint.
#[derive(Debug, Clone)]
pub struct UaTarget {
    /// Where the connector listens (and the host of its endpoint URL).
    pub addr: SocketAddr,
}

impl UaTarget {
    pub fn url(&self) -> String {
        format!("opc.tcp://{}/", self.addr)
    }
}

/// How a client identifies itself: the endpoint's security and the user.
#[derive(Debug, Clone)]
pub struct UaIdentity {
    pub security: OpcUaSecurity,
    pub user: Option<MasterRole>,
    /// The client's application instance certificate and key (secure endpoints), made
    /// and trusted by every connector before the run (`opcua::setup`).
    pub cert: Option<(PathBuf, PathBuf)>,
    /// The client's own PKI directory (the servers' certificates it met).
    pub pki_dir: PathBuf,
}

/// The harness clients' application URI (the SAN URI of their certificate).
pub const CLIENT_URI: &str = "urn:smart-connector:harness";

/// An open session and its event loop (aborted on drop).
pub struct UaSession {
    pub session: Arc<Session>,
    event_loop: JoinHandle<StatusCode>,
    /// Kept: the session's certificate store lives in it.
    _client: ClientHolder,
}

struct ClientHolder(#[allow(dead_code)] Client);

impl std::fmt::Debug for UaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaSession")
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Drop for UaSession {
    fn drop(&mut self) {
        self.event_loop.abort();
    }
}

impl UaSession {
    /// Whether its event loop still runs (it ends when the connection is lost: the
    /// harness opens a new session itself).
    pub fn is_alive(&self) -> bool {
        !self.event_loop.is_finished()
    }

    /// Closes the session (best effort, bounded), then stops its event loop. A session
    /// whose connection is already gone is only dropped: asking it to disconnect would
    /// wait out the whole bound for an answer that cannot come.
    pub async fn close(self) {
        if !self.is_alive() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), self.session.disconnect()).await;
    }
}

/// Dials one connector over the backend's network. The stack wants transports that are
/// `Sync`; a connection of the backend's network is only `Send`, so the bytes go through
/// an in-memory pipe pumped by a task (the harness's overhead, not the connector's).
#[derive(Clone)]
struct NetConnector {
    net: Arc<dyn Net>,
    from: Option<IpAddr>,
    addr: SocketAddr,
    url: String,
}

impl NetConnector {
    async fn dial(
        net: Arc<dyn Net>,
        from: Option<IpAddr>,
        addr: SocketAddr,
    ) -> Result<DuplexStream, UaError> {
        let stream = tokio::spawn(net.connect(from, addr))
            .await
            .map_err(|e| UaError::new(StatusCode::BadCommunicationError, e.to_string()))?
            .map_err(|e| {
                UaError::new(
                    StatusCode::BadCommunicationError,
                    format!("connecting to {addr}: {e}"),
                )
            })?;
        let _ = stream.set_nodelay(true);
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut stream = stream;
            let mut theirs = theirs;
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut theirs).await;
        });
        Ok(ours)
    }
}

impl Connector for NetConnector {
    type Transport = StreamTransport<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

    async fn connect(
        &self,
        channel: Arc<SecureChannelState>,
        outgoing_recv: tokio::sync::mpsc::Receiver<OutgoingMessage>,
        config: TransportConfiguration,
    ) -> Result<Self::Transport, UaError> {
        let (net, from, addr) = (self.net.clone(), self.from, self.addr);
        let dial = move |url: String, options: DecodingOptions| {
            let net = net.clone();
            async move {
                let pipe = NetConnector::dial(net, from, addr).await?;
                let (r, w) = tokio::io::split(pipe);
                Ok(StreamConnection::new(
                    FramedRead::new(r, TcpCodec::new(options)),
                    w,
                    url,
                ))
            }
        };
        StreamConnector::new(dial, self.url.clone())
            .connect(channel, outgoing_recv, config)
            .await
    }

    fn default_endpoint(&self) -> EndpointDescription {
        EndpointDescription::from(self.url.as_str())
    }
}

struct NetSource(NetConnector);

impl ConnectionSource for NetSource {
    type Builder = NetConnector;

    fn get_connector(&self, _endpoint: &EndpointDescription) -> Result<NetConnector, UaError> {
        Ok(self.0.clone())
    }
}

fn policy_and_mode(s: OpcUaSecurity) -> (SecurityPolicy, MessageSecurityMode) {
    use MessageSecurityMode::{Sign, SignAndEncrypt};
    use OpcUaSecurity as S;
    match s {
        S::None => (SecurityPolicy::None, MessageSecurityMode::None),
        S::Basic256Sha256Sign => (SecurityPolicy::Basic256Sha256, Sign),
        S::Basic256Sha256SignAndEncrypt => (SecurityPolicy::Basic256Sha256, SignAndEncrypt),
        S::Aes128Sha256RsaOaepSign => (SecurityPolicy::Aes128Sha256RsaOaep, Sign),
        S::Aes128Sha256RsaOaepSignAndEncrypt => {
            (SecurityPolicy::Aes128Sha256RsaOaep, SignAndEncrypt)
        }
        S::Aes256Sha256RsaPssSign => (SecurityPolicy::Aes256Sha256RsaPss, Sign),
        S::Aes256Sha256RsaPssSignAndEncrypt => (SecurityPolicy::Aes256Sha256RsaPss, SignAndEncrypt),
    }
}

fn client(id: &UaIdentity, request_timeout: Duration) -> Result<Client> {
    let mut b = ClientBuilder::new()
        .application_name("smart-connector harness")
        .application_uri(CLIENT_URI)
        .product_uri(CLIENT_URI)
        .pki_dir(id.pki_dir.clone())
        .create_sample_keypair(false)
        // The lab's servers are the harness's own: their certificates were made by it.
        .trust_server_certs(true)
        .verify_server_certs(false)
        // The harness reconnects itself (a new session on another server is its choice).
        .session_retry_limit(0)
        .request_timeout(request_timeout)
        .session_timeout(30_000)
        .keep_alive_interval(Duration::from_millis(500))
        .max_failed_keep_alive_count(2)
        // A publish response carries a notification per changed tag: thousands.
        .max_array_length(1 << 24)
        .max_message_size(64 << 20)
        .max_chunk_count(4096);
    if let Some((cert, key)) = &id.cert {
        b = b
            .certificate_path(cert.clone())
            .private_key_path(key.clone());
    }
    b.client()
        .map_err(|e| anyhow!("OPC UA client configuration: {}", e.join("; ")))
}

/// Opens a session on `target` from `from`, within `timeout`.
pub async fn connect(
    net: Arc<dyn Net>,
    from: Option<IpAddr>,
    target: &UaTarget,
    id: &UaIdentity,
    request_timeout: Duration,
    timeout: Duration,
) -> Result<UaSession> {
    tokio::time::timeout(
        timeout,
        connect_inner(net, from, target, id, request_timeout),
    )
    .await
    .map_err(|_| anyhow!("no OPC UA session with {} within {timeout:?}", target.addr))?
}

async fn connect_inner(
    net: Arc<dyn Net>,
    from: Option<IpAddr>,
    target: &UaTarget,
    id: &UaIdentity,
    request_timeout: Duration,
) -> Result<UaSession> {
    let client = client(id, request_timeout)?;
    let connector = NetConnector {
        net,
        from,
        addr: target.addr,
        url: target.url(),
    };
    let endpoints = client
        .get_endpoints(connector.clone(), &[], &[])
        .await
        .with_context(|| format!("GetEndpoints of {}", target.url()))?;
    let (policy, mode) = policy_and_mode(id.security);
    let wanted = EndpointDescription {
        endpoint_url: target.url().into(),
        security_policy_uri: policy.to_uri().into(),
        security_mode: mode,
        ..Default::default()
    };
    let token = match id.user {
        None => IdentityToken::Anonymous,
        Some(role) => IdentityToken::new_user_name(role.as_str(), password_of(role)),
    };
    let (session, event_loop): (Arc<Session>, SessionEventLoop<NetConnector>) = client
        .session_builder()
        .with_endpoints(endpoints)
        .user_identity_token(token)
        .with_connector(NetSource(connector))
        .connect_to_matching_endpoint(wanted)
        .with_context(|| format!("no {} endpoint on {}", id.security.as_str(), target.url()))?
        .build(client.certificate_store().clone())
        .context("building the OPC UA session")?;
    let event_loop = event_loop.spawn();
    let mut s = UaSession {
        session,
        event_loop,
        _client: ClientHolder(client),
    };
    if !s.session.wait_for_connection().await {
        let why = (&mut s.event_loop).await.ok();
        return Err(anyhow!(
            "OPC UA session with {} failed ({why:?})",
            target.url()
        ));
    }
    Ok(s)
}
