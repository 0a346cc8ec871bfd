//! The `po-sim serve` configuration file (TOML), documented in `docs/simulator.md`.

use crate::field::{FieldModel, SiteError, SiteSpec};
use crate::redundancy::{RedundancyConfig, ServerIndex};
use po_protocol::Timestamp;
use po_runtime::config_diagnostics::{self, Diagnostics};
use po_runtime::tls::TlsFiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Client-access port used by the examples and `po-sim pair`.
pub const DEFAULT_CLIENT_PORT: u16 = 23500;
/// Sync-link port used by the examples and `po-sim pair`.
pub const DEFAULT_SYNC_PORT: u16 = 23501;

/// One simulated Power Operation server.
///
/// Read and written through [`ServerConfigFile`], which has the top-level `state_dir`
/// key: in memory it lives in [`LimitsSection::state_dir`] (see there why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ServerConfigFile", into = "ServerConfigFile")]
pub struct ServerConfig {
    /// Name announced in `Welcome` and used in logs (`po-a`).
    pub name: String,
    /// Client-access listen address.
    pub listen: SocketAddr,
    /// The server's own host address: `Local` access is accepted only from it.
    /// Defaults to the listen address (loopback when listening on an unspecified address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_address: Option<IpAddr>,
    /// Installed Client Access licences; each serves one client at a time.
    #[serde(default)]
    pub licences: Vec<String>,
    /// Seed of the field model; both servers of a pair must share it.
    pub seed: u64,
    /// Tick 0 of the field model, µs since the Unix epoch (default 0).
    #[serde(default)]
    pub field_epoch_us: u64,
    /// Heartbeat period towards clients and the peer.
    #[serde(with = "humantime_serde", default = "default_heartbeat")]
    pub heartbeat: Duration,
    /// Frames a client may lag behind before it is disconnected as a slow consumer.
    #[serde(default = "default_client_queue")]
    pub client_queue: usize,
    pub site: SiteSpec,
    /// Present for a server of a redundant pair; absent for a standalone server
    /// (always Primary, epoch 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<RedundancySection>,
    /// What the listeners admit (connection floods never reach the data path).
    #[serde(default)]
    pub limits: LimitsSection,
    /// TLS on both links; absent: plaintext (labs; a warning at start-up when the
    /// client-access address is not loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSection>,
}

/// TLS on the client-access and sync links (docs/security.md): TLS 1.3, mutual. The same
/// certificate serves clients and identifies this server to its peer on the sync link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSection {
    /// This server's certificate chain (PEM); relative paths are read from the directory
    /// of the configuration file.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs clients' and the peer's certificates (PEM).
    pub ca: PathBuf,
    /// Licence → the common name of the one client certificate that may present it.
    /// With TLS every installed licence needs a holder.
    #[serde(default)]
    pub licence_holders: BTreeMap<String, String>,
}

impl ServerTlsSection {
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        }
    }
}

/// Connection caps and handshake timeouts of the client-access and sync listeners
/// (docs/simulator.md, "Connection floods"). Over a cap the new connection is closed at
/// once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Client-access connections open at once, sessions and connections still to say
    /// Hello together.
    pub max_clients: usize,
    /// Sync-link connections open at once (the peer's, and attempts to replace it).
    pub max_sync_connections: usize,
    /// A connection that has not said Hello within this is closed; on the sync link, a
    /// connection replaces the current one only once it has said Hello.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How long a graceful stop (SIGTERM, `shutdown()`) waits for told clients to close
    /// their connections before it closes them itself.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// The top-level `state_dir` key of the file: where this server keeps its highest
    /// known epoch (`None`: in memory only, a process restart forgets it). It lives here,
    /// not on [`ServerConfig`], because code across the workspace builds a
    /// `ServerConfig` literally with `limits: Default::default()`: a new top-level field
    /// would break every such literal. Relative paths are read from the directory of the
    /// configuration file.
    #[serde(skip)]
    pub state_dir: Option<PathBuf>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_clients: 64,
            max_sync_connections: 4,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            state_dir: None,
        }
    }
}

