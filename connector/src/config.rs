//! The connector's configuration file (TOML), documented in `docs/connector.md`.
//!
//! Validation collects every problem it can find rather than stopping at the first, so
//! `smart-connector check` shows an engineer the whole list at once. Each problem names
//! the file, the line and the key.

use crate::registers::{STATUS_REGISTERS, WordOrder};
use ipnet::IpNet;
pub use po_runtime::config_diagnostics::{Diagnostics as ConfigError, Problem as ConfigProblem};
use po_runtime::tls::TlsFiles;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

// Every field has a serde default so that one bad key, removed during validation, does
// not turn into a second "missing field" error; required fields are checked in
// `validate`, which names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Name announced to the servers in `Hello` and used in logs.
    #[serde(default)]
    pub name: String,
    /// This host's address: connections to the servers leave from it (servers grant
    /// `Local` access by source address). Default: chosen by the OS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_address: Option<IpAddr>,
    /// One or two Power Operation servers; with two, the first is index 1 in the status
    /// block and the second index 2.
    #[serde(rename = "source", default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub modbus: ModbusConfig,
    #[serde(default)]
    pub map: MapConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// The OPC UA server (docs/opcua.md); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcua: Option<OpcUaConfig>,
    /// TLS on the client-access links to the servers (docs/security.md): this
    /// connector's certificate (its common name is the identity its licences are bound
    /// to), key, and the CA that signs the servers. Absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(default)]
    pub name: String,
    /// The server's client-access address.
    #[serde(default = "unset_addr")]
    pub address: SocketAddr,
    /// `local` (same host, no licence) or `client-access` (needs `licence`).
    #[serde(default)]
    pub access: AccessKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// With `[tls]`: the DNS name or IP address the server's certificate must carry.
    /// Default: the IP address of `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessKind {
    #[default]
    Local,
    ClientAccess,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A source silent for this long is unhealthy (connection loss counts at once).
    #[serde(with = "humantime_serde")]
    pub source_timeout: Duration,
    /// With no healthy source for this long, every tag's quality becomes `Stale`.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Serve a healthy Standby's data when no Primary is healthy (status state 2).
    pub serve_standby: bool,
    /// A Modbus write waits this long for the Primary's `WriteResult` (exception 0B after).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Reconnect backoff: first delay, doubling up to the maximum.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            source_timeout: Duration::from_secs(1),
            stale_after: Duration::from_secs(3),
            serve_standby: true,
            write_timeout: Duration::from_secs(3),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModbusConfig {
    pub listen: SocketAddr,
    /// Unit ids answered; requests for others get exception 0B. Empty: any.
    pub unit_ids: Vec<u8>,
    /// Client networks allowed to connect (CIDR; a bare address is that one host, /32
    /// or /128). Empty: any.
    #[serde(deserialize_with = "allow_list")]
    pub allow: Vec<IpNet>,
    /// Connections beyond this are refused (closed at once).
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Refuse every write with exception 01.
    pub read_only: bool,
    /// `big`: high word first (default); `little`: low word first.
    pub word_order: WordOrder,
    /// First register of tag data.
    pub data_base: u16,
    /// First register of per-tag quality codes (one register per mapped tag); none if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality_base: Option<u16>,
    /// Serve plain Modbus TCP on `listen`. Set false to serve only Modbus/TCP Security
    /// (`[modbus.tls]`).
    pub plain: bool,
    /// Modbus/TCP Security: TLS with client certificates and roles; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ModbusTlsConfig>,
    /// What each Modbus/TCP Security role may do (`[[modbus.role]]`).
    #[serde(rename = "role", skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleConfig>,
}

/// The Modbus/TCP Security listener (Modbus.org specification): TLS 1.2 or 1.3, mutual.
/// The allow-list, unit ids, limits and idle timeout of `[modbus]` apply to it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusTlsConfig {
    /// Default: port 802 on the address of `modbus.listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// This connector's certificate chain (PEM); relative paths are read from the
    /// configuration file's directory.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs the masters' certificates.
    pub ca: PathBuf,
    /// A master that has not finished the TLS handshake within this is dropped.
    #[serde(default = "default_tls_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// The role of a certificate without the role extension; absent: such a master may
    /// do nothing (every request is exception 01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
}

