//! TLS on any [`Stream`](crate::Stream) (docs/design.md §13): the one place the workspace loads
//! certificates, builds rustls configurations, runs handshakes and reads what a peer's
//! certificate says about it (its common name, its Modbus/TCP Security role).
//!
//! Both ends are mutual: a server requires a client certificate signed by its CA, and a
//! client verifies the server's certificate against its CA and presents its own. The
//! handshake runs on the stream a backend gave, so TLS works the same over the kernel's
//! sockets, network namespaces and the simulated network.

use crate::net::{BoxStream, Stream};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The Modbus/TCP Security role extension (Modbus.org, "MB TCP Security" §6.2): a
/// UTF8String naming the client's role.
pub const ROLE_OID: &str = "1.3.6.1.4.1.50316.802.1";

/// Where a component finds its certificate, its key and the CA that signs its peers
/// (PEM files). The same three keys in every configuration file that turns TLS on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// This end's certificate chain (leaf first).
    pub cert: PathBuf,
    /// This end's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificate(s) a peer's certificate must chain to.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// Resolves relative paths against `base` (the directory of the configuration file
    /// that named them), so a configuration works from any working directory.
    pub fn relative_to(&self, base: &Path) -> TlsFiles {
        let at = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        TlsFiles {
            cert: at(&self.cert),
            key: at(&self.key),
            ca: at(&self.ca),
        }
    }
}

/// Which TLS versions a listener accepts: the client-access link and the sync link speak
/// TLS 1.3 only; Modbus/TCP Security allows 1.2 as its specification does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersions {
    Tls13,
    Tls12And13,
}

impl TlsVersions {
    fn list(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        match self {
            TlsVersions::Tls13 => &TLS13,
            TlsVersions::Tls12And13 => &BOTH,
        }
    }
}

/// Why TLS could not be set up from the files, each naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: cannot read {what}: {source}")]
    Read {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no {what} in it (expected PEM)")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: not a usable {what}: {reason}")]
    Unusable {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{cert} and {key} do not make a certificate and its key: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Why a handshake failed; the message is what goes into the log line.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no TLS handshake within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("TLS handshake failed: {}", explain(.0))]
    Failed(io::Error),
}

/// How often refused handshakes are logged, shared by every connection of a listener:
/// each one, ten at once, then at most ten a second; the rest are counted in the next
/// line. A flood of plaintext or bad clients must not flood the log.
#[derive(Debug)]
pub struct HandshakeRefusals(std::sync::Mutex<crate::admission::LogThrottle>);

impl Default for HandshakeRefusals {
    fn default() -> Self {
        HandshakeRefusals(std::sync::Mutex::new(
            crate::admission::LogThrottle::with_burst(Duration::from_millis(100), 10),
        ))
    }
}

impl HandshakeRefusals {
    /// `Some(n)`: log this refusal, mentioning `n` not logged since the last line.
    /// `now`: from the component's clock.
    pub fn handle_refusal(&self, now: tokio::time::Instant) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handle_event(now)
    }
}

/// rustls's reason in words an operator acts on, with rustls's own name kept after it.
fn explain(e: &io::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return e.to_string();
    };
    let plain = match tls {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the peer's certificate is not signed by the configured CA"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the peer's certificate has expired"
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the peer's certificate is not valid yet"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the peer's certificate does not name the address or host dialled"
        }
        E::NoCertificatesPresented => "the peer presented no certificate",
        E::AlertReceived(_) => "the peer refused the handshake (it may not accept our certificate)",
        E::InappropriateMessage { .. } | E::InvalidMessage(_) => {
            "the peer does not speak TLS (a plaintext client?)"
        }
        _ => return tls.to_string(),
    };
    format!("{plain} ({tls})")
}

fn read_pem<T>(
    path: &Path,
    what: &'static str,
    parse: impl FnOnce(&[u8]) -> Result<T, rustls::pki_types::pem::Error>,
) -> Result<T, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_path_buf(),
        what,
        source,
    })?;
    parse(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsSetupError::Empty {
            path: path.to_path_buf(),
            what,
        },
        e => TlsSetupError::Unusable {
            path: path.to_path_buf(),
            what,
            reason: e.to_string(),
        },
    })
}

fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = read_pem(path, what, |b| {
        CertificateDer::pem_slice_iter(b).collect::<Result<Vec<_>, _>>()
    })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Empty {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    read_pem(path, "private key", PrivateKeyDer::from_pem_slice)
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(path, "CA certificate")? {
        roots.add(c).map_err(|e| TlsSetupError::Unusable {
            path: path.to_path_buf(),
            what: "CA certificate",
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS end built from files: clones share it, and a reload replaces it whole for the
/// handshakes that follow (established sessions keep theirs). `T` is tokio-rustls's
/// acceptor or connector.
#[derive(Clone)]
struct Reloadable<T> {
    files: TlsFiles,
    versions: TlsVersions,
    build: fn(&TlsFiles, TlsVersions) -> Result<T, TlsSetupError>,
    current: Arc<std::sync::RwLock<T>>,
}

impl<T: Clone> Reloadable<T> {
    fn load(
        files: &TlsFiles,
        versions: TlsVersions,
        build: fn(&TlsFiles, TlsVersions) -> Result<T, TlsSetupError>,
    ) -> Result<Reloadable<T>, TlsSetupError> {
        Ok(Reloadable {
            files: files.clone(),
            versions,
            build,
            current: Arc::new(std::sync::RwLock::new(build(files, versions)?)),
        })
    }

    /// A fresh end from the files, not yet in use.
    fn rebuild(&self) -> Result<T, TlsSetupError> {
        (self.build)(&self.files, self.versions)
    }

    fn install(&self, fresh: T) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// What the next handshake uses.
    fn current(&self) -> T {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("cert", &self.files.cert)
            .finish()
    }
}

/// The server end: requires a client certificate signed by the CA. Clones share one
/// configuration, which [`TlsEnds::reload`] replaces.
#[derive(Debug, Clone)]
pub struct TlsServer {
    end: Reloadable<tokio_rustls::TlsAcceptor>,
}

impl TlsServer {
    /// Loads the files and builds the configuration; every error names its file.
    pub fn load(files: &TlsFiles, versions: TlsVersions) -> Result<TlsServer, TlsSetupError> {
        Ok(TlsServer {
            end: Reloadable::load(files, versions, Self::build)?,
        })
    }

    fn build(
        files: &TlsFiles,
        versions: TlsVersions,
    ) -> Result<tokio_rustls::TlsAcceptor, TlsSetupError> {
        let chain = certificates(&files.cert, "certificate")?;
        let key = private_key(&files.key)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(&files.ca)?),
            provider(),
        )
        .build()
        .map_err(|e| TlsSetupError::Unusable {
            path: files.ca.clone(),
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions.list())
            .map_err(|e| TlsSetupError::Unusable {
                path: files.cert.clone(),
                what: "certificate",
                reason: e.to_string(),
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsSetupError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
                reason: e.to_string(),
            })?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Runs the server side of the handshake within `timeout`. On success, the encrypted
    /// stream and what the client's certificate says.
    pub async fn accept(
        &self,
        stream: BoxStream,
        timeout: Duration,
    ) -> Result<(BoxStream, PeerIdentity), HandshakeError> {
        let acceptor = self.end.current();
        let tls = tokio::time::timeout(timeout, acceptor.accept(stream))
            .await
            .map_err(|_| HandshakeError::Timeout(timeout))?
            .map_err(HandshakeError::Failed)?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| PeerIdentity::of(c))
            .unwrap_or_default();
        Ok((Box::new(tls), peer))
    }
}

/// The client end: verifies the server against the CA and presents its certificate.
/// Clones share one configuration, which [`TlsEnds::reload`] replaces.
#[derive(Debug, Clone)]
pub struct TlsClient {
    end: Reloadable<tokio_rustls::TlsConnector>,
}

impl TlsClient {
    /// Loads the files and builds the configuration; every error names its file.
    pub fn load(files: &TlsFiles, versions: TlsVersions) -> Result<TlsClient, TlsSetupError> {
        Ok(TlsClient {
            end: Reloadable::load(files, versions, Self::build)?,
        })
    }

    fn build(
        files: &TlsFiles,
        versions: TlsVersions,
    ) -> Result<tokio_rustls::TlsConnector, TlsSetupError> {
        let chain = certificates(&files.cert, "certificate")?;
        let key = private_key(&files.key)?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions.list())
            .map_err(|e| TlsSetupError::Unusable {
                path: files.cert.clone(),
                what: "certificate",
                reason: e.to_string(),
            })?
            .with_root_certificates(roots(&files.ca)?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsSetupError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
                reason: e.to_string(),
            })?;
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    /// Runs the client side of the handshake within `timeout`; `server` is the name or IP
    /// address the server's certificate must carry.
    pub async fn connect(
        &self,
        stream: BoxStream,
        server: &str,
        timeout: Duration,
    ) -> Result<BoxStream, HandshakeError> {
        let name = ServerName::try_from(server.to_string()).map_err(|e| {
            HandshakeError::Failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{server}' is not a DNS name or IP address: {e}"),
            ))
        })?;
        let connector = self.end.current();
        let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
            .await
            .map_err(|_| HandshakeError::Timeout(timeout))?
            .map_err(HandshakeError::Failed)?;
        Ok(Box::new(tls))
    }
}

