//! `smart-connector certs opcua` and `certs opcua-client` (docs/opcua.md "Security"): the
//! OPC UA application instance certificate and the trust list, in the layout the stack
//! reads (`own/cert.der`, `private/private.pem`, `trusted/`, `rejected/`). OPC UA's
//! security policies sign and encrypt with RSA, so these are RSA 2048 keys, made by the
//! OPC UA stack's own certificate code; the application URI is the certificate's SAN URI
//! (a client checks it against the server's `ApplicationUri`).

use opcua::crypto::{CertificateStore, X509Data};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// How long the certificates are valid.
const VALIDITY_DAYS: u32 = 825;

#[derive(Debug, thiserror::Error)]
pub enum OpcUaCertsError {
    #[error("{0} exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("--uri `{0}` is not a URI (e.g. urn:smart-connector:sc-a)")]
    BadUri(String),
    #[error("--name `{0}` cannot be a file name: use letters, digits, '.', '-' and '_'")]
    BadName(String),
    #[error("{0}")]
    Stack(String),
    #[error("--role must not be empty")]
    EmptyRole,
    #[error("making the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn data(common_name: &str, uri: &str, names: &[String], ips: &[IpAddr]) -> X509Data {
    // The URI first (the stack and most clients take the first URI SAN), then the DNS
    // names and addresses; nothing guessed from this host.
    let addresses = names
        .iter()
        .cloned()
        .chain(ips.iter().map(|ip| ip.to_string()))
        .collect();
    let alt = X509Data::alt_host_names(uri, Some(addresses), false, false, false);
    X509Data {
        key_size: 2048,
        common_name: common_name.to_owned(),
        organization: "Smart Connector".into(),
        organizational_unit: "OPC UA".into(),
        country: "".into(),
        state: "".into(),
        alt_host_names: alt,
        certificate_duration_days: VALIDITY_DAYS,
    }
}

fn check_uri(uri: &str) -> Result<(), OpcUaCertsError> {
    match uri.split_once(':') {
        Some((scheme, rest))
            if !scheme.is_empty()
                && !rest.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Ok(())
        }
        _ => Err(OpcUaCertsError::BadUri(uri.to_owned())),
    }
}

fn private(path: &Path) -> Result<(), OpcUaCertsError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        OpcUaCertsError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

/// `certs opcua --dir D --uri U`: `D/own/cert.der`, `D/private/private.pem` (mode 0600)
/// and the empty `D/trusted/`, `D/rejected/` the server's `pki_dir` points at.
pub fn server(
    dir: &Path,
    uri: &str,
    names: &[String],
    ips: &[IpAddr],
    force: bool,
) -> Result<Vec<PathBuf>, OpcUaCertsError> {
    check_uri(uri)?;
    let store = CertificateStore::new(dir);
    let (cert, key) = (store.own_certificate_path(), store.own_private_key_path());
    for f in [&cert, &key] {
        if f.exists() && !force {
            return Err(OpcUaCertsError::Exists(f.clone()));
        }
    }
    store.ensure_pki_path().map_err(OpcUaCertsError::Stack)?;
    let mut names = names.to_vec();
    if !names.iter().any(|n| n == "localhost") {
        names.push("localhost".into());
    }
    let cn = uri.rsplit(':').next().unwrap_or(uri);
    CertificateStore::create_certificate_and_key(&data(cn, uri, &names, ips), true, &cert, &key)
        .map_err(OpcUaCertsError::Stack)?;
    private(&key)?;
    Ok(vec![
        cert,
        key,
        store.trusted_certs_dir(),
        store.rejected_certs_dir(),
    ])
}

