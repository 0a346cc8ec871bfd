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