impl ModbusTlsConfig {
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        }
    }

    /// The address the TLS listener binds.
    pub fn listen_on(&self, plain: SocketAddr) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::new(plain.ip(), MODBUS_SECURITY_PORT))
    }
}

/// The Modbus/TCP Security port (Modbus.org).
pub const MODBUS_SECURITY_PORT: u16 = 802;

fn default_tls_handshake_timeout() -> Duration {
    Duration::from_secs(5)
}

/// One role of the Modbus/TCP Security authorization table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// As in the certificate's role extension (OID 1.3.6.1.4.1.50316.802.1).
    #[serde(default)]
    pub name: String,
    /// Read registers, coils and inputs.
    #[serde(default)]
    pub read: bool,
    /// Write registers and coils.
    #[serde(default)]
    pub write: bool,
    /// Only tags whose names match one of these patterns (`*` and `?`)...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// ...or holding/input registers in these ranges (`"100-199"`, `"7"`; coils are in
    /// scope through `tags` only). Neither: everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registers: Vec<String>,
}

impl Default for ModbusConfig {
    fn default() -> Self {
        ModbusConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1502)),
            unit_ids: vec![],
            allow: vec![],
            max_connections: 32,
            idle_timeout: Duration::from_secs(60),
            read_only: false,
            word_order: WordOrder::Big,
            data_base: 100,
            quality_base: None,
            plain: true,
            tls: None,
            roles: vec![],
        }
    }
}

/// The OPC UA server (docs/opcua.md): a second face over the same point image, with the
/// standard's non-transparent redundancy (`ServiceLevel`, `ServerRedundancy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpcUaConfig {
    pub listen: SocketAddr,
    /// This connector's application URI (its certificate's SAN URI). Default:
    /// `urn:smart-connector:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_uri: Option<String>,
    /// The namespace of the site's tags: the same on every connector of a site, so one
    /// NodeId names one tag everywhere (a client that fails over keeps its items).
    pub namespace_uri: String,
    /// Endpoints offered: `none`, or `POLICY/MODE` with POLICY one of `basic256sha256`,
    /// `aes128-sha256-rsaoaep`, `aes256-sha256-rsapss` and MODE `sign` or
    /// `sign-and-encrypt`.
    pub security: Vec<String>,
    /// Allow the `none` endpoint on a non-loopback listen address (labs only).
    pub allow_insecure: bool,
    /// Accept anonymous sessions (they may read everything and write nothing unless
    /// `anonymous_role` names a `[[modbus.role]]`).
    pub anonymous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_role: Option<String>,
    /// Accept X509 user tokens: a client certificate in `pki_dir/trusted/` whose Modbus/TCP
    /// Security role extension names a `[[modbus.role]]` (`certs opcua-client --role`).
    pub x509_users: bool,
    /// The application instance certificate, its key and the trust list
    /// (`own/cert.der`, `private/private.pem`, `trusted/`, `rejected/`), as
    /// `smart-connector certs opcua` makes them. Needed by every endpoint but `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pki_dir: Option<PathBuf>,
    /// Client networks allowed to connect (as `modbus.allow`). Empty: any.
    #[serde(deserialize_with = "allow_list")]
    pub allow: Vec<IpNet>,
    /// TCP connections at once; more are refused.
    pub max_connections: usize,
    pub max_sessions: usize,
    pub max_subscriptions_per_session: usize,
    pub max_monitored_items_per_subscription: usize,
    /// The largest request (bytes) a client may send.
    pub max_message_size: usize,
    /// UserName users (`[[opcua.user]]`).
    #[serde(rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<OpcUaUser>,
    pub redundancy: OpcUaRedundancy,
}

impl Default for OpcUaConfig {
    fn default() -> Self {
        OpcUaConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4840)),
            application_uri: None,
            namespace_uri: "urn:smart-connector:tags".into(),
            security: vec!["none".into()],
            allow_insecure: false,
            anonymous: false,
            anonymous_role: None,
            x509_users: false,
            pki_dir: None,
            allow: vec![],
            max_connections: 64,
            max_sessions: 32,
            max_subscriptions_per_session: 16,
            max_monitored_items_per_subscription: 200_000,
            max_message_size: 16 << 20,
            users: vec![],
            redundancy: OpcUaRedundancy::default(),
        }
    }
}

