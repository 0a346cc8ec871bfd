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
    /// The service level (`service_level`), the same byte as OPC UA's `ServiceLevel`.
    ServiceLevel,
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
            14 => (ServiceLevel, 0),
            _ => return None,
        })
    }
}

/// One served tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub tag: TagId,
    /// Index of the engineering unit in the map's unit table ([`RegisterMap::unit`]); the
    /// name is in its name table ([`RegisterMap::name`]): no string per point, so a
    /// million-tag map stays small.
    pub unit_index: u16,
    pub kind: TagKind,
    pub writable: bool,
    /// The Modbus unit (bank) the point is served at (docs/design.md §15).
    pub unit_id: u8,
    /// First holding/input register.
    pub address: u16,
    /// Registers used (2 for analog and counter, 1 for digital).
    pub words: u16,
    /// Register holding the quality code, if quality registers are configured.
    pub quality_address: Option<u16>,
    /// Coil / discrete input address (digital tags only): the tag's index in its bank
    /// (automatic mapping) or in the catalogue (explicit mapping).
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
    #[error(
        "the site needs {needed} Modbus units (banks of up to 65536 registers) but modbus.unit_ids lists {listed}; list more unit ids or leave it empty"
    )]
    TooFewUnits { needed: usize, listed: usize },
    #[error(
        "map.mode = \"device\" gives each device a unit id, and Modbus has {MAX_DEVICE_UNITS} (1-247); this site has {devices} devices: use map.mode = \"auto\""
    )]
    TooManyDevices { devices: usize },
    #[error("modbus.unit_ids lists unit {0} twice; each id names one unit")]
    DuplicateUnit(u8),
    #[error(
        "map.mode = \"device\": the tags of device '{0}' are not together in the catalogue, so it cannot be one unit; use map.mode = \"auto\""
    )]
    DeviceSplit(String),
    #[error("map.point[{index}].unit: unit {unit} is not in modbus.unit_ids {listed:?}")]
    UnitNotListed {
        index: usize,
        unit: u8,
        listed: Vec<u8>,
    },
}

/// Unit ids a per-device map may give (1-247: the Modbus serial-line range gateways use).
pub const MAX_DEVICE_UNITS: usize = 247;

/// One Modbus unit's address spaces: what each holding/input register and each coil
/// holds. Every bank starts with the status block.
#[derive(Debug, Clone)]
pub struct Bank {
    pub unit_id: u8,
    cells: Vec<Cell>,
    coils: Vec<Option<u32>>,
    /// At each register: how many registers from there hold two-register values of
    /// consecutive points (point p's two words, then p+1's, …); 0 where none starts.
    /// Lets a read copy such a run straight from the value array instead of looking at
    /// every cell (most of a Modbus read's cost; docs/performance.md).
    pair_runs: Vec<u16>,
}

impl Bank {
    /// One past the last holding/input register of the bank.
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

    /// See `pair_runs`: the registers from `register` on that hold the two words of
    /// consecutive points, starting at point `point_at(register)`.
    pub fn pair_run(&self, register: u16) -> u16 {
        self.pair_runs.get(register as usize).copied().unwrap_or(0)
    }

    pub fn cells(&self, start: u16, count: u16) -> Option<&[Cell]> {
        self.cells
            .get(start as usize..start as usize + count as usize)
    }

    pub fn coil(&self, address: u16) -> Option<Option<u32>> {
        self.coils.get(address as usize).copied()
    }
}

#[derive(Debug, Clone)]
pub struct RegisterMap {
    points: Vec<Point>,
    /// Every point's tag name, back to back; `name_ends[i]` is where point i's ends.
    names: String,
    name_ends: Vec<u32>,
    /// The distinct engineering units.
    units: Vec<String>,
    banks: Vec<Bank>,
    /// Which bank answers each unit id (`None`: exception 0B).
    by_unit: Vec<Option<u16>>,
    by_tag: Vec<Option<u32>>,
    word_order: WordOrder,
}

/// Where the automatic mapping may put values and qualities in one bank: values from
/// `data_base` up to (not including) `value_end`, qualities from `quality_base` up to
/// `quality_end`, so neither runs into the other.
fn auto_limits(modbus: &ModbusConfig) -> (u32, Option<(u32, u32)>) {
    let data = u32::from(modbus.data_base);
    match modbus.quality_base.map(u32::from) {
        None => (65536, None),
        Some(q) if q > data => (q, Some((q, 65536))),
        Some(q) => (65536, Some((q, data))),
    }
}