/// Every TLS end a component holds, reloaded together (SIGHUP in the binaries):
/// certificates are rotated without a restart.
#[derive(Debug, Clone, Default)]
pub struct TlsEnds {
    servers: Vec<TlsServer>,
    clients: Vec<TlsClient>,
}

impl TlsEnds {
    pub fn add_server(&mut self, end: &TlsServer) {
        self.servers.push(end.clone());
    }

    pub fn add_client(&mut self, end: &TlsClient) {
        self.clients.push(end.clone());
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.clients.is_empty()
    }

    /// Reads every end's files again. All or nothing: when one file is bad, no end
    /// changes (and the error names it), so a half-copied rotation never mixes old and
    /// new. Returns the certificate files now in use.
    pub fn reload(&self) -> Result<Vec<PathBuf>, TlsSetupError> {
        let servers = self
            .servers
            .iter()
            .map(|s| s.end.rebuild())
            .collect::<Result<Vec<_>, _>>()?;
        let clients = self
            .clients
            .iter()
            .map(|c| c.end.rebuild())
            .collect::<Result<Vec<_>, _>>()?;
        for (s, fresh) in self.servers.iter().zip(servers) {
            s.end.install(fresh);
        }
        for (c, fresh) in self.clients.iter().zip(clients) {
            c.end.install(fresh);
        }
        let files = self.servers.iter().map(|s| s.end.files.cert.clone());
        Ok(files
            .chain(self.clients.iter().map(|c| c.end.files.cert.clone()))
            .collect())
    }

    /// Handles one reload request: logs what happened (the binaries call this on SIGHUP).
    pub fn handle_reload_signal(&self, component: &str) {
        if self.is_empty() {
            tracing::info!(%component, "reload requested: no TLS configured, nothing to reload");
            return;
        }
        match self.reload() {
            Ok(files) => {
                let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                tracing::info!(%component, files = %files.join(", "), "TLS certificates reloaded: new handshakes use them, established sessions keep theirs");
            }
            Err(e) => {
                tracing::error!(%component, "TLS reload refused, the current certificates stay in use: {e}");
            }
        }
    }
}

/// What a peer's (verified) certificate says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common name: the identity a server binds a licence to.
    pub common_name: Option<String>,
    /// The Modbus/TCP Security role ([`ROLE_OID`]), when the certificate has one.
    pub role: Option<String>,
    /// The IP addresses among its subject alternative names: a server's certificate
    /// names the addresses it is reached at (the sync link checks its peer's).
    pub ips: Vec<std::net::IpAddr>,
}

impl PeerIdentity {
    /// Reads a DER certificate; a field that cannot be read is `None`.
    pub fn of(der: &[u8]) -> PeerIdentity {
        use x509_parser::prelude::*;
        let Ok((_, cert)) = parse_x509_certificate(der) else {
            return PeerIdentity::default();
        };
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let role = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == ROLE_OID)
            .and_then(|e| {
                x509_parser::der_parser::der::parse_der_utf8string(e.value)
                    .ok()
                    .and_then(|(_, s)| s.as_str().ok().map(str::to_string))
            });
        let ips = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::IPAddress(b) => match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        PeerIdentity {
            common_name,
            role,
            ips,
        }
    }

    /// `CN=name` (or `no common name`) for log lines.
    pub fn describe(&self) -> String {
        match &self.common_name {
            Some(cn) => format!("CN={cn}"),
            None => "a certificate without a common name".into(),
        }
    }
}

impl Stream for tokio_rustls::server::TlsStream<BoxStream> {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_nodelay(on)
    }
}

impl Stream for tokio_rustls::client::TlsStream<BoxStream> {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.get_ref().0.set_nodelay(on)
    }
}
