//! The points list: what a SCADA engineer types into the third-party system.

use crate::map::{Point, RegisterMap};
use crate::registers::WordOrder;
use po_protocol::TagKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRow {
    pub tag: String,
    /// The Modbus unit id serving the point (sites larger than one unit spill over).
    pub unit_id: u8,
    /// Protocol (0-based) address of the first holding/input register.
    pub address: u16,
    /// The same register in 1-based six-digit "4xxxxx" reference notation (five
    /// digits stop at 49999; a unit has 65 536 registers).
    pub reference: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub registers: u16,
    /// Word order of two-register values; empty for one-register values.
    pub word_order: String,
    pub unit: String,
    pub access: String,
    pub quality_address: Option<u16>,
    /// Coil / discrete input address of digital tags.
    pub coil: Option<u16>,
}

pub fn rows(map: &RegisterMap) -> Vec<PointRow> {
    (0..map.points().len() as u32)
        .map(|i| row(map, i))
        .collect()
}

/// The points-list row of point `index` of `map`.
pub fn row(map: &RegisterMap, index: u32) -> PointRow {
    let p: &Point = map.point(index);
    let order = match map.word_order() {
        WordOrder::Big => "big",
        WordOrder::Little => "little",
    };
    PointRow {
        tag: map.name(index).to_string(),
        unit_id: p.unit_id,
        address: p.address,
        reference: format!("4{:05}", u32::from(p.address) + 1),
        data_type: match p.kind {
            TagKind::Analog => "float32",
            TagKind::Counter => "uint32",
            TagKind::Digital => "uint16",
        }
        .to_string(),
        registers: p.words,
        word_order: if p.words == 2 { order } else { "" }.to_string(),
        unit: map.unit(index).to_string(),
        access: if p.writable { "read-write" } else { "read" }.to_string(),
        quality_address: p.quality_address,
        coil: p.coil,
    }
}

pub fn to_csv(rows: &[PointRow]) -> String {
    let mut s = String::from(
        "tag,unit_id,address,reference,type,registers,word_order,unit,access,quality_address,coil\n",
    );
    for r in rows {
        let opt = |v: Option<u16>| v.map(|v| v.to_string()).unwrap_or_default();
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&r.tag),
            r.unit_id,
            r.address,
            r.reference,
            r.data_type,
            r.registers,
            r.word_order,
            csv_field(&r.unit),
            r.access,
            opt(r.quality_address),
            opt(r.coil)
        ));
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "`{0}` is not an http:// URL (e.g. http://127.0.0.1:9100, the connector's metrics address)"
    )]
    Url(String),
    #[error("cannot read {url}")]
    Http {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("{url} did not answer with a points page: {reason}")]
    NotAPage { url: String, reason: String },
}

/// Reads the whole points list from a running connector's `/api/points`, page by page.
pub fn fetch_rows(base: &str, timeout: std::time::Duration) -> Result<Vec<PointRow>, FetchError> {
    let base = base.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(FetchError::Url(base.to_string()));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut rows = Vec::new();
    let mut offset = 0;
    loop {
        let url = format!(
            "{base}/api/points?offset={offset}&limit={}",
            crate::points_page::MAX_LIMIT
        );
        let text = agent
            .get(&url)
            .call()
            .and_then(|mut r| r.body_mut().with_config().limit(64 << 20).read_to_string())
            .map_err(|source| FetchError::Http {
                url: url.clone(),
                source,
            })?;
        let page: crate::api::PointsPage =
            serde_json::from_str(&text).map_err(|e| FetchError::NotAPage {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        rows.extend(page.points.into_iter().map(|p| p.row));
        match page.next_offset {
            Some(next) if next > offset => offset = next,
            _ => return Ok(rows),
        }
    }
}
