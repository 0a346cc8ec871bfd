//! Scenario files (docs/design.md §7, every key documented in docs/scenarios.md).
//!
//! Everything that can be wrong with a file is found before anything starts: TOML syntax,
//! unknown keys, wrong types, and the rules serde cannot express (architecture, fault
//! targets, fault times). Each problem names the file, the line and the key.

use crate::capability::Need;
pub use crate::fault::FaultAction;
pub use crate::third_party::ThirdPartyKind;
use crate::topology::Topology;
use serde::{Deserialize, Serialize};
use smart_connector::registers::WordOrder;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Every component as tokio tasks in the harness process, real loopback sockets.
    Inprocess,
    /// Every component as the real `po-sim` / `smart-connector` binary.
    Process,
    /// Every host a turmoil host: simulated network, virtual time, one thread,
    /// deterministic for a seed (docs/design.md §11).
    Sim,
    /// Every host a Linux network namespace on a private bridge, the real binaries in
    /// them, network faults in the kernel (nftables, tc); needs root (docs/design.md §12).
    Netns,
}

impl BackendKind {
    /// Every backend, in the order they are listed to users.
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Inprocess,
        BackendKind::Process,
        BackendKind::Sim,
        BackendKind::Netns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Inprocess => "inprocess",
            BackendKind::Process => "process",
            BackendKind::Sim => "sim",
            BackendKind::Netns => "netns",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// 1, 2 or 3 (docs/design.md §1).
    pub architecture: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub site: SiteSection,
    #[serde(default)]
    pub redundancy: RedundancySection,
    #[serde(default)]
    pub connector: ConnectorSection,
    #[serde(default)]
    pub third_party: ThirdPartySection,
    #[serde(default, rename = "fault", skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// Connection floods against listeners during the run.
    #[serde(default, rename = "flood", skip_serializing_if = "Vec::is_empty")]
    pub floods: Vec<Flood>,
    /// TLS on every link (docs/security.md).
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub expect: Expect,
}

/// `[security]`: with `tls`, the client-access and sync links run TLS 1.3 with client
/// certificates (licences bound to the connectors' names), and the third parties are
/// Modbus/TCP Security masters with role certificates. The harness makes a lab CA and
/// every certificate in the run directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    pub tls: bool,
    /// The masters' roles in turn (master i has `roles[i % len]`): `operator` reads and
    /// writes, `viewer` only reads. Default: every master an operator.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<MasterRole>,
}

/// A role the harness's connectors know (`[[modbus.role]]` in their configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MasterRole {
    Operator,
    Viewer,
}

impl MasterRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MasterRole::Operator => "operator",
            MasterRole::Viewer => "viewer",
        }
    }
}

impl SecuritySection {
    /// The role of master `index`, with TLS.
    pub fn role_of(&self, index: usize) -> Option<MasterRole> {
        self.tls.then(|| {
            if self.roles.is_empty() {
                MasterRole::Operator
            } else {
                self.roles[index % self.roles.len()]
            }
        })
    }
}

/// A connection flood against one listener of one component (`harness flood` during
/// the run).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flood {
    /// When it starts.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// When it stops (default: the end of the run).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<Duration>,
    /// `component:listener`: `po-a:client`, `po-a:sync`, `sc-a:modbus`, `sc-a:http`.
    pub target: String,
    /// Connections held open at once.
    pub connections: usize,
    #[serde(default)]
    pub mode: crate::flood::FloodMode,
}

impl Flood {
    pub fn label(&self) -> String {
        format!(
            "{} {} ×{}",
            self.target,
            self.mode.as_str(),
            self.connections
        )
    }
}

