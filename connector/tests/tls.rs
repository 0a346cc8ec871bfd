//! TLS on the client-access link and Modbus/TCP Security (docs/design.md §13, docs/security.md):
//! real sockets, real rustls handshakes, certificates from `smart-connector certs`' library.
//! Every refusal is checked twice: what the client sees, and the server's log line.

mod common;

use futures::{SinkExt, StreamExt};
use po_protocol::codec::FrameCodec;
use po_protocol::{Access, ErrorCode, Frame, PROTOCOL_VERSION};
use po_runtime::tls::{TlsClient, TlsFiles, TlsVersions};
use po_runtime::{BoxStream, Net, TokioNet};
use po_simulator::config::ServerTlsSection;
use po_simulator::{ServerConfig, ServerHandle, SiteSpec};
use smart_connector::config::{
    AccessKind, ConnectorConfig, ModbusTlsConfig, RoleConfig, SourceConfig,
};
use smart_connector::connector::ConnectorHandle;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::prelude::*;
use tokio_util::codec::Framed;

/// Every log line of this test binary (tests run in parallel; each uses its own names).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info")
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Awaits a log line holding every one of `needles`; returns it.
async fn await_log(needles: &[&str]) -> String {
    for _ in 0..1000 {
        let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "no log line with {needles:?} in:\n{}",
        String::from_utf8_lossy(&log().lock().unwrap())
    );
}

/// A lab PKI: CA, server certificate (127.0.0.1, localhost), connectors `sc-a` and
/// `sc-b`, masters with roles `operator` and `viewer` and one without a role.
fn pki(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sc-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    smart_connector::certs::init(&smart_connector::certs::InitOptions {
        dir: dir.clone(),
        names: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
        force: false,
    })
    .unwrap();
    for (client, role) in [
        ("sc-a", None),
        ("sc-b", None),
        ("operator-1", Some("operator")),
        ("viewer-1", Some("viewer")),
        ("no-role", None),
    ] {
        smart_connector::certs::client(&dir, client, role, false).unwrap();
    }
    dir
}

fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join("ca.crt"),
    }
}

/// A standalone server named `name` with TLS: CA-1 bound to sc-a, CA-2 to sc-b.
async fn tls_server(dir: &Path, name: &str) -> ServerHandle {
    let server = files(dir, "server");
    ServerHandle::start(ServerConfig {
        limits: Default::default(),
        tls: Some(ServerTlsSection {
            cert: server.cert,
            key: server.key,
            ca: server.ca,
            licence_holders: [("CA-1", "sc-a"), ("CA-2", "sc-b")]
                .iter()
                .map(|(l, h)| (l.to_string(), h.to_string()))
                .collect(),
        }),
        name: name.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        host_address: None,
        licences: vec!["CA-1".into(), "CA-2".into()],
        seed: 5,
        field_epoch_us: 0,
        heartbeat: Duration::from_millis(50),
        client_queue: 64,
        site: SiteSpec {
            devices: 4,
            tags_per_device: 16,
            scan_period: Duration::from_millis(50),
        },
        redundancy: None,
    })
    .await
    .unwrap()
}

async fn dial(addr: SocketAddr) -> BoxStream {
    TokioNet.connect(None, addr).await.unwrap()
}

type Link = Framed<BoxStream, FrameCodec<Frame>>;

/// Says Hello over TLS with `files` presenting `licence`: the server's first answer
/// (`None` when it closed the connection instead) and the session, kept open while the
/// caller holds it.
async fn tls_session(
    files: &TlsFiles,
    server: SocketAddr,
    licence: &str,
) -> (Option<Frame>, Option<Link>) {
    let client = TlsClient::load(files, TlsVersions::Tls13).unwrap();
    let Ok(stream) = client
        .connect(dial(server).await, "127.0.0.1", Duration::from_secs(5))
        .await
    else {
        return (None, None);
    };
    let mut link = Framed::new(stream, FrameCodec::<Frame>::new());
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        client_name: "probe".into(),
        access: Access::ClientAccess {
            licence: licence.into(),
        },
    };
    if link.send(hello).await.is_err() {
        return (None, None);
    }
    match tokio::time::timeout(Duration::from_secs(10), link.next()).await {
        Ok(Some(Ok(f))) => (Some(f), Some(link)),
        _ => (None, None),
    }
}

async fn tls_hello(files: &TlsFiles, server: SocketAddr, licence: &str) -> Option<Frame> {
    tls_session(files, server, licence).await.0
}

