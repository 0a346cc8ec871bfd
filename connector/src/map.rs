//! The register map: where every tag lives in the Modbus address spaces
//! (`docs/register-map.md`, a contract).
//!
//! Built once from the server's catalogue and the configuration; afterwards a flat
//! per-register table answers "what is at address N" in O(1) on the read path.

use crate::config::{MapConfig, MapMode, ModbusConfig};
use crate::registers::{WordOrder, register_count};
use po_protocol::{TagId, TagInfo, TagKind};
use serde::Serialize;

pub use crate::registers::STATUS_REGISTERS;

/// Fields of the status block; two-register fields are u32, high word first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusField {
    Heartbeat,
    State,
    ActiveSource,
    ActiveRole,
    ActiveEpoch,
    DataAgeMs,
    TagsNotGood,
    TagCount,
    Switches,
}

impl StatusField {
    /// (field, word) at each status register; `None` for reserved registers.
    pub fn at(register: u16) -> Option<(StatusField, u8)> {
        use StatusField::*;
        Some(match register {
            0 => (Heartbeat, 0),
            1 => (State, 0),
            2 => (ActiveSource, 0),
            3 => (ActiveRole, 0),
            4 => (ActiveEpoch, 0),
            5 => (ActiveEpoch, 1),
            6 => (DataAgeMs, 0),
            7 => (DataAgeMs, 1),
            8 => (TagsNotGood, 0),
            9 => (TagsNotGood, 1),
            10 => (TagCount, 0),
            11 => (TagCount, 1),
            12 => (Switches, 0),
            13 => (Switches, 1),
            _ => return None,
        })
    }
}

/// One served tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub tag: TagId,
    pub name: String,
    pub unit: String,
    pub kind: TagKind,
    pub writable: bool,
    /// First holding/input register.
    pub address: u16,
    /// Registers used (2 for analog and counter, 1 for digital).
    pub words: u16,
    /// Register holding the quality code, if quality registers are configured.
    pub quality_address: Option<u16>,
    /// Coil / discrete input address (digital tags only): the tag index.
    pub coil: Option<u16>,
}

/// What one holding/input register holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Empty,
    Status(StatusField, u8),
    /// Word `word` of point `point`'s value.
    Value {
        point: u32,
        word: u8,
    },
    Quality {
        point: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("map.point[{index}].tag: '{name}' is not in the server's catalogue")]
    UnknownTag { index: usize, name: String },
    #[error(
        "{what} needs registers up to {end}, past the last Modbus register 65535; map fewer tags explicitly"
    )]
    OutOfSpace { what: String, end: u32 },
    #[error("registers {first}..={last} of '{a}' overlap '{b}'")]
    Overlap {
        first: u16,
        last: u16,
        a: String,
        b: String,
    },
    #[error("tag '{name}' has index {index}, past the last coil address 65535")]
    CoilOutOfSpace { name: String, index: u32 },
}

#[derive(Debug, Clone)]
pub struct RegisterMap {
    points: Vec<Point>,
    cells: Vec<Cell>,
    by_tag: Vec<Option<u32>>,
    coils: Vec<Option<u32>>,
    word_order: WordOrder,
}