impl OpcUaConfig {
    /// The application URI: configured, or `urn:smart-connector:<name>`.
    pub fn application_uri(&self, connector_name: &str) -> String {
        self.application_uri
            .clone()
            .unwrap_or_else(|| format!("urn:smart-connector:{connector_name}"))
    }
}

/// A UserName user: its password is stored as a hash only
/// (`smart-connector opcua-password` makes one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcUaUser {
    pub name: String,
    /// An Argon2 PHC string (`$argon2id$...`).
    pub password_hash: String,
    /// A `[[modbus.role]]` name: what this user may read and write.
    pub role: String,
}

/// `[opcua.redundancy]`: what the server announces in `ServerRedundancy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpcUaRedundancy {
    pub support: RedundancySupportKind,
    /// The other connectors' application URIs (`ServerUriArray` lists this one first).
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedundancySupportKind {
    #[default]
    None,
    Warm,
    Hot,
}

/// Which tags are served where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapConfig {
    /// `auto`: every tag from `data_base` in catalogue order, spilling over into further
    /// units. `device`: one unit id per device, devices of one kind laid out alike.
    /// `explicit`: only `points`.
    pub mode: MapMode,
    #[serde(rename = "point")]
    pub points: Vec<PointConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapMode {
    #[default]
    Auto,
    Explicit,
    /// One unit id per device (the tag name up to its last `.`), as Modbus gateways do.
    Device,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    /// Tag name as in the server's catalogue.
    #[serde(default)]
    pub tag: String,
    /// First holding/input register of the value.
    #[serde(default = "unset_register")]
    pub address: u16,
    /// The Modbus unit id serving it; default the first of `modbus.unit_ids`, else 1.
    #[serde(default)]
    pub unit: Option<u8>,
}

/// Placeholder for a missing address; `validate` reports it.
fn unset_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn unset_register() -> u16 {
    u16::MAX
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Prometheus text endpoint (`GET /metrics`).
    pub listen: SocketAddr,
    /// HTTP connections open at once; beyond this a new one is closed at once.
    #[serde(default = "default_http_connections")]
    pub max_connections: usize,
    /// A request not received whole within this is dropped (slow clients, slowloris).
    #[serde(default = "default_http_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
}

impl MetricsConfig {
    /// Listening on `listen`, every limit at its default.
    pub fn at(listen: SocketAddr) -> MetricsConfig {
        MetricsConfig {
            listen,
            max_connections: default_http_connections(),
            read_timeout: default_http_read_timeout(),
        }
    }
}

fn default_http_connections() -> usize {
    16
}

fn default_http_read_timeout() -> Duration {
    Duration::from_secs(5)
}