impl RegisterMap {
    pub fn build(
        catalog: &[TagInfo],
        modbus: &ModbusConfig,
        map: &MapConfig,
    ) -> Result<RegisterMap, MapError> {
        let default_unit = modbus.unit_ids.first().copied().unwrap_or(1);
        for (i, u) in modbus.unit_ids.iter().enumerate() {
            if modbus.unit_ids[..i].contains(u) {
                return Err(MapError::DuplicateUnit(*u));
            }
        }
        // (tag, bank number, register), in map order.
        let mut placed: Vec<(TagId, usize, u16)> = Vec::new();
        let mut bank_units: Vec<u8> = Vec::new();
        match map.mode {
            MapMode::Auto => {
                // Fill a bank, then spill over into the next unit (docs/design.md §15).
                let (value_end, quality) = auto_limits(modbus);
                let mut bank = 0;
                let mut next = u32::from(modbus.data_base);
                let mut in_bank = 0u32;
                for t in catalog {
                    let words = u32::from(register_count(t.kind));
                    let quality_full = quality.is_some_and(|(q, end)| q + in_bank >= end);
                    if next + words > value_end || quality_full {
                        if in_bank == 0 {
                            return Err(MapError::OutOfSpace {
                                what: format!(
                                    "automatic mapping from register {}",
                                    modbus.data_base
                                ),
                                end: next + words - 1,
                            });
                        }
                        bank += 1;
                        next = u32::from(modbus.data_base);
                        in_bank = 0;
                    }
                    placed.push((t.id, bank, next as u16));
                    next += words;
                    in_bank += 1;
                }
                let banks = bank + 1;
                bank_units = if modbus.unit_ids.is_empty() {
                    (1..=banks).map(|u| u.min(255) as u8).collect()
                } else if modbus.unit_ids.len() < banks {
                    return Err(MapError::TooFewUnits {
                        needed: banks,
                        listed: modbus.unit_ids.len(),
                    });
                } else {
                    modbus.unit_ids[..banks].to_vec()
                };
                if banks > 255 {
                    return Err(MapError::TooFewUnits {
                        needed: banks,
                        listed: 255,
                    });
                }
            }
            MapMode::Device => {
                // One bank per device (the name up to its last '.'), in catalogue order;
                // inside a device its tags are back to back from data_base, so devices
                // of one kind (the same tags in the same order) share a layout.
                let (value_end, quality) = auto_limits(modbus);
                let mut device: Option<&str> = None;
                let mut done = std::collections::HashSet::new();
                let (mut bank, mut next, mut in_bank) = (0usize, 0u32, 0u32);
                for t in catalog {
                    let name = t.name.rsplit_once('.').map_or("", |(d, _)| d);
                    if device != Some(name) {
                        if !done.insert(name) {
                            return Err(MapError::DeviceSplit(name.to_string()));
                        }
                        if device.is_some() {
                            bank += 1;
                        }
                        device = Some(name);
                        next = u32::from(modbus.data_base);
                        in_bank = 0;
                    }
                    let words = u32::from(register_count(t.kind));
                    let quality_full = quality.is_some_and(|(q, end)| q + in_bank >= end);
                    if next + words > value_end || quality_full {
                        return Err(MapError::OutOfSpace {
                            what: format!("device '{name}' from register {}", modbus.data_base),
                            end: next + words - 1,
                        });
                    }
                    placed.push((t.id, bank, next as u16));
                    next += words;
                    in_bank += 1;
                }
                let devices = if catalog.is_empty() { 0 } else { bank + 1 };
                bank_units = if modbus.unit_ids.is_empty() {
                    if devices > MAX_DEVICE_UNITS {
                        return Err(MapError::TooManyDevices { devices });
                    }
                    (1..=devices).map(|u| u as u8).collect()
                } else if modbus.unit_ids.len() < devices {
                    return Err(MapError::TooFewUnits {
                        needed: devices,
                        listed: modbus.unit_ids.len(),
                    });
                } else {
                    modbus.unit_ids[..devices].to_vec()
                };
                if bank_units.is_empty() {
                    bank_units.push(default_unit);
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
                    let unit = p.unit.unwrap_or(default_unit);
                    if !modbus.unit_ids.is_empty() && !modbus.unit_ids.contains(&unit) {
                        return Err(MapError::UnitNotListed {
                            index,
                            unit,
                            listed: modbus.unit_ids.clone(),
                        });
                    }
                    let bank = match bank_units.iter().position(|u| *u == unit) {
                        Some(b) => b,
                        None => {
                            bank_units.push(unit);
                            bank_units.len() - 1
                        }
                    };
                    placed.push((t.id, bank, p.address));
                }
                if bank_units.is_empty() {
                    bank_units.push(default_unit);
                }
            }
        }

        // The first catalogue index in each bank: automatic coils count from it.
        let mut bank_first_tag = vec![u32::MAX; bank_units.len()];
        for (tag, bank, _) in &placed {
            bank_first_tag[*bank] = bank_first_tag[*bank].min(tag.0);
        }
        let mut in_bank = vec![0u32; bank_units.len()];
        let mut points = Vec::with_capacity(placed.len());
        let mut names = String::new();
        let mut name_ends = Vec::with_capacity(placed.len());
        let mut units: Vec<String> = Vec::new();
        for (tag, bank, address) in &placed {
            let t = &catalog[tag.index()];
            let words = register_count(t.kind);
            let end = u32::from(*address) + u32::from(words) - 1;
            if end > 65535 {
                return Err(MapError::OutOfSpace {
                    what: format!("'{}' at register {address}", t.name),
                    end,
                });
            }
            let index = in_bank[*bank];
            in_bank[*bank] += 1;
            let quality_address = match modbus.quality_base {
                Some(q) => {
                    let a = u32::from(q) + index;
                    if a > 65535 {
                        return Err(MapError::OutOfSpace {
                            what: format!("quality registers from {q}"),
                            end: a,
                        });
                    }
                    Some(a as u16)
                }
                None => None,
            };
            let coil = if t.kind == TagKind::Digital {
                let index = match map.mode {
                    MapMode::Auto | MapMode::Device => t.id.0 - bank_first_tag[*bank],
                    MapMode::Explicit => t.id.0,
                };
                if index > 65535 {
                    return Err(MapError::CoilOutOfSpace {
                        name: t.name.clone(),
                        index,
                    });
                }
                Some(index as u16)
            } else {
                None
            };
            names.push_str(&t.name);
            name_ends.push(names.len() as u32);
            let unit_index = match units.iter().position(|u| *u == t.unit) {
                Some(u) => u,
                None => {
                    units.push(t.unit.clone());
                    units.len() - 1
                }
            };
            points.push(Point {
                tag: t.id,
                unit_index: unit_index.min(usize::from(u16::MAX)) as u16,
                kind: t.kind,
                writable: t.writable,
                unit_id: bank_units[*bank],
                address: *address,
                words,
                quality_address,
                coil,
            });
        }

        let mut banks = Vec::with_capacity(bank_units.len());
        for (b, unit_id) in bank_units.iter().enumerate() {
            let members: Vec<u32> = placed
                .iter()
                .enumerate()
                .filter(|(_, (_, bank, _))| *bank == b)
                .map(|(i, _)| i as u32)
                .collect();
            let name = |i: u32| {
                let start = if i == 0 { 0 } else { name_ends[i as usize - 1] };
                names[start as usize..name_ends[i as usize] as usize].to_string()
            };
            banks.push(lay_out_bank(*unit_id, &points, &members, &name)?);
        }

        // Unit ids: each bank's own; the rest go to the first bank when no list is
        // configured (a one-bank site answers at any unit id, as before banks), and
        // listed ids without a bank of their own also serve the first bank.
        let mut by_unit = vec![None; 256];
        if map.mode == MapMode::Device {
            // A gateway answers only for its devices' unit ids (others: 0B).
        } else if modbus.unit_ids.is_empty() {
            by_unit.iter_mut().for_each(|u| *u = Some(0));
        } else {
            for u in &modbus.unit_ids {
                by_unit[usize::from(*u)] = Some(0);
            }
        }
        for (b, u) in bank_units.iter().enumerate() {
            by_unit[usize::from(*u)] = Some(b as u16);
        }

        let mut by_tag = vec![None; catalog.len()];
        for (i, p) in points.iter().enumerate() {
            by_tag[p.tag.index()] = Some(i as u32);
        }
        names.shrink_to_fit();
        Ok(RegisterMap {
            points,
            names,
            name_ends,
            units,
            banks,
            by_unit,
            by_tag,
            word_order: modbus.word_order,
        })
    }