impl RegisterMap {
    pub fn build(
        catalog: &[TagInfo],
        modbus: &ModbusConfig,
        map: &MapConfig,
    ) -> Result<RegisterMap, MapError> {
        let mut placed: Vec<(TagId, u16)> = Vec::new();
        match map.mode {
            MapMode::Auto => {
                let mut next = u32::from(modbus.data_base);
                for t in catalog {
                    let words = u32::from(register_count(t.kind));
                    if next + words > 65536 {
                        return Err(MapError::OutOfSpace {
                            what: format!(
                                "automatic mapping of {} tags from register {}",
                                catalog.len(),
                                modbus.data_base
                            ),
                            end: next + words - 1,
                        });
                    }
                    placed.push((t.id, next as u16));
                    next += words;
                }
            }
            MapMode::Explicit => {
                for (index, p) in map.points.iter().enumerate() {
                    let Some(t) = catalog.iter().find(|t| t.name == p.tag) else {
                        return Err(MapError::UnknownTag {
                            index,
                            name: p.tag.clone(),
                        });
                    };
                    placed.push((t.id, p.address));
                }
            }
        }

        let mut points = Vec::with_capacity(placed.len());
        for (i, (tag, address)) in placed.iter().enumerate() {
            let t = &catalog[tag.index()];
            let words = register_count(t.kind);
            let end = u32::from(*address) + u32::from(words) - 1;
            if end > 65535 {
                return Err(MapError::OutOfSpace {
                    what: format!("'{}' at register {address}", t.name),
                    end,
                });
            }
            let quality_address = match modbus.quality_base {
                Some(q) => {
                    let a = u32::from(q) + i as u32;
                    if a > 65535 {
                        return Err(MapError::OutOfSpace {
                            what: format!("quality registers from {q}"),
                            end: u32::from(q) + placed.len() as u32 - 1,
                        });
                    }
                    Some(a as u16)
                }
                None => None,
            };
            let coil = if t.kind == TagKind::Digital {
                if t.id.0 > 65535 {
                    return Err(MapError::CoilOutOfSpace {
                        name: t.name.clone(),
                        index: t.id.0,
                    });
                }
                Some(t.id.0 as u16)
            } else {
                None
            };
            points.push(Point {
                tag: t.id,
                name: t.name.clone(),
                unit: t.unit.clone(),
                kind: t.kind,
                writable: t.writable,
                address: *address,
                words,
                quality_address,
                coil,
            });
        }

        // Lay out the cells, refusing overlaps.
        let mut end = u32::from(STATUS_REGISTERS);
        for p in &points {
            end = end.max(u32::from(p.address) + u32::from(p.words));
            if let Some(q) = p.quality_address {
                end = end.max(u32::from(q) + 1);
            }
        }
        let mut cells = vec![Cell::Empty; end as usize];
        let mut owner: Vec<Option<u32>> = vec![None; end as usize];
        for r in 0..STATUS_REGISTERS {
            if let Some((f, w)) = StatusField::at(r) {
                cells[r as usize] = Cell::Status(f, w);
            }
        }
        let name_of = |o: Option<u32>, points: &[Point]| match o {
            Some(i) => points[i as usize].name.clone(),
            None => "the status block".to_string(),
        };
        let mut claim =
            |addr: u16, cell: Cell, who: u32, points: &[Point]| -> Result<(), MapError> {
                let a = addr as usize;
                if addr < STATUS_REGISTERS || owner[a].is_some() {
                    let other = if addr < STATUS_REGISTERS {
                        None
                    } else {
                        owner[a]
                    };
                    return Err(MapError::Overlap {
                        first: addr,
                        last: addr,
                        a: points[who as usize].name.clone(),
                        b: name_of(other, points),
                    });
                }
                owner[a] = Some(who);
                cells[a] = cell;
                Ok(())
            };
        for (i, p) in points.iter().enumerate() {
            for w in 0..p.words {
                claim(
                    p.address + w,
                    Cell::Value {
                        point: i as u32,
                        word: w as u8,
                    },
                    i as u32,
                    &points,
                )?;
            }
            if let Some(q) = p.quality_address {
                claim(q, Cell::Quality { point: i as u32 }, i as u32, &points)?;
            }
        }

        let mut by_tag = vec![None; catalog.len()];
        let coil_end = points
            .iter()
            .filter_map(|p| p.coil)
            .max()
            .map_or(0, |c| c as usize + 1);
        let mut coils = vec![None; coil_end];
        for (i, p) in points.iter().enumerate() {
            by_tag[p.tag.index()] = Some(i as u32);
            if let Some(c) = p.coil {
                coils[c as usize] = Some(i as u32);
            }
        }
        Ok(RegisterMap {
            points,
            cells,
            by_tag,
            coils,
            word_order: modbus.word_order,
        })
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    pub fn point(&self, index: u32) -> &Point {
        &self.points[index as usize]
    }

    /// The point serving `tag`, if the tag is mapped.
    pub fn point_of(&self, tag: TagId) -> Option<u32> {
        self.by_tag.get(tag.index()).copied().flatten()
    }

    /// One past the last holding/input register of the map.
    pub fn register_end(&self) -> u32 {
        self.cells.len() as u32
    }

    /// One past the last coil/discrete input address.
    pub fn coil_end(&self) -> u32 {
        self.coils.len() as u32
    }

    pub fn cell(&self, register: u16) -> Option<Cell> {
        self.cells.get(register as usize).copied()
    }

    pub fn cells(&self, start: u16, count: u16) -> Option<&[Cell]> {
        self.cells
            .get(start as usize..start as usize + count as usize)
    }

    pub fn coil(&self, address: u16) -> Option<Option<u32>> {
        self.coils.get(address as usize).copied()
    }

    pub fn word_order(&self) -> WordOrder {
        self.word_order
    }
}