impl ConnectorConfig {
    pub fn load(path: &Path) -> Result<ConnectorConfig, ConfigError> {
        let mut config = po_runtime::config_diagnostics::load(path, ConnectorConfig::validate)?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Makes certificate paths relative to `dir` (the configuration file's directory)
    /// absolute, so the connector reads the same files from any working directory.
    pub fn resolve_paths(&mut self, dir: &Path) {
        if let Some(t) = &mut self.tls {
            *t = t.relative_to(dir);
        }
        if let Some(t) = &mut self.modbus.tls {
            let files = t.files().relative_to(dir);
            (t.cert, t.key, t.ca) = (files.cert, files.key, files.ca);
        }
        if let Some(o) = &mut self.opcua
            && let Some(pki) = &o.pki_dir
            && pki.is_relative()
        {
            o.pki_dir = Some(dir.join(pki));
        }
    }

    /// Parses and validates, every problem at once (po_runtime::config_diagnostics): a
    /// key serde refuses is removed and the rest still checked, then [`Self::validate`].
    pub fn parse(text: &str, origin: &str) -> Result<ConnectorConfig, ConfigError> {
        po_runtime::config_diagnostics::check(text, origin, ConnectorConfig::validate)
    }

    /// The descriptors this configuration may hold open at once (docs/connector.md,
    /// "Connection floods"): each source's connection and the one that replaces it while
    /// it reconnects, every Modbus connection, every HTTP connection.
    pub fn descriptor_budget(&self) -> po_runtime::descriptors::DescriptorBudget {
        let mut b = po_runtime::descriptors::DescriptorBudget::new()
            .add("sources (2 each)", 2 * self.sources.len() as u64)
            .add("modbus.max_connections", self.modbus.max_connections as u64);
        if let Some(o) = &self.opcua {
            // Each OPC UA connection is two sockets: the client's and its relay to the stack.
            b = b.add(
                "opcua.max_connections (2 each)",
                2 * o.max_connections as u64,
            );
        }
        // Each Modbus listener has its own cap.
        if self.modbus.plain && self.modbus.tls.is_some() {
            b = b.add(
                "modbus.max_connections (Modbus/TCP Security)",
                self.modbus.max_connections as u64,
            );
        }
        if let Some(h) = &self.metrics {
            b = b.add("metrics.max_connections", h.max_connections as u64);
        }
        b
    }

    /// Rules serde cannot express. Returns (key, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |k: &str, m: String| out.push((k.to_string(), m));
        if self.name.trim().is_empty() {
            bad("name", "must not be empty".into());
        }
        if self.sources.is_empty() || self.sources.len() > 2 {
            bad(
                "source",
                format!(
                    "needs one or two [[source]] entries, found {}",
                    self.sources.len()
                ),
            );
        }
        for (i, s) in self.sources.iter().enumerate() {
            if s.name.trim().is_empty() {
                bad(&format!("source[{i}].name"), "is missing".into());
            }
            if s.address == unset_addr() {
                bad(
                    &format!("source[{i}].address"),
                    "is missing (host:port of the server's client access)".into(),
                );
            }
            match (s.access, &s.licence) {
                (AccessKind::ClientAccess, None) => bad(
                    &format!("source[{i}].licence"),
                    format!("source '{}' uses client-access and needs a licence", s.name),
                ),
                (AccessKind::Local, Some(_)) => bad(
                    &format!("source[{i}].licence"),
                    format!(
                        "source '{}' uses local access; a licence is only for client-access",
                        s.name
                    ),
                ),
                _ => {}
            }
        }
        // Two entries for one server would count it twice in every rule that counts
        // reachable sources (and a name twice makes the status page ambiguous).
        for (i, s) in self.sources.iter().enumerate() {
            for (j, t) in self.sources[..i].iter().enumerate() {
                if !s.name.trim().is_empty() && s.name == t.name {
                    bad(
                        &format!("source[{i}].name"),
                        format!("'{}' is also the name of source[{j}]", s.name),
                    );
                }
                if s.address != unset_addr() && s.address == t.address {
                    bad(
                        &format!("source[{i}].address"),
                        format!(
                            "{} is also the address of source[{j}] ('{}'): one server would count twice",
                            s.address, t.name
                        ),
                    );
                }
            }
        }
        let p = &self.policy;
        if p.source_timeout.is_zero() {
            bad("policy.source_timeout", "must be longer than 0".into());
        }
        if p.write_timeout.is_zero() {
            bad("policy.write_timeout", "must be longer than 0".into());
        }
        if p.reconnect_min.is_zero() || p.reconnect_max < p.reconnect_min {
            bad(
                "policy.reconnect_max",
                "reconnect_min must be > 0 and reconnect_max at least reconnect_min".into(),
            );
        }
        if let Some(o) = &self.opcua {
            validate_opcua(o, &self.modbus.roles, &mut bad);
        }
        let m = &self.modbus;
        if !m.plain && m.tls.is_none() {
            bad(
                "modbus.plain",
                "is false and there is no [modbus.tls]: nothing would serve Modbus".into(),
            );
        }
        if let Some(t) = &m.tls {
            // Port 0 (chosen by the OS) never clashes.
            if t.listen_on(m.listen) == m.listen && m.plain && m.listen.port() != 0 {
                bad(
                    "modbus.tls.listen",
                    format!(
                        "{} is also modbus.listen; set modbus.plain = false or another port",
                        m.listen
                    ),
                );
            }
            if t.handshake_timeout.is_zero() {
                bad(
                    "modbus.tls.handshake_timeout",
                    "must be longer than 0".into(),
                );
            }
            if let Some(d) = &t.default_role
                && !m.roles.iter().any(|r| &r.name == d)
            {
                bad(
                    "modbus.tls.default_role",
                    format!("'{d}' is not a [[modbus.role]]"),
                );
            }
        } else if !m.roles.is_empty() && self.opcua.is_none() {
            bad(
                "modbus.role",
                "roles apply only to Modbus/TCP Security and OPC UA users: add [modbus.tls] or [opcua]".into(),
            );
        }
        // Every listener needs an address of its own (port 0, chosen by the OS, never
        // clashes); a clash would only show when `run` fails to bind.
        let mut listeners: Vec<(&str, SocketAddr)> = Vec::new();
        if m.plain {
            listeners.push(("modbus.listen", m.listen));
        }
        if let Some(t) = &m.tls {
            listeners.push(("modbus.tls.listen", t.listen_on(m.listen)));
        }
        if let Some(h) = &self.metrics {
            listeners.push(("metrics.listen", h.listen));
        }
        for (i, (key, addr)) in listeners.iter().enumerate() {
            if addr.port() == 0 {
                continue;
            }
            let clash = listeners[..i].iter().find(|(_, other)| {
                other.port() == addr.port()
                    && (other.ip() == addr.ip()
                        || other.ip().is_unspecified()
                        || addr.ip().is_unspecified())
            });
            // modbus.tls.listen on modbus.listen has its own message above.
            if let Some((other_key, other)) = clash
                && !(*key == "modbus.tls.listen" && *other_key == "modbus.listen")
            {
                bad(
                    key,
                    format!(
                        "{addr} is also {other_key} ({other}): each listener needs its own port"
                    ),
                );
            }
        }
        let mut role_names = std::collections::HashSet::new();
        for (i, r) in m.roles.iter().enumerate() {
            if r.name.trim().is_empty() {
                bad(&format!("modbus.role[{i}].name"), "is missing".into());
            } else if !role_names.insert(&r.name) {
                bad(
                    &format!("modbus.role[{i}].name"),
                    format!("role '{}' is listed twice", r.name),
                );
            }
            for range in &r.registers {
                if let Err(e) = parse_range(range) {
                    bad(&format!("modbus.role[{i}].registers"), e);
                }
            }
        }
        if m.max_connections == 0 {
            bad("modbus.max_connections", "must be at least 1".into());
        }
        if let Some(h) = &self.metrics {
            if h.max_connections == 0 {
                bad("metrics.max_connections", "must be at least 1".into());
            }
            if h.read_timeout.is_zero() {
                bad("metrics.read_timeout", "must be longer than 0".into());
            }
        }
        if m.data_base < STATUS_REGISTERS {
            bad(
                "modbus.data_base",
                format!(
                    "{} overlaps the status block (registers 0..{})",
                    m.data_base, STATUS_REGISTERS
                ),
            );
        }
        if self.map.mode != MapMode::Explicit && !self.map.points.is_empty() {
            bad(
                "map.point",
                format!(
                    "points are listed but map.mode is {}; set mode = \"explicit\"",
                    if self.map.mode == MapMode::Auto {
                        "auto"
                    } else {
                        "device"
                    }
                ),
            );
        }
        if self.map.mode == MapMode::Explicit && self.map.points.is_empty() {
            bad(
                "map.point",
                "map.mode is explicit but no [[map.point]] is listed".into(),
            );
        }
        // Each unit id names one bank: a repeated one would hide another bank.
        let mut ids = std::collections::HashSet::new();
        for u in &self.modbus.unit_ids {
            if !ids.insert(u) {
                bad(
                    "modbus.unit_ids",
                    format!("unit id {u} is listed twice (each id names one unit)"),
                );
            }
        }
        // Registers are per unit: the same address in two units is two registers.
        let default_unit = self.modbus.unit_ids.first().copied().unwrap_or(1);
        let mut seen: std::collections::HashMap<(u8, u16), &str> = Default::default();
        let mut names: std::collections::HashSet<&str> = Default::default();
        for (i, pt) in self.map.points.iter().enumerate() {
            if pt.tag.is_empty() {
                bad(&format!("map.point[{i}].tag"), "is missing".into());
            }
            if pt.address == unset_register() {
                bad(&format!("map.point[{i}].address"), "is missing".into());
                continue;
            }
            if pt.address < STATUS_REGISTERS {
                bad(
                    &format!("map.point[{i}].address"),
                    format!(
                        "{} is inside the status block (0..{})",
                        pt.address, STATUS_REGISTERS
                    ),
                );
            }
            let unit = pt.unit.unwrap_or(default_unit);
            if let Some(u) = pt.unit
                && !self.modbus.unit_ids.is_empty()
                && !self.modbus.unit_ids.contains(&u)
            {
                bad(
                    &format!("map.point[{i}].unit"),
                    format!(
                        "unit {u} is not in modbus.unit_ids {:?}",
                        self.modbus.unit_ids
                    ),
                );
            }
            if let Some(other) = seen.insert((unit, pt.address), &pt.tag) {
                bad(
                    &format!("map.point[{i}].address"),
                    format!(
                        "register {} of unit {unit} is already used by '{other}'",
                        pt.address
                    ),
                );
            }
            if !names.insert(&pt.tag) {
                bad(
                    &format!("map.point[{i}].tag"),
                    format!("'{}' is mapped twice", pt.tag),
                );
            }
        }
        out
    }
}

/// `allow` entries: a network (`127.0.1.0/24`) or one address (`127.0.1.1`, taken as
/// /32 or /128); a wrong entry is named in the error.
fn allow_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let entries = Vec::<String>::deserialize(d)?;
    entries
        .iter()
        .map(|e| parse_allow_entry(e).map_err(serde::de::Error::custom))
        .collect()
}

