//! The points list: what a SCADA engineer types into the third-party system.

use crate::map::RegisterMap;
use crate::registers::WordOrder;
use po_protocol::TagKind;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointRow {
    pub tag: String,
    /// Protocol (0-based) address of the first holding/input register.
    pub address: u16,
    /// The same register in 1-based "4xxxx" reference notation.
    pub reference: String,
    #[serde(rename = "type")]
    pub data_type: &'static str,
    pub registers: u16,
    /// Word order of two-register values; empty for one-register values.
    pub word_order: &'static str,
    pub unit: String,
    pub access: &'static str,
    pub quality_address: Option<u16>,
    /// Coil / discrete input address of digital tags.
    pub coil: Option<u16>,
}

pub fn rows(map: &RegisterMap) -> Vec<PointRow> {
    let order = match map.word_order() {
        WordOrder::Big => "big",
        WordOrder::Little => "little",
    };
    map.points()
        .iter()
        .map(|p| PointRow {
            tag: p.name.clone(),
            address: p.address,
            reference: format!("4{:05}", u32::from(p.address) + 1),
            data_type: match p.kind {
                TagKind::Analog => "float32",
                TagKind::Counter => "uint32",
                TagKind::Digital => "uint16",
            },
            registers: p.words,
            word_order: if p.words == 2 { order } else { "" },
            unit: p.unit.clone(),
            access: if p.writable { "read-write" } else { "read" },
            quality_address: p.quality_address,
            coil: p.coil,
        })
        .collect()
}

pub fn to_csv(rows: &[PointRow]) -> String {
    let mut s = String::from(
        "tag,address,reference,type,registers,word_order,unit,access,quality_address,coil\n",
    );
    for r in rows {
        let opt = |v: Option<u16>| v.map(|v| v.to_string()).unwrap_or_default();
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&r.tag),
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