    /// The tag name of point `point`.
    pub fn name(&self, point: u32) -> &str {
        let i = point as usize;
        let start = if i == 0 {
            0
        } else {
            self.name_ends[i - 1] as usize
        };
        &self.names[start..self.name_ends[i] as usize]
    }

    /// The engineering unit of point `point` (empty for dimensionless tags).
    pub fn unit(&self, point: u32) -> &str {
        &self.units[usize::from(self.points[point as usize].unit_index)]
    }

    /// The bank answering `unit`, if any.
    pub fn bank_for(&self, unit: u8) -> Option<&Bank> {
        self.by_unit[usize::from(unit)].map(|b| &self.banks[usize::from(b)])
    }

    /// Every bank, in unit order of the mapping.
    pub fn banks(&self) -> &[Bank] {
        &self.banks
    }

    /// The first bank (the whole map of a site that fits one unit).
    pub fn first_bank(&self) -> &Bank {
        &self.banks[0]
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

    /// One past the last holding/input register of the first bank.
    pub fn register_end(&self) -> u32 {
        self.first_bank().register_end()
    }

    /// One past the last coil/discrete input address of the first bank.
    pub fn coil_end(&self) -> u32 {
        self.first_bank().coil_end()
    }

    pub fn word_order(&self) -> WordOrder {
        self.word_order
    }
}

/// Lays out one bank's cells (the status block, then its points' values and qualities)
/// and coils, refusing overlaps.
fn lay_out_bank(
    unit_id: u8,
    points: &[Point],
    members: &[u32],
    name: &dyn Fn(u32) -> String,
) -> Result<Bank, MapError> {
    let mut end = u32::from(STATUS_REGISTERS);
    for &i in members {
        let p = &points[i as usize];
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
    let name_of = |o: Option<u32>| match o {
        Some(i) => name(i),
        None => "the status block".to_string(),
    };
    let mut claim = |addr: u16, cell: Cell, who: u32| -> Result<(), MapError> {
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
                a: name(who),
                b: name_of(other),
            });
        }
        owner[a] = Some(who);
        cells[a] = cell;
        Ok(())
    };
    for &i in members {
        let p = &points[i as usize];
        for w in 0..p.words {
            claim(
                p.address + w,
                Cell::Value {
                    point: i,
                    word: w as u8,
                },
                i,
            )?;
        }
        if let Some(q) = p.quality_address {
            claim(q, Cell::Quality { point: i }, i)?;
        }
    }
    let coil_end = members
        .iter()
        .filter_map(|&i| points[i as usize].coil)
        .max()
        .map_or(0, |c| c as usize + 1);
    let mut coils = vec![None; coil_end];
    for &i in members {
        if let Some(c) = points[i as usize].coil {
            coils[c as usize] = Some(i);
        }
    }
    let pair_runs = pair_runs(&cells);
    Ok(Bank {
        unit_id,
        cells,
        coils,
        pair_runs,
    })
}