#[tokio::test]
async fn a_licence_serves_only_the_identity_it_is_bound_to() {
    log();
    let dir = pki("identity");
    let s = tls_server(&dir, "po-identity").await;
    // The holder gets in.
    let (welcome, _holder) = tls_session(&files(&dir, "sc-a"), s.client_addr(), "CA-1").await;
    assert!(
        matches!(welcome, Some(Frame::Welcome { .. })),
        "{welcome:?}"
    );
    // Another valid certificate presenting the same licence does not.
    let refused = tls_hello(&files(&dir, "sc-b"), s.client_addr(), "CA-1").await;
    let Some(Frame::Error { code, message }) = refused else {
        panic!("expected an Error, got {refused:?}");
    };
    assert_eq!(code, ErrorCode::LicenceIdentityMismatch);
    assert_eq!(
        message,
        "Client Access licence 'CA-1' on server po-identity is issued to CN=sc-a; this client's certificate is CN=sc-b"
    );
    await_log(&[
        "po-identity",
        "LicenceIdentityMismatch",
        "issued to CN=sc-a",
    ])
    .await;
    // The holder's session was not knocked off by the attempt.
    assert_eq!(s.session_count(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn certificates_from_another_ca_expired_or_missing_are_refused_with_a_log_line() {
    log();
    let dir = pki("refusals");
    let s = tls_server(&dir, "po-refusals").await;
    let addr = s.client_addr();

    // 1. Another CA's certificate, with the right name (the client itself trusts the
    //    server's CA, so only the server has a reason to refuse).
    let other = pki("other-ca");
    let foreign = TlsFiles {
        ca: dir.join("ca.crt"),
        ..files(&other, "sc-a")
    };
    assert_eq!(tls_hello(&foreign, addr, "CA-1").await, None);
    await_log(&[
        "po-refusals",
        "client access connection refused: TLS handshake failed: the peer's certificate is not signed by the configured CA",
    ])
    .await;

    // 2. An expired certificate signed by the right CA.
    let expired = expired_client(&dir, "sc-a-expired");
    assert_eq!(tls_hello(&expired, addr, "CA-1").await, None);
    await_log(&[
        "po-refusals",
        "client access connection refused: TLS handshake failed: the peer's certificate has expired",
    ])
    .await;

    // 3. No certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    for c in rustls_pki_ca(&ca) {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    // TLS 1.3: the client finishes its side first; the refusal shows on the first read.
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        let _ = tls.write_all(b"hello").await;
        let mut buf = [0u8; 16];
        assert!(!matches!(tls.read(&mut buf).await, Ok(n) if n > 0));
    }
    await_log(&[
        "po-refusals",
        "client access connection refused: TLS handshake failed: the peer presented no certificate",
    ])
    .await;

    // The server serves its licensed client throughout.
    let welcome = tls_hello(&files(&dir, "sc-a"), addr, "CA-1").await;
    assert!(
        matches!(welcome, Some(Frame::Welcome { .. })),
        "{welcome:?}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn the_sync_link_takes_only_the_peer_servers_certificate() {
    log();
    let dir = pki("sync");
    let server = files(&dir, "server");
    let s = ServerHandle::start(ServerConfig {
        limits: Default::default(),
        tls: Some(ServerTlsSection {
            cert: server.cert,
            key: server.key,
            ca: server.ca,
            licence_holders: Default::default(),
        }),
        name: "po-sync".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        host_address: None,
        licences: vec![],
        seed: 5,
        field_epoch_us: 0,
        heartbeat: Duration::from_millis(50),
        client_queue: 64,
        site: SiteSpec {
            devices: 1,
            tags_per_device: 16,
            scan_period: Duration::from_millis(50),
        },
        redundancy: Some(po_simulator::config::RedundancySection {
            index: 0,
            sync_listen: "127.0.0.1:0".parse().unwrap(),
            // Nobody there: the peer is known by an address no test certificate carries.
            peer: "127.0.0.2:9".parse().unwrap(),
            failover_timeout: Duration::from_millis(300),
            failback: false,
        }),
    })
    .await
    .unwrap();
    let sync = s.sync_addr().unwrap();
    // A connector's certificate passes the handshake (same CA) but is not the peer's.
    let client = TlsClient::load(&files(&dir, "sc-a"), TlsVersions::Tls13).unwrap();
    let mut tls = client
        .connect(dial(sync).await, "127.0.0.1", Duration::from_secs(5))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent to a stranger");
    await_log(&[
        "po-sync",
        "sync link connection refused: the certificate (CN=sc-a) is not the peer server's: it does not carry the peer's address 127.0.0.2",
    ])
    .await;
    s.shutdown().await;
}

/// The certificate (DER) a TLS listener at `addr` presents, to the operator.
async fn served_certificate(dir: &Path, addr: SocketAddr) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_ca(&std::fs::read(dir.join("ca.crt")).unwrap()) {
        roots.add(c).unwrap();
    }
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(dir.join("operator-1.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("operator-1.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn certificates_are_rotated_without_a_restart_and_a_bad_rotation_changes_nothing() {
    log();
    let dir = pki("rotate");
    smart_connector::certs::server(
        &dir,
        "sc-a-modbus",
        &[],
        &["127.0.0.1".parse().unwrap()],
        false,
    )
    .unwrap();
    let server = tls_server(&dir, "po-rotate").await;
    let sc = secure_connector(&dir, &server, Duration::from_secs(5), "sc-a-modbus").await;
    let addr = sc.modbus_tls_addr.unwrap();
    let mut established = master(&dir, "operator-1", addr).await;
    await_serving(&mut established, 100).await;
    let before = served_certificate(&dir, addr).await;

    // A new certificate for the listener, then a reload: new handshakes get it, the
    // established session goes on.
    smart_connector::certs::server(
        &dir,
        "sc-a-modbus",
        &[],
        &["127.0.0.1".parse().unwrap()],
        true,
    )
    .unwrap();
    let files_in_use = sc.tls.reload().unwrap();
    assert_eq!(files_in_use.len(), 2, "{files_in_use:?}");
    let after = served_certificate(&dir, addr).await;
    assert_ne!(before, after);
    assert!(
        established
            .read_holding_registers(100, 2)
            .await
            .unwrap()
            .is_ok()
    );

    // A half-written rotation (a key that is not PEM) is refused whole, naming the file,
    // and the current certificate stays in use.
    std::fs::write(dir.join("sc-a-modbus.key"), "not a key").unwrap();
    let err = sc.tls.reload().unwrap_err().to_string();
    assert!(err.contains("sc-a-modbus.key"), "{err}");
    assert_eq!(served_certificate(&dir, addr).await, after);
    // The connector's link to the server was not disturbed either.
    assert!(
        established
            .read_holding_registers(100, 2)
            .await
            .unwrap()
            .is_ok()
    );
    sc.shutdown().await;
    server.shutdown().await;
}

fn rustls_pki_ca(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A client certificate for `sc-a` signed by `dir`'s CA that expired yesterday.
fn expired_client(dir: &Path, file: &str) -> TlsFiles {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["sc-a".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sc-a");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let out = TlsFiles {
        cert: dir.join(format!("{file}.crt")),
        key: dir.join(format!("{file}.key")),
        ca: dir.join("ca.crt"),
    };
    std::fs::write(&out.cert, cert.pem()).unwrap();
    std::fs::write(&out.key, key.serialize_pem()).unwrap();
    out
}

/// A connector on `server` over TLS, serving only Modbus/TCP Security (plain Modbus
/// off) with the certificate files named `listener`, roles `operator` (read, write) and
/// `viewer` (read), no default role.
async fn secure_connector(
    dir: &Path,
    server: &ServerHandle,
    timeout: Duration,
    listener: &str,
) -> ConnectorHandle {
    let mut config: ConnectorConfig = toml::from_str("name = \"sc-a\"").unwrap();
    config.sources = vec![SourceConfig {
        name: server.name().to_string(),
        address: server.client_addr(),
        access: AccessKind::ClientAccess,
        licence: Some("CA-1".into()),
        server_name: None,
    }];
    config.tls = Some(files(dir, "sc-a"));
    config.modbus.plain = false;
    let s = files(dir, listener);
    config.modbus.tls = Some(ModbusTlsConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        cert: s.cert,
        key: s.key,
        ca: s.ca,
        handshake_timeout: timeout,
        default_role: None,
    });
    config.modbus.roles = vec![
        RoleConfig {
            name: "operator".into(),
            read: true,
            write: true,
            tags: vec![],
            registers: vec![],
        },
        RoleConfig {
            name: "viewer".into(),
            read: true,
            write: false,
            tags: vec![],
            registers: vec![],
        },
    ];
    smart_connector::connector::start(config, Some(Duration::from_secs(10)))
        .await
        .unwrap()
}

/// A Modbus/TCP Security master with `name`'s certificate.
async fn master(dir: &Path, name: &str, addr: SocketAddr) -> tokio_modbus::client::Context {
    let client = TlsClient::load(&files(dir, name), TlsVersions::Tls12And13).unwrap();
    let stream = client
        .connect(dial(addr).await, "127.0.0.1", Duration::from_secs(5))
        .await
        .unwrap();
    tokio_modbus::client::tcp::attach_slave(stream, Slave(1))
}

/// The first writable digital tag's register (one word: 0 or 1).
fn breaker_command(sc: &ConnectorHandle) -> u16 {
    let map = sc.image.map();
    map.points()
        .iter()
        .find(|p| p.writable && p.words == 1)
        .expect("a writable one-register tag")
        .address
}

/// Awaits the first data (the status block says a source is active).
async fn await_serving(m: &mut tokio_modbus::client::Context, data: u16) {
    for _ in 0..500 {
        if let Ok(Ok(r)) = m.read_holding_registers(data, 2).await
            && r.iter().any(|w| *w != 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no data at register {data}");
}

#[tokio::test]
async fn a_viewer_reads_but_may_not_write_and_an_operator_writes() {
    log();
    let dir = pki("roles");
    let server = tls_server(&dir, "po-roles").await;
    let sc = secure_connector(&dir, &server, Duration::from_secs(5), "server").await;
    let addr = sc.modbus_tls_addr.expect("Modbus/TCP Security listener");
    assert_eq!(sc.modbus_addr, addr, "plain Modbus is off");
    let target = breaker_command(&sc);

    let mut viewer = master(&dir, "viewer-1", addr).await;
    await_serving(&mut viewer, 100).await;
    assert_eq!(
        viewer.write_single_register(target, 1).await.unwrap(),
        Err(ExceptionCode::IllegalFunction)
    );
    await_log(&[
        "Modbus/TCP Security connection accepted",
        "CN=viewer-1",
        "role=viewer",
    ])
    .await;

    let mut operator = master(&dir, "operator-1", addr).await;
    assert_eq!(
        operator.write_single_register(target, 1).await.unwrap(),
        Ok(())
    );
    // A certificate without a role, and no default role: nothing at all.
    let mut nobody = master(&dir, "no-role", addr).await;
    assert_eq!(
        nobody.read_holding_registers(100, 2).await.unwrap(),
        Err(ExceptionCode::IllegalFunction)
    );
    await_log(&["CN=no-role", "no default_role"]).await;
    assert!(
        sc.metrics
            .modbus_refused_role
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    sc.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn plaintext_and_stalled_clients_on_the_tls_port_are_dropped_without_disturbing_others() {
    log();
    let dir = pki("stall");
    let server = tls_server(&dir, "po-stall").await;
    let sc = secure_connector(&dir, &server, Duration::from_millis(300), "server").await;
    let addr = sc.modbus_tls_addr.unwrap();
    let mut operator = master(&dir, "operator-1", addr).await;
    await_serving(&mut operator, 100).await;

    // A client that opens TCP and never starts the handshake.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A plaintext Modbus master on the TLS port: FC3, 2 registers from 100.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 100, 0, 2])
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    // Refused: closed, with at most a TLS alert, never a Modbus answer.
    let n = tokio::time::timeout(Duration::from_secs(10), plain.read(&mut buf))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert!(n == 0 || buf[0] == 0x15, "not a TLS alert: {:?}", &buf[..n]);
    await_log(&[
        "Modbus/TCP Security connection refused: TLS handshake failed: the peer does not speak TLS (a plaintext client?)",
    ])
    .await;

    // The operator is served while the stalled client waits.
    assert!(
        operator
            .read_holding_registers(100, 2)
            .await
            .unwrap()
            .is_ok()
    );
    let n = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
        .await
        .expect("the stalled client is dropped")
        .unwrap_or(0);
    assert_eq!(n, 0);
    await_log(&[
        "Modbus/TCP Security connection refused",
        "no TLS handshake within 300ms",
    ])
    .await;
    assert!(
        operator
            .read_holding_registers(100, 2)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        sc.metrics
            .modbus_refused_tls
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    sc.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn pymodbus_reads_and_writes_over_modbus_tcp_security() {
    log();
    // A standard TLS Modbus client from another project (pymodbus, pinned in .ci/run).
    if !common::python_module_ready("pymodbus", "pip install pymodbus==3.16.1") {
        return;
    }
    let dir = pki("pymodbus");
    let server = tls_server(&dir, "po-pymodbus").await;
    let sc = secure_connector(&dir, &server, Duration::from_secs(5), "server").await;
    let addr = sc.modbus_tls_addr.unwrap();
    let target = breaker_command(&sc);
    let mut operator = master(&dir, "operator-1", addr).await;
    await_serving(&mut operator, 100).await;

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/pymodbus_tls_client.py"
    );
    let run = |name: &str, ops: Vec<String>| {
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(script)
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .arg("--ca")
            .arg(dir.join("ca.crt"))
            .arg("--cert")
            .arg(dir.join(format!("{name}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{name}.key")))
            .args(ops);
        async move {
            let out = cmd.output().await.unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    let op = run(
        "operator-1",
        vec![
            "--write".into(),
            format!("{target}=1"),
            "--read".into(),
            "100:4".into(),
        ],
    )
    .await;
    assert_eq!(op["write"], "ok", "{op}");
    assert_eq!(op["read"].as_array().map(Vec::len), Some(4), "{op}");
    let viewer = run(
        "viewer-1",
        vec![
            "--read".into(),
            "100:4".into(),
            "--write".into(),
            format!("{target}=0"),
        ],
    )
    .await;
    assert_eq!(viewer["read"].as_array().map(Vec::len), Some(4), "{viewer}");
    assert_eq!(viewer["write"]["exception"], 1, "{viewer}");
    sc.shutdown().await;
    server.shutdown().await;
}