fn default_seed() -> u64 {
    7
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteSection {
    pub devices: u32,
    pub tags_per_device: u32,
    #[serde(with = "humantime_serde")]
    pub scan_period: Duration,
}

impl Default for SiteSection {
    fn default() -> Self {
        SiteSection {
            devices: 20,
            tags_per_device: 16,
            scan_period: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedundancySection {
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    #[serde(with = "humantime_serde")]
    pub failover_timeout: Duration,
    pub failback: bool,
}

impl Default for RedundancySection {
    fn default() -> Self {
        RedundancySection {
            heartbeat: Duration::from_millis(100),
            failover_timeout: Duration::from_millis(500),
            failback: false,
        }
    }
}

/// Settings given to every connector of the scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorSection {
    #[serde(with = "humantime_serde")]
    pub source_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    pub word_order: WordOrder,
    /// Runtime threads of each connector (process and netns backends; in-process they
    /// share the harness's runtime). Absent: the connector's own choice from the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl Default for ConnectorSection {
    fn default() -> Self {
        ConnectorSection {
            source_timeout: Duration::from_millis(300),
            stale_after: Duration::from_secs(2),
            write_timeout: Duration::from_secs(3),
            word_order: WordOrder::Big,
            threads: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThirdPartySection {
    pub kind: ThirdPartyKind,
    pub clients: usize,
    #[serde(with = "humantime_serde")]
    pub poll_period: Duration,
    pub writes_per_s: f64,
    /// The word order the third party was configured with; normally the connector's.
    /// Setting it differently is how a wrongly configured master is simulated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub word_order: Option<WordOrder>,
    /// A probe read younger than this is "fresh data" (failover gap definition).
    #[serde(with = "humantime_serde")]
    pub stale_threshold: Duration,
    /// A Modbus request not answered within this is an error; the connection is
    /// dropped and reopened (tokio-modbus: a late reply would poison the next call).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// `[third_party.opcua]`: OPC UA clients beside (or, with `clients = 0`, instead of)
    /// the Modbus masters; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opcua: Option<OpcUaClientSection>,
}

impl Default for ThirdPartySection {
    fn default() -> Self {
        ThirdPartySection {
            kind: ThirdPartyKind::Plain,
            clients: 1,
            poll_period: Duration::from_millis(100),
            writes_per_s: 0.0,
            word_order: None,
            stale_threshold: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            opcua: None,
        }
    }
}

/// `[third_party.opcua]`: OPC UA clients on the async-opcua stack, subscribed to every tag of
/// the map (docs/opcua.md). `plain` ones use the first connector; a `redundant` one
/// connects to every connector and follows the highest ServiceLevel (OPC UA Part 4
/// §6.6.2.4.5).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpcUaClientSection {
    pub kind: ThirdPartyKind,
    pub clients: usize,
    /// The data subscription's publishing interval.
    #[serde(with = "humantime_serde")]
    pub publishing_interval: Duration,
    /// Write service calls per second per client, on the setpoint tags.
    pub writes_per_s: f64,
    /// The endpoint used: `none`, `basic256sha256/sign` or
    /// `basic256sha256/sign-and-encrypt`.
    pub security: OpcUaSecurity,
    /// UserName identities in turn (client i logs in as `users[i % len]`, a user whose
    /// role has the same name); empty: anonymous sessions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<MasterRole>,
}

impl Default for OpcUaClientSection {
    fn default() -> Self {
        OpcUaClientSection {
            kind: ThirdPartyKind::Plain,
            clients: 1,
            publishing_interval: Duration::from_millis(100),
            writes_per_s: 0.0,
            security: OpcUaSecurity::None,
            users: vec![],
        }
    }
}

impl OpcUaClientSection {
    /// The UserName identity of client `index`, if any.
    pub fn user_of(&self, index: usize) -> Option<MasterRole> {
        (!self.users.is_empty()).then(|| self.users[index % self.users.len()])
    }
}

/// The OPC UA endpoint a scenario's clients use (and its connectors offer): a security
/// policy and a message security mode, as the connector's `[opcua] security` writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OpcUaSecurity {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "basic256sha256/sign")]
    Basic256Sha256Sign,
    #[serde(rename = "basic256sha256/sign-and-encrypt")]
    Basic256Sha256SignAndEncrypt,
    #[serde(rename = "aes128-sha256-rsaoaep/sign")]
    Aes128Sha256RsaOaepSign,
    #[serde(rename = "aes128-sha256-rsaoaep/sign-and-encrypt")]
    Aes128Sha256RsaOaepSignAndEncrypt,
    #[serde(rename = "aes256-sha256-rsapss/sign")]
    Aes256Sha256RsaPssSign,
    #[serde(rename = "aes256-sha256-rsapss/sign-and-encrypt")]
    Aes256Sha256RsaPssSignAndEncrypt,
}

impl OpcUaSecurity {
    /// As the connector's `[opcua] security` list writes it.
    pub fn as_str(self) -> &'static str {
        use OpcUaSecurity::*;
        match self {
            None => "none",
            Basic256Sha256Sign => "basic256sha256/sign",
            Basic256Sha256SignAndEncrypt => "basic256sha256/sign-and-encrypt",
            Aes128Sha256RsaOaepSign => "aes128-sha256-rsaoaep/sign",
            Aes128Sha256RsaOaepSignAndEncrypt => "aes128-sha256-rsaoaep/sign-and-encrypt",
            Aes256Sha256RsaPssSign => "aes256-sha256-rsapss/sign",
            Aes256Sha256RsaPssSignAndEncrypt => "aes256-sha256-rsapss/sign-and-encrypt",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    pub action: FaultAction,
    pub target: String,
    /// For `delay`: added one-way latency (`"0ms"` removes it).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency: Option<Duration>,
    /// For `loss`: the fraction of messages lost, 0.0 to 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// For `bandwidth`: the rate cap, a number and a unit as tc reads it ("2mbit").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

impl Fault {
    pub fn label(&self) -> String {
        if let Some(rate) = &self.rate {
            return format!("{} {} {rate}", self.action.as_str(), self.target);
        }
        match (self.latency, self.fraction) {
            (Some(l), _) => format!(
                "{} {} {}",
                self.action.as_str(),
                self.target,
                humantime::format_duration(l)
            ),
            (None, Some(f)) => format!("{} {} {}", self.action.as_str(), self.target, f),
            (None, None) => format!("{} {}", self.action.as_str(), self.target),
        }
    }
}

/// What must hold for the scenario to pass. Absent keys are not checked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_updates_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_values_per_s: Option<f64>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_failover_gap: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_latency_p99: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_values_wrong: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_writes_lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_writes_applied: Option<u64>,
    /// Writes refused by the connector with an exception (a viewer's, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_writes_refused: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_modbus_errors: Option<u64>,
    /// Check the invariants of docs/design.md §11 during and after the run (sim backend only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invariants: Option<bool>,
}

/// Everything wrong with a scenario file (exit code 2): the workspace's one kind of
/// configuration diagnostics.
pub use po_runtime::config_diagnostics::{Diagnostics as ScenarioError, Problem};

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| ScenarioError::unreadable(&origin, &e))?;
        Scenario::parse(&text, &origin)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        po_runtime::config_diagnostics::check(text, origin, |s: &Scenario| s.validate(text))
    }

    /// The links a `delay` fault names: where the netns backend (no netem) puts a fault
    /// proxy from the start.
    pub fn delayed_links(&self) -> std::collections::BTreeSet<&str> {
        self.faults
            .iter()
            .filter(|f| f.action == FaultAction::Delay)
            .map(|f| f.target.as_str())
            .collect()
    }

    /// Why `at` (a fault's or a flood's) is no time in this run, if it is not.
    fn after_the_end(&self, at: Duration) -> Option<String> {
        (at >= self.duration).then(|| {
            format!(
                "{} is not before the end of the run (duration {})",
                humantime::format_duration(at),
                humantime::format_duration(self.duration)
            )
        })
    }

    /// Rules serde cannot express, as (key path, message) pairs; `text` tells whether a
    /// table with defaults (`[redundancy]`) was written at all.
    fn validate(&self, text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |table: Option<(&str, usize)>, key: &str, message: String| {
            let key = match table {
                Some((t, i)) => format!("{t}[{i}].{key}"),
                None => key.to_string(),
            };
            out.push((key, message));
        };
        if !(1..=3).contains(&self.architecture) {
            bad(
                None,
                "architecture",
                format!(
                    "{} is not an architecture: use 1, 2 or 3",
                    self.architecture
                ),
            );
            return out;
        }
        if self.name.trim().is_empty() {
            bad(None, "name", "must not be empty".into());
        }
        if !self.security.roles.is_empty() && !self.security.tls {
            bad(
                None,
                "security.roles",
                "roles are carried in TLS client certificates: set security.tls = true".into(),
            );
        }

        if self.duration.is_zero() {
            bad(None, "duration", "must be longer than 0".into());
        }
        if self.site.devices == 0
            || self.site.tags_per_device == 0
            || self.site.scan_period.is_zero()
        {
            bad(
                None,
                "site.devices",
                "devices, tags_per_device and scan_period must all be > 0".into(),
            );
        }
        if self.third_party.clients == 0 && self.third_party.opcua.is_none() {
            bad(
                None,
                "third_party.clients",
                "at least one third party is needed to measure anything".into(),
            );
        }
        if let Some(o) = &self.third_party.opcua {
            if o.clients == 0 {
                bad(
                    None,
                    "third_party.opcua.clients",
                    "must be at least 1 (without OPC UA clients, remove [third_party.opcua])"
                        .into(),
                );
            }
            if o.publishing_interval.is_zero() {
                bad(
                    None,
                    "third_party.opcua.publishing_interval",
                    "must be longer than 0".into(),
                );
            }
            if !(o.writes_per_s >= 0.0 && o.writes_per_s.is_finite()) {
                bad(
                    None,
                    "third_party.opcua.writes_per_s",
                    "must be a number ≥ 0".into(),
                );
            }
            if self.architecture == 1 && o.kind == ThirdPartyKind::Redundant {
                bad(
                    None,
                    "third_party.opcua.kind",
                    "architecture 1 has one connector: a redundant client needs two".into(),
                );
            }
            if !o.users.is_empty() && o.security == OpcUaSecurity::None {
                bad(
                    None,
                    "third_party.opcua.users",
                    "a password must not cross the network in clear: set third_party.opcua.security = \"basic256sha256/sign-and-encrypt\"".into(),
                );
            }
        }
        if self.third_party.poll_period.is_zero() {
            bad(
                None,
                "third_party.poll_period",
                "must be longer than 0".into(),
            );
        }
        if !(self.third_party.writes_per_s >= 0.0 && self.third_party.writes_per_s.is_finite()) {
            bad(
                None,
                "third_party.writes_per_s",
                "must be a number ≥ 0".into(),
            );
        }
        if self.architecture == 1 && text.lines().any(|l| l.trim() == "[redundancy]") {
            bad(
                None,
                "redundancy",
                "architecture 1 has no redundant pair: remove [redundancy]".into(),
            );
        }
        if self.architecture == 1 && self.third_party.kind == ThirdPartyKind::Redundant {
            bad(
                None,
                "third_party.kind",
                "architecture 1 has one connector: a redundant third party needs two".into(),
            );
        }
        let topology = self.topology();
        for (i, f) in self.floods.iter().enumerate() {
            let t = Some(("flood", i));
            if let Some(why) = self.after_the_end(f.at) {
                bad(t, "at", why);
            }
            if let Some(until) = f.until
                && (until <= f.at || until > self.duration)
            {
                bad(
                    t,
                    "until",
                    "must be after `at` and no later than the end of the run".into(),
                );
            }
            if f.connections == 0 {
                bad(t, "connections", "must be at least 1".into());
            }
            if let Err(why) = topology.listener(&f.target) {
                bad(t, "target", why);
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            let t = Some(("fault", i));
            if let Some(why) = self.after_the_end(f.at) {
                bad(t, "at", why);
            }
            match topology.target(&f.target) {
                None => {
                    let names = topology.target_names();
                    let hint = names
                        .iter()
                        .map(|n| (strsim::damerau_levenshtein(&f.target, n), n))
                        .min()
                        .filter(|(d, _)| *d <= 2)
                        .map(|(_, n)| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    bad(
                        t,
                        "target",
                        format!(
                            "`{}` is not a host, component or link of architecture {} (one of: {}){hint}",
                            f.target,
                            self.architecture,
                            names.join(", ")
                        ),
                    );
                }
                Some(target) => {
                    if let Err(why) = target.accepts(f.action) {
                        bad(
                            t,
                            "action",
                            format!("`{}` on `{}`: {why}", f.action.as_str(), f.target),
                        );
                    }
                }
            }
            if f.action == FaultAction::Delay && f.latency.is_none() {
                bad(
                    t,
                    "latency",
                    "a delay fault needs `latency` (e.g. \"50ms\")".into(),
                );
            }
            if f.action != FaultAction::Delay && f.latency.is_some() {
                bad(t, "latency", "only a delay fault takes `latency`".into());
            }
            match (f.action, f.fraction) {
                (FaultAction::Loss, None) => bad(
                    t,
                    "fraction",
                    "a loss fault needs `fraction` (0.0 to 1.0, e.g. 0.05)".into(),
                ),
                (FaultAction::Loss, Some(x)) if !(0.0..=1.0).contains(&x) => bad(
                    t,
                    "fraction",
                    format!("{x} is not a fraction between 0.0 and 1.0"),
                ),
                (FaultAction::Loss, Some(_)) | (_, None) => {}
                (_, Some(_)) => bad(t, "fraction", "only a loss fault takes `fraction`".into()),
            }
            match (f.action, &f.rate) {
                (FaultAction::Bandwidth, None) => bad(
                    t,
                    "rate",
                    "a bandwidth fault needs `rate` (e.g. \"2mbit\")".into(),
                ),
                (FaultAction::Bandwidth, Some(r)) => {
                    if let Err(why) = parse_rate(r) {
                        bad(t, "rate", why);
                    }
                }
                (_, None) => {}
                (_, Some(_)) => bad(t, "rate", "only a bandwidth fault takes `rate`".into()),
            }
        }
        out
    }

    /// What this scenario needs from the backend that runs it, each with the key that
    /// asks for it (`fault[2].action`, `third_party.opcua`, ...): the backend is asked
    /// about each before anything starts (`launch::unsupported_by`).
    pub fn needs(&self) -> Vec<(String, Need)> {
        let mut out: Vec<(String, Need)> = self
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("fault[{i}].action"), Need::Fault(f.action)))
            .collect();
        if !self.floods.is_empty() {
            out.push(("flood[0]".into(), Need::Flood));
        }
        if self.third_party.opcua.is_some() {
            out.push(("third_party.opcua".into(), Need::OpcUa));
        }
        if self.security.tls {
            out.push(("security.tls".into(), Need::Tls));
        }
        let tags = u64::from(self.site.devices) * u64::from(self.site.tags_per_device);
        out.push(("site".into(), Need::Tags(tags)));
        if self.expect.invariants == Some(true) {
            out.push(("expect.invariants".into(), Need::Invariants));
        }
        out
    }

    /// The backend this scenario runs on: `chosen` (the command line's `--backend`), else
    /// the file's `backend`, else inprocess.
    pub fn backend_or(&self, chosen: Option<BackendKind>) -> BackendKind {
        chosen.or(self.backend).unwrap_or(BackendKind::Inprocess)
    }

    /// The hosts, components and links this scenario runs on.
    pub fn topology(&self) -> Topology {
        Topology::build(self.architecture, self.third_party.kind)
    }

    pub fn third_party_word_order(&self) -> WordOrder {
        self.third_party
            .word_order
            .unwrap_or(self.connector.word_order)
    }
}

/// Checks a tc rate ("2mbit", "500kbit", "1gbit", "100000bit"): a positive number and a
/// unit tc reads.
pub fn parse_rate(rate: &str) -> Result<(), String> {
    const UNITS: [&str; 8] = ["kbit", "mbit", "gbit", "bit", "kbps", "mbps", "gbps", "bps"];
    let unit = UNITS.iter().find(|u| rate.ends_with(*u));
    let number = unit.map(|u| &rate[..rate.len() - u.len()]);
    match number.map(|n| n.parse::<f64>()) {
        Some(Ok(n)) if n > 0.0 && n.is_finite() => Ok(()),
        _ => Err(format!(
            "`{rate}` is not a rate: a positive number and one of {} (e.g. \"2mbit\")",
            UNITS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\narchitecture = 3\nduration = \"2s\"\n";

    #[test]
    fn architecture_1_refuses_a_redundancy_section() {
        let text =
            "name = \"t\"\narchitecture = 1\nduration = \"2s\"\n\n[redundancy]\nfailback = true\n";
        let e = Scenario::parse(text, "t.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml: 1 problem\n  t.toml:5:1: redundancy: architecture 1 has no redundant pair: remove [redundancy]"
        );
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let s = Scenario::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(s.seed, 7);
        assert_eq!(s.third_party.clients, 1);
        assert_eq!(s.third_party_word_order(), WordOrder::Big);
    }

    #[test]
    fn a_duration_without_a_unit_is_told_to_write_s() {
        let text = "name = \"t\"\narchitecture = 3\nduration = \"3\"\n";
        let e = Scenario::parse(text, "t.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml: 1 problem\n  t.toml:3:12: duration: \"3\" has no unit: write e.g. \"3s\" or \"3ms\""
        );
        let text = "name = \"t\"\narchitecture = 3\nduration = \"3 parsecs\"\n";
        let e = Scenario::parse(text, "t.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml: 1 problem\n  t.toml:3:12: duration: \"3 parsecs\" is not a duration: write e.g. \"3s\" or \"500ms\""
        );
    }

    #[test]
    fn a_fault_in_a_later_table_is_located() {
        let text = format!(
            "{MINIMAL}[[fault]]\nat = \"1s\"\naction = \"crash\"\ntarget = \"po-a\"\n\n[[fault]]\nat = \"3s\"\naction = \"crash\"\ntarget = \"po-c\"\n"
        );
        let e = Scenario::parse(&text, "t.toml").unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert_eq!(e.problems[0].line, Some(10));
        assert_eq!(e.problems[0].key, "fault[1].at");
        assert_eq!(e.problems[1].line, Some(12));
        assert!(e.problems[1].message.contains("did you mean `po-a`"), "{e}");
    }
}
