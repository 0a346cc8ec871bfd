//! `harness load --protocol opcua`: many sessions, each subscribed to N Variable nodes
//! found by browsing down from `Objects`, so it loads any OPC UA server (the connector,
//! node-opcua's server in `harness bench`); reports notifications/s, latency from each
//! value's SourceTimestamp to receipt, and errors (docs/performance.md).

pub mod bench;
pub mod changing;
mod client;
pub mod stats;
pub mod walk;

pub use client::run_opcua_load;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// What to ask for.
#[derive(Debug, Clone)]
pub struct OpcUaLoadSpec {
    /// `opc.tcp://HOST:PORT[/PATH]`, checked by [`parse_target`].
    pub target: String,
    pub sessions: usize,
    /// Monitored items per session.
    pub items: usize,
    pub publishing: Duration,
    /// Requested sampling interval; zero: every change the server sees.
    pub sampling: Duration,
    pub security: Security,
    /// The client's own certificate and key (`own/cert.der`, `private/private.pem`, as
    /// `smart-connector certs opcua-client` writes them); `None`: a throwaway pair in a
    /// temporary directory (enough for `none`).
    pub pki_dir: Option<PathBuf>,
    pub duration: Duration,
    /// Only Variables with these string identifiers (a connector's tag names; `--tags`);
    /// `None`: every Variable found below Objects.
    pub only: Option<std::sync::Arc<std::collections::HashSet<String>>>,
    /// A line on stderr this often while measuring; `None`: quiet.
    pub progress: Option<Duration>,
}

/// Security policy and mode, spelled as in the connector's `[opcua] security`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Security {
    pub policy: opcua::crypto::SecurityPolicy,
    pub mode: opcua::types::MessageSecurityMode,
}

impl Security {
    pub const NONE: Security = Security {
        policy: opcua::crypto::SecurityPolicy::None,
        mode: opcua::types::MessageSecurityMode::None,
    };
}

impl std::fmt::Display for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use opcua::crypto::SecurityPolicy as P;
        use opcua::types::MessageSecurityMode as M;
        let policy = match self.policy {
            P::None => return f.write_str("none"),
            P::Basic256Sha256 => "basic256sha256",
            P::Aes128Sha256RsaOaep => "aes128-sha256-rsaoaep",
            P::Aes256Sha256RsaPss => "aes256-sha256-rsapss",
            other => other.to_str(),
        };
        let mode = match self.mode {
            M::Sign => "sign",
            _ => "sign-and-encrypt",
        };
        write!(f, "{policy}/{mode}")
    }
}

/// `none` or `POLICY/MODE` (the connector's spelling, docs/opcua.md).
pub fn parse_security(s: &str) -> Result<Security, String> {
    use opcua::crypto::SecurityPolicy as P;
    use opcua::types::MessageSecurityMode as M;
    if s == "none" {
        return Ok(Security::NONE);
    }
    let (p, m) = s.split_once('/').ok_or_else(|| {
        format!("`{s}`: want `none` or POLICY/MODE, e.g. basic256sha256/sign-and-encrypt")
    })?;
    let policy = match p {
        "basic256sha256" => P::Basic256Sha256,
        "aes128-sha256-rsaoaep" => P::Aes128Sha256RsaOaep,
        "aes256-sha256-rsapss" => P::Aes256Sha256RsaPss,
        _ => {
            return Err(format!(
                "`{p}` is not a policy (basic256sha256, aes128-sha256-rsaoaep, aes256-sha256-rsapss)"
            ));
        }
    };
    let mode = match m {
        "sign" => M::Sign,
        "sign-and-encrypt" => M::SignAndEncrypt,
        _ => return Err(format!("`{m}` is not a mode (sign, sign-and-encrypt)")),
    };
    Ok(Security { policy, mode })
}

/// Checks an `opc.tcp://HOST:PORT[/PATH]` URL; the message says what is wrong.
pub fn parse_target(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("opc.tcp://")
        .ok_or_else(|| format!("`{url}` is not an OPC UA URL: want opc.tcp://HOST:PORT"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("`{url}`: no port (opc.tcp://HOST:PORT)"))?;
    if host.is_empty() {
        return Err(format!("`{url}`: no host (opc.tcp://HOST:PORT)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(url.to_string()),
        _ => Err(format!("`{url}`: `{port}` is not a port")),
    }
}

/// What came back (`harness load --protocol opcua` prints it as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpcUaLoadResult {
    pub protocol: String,
    pub target: String,
    pub security: String,
    pub sessions: usize,
    pub items_per_session: usize,
    pub monitored_items: usize,
    /// Variables the browse found (it stops once it has enough for every session).
    pub variables_found: usize,
    pub publishing_ms: f64,
    pub sampling_ms: f64,
    /// The measured window (after every item was created and a warm-up).
    pub elapsed_s: f64,
    pub notifications: u64,
    pub notifications_per_s: f64,
    pub latency: stats::LatencySummary,
    /// The part of `latency` before the server: SourceTimestamp to ServerTimestamp (the
    /// connector's receipt from its Power Operation server). Zero samples when the server
    /// sends no ServerTimestamp. Old reports lack it.
    #[serde(default)]
    pub latency_to_server: stats::LatencySummary,
    /// Notifications with a status other than Good.
    pub bad_status: u64,
    /// Notifications without a SourceTimestamp (no latency for them).
    pub no_timestamp: u64,
    /// Monitored items the server refused, and sessions that lost their connection.
    pub errors: u64,
}

/// The names of `--tags FILE`: one per line, surrounding blanks trimmed; empty lines and
/// lines starting with `#` skipped. An unreadable file or one naming nothing is an error
/// that names the file.
pub fn read_tag_list(path: &std::path::Path) -> Result<std::collections::HashSet<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let names: std::collections::HashSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(format!(
            "{}: names no tag (one tag name per line)",
            path.display()
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_list_skips_blanks_and_comments_and_must_name_something() {
        let dir = std::env::temp_dir().join(format!("harness-tag-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tags.txt");
        std::fs::write(&file, "# changing tags\n  A.kW \n\nB.kW\n").unwrap();
        let names = read_tag_list(&file).unwrap();
        assert_eq!(names.len(), 2);
        assert!(names.contains("A.kW") && names.contains("B.kW"));
        std::fs::write(&file, "# nothing\n\n").unwrap();
        let why = read_tag_list(&file).unwrap_err();
        assert!(
            why.contains("tags.txt") && why.contains("names no tag"),
            "{why}"
        );
        let why = read_tag_list(&dir.join("missing.txt")).unwrap_err();
        assert!(why.contains("missing.txt"), "{why}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn targets_and_security_are_checked_with_a_reason() {
        assert!(parse_target("opc.tcp://127.0.0.1:4840/").is_ok());
        assert!(parse_target("opc.tcp://host:4840").is_ok());
        for (bad, why) in [
            ("127.0.0.1:4840", "not an OPC UA URL"),
            ("opc.tcp://127.0.0.1", "no port"),
            ("opc.tcp://:4840", "no host"),
            ("opc.tcp://h:http", "not a port"),
        ] {
            let e = parse_target(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        for s in [
            "none",
            "basic256sha256/sign",
            "aes256-sha256-rsapss/sign-and-encrypt",
        ] {
            assert_eq!(parse_security(s).unwrap().to_string(), s);
        }
        assert!(
            parse_security("basic256/sign")
                .unwrap_err()
                .contains("policy")
        );
        assert!(
            parse_security("basic256sha256/encrypt")
                .unwrap_err()
                .contains("mode")
        );
    }
}