/// `Bank::pair_runs`, from the last register back to the first.
fn pair_runs(cells: &[Cell]) -> Vec<u16> {
    let mut runs = vec![0u16; cells.len()];
    for a in (0..cells.len().saturating_sub(1)).rev() {
        let (
            Cell::Value { point, word: 0 },
            Cell::Value {
                point: second,
                word: 1,
            },
        ) = (cells[a], cells[a + 1])
        else {
            continue;
        };
        if second != point {
            continue;
        }
        let continues = matches!(cells.get(a + 2), Some(Cell::Value { point: next, word: 0 }) if *next == point + 1);
        let rest = if continues { runs[a + 2] } else { 0 };
        runs[a] = 2u16.saturating_add(rest);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PointConfig;

    /// `n` tags, every `digital_every`-th one digital (1 register), the rest analog (2);
    /// `u32::MAX`: none digital.
    fn catalog(n: u32, digital_every: u32) -> Vec<TagInfo> {
        (0..n)
            .map(|i| TagInfo {
                id: TagId(i),
                name: format!("T{i}"),
                unit: String::new(),
                kind: if i % digital_every == digital_every - 1 {
                    TagKind::Digital
                } else {
                    TagKind::Analog
                },
                writable: false,
            })
            .collect()
    }

    fn auto(c: &[TagInfo], modbus: &ModbusConfig) -> Result<RegisterMap, MapError> {
        RegisterMap::build(c, modbus, &MapConfig::default())
    }

    #[test]
    fn automatic_mapping_spills_into_further_units_from_data_base() {
        // 2 registers a tag from 100: (65536 - 100) / 2 = 32718 tags per unit.
        let c = catalog(32_718 * 2 + 1, u32::MAX);
        let m = auto(&c, &ModbusConfig::default()).unwrap();
        let units: Vec<u8> = m.banks().iter().map(|b| b.unit_id).collect();
        assert_eq!(units, [1, 2, 3]);
        let p = m.points();
        assert_eq!((p[32_717].unit_id, p[32_717].address), (1, 65_534));
        assert_eq!((p[32_718].unit_id, p[32_718].address), (2, 100));
        assert_eq!((p[65_436].unit_id, p[65_436].address), (3, 100));
        // The status block is in every bank; unlisted units answer with the first.
        for b in m.banks() {
            assert!(matches!(
                b.cell(0),
                Some(Cell::Status(StatusField::Heartbeat, 0))
            ));
        }
        assert_eq!(m.bank_for(2).unwrap().unit_id, 2);
        assert_eq!(m.bank_for(0).unwrap().unit_id, 1);
        assert_eq!(m.bank_for(200).unwrap().unit_id, 1);
    }

    #[test]
    fn listed_unit_ids_name_the_banks_and_too_few_are_refused() {
        let c = catalog(40_000, u32::MAX);
        let mut modbus = ModbusConfig {
            unit_ids: vec![5],
            ..ModbusConfig::default()
        };
        assert_eq!(
            auto(&c, &modbus).unwrap_err(),
            MapError::TooFewUnits {
                needed: 2,
                listed: 1
            }
        );
        modbus.unit_ids = vec![5, 9, 11];
        let m = auto(&c, &modbus).unwrap();
        let units: Vec<u8> = m.banks().iter().map(|b| b.unit_id).collect();
        assert_eq!(units, [5, 9]);
        assert_eq!(m.bank_for(9).unwrap().unit_id, 9);
        // A listed id without a bank of its own serves the first; unlisted: none.
        assert_eq!(m.bank_for(11).unwrap().unit_id, 5);
        assert!(m.bank_for(1).is_none());
    }

    #[test]
    fn qualities_and_coils_count_within_their_bank() {
        // Qualities from 40000: values may use 100..40000, qualities 40000..65536.
        let c = catalog(30_000, 3);
        let modbus = ModbusConfig {
            quality_base: Some(40_000),
            ..ModbusConfig::default()
        };
        let m = auto(&c, &modbus).unwrap();
        assert_eq!(m.banks().len(), 2);
        let second = m.points().iter().position(|p| p.unit_id == 2).unwrap();
        let p = &m.points()[second];
        assert_eq!((p.address, p.quality_address), (100, Some(40_000)));
        // Every point's quality lies below 65536 and above its bank's values.
        assert!(
            m.points()
                .iter()
                .all(|p| p.quality_address.unwrap() >= 40_000)
        );
        assert!(
            m.points()
                .iter()
                .all(|p| u32::from(p.address) + u32::from(p.words) <= 40_000)
        );
        // The first digital tag of bank 2 has coil 0 (or the bank's first digital index).
        let first_digital = m.points()[second..]
            .iter()
            .find(|p| p.kind == TagKind::Digital)
            .unwrap();
        assert_eq!(
            u32::from(first_digital.coil.unwrap()),
            first_digital.tag.0 - p.tag.0
        );
    }

    #[test]
    fn explicit_points_may_name_their_unit() {
        let c = catalog(4, u32::MAX);
        let point = |tag: &str, address: u16, unit: Option<u8>| PointConfig {
            tag: tag.into(),
            address,
            unit,
        };
        let map = MapConfig {
            mode: MapMode::Explicit,
            points: vec![
                point("T0", 100, None),
                point("T1", 100, Some(4)),
                point("T2", 102, Some(4)),
            ],
        };
        let m = RegisterMap::build(&c, &ModbusConfig::default(), &map).unwrap();
        let units: Vec<u8> = m.banks().iter().map(|b| b.unit_id).collect();
        assert_eq!(units, [1, 4]);
        // The same register in two units holds two tags; an overlap within one is refused.
        assert!(matches!(
            m.bank_for(4).unwrap().cell(100),
            Some(Cell::Value { point: 1, word: 0 })
        ));
        let clash = MapConfig {
            mode: MapMode::Explicit,
            points: vec![point("T1", 100, Some(4)), point("T2", 101, Some(4))],
        };
        assert!(matches!(
            RegisterMap::build(&c, &ModbusConfig::default(), &clash),
            Err(MapError::Overlap { .. })
        ));
        let modbus = ModbusConfig {
            unit_ids: vec![1, 2],
            ..ModbusConfig::default()
        };
        assert_eq!(
            RegisterMap::build(&c, &modbus, &map)
                .unwrap_err()
                .to_string(),
            "map.point[1].unit: unit 4 is not in modbus.unit_ids [1, 2]"
        );
    }

    #[test]
    fn per_device_mapping_gives_each_device_a_unit_and_kinds_share_a_layout() {
        let tag = |i: u32, name: &str, kind: TagKind| TagInfo {
            id: TagId(i),
            name: name.into(),
            unit: String::new(),
            kind,
            writable: false,
        };
        let c = vec![
            tag(0, "F1.M1.kW", TagKind::Analog),
            tag(1, "F1.M1.Breaker", TagKind::Digital),
            tag(2, "F1.M1.kWh", TagKind::Counter),
            tag(3, "F1.M2.kW", TagKind::Analog),
            tag(4, "F1.M2.Breaker", TagKind::Digital),
            tag(5, "F1.M2.kWh", TagKind::Counter),
            tag(6, "F1.Relay.Trip", TagKind::Digital),
        ];
        let map = MapConfig {
            mode: MapMode::Device,
            points: vec![],
        };
        let m = RegisterMap::build(&c, &ModbusConfig::default(), &map).unwrap();
        let units: Vec<u8> = m.banks().iter().map(|b| b.unit_id).collect();
        assert_eq!(units, [1, 2, 3]);
        let layout = |p: &Point| (p.unit_id, p.address, p.coil);
        let p = m.points();
        assert_eq!(
            p.iter().map(layout).collect::<Vec<_>>(),
            [
                (1, 100, None),
                (1, 102, Some(1)),
                (1, 103, None),
                (2, 100, None),
                (2, 102, Some(1)),
                (2, 103, None),
                (3, 100, Some(0)),
            ],
            "meters M1 and M2 share a layout (coils: the tag's index in its device)"
        );
        // Only the devices' unit ids answer.
        assert_eq!(m.bank_for(2).unwrap().unit_id, 2);
        assert!(m.bank_for(4).is_none());
        assert!(m.bank_for(0).is_none());

        let many: Vec<TagInfo> = (0..248)
            .map(|i| tag(i, &format!("F.M{i}.kW"), TagKind::Analog))
            .collect();
        assert_eq!(
            RegisterMap::build(&many, &ModbusConfig::default(), &map).unwrap_err(),
            MapError::TooManyDevices { devices: 248 }
        );
        let split = vec![
            tag(0, "A.kW", TagKind::Analog),
            tag(1, "B.kW", TagKind::Analog),
            tag(2, "A.kVAr", TagKind::Analog),
        ];
        assert_eq!(
            RegisterMap::build(&split, &ModbusConfig::default(), &map).unwrap_err(),
            MapError::DeviceSplit("A".into())
        );
        let twice = ModbusConfig {
            unit_ids: vec![1, 2, 1],
            ..ModbusConfig::default()
        };
        assert_eq!(
            RegisterMap::build(&c, &twice, &map).unwrap_err(),
            MapError::DuplicateUnit(1)
        );
    }
}
