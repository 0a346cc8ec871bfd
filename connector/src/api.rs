//! The JSON documents of `/api/status` and `/api/points` (a contract, docs/design.md §14; the
//! fields are described in docs/connector.md "Status page and API"). They deserialize too,
//! so `smart-connector points --from` and tests read them with the same types.

use crate::points::PointRow;
use serde::{Deserialize, Serialize};

/// `/api/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub connector: String,
    pub version: String,
    pub uptime_ms: u64,
    /// `starting`, `primary`, `standby`, `stale` or `draining`: what the served data is
    /// (status register 1).
    pub state: String,
    /// Why no data is served (`None` while serving): what each source last said, so a
    /// connector that cannot reach its servers says why from its first second.
    #[serde(default)]
    pub reason: Option<String>,
    /// The service level (status register 14; OPC UA `ServiceLevel`): 0 maintenance
    /// (draining), 1 no data, 100 Standby data, 200 Primary data with a source lost, 255
    /// Primary data with every source reachable.
    #[serde(default)]
    pub service_level: u8,
    /// Whose data is served; `None` before the first snapshot and while stale.
    pub active: Option<ActiveDoc>,
    pub switches_total: u64,
    /// The most recent switches, newest first.
    pub switches: Vec<SwitchDoc>,
    pub sources: Vec<SourceDoc>,
    pub modbus: ModbusDoc,
    /// The OPC UA server, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcua: Option<OpcUaDoc>,
    pub points: PointsSummary,
}

/// The OPC UA face as `/api/status` shows it (docs/opcua.md "Seen").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpcUaDoc {
    pub listen: String,
    pub application_uri: String,
    /// `Server.ServiceLevel` (equal to `service_level` and status register 14).
    pub service_level: u8,
    pub sessions: Vec<OpcUaSessionDoc>,
    pub subscriptions: usize,
    pub monitored_items: usize,
    /// Data-change notifications handed to subscriptions since the start.
    pub notifications_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpcUaSessionDoc {
    pub id: u32,
    pub application: String,
    pub application_uri: String,
    /// `None`, `Sign` or `SignAndEncrypt`.
    pub security_mode: String,
    pub security_policy: String,
    /// The UserName user, or `(anonymous)`.
    pub user: String,
    /// The role whose rights the session has.
    pub role: String,
    pub subscriptions: usize,
    pub monitored_items: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveDoc {
    /// 1-based, as in status register 2.
    pub index: usize,
    pub source: String,
    pub role: String,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchDoc {
    pub at_unix_ms: u64,
    /// Connector uptime at the switch.
    pub uptime_ms: u64,
    pub from: Option<ActiveDoc>,
    pub to: Option<ActiveDoc>,
    pub reason: String,
    /// What the change was: `switch` (from one server to another: the only kind
    /// `switches_total` and status registers 12-13 count), `initial selection`, `role
    /// change` (the same server, now Primary or Standby), `no source` or `resumed`.
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceDoc {
    pub index: usize,
    pub name: String,
    pub address: String,
    /// `local` or `client-access`.
    pub access: String,
    /// The Client Access licence presented (its name; licences are not secrets).
    pub licence: Option<String>,
    pub connected: bool,
    /// `healthy`, `silent`, `disconnected` or `catalogue differs`.
    pub health: String,
    /// The role it last announced, while connected.
    pub role: Option<String>,
    pub epoch: u64,
    /// Milliseconds since anything was heard from it (`None`: never).
    pub last_heard_ms: Option<u64>,
    /// Why its last session ended.
    pub last_error: Option<String>,
    pub connects: u64,
    pub losses: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModbusDoc {
    pub listen: String,
    /// The unit id of each bank (one per 65 536 registers of data, docs/design.md §15).
    pub unit_ids: Vec<u8>,
    pub max_connections: usize,
    pub clients: Vec<ClientDoc>,
    pub requests_total: u64,
    pub exceptions_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientDoc {
    pub address: String,
    /// For how long it has been connected.
    pub connected_ms: u64,
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsSummary {
    pub total: usize,
    pub not_good: u32,
    /// Age of the newest sample served (status register 6); `None` before any data.
    pub data_age_ms: Option<u64>,
}

/// `/api/points?offset=&limit=&filter=`: one page of the points list with live values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsPage {
    /// Points matching the filter.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// Where the next page starts; `None` on the last page.
    pub next_offset: Option<usize>,
    pub points: Vec<LivePoint>,
}

/// One row of the points list (exactly as `smart-connector points` prints it) and its
/// live value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivePoint {
    #[serde(flatten)]
    pub row: PointRow,
    /// The value as served (a number; digital tags 0 or 1).
    pub value: f64,
    /// `good`, `uncertain`, `bad` or `stale`.
    pub quality: String,
    /// Age of the sample (from the server's timestamp); `None` before the first one.
    pub age_ms: Option<u64>,
}