/// Redundancy settings of one server of a pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedundancySection {
    /// 0 for the preferred Primary ("a"), 1 for the other ("b").
    pub index: u8,
    /// Where this server accepts the peer's sync link.
    pub sync_listen: SocketAddr,
    /// The peer's `sync_listen` address.
    pub peer: SocketAddr,
    #[serde(with = "humantime_serde", default = "default_failover_timeout")]
    pub failover_timeout: Duration,
    /// Whether a returning preferred Primary takes the role back.
    #[serde(default)]
    pub failback: bool,
}

/// The configuration file's shape: [`ServerConfig`] plus its top-level `state_dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerConfigFile {
    name: String,
    listen: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host_address: Option<IpAddr>,
    #[serde(default)]
    licences: Vec<String>,
    seed: u64,
    #[serde(default)]
    field_epoch_us: u64,
    #[serde(with = "humantime_serde", default = "default_heartbeat")]
    heartbeat: Duration,
    #[serde(default = "default_client_queue")]
    client_queue: usize,
    /// Where the server keeps its highest known epoch (docs/simulator.md, "State").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_dir: Option<PathBuf>,
    site: SiteSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redundancy: Option<RedundancySection>,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<ServerTlsSection>,
}

impl From<ServerConfigFile> for ServerConfig {
    fn from(f: ServerConfigFile) -> ServerConfig {
        let mut limits = f.limits;
        limits.state_dir = f.state_dir;
        ServerConfig {
            name: f.name,
            listen: f.listen,
            host_address: f.host_address,
            licences: f.licences,
            seed: f.seed,
            field_epoch_us: f.field_epoch_us,
            heartbeat: f.heartbeat,
            client_queue: f.client_queue,
            site: f.site,
            redundancy: f.redundancy,
            limits,
            tls: f.tls,
        }
    }
}

impl From<ServerConfig> for ServerConfigFile {
    fn from(c: ServerConfig) -> ServerConfigFile {
        ServerConfigFile {
            name: c.name,
            listen: c.listen,
            host_address: c.host_address,
            licences: c.licences,
            seed: c.seed,
            field_epoch_us: c.field_epoch_us,
            heartbeat: c.heartbeat,
            client_queue: c.client_queue,
            state_dir: c.limits.state_dir.clone(),
            site: c.site,
            redundancy: c.redundancy,
            limits: c.limits,
            tls: c.tls,
        }
    }
}

fn default_heartbeat() -> Duration {
    Duration::from_millis(100)
}

fn default_failover_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_client_queue() -> usize {
    256
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Every problem of the file, each with its line, column and key
    /// (po_runtime::config_diagnostics, as the connector and the harness report theirs).
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
}