/// The endpoints `[opcua] security` may list.
pub const OPCUA_SECURITY: [&str; 7] = [
    "none",
    "basic256sha256/sign",
    "basic256sha256/sign-and-encrypt",
    "aes128-sha256-rsaoaep/sign",
    "aes128-sha256-rsaoaep/sign-and-encrypt",
    "aes256-sha256-rsapss/sign",
    "aes256-sha256-rsapss/sign-and-encrypt",
];

fn validate_opcua(o: &OpcUaConfig, roles: &[RoleConfig], bad: &mut impl FnMut(&str, String)) {
    if o.security.is_empty() {
        bad("opcua.security", "lists no endpoint".into());
    }
    for e in &o.security {
        if !OPCUA_SECURITY.contains(&e.as_str()) {
            bad(
                "opcua.security",
                format!("\"{e}\" is not one of {}", OPCUA_SECURITY.join(", ")),
            );
        }
    }
    let insecure = o.security.iter().any(|e| e == "none");
    if insecure && !o.listen.ip().is_loopback() && !o.allow_insecure {
        bad(
            "opcua.security",
            format!(
                "\"none\" on {} (not loopback) lets anyone on the network read and write in clear; \
                 use a secure endpoint or set opcua.allow_insecure = true",
                o.listen
            ),
        );
    }
    if o.security.iter().any(|e| e != "none") && o.pki_dir.is_none() {
        bad(
            "opcua.pki_dir",
            "is missing: secure endpoints need the certificate `smart-connector certs opcua` makes"
                .into(),
        );
    }
    if !o.anonymous && o.users.is_empty() && !o.x509_users {
        bad(
            "opcua.anonymous",
            "is false, there is no [[opcua.user]] and x509_users is false: nobody could open a session".into(),
        );
    }
    if o.x509_users && !o.security.iter().any(|e| e != "none") {
        bad(
            "opcua.x509_users",
            "needs a secure endpoint in opcua.security (an X509 user token is signed with the channel's policy)".into(),
        );
    }
    let known = |r: &str| roles.iter().any(|x| x.name == r);
    if let Some(r) = &o.anonymous_role
        && !known(r)
    {
        bad(
            "opcua.anonymous_role",
            format!("'{r}' is not a [[modbus.role]]"),
        );
    }
    for (i, u) in o.users.iter().enumerate() {
        if u.name.trim().is_empty() {
            bad(&format!("opcua.user[{i}].name"), "must not be empty".into());
        }
        if !u.password_hash.starts_with("$argon2") {
            bad(
                &format!("opcua.user[{i}].password_hash"),
                "is not an Argon2 hash (`smart-connector opcua-password` makes one; plaintext passwords are never stored)".into(),
            );
        }
        if !known(&u.role) {
            bad(
                &format!("opcua.user[{i}].role"),
                format!("'{}' is not a [[modbus.role]]", u.role),
            );
        }
        if o.users[..i].iter().any(|v| v.name == u.name) {
            bad(
                &format!("opcua.user[{i}].name"),
                format!("'{}' is listed twice", u.name),
            );
        }
    }
    for (key, n) in [
        ("opcua.max_connections", o.max_connections),
        ("opcua.max_sessions", o.max_sessions),
        (
            "opcua.max_subscriptions_per_session",
            o.max_subscriptions_per_session,
        ),
        (
            "opcua.max_monitored_items_per_subscription",
            o.max_monitored_items_per_subscription,
        ),
    ] {
        if n == 0 {
            bad(key, "must be at least 1".into());
        }
    }
    if o.max_message_size < 8192 {
        bad(
            "opcua.max_message_size",
            "must be at least 8192 (the smallest buffer OPC UA allows)".into(),
        );
    }
    if o.namespace_uri.trim().is_empty() {
        bad("opcua.namespace_uri", "must not be empty".into());
    }
}

