//! `smart-connector certs` (docs/design.md §13 contract): the real binary writes a lab CA, a server
//! certificate and role-bearing client certificates; x509-parser reads them back.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use x509_parser::prelude::*;

fn certs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smart-connector"))
        .arg("certs")
        .args(args)
        .output()
        .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sc-certs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    let (_, pem) = parse_x509_pem(&text).unwrap();
    pem.contents
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_and_client_write_a_ca_a_server_and_role_bearing_clients() {
    let dir = temp_dir("ok");
    let d = dir.to_str().unwrap();
    let out = certs(&["init", "--dir", d, "--dns", "po-a", "--ip", "127.0.3.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = certs(&[
        "client",
        "--dir",
        d,
        "--name",
        "operator-1",
        "--role",
        "operator",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = certs(&["client", "--dir", d, "--name", "sc-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for key in ["ca.key", "server.key", "operator-1.key", "sc-a.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    let ca_der = pem_der(&dir.join("ca.crt"));
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca.is_ca());

    let server_der = pem_der(&dir.join("server.crt"));
    let (_, server) = X509Certificate::from_der(&server_der).unwrap();
    server.verify_signature(Some(ca.public_key())).unwrap();
    let san = server.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|g| g.to_string()).collect();
    for want in [
        "DNSName(po-a)",
        "DNSName(localhost)",
        "IPAddress(7f:00:03:01)",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(
        server
            .extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );

    let role = |file: &str| -> Option<String> {
        let der = pem_der(&dir.join(file));
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        c.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(c.issuer(), ca.subject());
        assert!(c.extended_key_usage().unwrap().unwrap().value.client_auth);
        c.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.4.1.50316.802.1")
            .map(|e| {
                // A UTF8String: tag 12, short length, the text.
                assert_eq!(e.value[0], 0x0c);
                assert_eq!(usize::from(e.value[1]), e.value.len() - 2);
                String::from_utf8(e.value[2..].to_vec()).unwrap()
            })
    };
    assert_eq!(role("operator-1.crt").as_deref(), Some("operator"));
    assert_eq!(role("sc-a.crt"), None, "no role unless asked");

    // `certs server`: one more listener's certificate, server authentication only.
    let out = certs(&[
        "server",
        "--dir",
        d,
        "--name",
        "sc-a-modbus",
        "--ip",
        "127.0.3.1",
        "--dns",
        "sc-a.lab",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir.join("sc-a-modbus.key")), 0o600);
    let der = pem_der(&dir.join("sc-a-modbus.crt"));
    let (_, listener) = X509Certificate::from_der(&der).unwrap();
    listener.verify_signature(Some(ca.public_key())).unwrap();
    let eku = listener.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth, "{eku:?}");
    let san = listener.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|g| g.to_string()).collect();
    assert_eq!(
        names,
        [
            "DNSName(sc-a-modbus)",
            "DNSName(sc-a.lab)",
            "IPAddress(7f:00:03:01)"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn certs_refuse_to_overwrite_bad_names_and_a_missing_ca() {
    let dir = temp_dir("refuse");
    let d = dir.to_str().unwrap();
    let err = |out: Output| {
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8(out.stderr).unwrap().replace(d, "<dir>")
    };
    insta::assert_snapshot!(err(certs(&["client", "--dir", d, "--name", "x"])), @"smart-connector: certs: cannot read <dir>/ca.key (run `smart-connector certs init --dir <dir>` first)");
    assert!(certs(&["init", "--dir", d]).status.success());
    let before = std::fs::read(dir.join("ca.key")).unwrap();
    insta::assert_snapshot!(err(certs(&["init", "--dir", d])), @"smart-connector: certs: <dir>/ca.crt exists; pass --force to replace it");
    assert_eq!(
        std::fs::read(dir.join("ca.key")).unwrap(),
        before,
        "the CA is kept"
    );
    insta::assert_snapshot!(err(certs(&["client", "--dir", d, "--name", "../evil"])), @"smart-connector: certs: --name `../evil` cannot be a file name: use letters, digits, '.', '-' and '_' (it names ../evil.crt and ../evil.key)");
    insta::assert_snapshot!(err(certs(&["client", "--dir", d, "--name", "ca", "--force"])), @"smart-connector: certs: --name `ca` is taken by the files `certs init` writes (ca.crt, ca.key): choose another");
    assert!(certs(&["init", "--dir", d, "--force"]).status.success());
    assert_ne!(
        std::fs::read(dir.join("ca.key")).unwrap(),
        before,
        "--force replaces"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