impl ServerConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        // Certificate and state paths are relative to the file that names them.
        if let (Some(tls), Some(dir)) = (config.tls.as_mut(), path.parent()) {
            let files = tls.files().relative_to(dir);
            (tls.cert, tls.key, tls.ca) = (files.cert, files.key, files.ca);
        }
        if let (Some(state), Some(dir)) = (config.limits.state_dir.as_mut(), path.parent())
            && state.is_relative()
        {
            *state = dir.join(&*state);
        }
        Ok(config)
    }

    /// Parses and validates configuration text; `origin` names it in errors. Every
    /// problem is reported, not only the first.
    pub fn parse(text: &str, origin: &str) -> Result<ServerConfig, ConfigError> {
        Ok(config_diagnostics::check(
            text,
            origin,
            ServerConfig::problems,
        )?)
    }

    /// The descriptors this configuration may hold open at once: every client-access
    /// connection, every sync-link connection, and the one this server dials to its peer.
    pub fn descriptor_budget(&self) -> po_runtime::descriptors::DescriptorBudget {
        let b = po_runtime::descriptors::DescriptorBudget::new()
            .add("limits.max_clients", self.limits.max_clients as u64);
        match &self.redundancy {
            Some(_) => b
                .add(
                    "limits.max_sync_connections",
                    self.limits.max_sync_connections as u64,
                )
                .add("the sync link to the peer", 1),
            None => b,
        }
    }

    /// Checks what serde cannot (cross-field rules and value ranges): every problem, as
    /// `key: message`, joined by "; " (for configurations built in code, not read from a
    /// file; a file's problems are listed one a line by [`ServerConfig::parse`]).
    pub fn validate(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        Err(problems
            .iter()
            .map(|(key, message)| format!("{key}: {message}"))
            .collect::<Vec<_>>()
            .join("; "))
    }

    /// What serde cannot check, as (key path, message) pairs: every one, not the first.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| out.push((key.to_string(), message));
        if self.name.trim().is_empty() {
            bad("name", "must not be empty".into());
        }
        for e in self.site.problems() {
            bad(e.key(), e.requirement());
        }
        if self.heartbeat < Duration::from_millis(1) {
            bad("heartbeat", "must be at least 1ms".into());
        }
        if self.client_queue < 2 {
            bad("client_queue", "must be at least 2 frames".into());
        }
        if self.limits.max_clients == 0 {
            bad("limits.max_clients", "must be at least 1".into());
        }
        if self.limits.max_sync_connections == 0 {
            bad("limits.max_sync_connections", "must be at least 1".into());
        }
        if self.limits.handshake_timeout.is_zero() {
            bad("limits.handshake_timeout", "must be longer than 0".into());
        }
        if self.limits.state_dir.is_some()
            && crate::state::EpochFile::name_for(&self.name).is_none()
        {
            bad(
                "name",
                format!(
                    "'{}' cannot name a state file in state_dir: use letters, digits, '-', '_' and '.'",
                    self.name
                ),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, l) in self.licences.iter().enumerate() {
            let key = format!("licences[{i}]");
            if l.trim().is_empty() {
                bad(&key, "a licence must not be empty".into());
            } else if !seen.insert(l) {
                bad(&key, format!("'{l}' is listed twice"));
            }
        }
        if let Some(tls) = &self.tls {
            for l in &self.licences {
                if !tls.licence_holders.contains_key(l) {
                    bad(
                        "tls.licence_holders",
                        format!(
                            "licence '{l}' has no holder; with TLS each licence is bound to the common name of one client certificate (add \"{l}\" = \"<client name>\")"
                        ),
                    );
                }
            }
            for (l, holder) in &tls.licence_holders {
                // Quoted: a licence name may hold a dot, which would split the key path.
                let key = format!("tls.licence_holders.\"{l}\"");
                if !self.licences.contains(l) {
                    bad(&key, format!("'{l}' is not one of the installed licences"));
                }
                if holder.trim().is_empty() {
                    bad(&key, format!("'{l}' has an empty holder"));
                }
            }
        }
        if let Some(r) = &self.redundancy {
            if ServerIndex::new(r.index).is_none() {
                bad(
                    "redundancy.index",
                    format!("must be 0 (preferred Primary) or 1, not {}", r.index),
                );
            }
            if r.failover_timeout <= self.heartbeat {
                bad(
                    "redundancy.failover_timeout",
                    format!(
                        "{} must be longer than heartbeat ({})",
                        humantime::format_duration(r.failover_timeout),
                        humantime::format_duration(self.heartbeat)
                    ),
                );
            }
            if r.sync_listen == self.listen && self.listen.port() != 0 {
                bad("redundancy.sync_listen", "must differ from listen".into());
            }
        }
        out
    }

    pub fn field_model(&self) -> Result<FieldModel, SiteError> {
        Ok(FieldModel::new(self.seed, self.site.clone())?
            .with_field_epoch(Timestamp(self.field_epoch_us)))
    }

    /// The addresses `Local` access is accepted from.
    pub fn local_addresses(&self) -> Vec<IpAddr> {
        match self.host_address {
            Some(ip) => vec![ip],
            None if self.listen.ip().is_unspecified() => vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            None => vec![self.listen.ip()],
        }
    }

    /// Where this server keeps its highest known epoch, when `state_dir` is set.
    pub fn state_file(&self) -> Option<crate::state::EpochFile> {
        let dir = self.limits.state_dir.as_ref()?;
        crate::state::EpochFile::name_for(&self.name)
            .map(|f| crate::state::EpochFile::new(dir.join(f)))
    }

    pub fn redundancy_config(&self) -> Option<(ServerIndex, RedundancyConfig)> {
        let r = self.redundancy.as_ref()?;
        Some((
            ServerIndex::new(r.index)?,
            RedundancyConfig {
                heartbeat: self.heartbeat,
                failover_timeout: r.failover_timeout,
                failback: r.failback,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "po-a"
listen = "127.0.1.1:23500"
licences = ["CA-1", "CA-2"]
seed = 7

[site]
devices = 4
tags_per_device = 16
scan_period = "100ms"

[redundancy]
index = 0
sync_listen = "127.0.1.1:23501"
peer = "127.0.2.1:23501"
failover_timeout = "500ms"
"#;

    #[test]
    fn a_good_file_parses_with_defaults() {
        let c = ServerConfig::parse(GOOD, "a.toml").unwrap();
        assert_eq!(c.heartbeat, Duration::from_millis(100));
        assert_eq!(c.local_addresses(), vec![IpAddr::from([127, 0, 1, 1])]);
        let (index, r) = c.redundancy_config().unwrap();
        assert_eq!(index, ServerIndex(0));
        assert!(!r.failback);
    }

    #[test]
    fn with_tls_every_licence_is_bound_to_one_installed_holder() {
        let tls = "\n[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nca = \"ca.crt\"\n[tls.licence_holders]\n\"CA-1\" = \"sc-a\"\n";
        let missing = ServerConfig::parse(&format!("{GOOD}{tls}"), "a.toml").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "a.toml: 1 problem\n  a.toml:22:1: tls.licence_holders: licence 'CA-2' has no holder; with TLS each licence is bound to the common name of one client certificate (add \"CA-2\" = \"<client name>\")"
        );
        let both = format!("{GOOD}{tls}\"CA-2\" = \"sc-b\"\n");
        let c = ServerConfig::parse(&both, "a.toml").unwrap();
        assert_eq!(c.tls.unwrap().licence_holders["CA-2"], "sc-b");
        let stranger = format!("{GOOD}{tls}\"CA-2\" = \"sc-b\"\n\"CA-9\" = \"sc-c\"\n");
        assert_eq!(
            ServerConfig::parse(&stranger, "a.toml")
                .unwrap_err()
                .to_string(),
            "a.toml: 1 problem\n  a.toml:25:1: tls.licence_holders.\"CA-9\": 'CA-9' is not one of the installed licences"
        );
    }

    #[test]
    fn state_dir_and_drain_timeout_read_and_write_as_the_file_has_them() {
        let text = GOOD.replace(
            "seed = 7\n",
            "seed = 7\nstate_dir = \"/var/lib/po-sim\"\n[limits]\ndrain_timeout = \"2s\"\n",
        );
        let c = ServerConfig::parse(&text, "a.toml").unwrap();
        assert_eq!(c.limits.state_dir, Some(PathBuf::from("/var/lib/po-sim")));
        assert_eq!(c.limits.drain_timeout, Duration::from_secs(2));
        assert_eq!(
            c.state_file().unwrap().path(),
            Path::new("/var/lib/po-sim/po-a.epoch")
        );
        // Written back (the harness writes the files its processes read), it is the same.
        let written = toml::to_string(&c).unwrap();
        assert!(
            written.contains("state_dir = \"/var/lib/po-sim\""),
            "{written}"
        );
        assert_eq!(ServerConfig::parse(&written, "b.toml").unwrap(), c);
        let without = ServerConfig::parse(GOOD, "a.toml").unwrap();
        assert_eq!(without.state_file(), None);
        assert_eq!(without.limits.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let typo = GOOD.replace("seed = 7", "sed = 7");
        insta::assert_snapshot!(
            ServerConfig::parse(&typo, "a.toml")
                .unwrap_err()
                .to_string()
        );
        let bad_addr = GOOD.replace("127.0.2.1:23501", "127.0.2.1");
        insta::assert_snapshot!(
            ServerConfig::parse(&bad_addr, "a.toml")
                .unwrap_err()
                .to_string()
        );
        let bad_index = GOOD.replace("index = 0", "index = 2");
        insta::assert_snapshot!(
            ServerConfig::parse(&bad_index, "a.toml")
                .unwrap_err()
                .to_string()
        );
        let no_devices = GOOD.replace("devices = 4", "devices = 0");
        insta::assert_snapshot!(
            ServerConfig::parse(&no_devices, "a.toml")
                .unwrap_err()
                .to_string()
        );
    }
}