/// `certs opcua-client --dir D --name N --uri U [--role R]`: a client's certificate and
/// key (`D/clients/N.der`, `D/clients/N.pem`, RSA 2048, the URI as SAN URI) for clients that
/// cannot make their own, trusted by the server (`D/trusted/N [thumbprint].der`). With a
/// role, the certificate carries the Modbus/TCP Security role extension
/// ([`crate::certs::ROLE_OID`]) and also identifies a *user* (an X509 user token) with
/// that role's rights.
pub fn client(
    dir: &Path,
    name: &str,
    uri: &str,
    role: Option<&str>,
    force: bool,
) -> Result<Vec<PathBuf>, OpcUaCertsError> {
    use rcgen::{
        CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256, SanType,
    };
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(OpcUaCertsError::BadName(name.to_owned()));
    }
    if role.is_some_and(str::is_empty) {
        return Err(OpcUaCertsError::EmptyRole);
    }
    check_uri(uri)?;
    let clients = dir.join("clients");
    let cert = clients.join(format!("{name}.der"));
    let key = clients.join(format!("{name}.pem"));
    for f in [&cert, &key] {
        if f.exists() && !force {
            return Err(OpcUaCertsError::Exists(f.clone()));
        }
    }
    for d in [&clients, &dir.join("trusted")] {
        std::fs::create_dir_all(d).map_err(|source| OpcUaCertsError::Write {
            path: d.clone(),
            source,
        })?;
    }
    // RSA, as every OPC UA security policy signs and encrypts with it; rcgen signs.
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| OpcUaCertsError::Stack(e.to_string()))?;
    let pkcs8 = rsa_key
        .to_pkcs8_der()
        .map_err(|e| OpcUaCertsError::Stack(e.to_string()))?;
    let pair = KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
        &PKCS_RSA_SHA256,
    )?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Smart Connector");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DataEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(VALIDITY_DAYS.into());
    if let Some(role) = role {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                crate::certs::ROLE_OID,
                crate::certs::utf8_string_der(role),
            ));
    }
    let made = params.self_signed(&pair)?;
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|source| OpcUaCertsError::Write {
            path: path.to_owned(),
            source,
        })
    };
    write(&cert, made.der())?;
    let pem = rsa_key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| OpcUaCertsError::Stack(e.to_string()))?;
    write(&key, pem.as_bytes())?;
    private(&key)?;
    // The stack finds a trusted certificate by this name ("CN [thumbprint].der"), the
    // name it gives a rejected one too: moving a file from rejected/ to trusted/ trusts it.
    let x509 = opcua::crypto::X509::from_der(made.der())
        .map_err(|e| OpcUaCertsError::Stack(e.to_string()))?;
    let trusted = dir
        .join("trusted")
        .join(CertificateStore::cert_file_name(&x509));
    write(&trusted, made.der())?;
    Ok(vec![cert, key, trusted])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_names_its_uri_and_addresses_and_is_not_overwritten() {
        let dir = std::env::temp_dir().join(format!("sc-opcua-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ip: IpAddr = "127.0.3.1".parse().unwrap();
        let files = server(&dir, "urn:smart-connector:sc-a", &[], &[ip], false).unwrap();
        assert!(files.iter().all(|f| f.exists()));
        let cert = CertificateStore::read_cert(&dir.join("own/cert.der")).unwrap();
        assert!(
            cert.is_application_uri_valid("urn:smart-connector:sc-a")
                .is_ok()
        );
        assert!(
            cert.is_application_uri_valid("urn:smart-connector:sc-b")
                .is_err()
        );
        let mode = std::fs::metadata(dir.join("private/private.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            server(&dir, "urn:smart-connector:sc-a", &[], &[], false),
            Err(OpcUaCertsError::Exists(_))
        ));
        assert!(matches!(
            server(&dir, "not a uri", &[], &[], true),
            Err(OpcUaCertsError::BadUri(_))
        ));
        let c = client(&dir, "hmi", "urn:example:hmi", Some("operator"), false).unwrap();
        let identity = po_runtime::tls::PeerIdentity::of(&std::fs::read(&c[0]).unwrap());
        assert_eq!(identity.role.as_deref(), Some("operator"));
        assert_eq!(identity.common_name.as_deref(), Some("hmi"));
        let stack = CertificateStore::read_cert(&c[0]).unwrap();
        assert!(stack.is_application_uri_valid("urn:example:hmi").is_ok());
        assert!(c.iter().all(|f| f.exists()));
        assert!(c[2].starts_with(dir.join("trusted")));
        assert!(c[2].to_str().unwrap().contains("hmi ["));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
