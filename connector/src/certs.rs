//! `smart-connector certs` (docs/design.md §13, a contract): a lab certificate authority, a server
//! certificate, and client certificates with an optional Modbus/TCP Security role, made
//! with rcgen. For labs and tests: a production site uses its own PKI.
//!
//! - `init --dir D`: `D/ca.crt`, `D/ca.key`, `D/server.crt`, `D/server.key` (the server's
//!   DNS names and IP addresses as subject alternative names).
//! - `client --dir D --name N [--role R]`: `D/N.crt`, `D/N.key`, signed by `D`'s CA; the
//!   role, when given, is the X.509v3 extension OID 1.3.6.1.4.1.50316.802.1 (UTF8String)
//!   of the Modbus/TCP Security specification.
//!
//! Keys are written mode 0600; existing files are never overwritten unless asked.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The Modbus/TCP Security role extension (Modbus.org, "MB TCP Security" §6.2).
pub const ROLE_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 50316, 802, 1];

/// How long the lab certificates are valid.
const VALIDITY_DAYS: i64 = 825;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{0} exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path} (run `smart-connector certs init --dir {dir}` first)")]
    ReadCa {
        path: PathBuf,
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable {what}: {reason}")]
    BadCa {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error(
        "--name `{0}` cannot be a file name: use letters, digits, '.', '-' and '_' (it names {0}.crt and {0}.key)"
    )]
    BadName(String),
    #[error(
        "--name `{0}` is taken by the files `certs init` writes ({0}.crt, {0}.key): choose another"
    )]
    ReservedName(String),
    #[error("--role must not be empty")]
    EmptyRole,
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What `certs init` writes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// DNS names of the server certificate (at least `localhost` is added).
    pub names: Vec<String>,
    /// IP addresses of the server certificate.
    pub ips: Vec<IpAddr>,
    pub force: bool,
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

fn distinguished(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Smart Connector lab");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Writes `text` to `path`, refusing to replace a file unless `force`. The bytes go to a
/// new file created with its final mode (0600 for `private` ones, so a key is never
/// readable by others, not even for a moment), which is then renamed over `path` (a
/// symbolic link at `path` is replaced, not followed).
fn write(path: &Path, text: &str, private: bool, force: bool) -> Result<(), CertsError> {
    if !force && path.symlink_metadata().is_ok() {
        return Err(CertsError::Exists(path.to_path_buf()));
    }
    let err = |source| CertsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
}

/// `certs init`: a lab CA and a server certificate signed by it. Returns the files written.
pub fn init(o: &InitOptions) -> Result<Vec<PathBuf>, CertsError> {
    std::fs::create_dir_all(&o.dir).map_err(|source| CertsError::Write {
        path: o.dir.clone(),
        source,
    })?;
    let files: Vec<PathBuf> = ["ca.crt", "ca.key", "server.crt", "server.key"]
        .iter()
        .map(|f| o.dir.join(f))
        .collect();
    if !o.force
        && let Some(f) = files.iter().find(|f| f.exists())
    {
        return Err(CertsError::Exists(f.clone()));
    }

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = distinguished("Smart Connector lab CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut names = o.names.clone();
    if !names.iter().any(|n| n == "localhost") {
        names.push("localhost".into());
    }
    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(names.clone())?;
    server
        .subject_alt_names
        .extend(o.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    server.distinguished_name = distinguished(&names[0]);
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        // The same certificate identifies a server to its peer on the sync link.
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    server.use_authority_key_identifier_extension = true;
    validity(&mut server);
    let server_cert = server.signed_by(&server_key, &issuer)?;

    write(&files[0], &ca_cert.pem(), false, o.force)?;
    write(&files[1], &issuer.key().serialize_pem(), true, o.force)?;
    write(&files[2], &server_cert.pem(), false, o.force)?;
    write(&files[3], &server_key.serialize_pem(), true, o.force)?;
    Ok(files)
}

/// `certs client`: a client certificate for `name` (its common name, the identity a
/// server binds a licence to), with `role` when given.
pub fn client(
    dir: &Path,
    name: &str,
    role: Option<&str>,
    force: bool,
) -> Result<Vec<PathBuf>, CertsError> {
    if role.is_some_and(str::is_empty) {
        return Err(CertsError::EmptyRole);
    }
    leaf(dir, name, &[], force, |params| {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(role) = role {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    ROLE_OID,
                    utf8_string_der(role),
                ));
        }
    })
}

/// `certs server`: one more server certificate, for `name` and its DNS names and IP
/// addresses, signed by `dir`'s CA. Server authentication only: it identifies a listener
/// (a connector's Modbus/TCP Security port, say) and cannot act as a client, so a host
/// holding its key cannot pose as a Power Operation server's sync peer or as a connector.
pub fn server(
    dir: &Path,
    name: &str,
    names: &[String],
    ips: &[IpAddr],
    force: bool,
) -> Result<Vec<PathBuf>, CertsError> {
    leaf(dir, name, names, force, |params| {
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    })
}

/// A certificate for `name` (and the DNS names `more_names`) signed by `dir`'s CA,
/// written as `dir/name.crt` and `dir/name.key`; `configure` sets what distinguishes a
/// client from a server.
fn leaf(
    dir: &Path,
    name: &str,
    more_names: &[String],
    force: bool,
    configure: impl FnOnce(&mut CertificateParams),
) -> Result<Vec<PathBuf>, CertsError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        || name.starts_with('.')
    {
        return Err(CertsError::BadName(name.to_string()));
    }
    if name == "ca" || name == "server" {
        return Err(CertsError::ReservedName(name.to_string()));
    }
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path)
            .map(|t| (path.clone(), t))
            .map_err(|source| CertsError::ReadCa {
                path,
                dir: dir.display().to_string(),
                source,
            })
    };
    let (key_path, key_pem) = read("ca.key")?;
    let (cert_path, cert_pem) = read("ca.crt")?;
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| CertsError::BadCa {
        path: key_path,
        what: "CA key",
        reason: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, ca_key).map_err(|e| CertsError::BadCa {
        path: cert_path,
        what: "CA certificate",
        reason: e.to_string(),
    })?;

    let files = vec![
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    ];
    if !force && let Some(f) = files.iter().find(|f| f.exists()) {
        return Err(CertsError::Exists(f.clone()));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(
        std::iter::once(name.to_string())
            .chain(more_names.iter().cloned())
            .collect::<Vec<_>>(),
    )?;
    params.distinguished_name = distinguished(name);
    params.use_authority_key_identifier_extension = true;
    configure(&mut params);
    validity(&mut params);
    let cert = params.signed_by(&key, &issuer)?;
    write(&files[0], &cert.pem(), false, force)?;
    write(&files[1], &key.serialize_pem(), true, force)?;
    Ok(files)
}

/// DER of an ASN.1 UTF8String (tag 12) holding `s`.
pub fn utf8_string_der(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = vec![0x0c];
    let len = bytes.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (be.len() - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_strings_are_encoded_with_short_and_long_lengths() {
        assert_eq!(utf8_string_der("operator"), b"\x0c\x08operator".to_vec());
        let long = "r".repeat(200);
        let der = utf8_string_der(&long);
        assert_eq!(&der[..3], &[0x0c, 0x81, 200]);
        assert_eq!(der.len(), 203);
    }
}