/// One `allow` entry (see [`allow_list`]).
pub fn parse_allow_entry(entry: &str) -> Result<IpNet, String> {
    let e = entry.trim();
    e.parse::<IpNet>()
        .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "\"{entry}\" is neither an address (e.g. \"127.0.1.1\") nor a network (e.g. \"127.0.1.0/24\")"
            )
        })
}

/// A `[[modbus.role]]` register range: parses `"100"` or `"100-199"` (inclusive).
pub fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let num = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("'{text}' is not an address or a range like \"100-199\""))
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(text)?;
            (n, n)
        }
    };
    if lo > hi {
        return Err(format!("'{text}': the range ends before it starts"));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_parse_single_addresses_and_inclusive_spans() {
        assert_eq!(parse_range("100"), Ok((100, 100)));
        assert_eq!(parse_range(" 100 - 199 "), Ok((100, 199)));
        assert!(parse_range("199-100").unwrap_err().contains("ends before"));
        assert!(parse_range("x").unwrap_err().contains("not an address"));
        assert!(parse_range("70000").is_err());
    }

    use super::*;

    #[test]
    fn a_unit_id_listed_twice_is_refused_with_its_key() {
        let text = "name = \"sc\"\n[[source]]\nname = \"po\"\naddress = \"127.0.0.1:7000\"\n[modbus]\nunit_ids = [1, 2, 1]\n";
        let err = ConnectorConfig::parse(text, "c.toml").unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("modbus.unit_ids"), "{shown}");
        assert!(shown.contains("unit id 1 is listed twice"), "{shown}");
    }

    #[test]
    fn security_mistakes_are_each_refused_with_their_key_and_line() {
        let text = r#"name = "sc"
[[source]]
name = "po"
address = "127.0.0.1:7000"
[modbus]
listen = "127.0.0.1:802"
[modbus.tls]
cert = "s.crt"
key = "s.key"
ca = "ca.crt"
default_role = "admin"
[[modbus.role]]
name = "viewer"
read = true
registers = ["200-100"]
[[modbus.role]]
name = "viewer"
"#;
        let shown = ConnectorConfig::parse(text, "c.toml")
            .unwrap_err()
            .to_string();
        insta::assert_snapshot!(shown, @r"
        c.toml: 4 problems
          c.toml:7:1: modbus.tls.listen: 127.0.0.1:802 is also modbus.listen; set modbus.plain = false or another port
          c.toml:11:1: modbus.tls.default_role: 'admin' is not a [[modbus.role]]
          c.toml:15:1: modbus.role[0].registers: '200-100': the range ends before it starts
          c.toml:17:1: modbus.role[1].name: role 'viewer' is listed twice
        ");
        let no_tls = "name = \"sc\"\n[[source]]\nname = \"po\"\naddress = \"127.0.0.1:7000\"\n[modbus]\nplain = false\n[[modbus.role]]\nname = \"viewer\"\n";
        let shown = ConnectorConfig::parse(no_tls, "d.toml")
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("modbus.plain: is false and there is no [modbus.tls]"),
            "{shown}"
        );
        assert!(
            shown.contains("modbus.role: roles apply only to Modbus/TCP Security and OPC UA"),
            "{shown}"
        );
    }

    #[test]
    fn certificate_paths_are_read_from_the_configuration_files_directory() {
        let text = "name = \"sc\"\n[[source]]\nname = \"po\"\naddress = \"127.0.0.1:7000\"\n[tls]\ncert = \"certs/sc.crt\"\nkey = \"/abs/sc.key\"\nca = \"certs/ca.crt\"\n";
        let mut c = ConnectorConfig::parse(text, "c.toml").unwrap();
        c.resolve_paths(Path::new("/etc/sc"));
        let t = c.tls.unwrap();
        assert_eq!(t.cert, Path::new("/etc/sc/certs/sc.crt"));
        assert_eq!(t.key, Path::new("/abs/sc.key"));
        assert_eq!(t.ca, Path::new("/etc/sc/certs/ca.crt"));
    }
}
