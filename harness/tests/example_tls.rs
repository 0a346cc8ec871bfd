//! `examples/arch3-tls/` as a user runs it: `certs.sh` makes the lab PKI with the
//! `smart-connector` on PATH, then the real po-sim and smart-connector binaries run
//! architecture 3 with TLS everywhere, and Modbus/TCP Security masters with role
//! certificates read and write on port 802 of each connector's host.
//!
//! Port 802 is privileged: this test needs root (CI runs as root); elsewhere it says it
//! was skipped.

use po_runtime::tls::{TlsClient, TlsFiles, TlsVersions};
use po_runtime::{Net, TokioNet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_modbus::prelude::*;

/// Kills and reaps the example's processes however the test ends.
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn copy_example(to: &Path) {
    let from = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/arch3-tls"
    ));
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        if path.is_file() {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

async fn master(
    certs: &Path,
    name: &str,
    addr: SocketAddr,
) -> Option<tokio_modbus::client::Context> {
    let files = TlsFiles {
        cert: certs.join(format!("{name}.crt")),
        key: certs.join(format!("{name}.key")),
        ca: certs.join("ca.crt"),
    };
    let client = TlsClient::load(&files, TlsVersions::Tls12And13).unwrap();
    let tcp = TokioNet.connect(None, addr).await.ok()?;
    let tls = client
        .connect(tcp, &addr.ip().to_string(), Duration::from_secs(5))
        .await
        .ok()?;
    Some(tokio_modbus::client::tcp::attach_slave(tls, Slave(1)))
}

/// Awaits the connector at `addr` serving data to an operator (status block state 1:
/// following a Primary).
async fn await_serving(certs: &Path, addr: SocketAddr) -> tokio_modbus::client::Context {
    for _ in 0..600 {
        if let Some(mut m) = master(certs, "operator", addr).await
            && let Ok(Ok(status)) = m.read_holding_registers(0, 1).await
            && status[0] == 1
        {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} never served Primary data over Modbus/TCP Security");
}

#[tokio::test]
async fn the_arch3_tls_example_runs_with_roles_on_port_802() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: port 802 needs it"
        );
        eprintln!("skipped: port 802 needs root");
        return;
    }
    let bins = harness::child::binaries().unwrap();
    let bin_dir: PathBuf = bins.smart_connector.parent().unwrap().to_path_buf();
    let dir = std::env::temp_dir().join(format!("arch3-tls-example-{}", std::process::id()));
    copy_example(&dir);

    // 1. The lab PKI, as the README says: certs.sh with smart-connector on PATH.
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(dir.join("certs.sh"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certs = dir.join("certs");
    for f in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "sc-a.key",
        "operator.crt",
        "viewer.key",
    ] {
        assert!(certs.join(f).exists(), "certs.sh did not write {f}");
    }

    // 2. The four components, each from its own configuration file.
    let spawn = |bin: &Path, sub: &str, config: &str| {
        Command::new(bin)
            .args([sub, "--config"])
            .arg(dir.join(config))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let running = Running(vec![
        spawn(&bins.po_sim, "serve", "po-a.toml"),
        spawn(&bins.po_sim, "serve", "po-b.toml"),
        spawn(&bins.smart_connector, "run", "connector-a.toml"),
        spawn(&bins.smart_connector, "run", "connector-b.toml"),
    ]);

    // 3. Both connectors serve Modbus/TCP Security on port 802 of their hosts.
    for host in ["127.0.3.1", "127.0.4.1"] {
        let addr: SocketAddr = format!("{host}:802").parse().unwrap();
        let mut operator = await_serving(&certs, addr).await;
        let mut viewer = master(&certs, "viewer", addr)
            .await
            .expect("viewer connects");
        // The breaker command of the first device: a writable one-register tag.
        // The points list from the running connector's status API (asking the servers
        // would present its licence a second time).
        let metrics = host;
        let points = Command::new(&bins.smart_connector)
            .args(["points", "--format", "json", "--from"])
            .arg(format!("http://{metrics}:9102"))
            .output()
            .unwrap();
        assert!(
            points.status.success(),
            "{}",
            String::from_utf8_lossy(&points.stderr)
        );
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&points.stdout).unwrap();
        let breaker = rows
            .iter()
            .find(|r| r["access"] == "read-write" && r["registers"] == 1)
            .unwrap_or_else(|| panic!("no writable one-register tag in {rows:?}"));
        let register = breaker["address"].as_u64().unwrap() as u16;
        assert_eq!(register, 127, "the README's commands write register 127");

        assert!(viewer.read_holding_registers(100, 4).await.unwrap().is_ok());
        assert_eq!(
            viewer.write_single_register(register, 1).await.unwrap(),
            Err(ExceptionCode::IllegalFunction),
            "{host}: a viewer may not write"
        );
        assert_eq!(
            operator.write_single_register(register, 1).await.unwrap(),
            Ok(()),
            "{host}: an operator writes"
        );
    }

    // 4. Rotation without a restart: a new certificate for sc-a's port, then SIGHUP.
    let sc_a: SocketAddr = "127.0.3.1:802".parse().unwrap();
    let before = served_certificate(&certs, sc_a).await;
    let out = Command::new(&bins.smart_connector)
        .args([
            "certs",
            "server",
            "--name",
            "sc-a-modbus",
            "--ip",
            "127.0.3.1",
            "--force",
            "--dir",
        ])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = nix::unistd::Pid::from_raw(running.0[2].id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut rotated = false;
    for _ in 0..200 {
        if served_certificate(&certs, sc_a).await != before {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rotated,
        "sc-a still serves the old certificate after SIGHUP"
    );
    let mut operator = await_serving(&certs, sc_a).await;
    assert!(
        operator
            .read_holding_registers(100, 2)
            .await
            .unwrap()
            .is_ok()
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The certificate (DER) the listener at `addr` presents to the operator.
async fn served_certificate(certs: &Path, addr: SocketAddr) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(certs.join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(certs.join("operator.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.join("operator.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(addr.ip().to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}
