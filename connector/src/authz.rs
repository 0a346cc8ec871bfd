//! Modbus/TCP Security authorization (docs/design.md §13, docs/security.md): what a master's role
//! may do. Sans-IO: built from the configuration's `[[modbus.role]]` table, asked per
//! request with the registers or coils it touches.
//!
//! A role grants `read` and/or `write`, to everything or only to the tags whose names
//! match its `tags` patterns and the registers in its `registers` ranges. The status block
//! is readable by every role that may read. A master whose certificate names no role gets
//! `default_role`; with none configured, or with a role the table does not know, it may
//! do nothing (every request is exception 01).

use crate::config::{ModbusConfig, RoleConfig};
use crate::map::{Bank, Cell, RegisterMap};
use std::collections::HashMap;
use std::sync::Arc;
use wildmatch::WildMatch;

/// What a request does with the addresses it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
}

/// Holding/input registers or coils/discrete inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Registers,
    Coils,
}

/// The rights of one connection.
#[derive(Debug, Clone)]
pub struct Rights {
    /// The role's name as the log and status page show it.
    pub role: String,
    read: bool,
    write: bool,
    /// `None`: every tag and address.
    scope: Option<Scope>,
}

#[derive(Debug, Clone)]
struct Scope {
    tags: Vec<WildMatch>,
    /// Inclusive holding/input register ranges. Coils are numbered differently (by tag),
    /// so a register range grants no coil: coils are in scope through `tags` only.
    ranges: Vec<(u16, u16)>,
}

impl Rights {
    /// Plain Modbus (port 502): no roles, everything the listener serves.
    pub fn unrestricted() -> Rights {
        Rights {
            role: "(plain Modbus)".into(),
            read: true,
            write: true,
            scope: None,
        }
    }

    /// Nothing at all: a certificate without a usable role and no default.
    pub fn none(role: impl Into<String>) -> Rights {
        Rights {
            role: role.into(),
            read: false,
            write: false,
            scope: None,
        }
    }

    /// Reads everything, writes nothing (anonymous OPC UA sessions without a role).
    pub fn read_only(role: impl Into<String>) -> Rights {
        Rights {
            role: role.into(),
            read: true,
            write: false,
            scope: None,
        }
    }

    /// Whether this user may `op` the tag `name`: the question every face but Modbus asks
    /// (a role's register ranges are Modbus addresses and grant no tag by name).
    pub fn permits_tag(&self, op: Operation, name: &str) -> bool {
        let granted = match op {
            Operation::Read => self.read,
            Operation::Write => self.write,
        };
        granted
            && self
                .scope
                .as_ref()
                .is_none_or(|s| s.tags.iter().any(|t| t.matches(name)))
    }

    fn of(config: &RoleConfig) -> Rights {
        let limited = !config.tags.is_empty() || !config.registers.is_empty();
        Rights {
            role: config.name.clone(),
            read: config.read,
            write: config.write,
            scope: limited.then(|| Scope {
                tags: config.tags.iter().map(|p| WildMatch::new(p)).collect(),
                ranges: config
                    .registers
                    .iter()
                    .filter_map(|r| crate::config::parse_range(r).ok())
                    .collect(),
            }),
        }
    }

    /// Whether this connection may `op` the `count` addresses from `start` of `space` in
    /// `bank`. Addresses outside the bank are left to the service (exception 02).
    pub fn permits(
        &self,
        op: Operation,
        map: &RegisterMap,
        bank: &Bank,
        space: Space,
        start: u16,
        count: u16,
    ) -> bool {
        let granted = match op {
            Operation::Read => self.read,
            Operation::Write => self.write,
        };
        if !granted {
            return false;
        }
        let Some(scope) = &self.scope else {
            return true;
        };
        (0..count).all(|i| {
            let Some(addr) = start.checked_add(i) else {
                return true;
            };
            if space == Space::Registers
                && scope
                    .ranges
                    .iter()
                    .any(|&(lo, hi)| (lo..=hi).contains(&addr))
            {
                return true;
            }
            let point = match space {
                Space::Registers => match bank.cell(addr) {
                    Some(Cell::Status(..)) => return op == Operation::Read,
                    Some(Cell::Value { point, .. } | Cell::Quality { point }) => Some(point),
                    Some(Cell::Empty) | None => None,
                },
                Space::Coils => bank.coil(addr).flatten(),
            };
            point.is_some_and(|p| {
                let name = map.name(p);
                scope.tags.iter().any(|t| t.matches(name))
            })
        })
    }
}

/// The `[[modbus.role]]` table with its default.
#[derive(Debug, Clone)]
pub struct RoleTable {
    roles: HashMap<String, Arc<Rights>>,
    default: Option<String>,
}

impl RoleTable {
    pub fn from_config(config: &ModbusConfig) -> RoleTable {
        RoleTable {
            roles: config
                .roles
                .iter()
                .map(|r| (r.name.clone(), Arc::new(Rights::of(r))))
                .collect(),
            default: config.tls.as_ref().and_then(|t| t.default_role.clone()),
        }
    }

    /// The rights of a master whose certificate names `role` (`None`: no role extension).
    /// The second value says why, for the log line, when the rights are not the role's.
    pub fn rights_for(&self, role: Option<&str>) -> (Arc<Rights>, Option<String>) {
        match role {
            Some(r) => match self.roles.get(r) {
                Some(rights) => (rights.clone(), None),
                None => (
                    Arc::new(Rights::none(r)),
                    Some(format!(
                        "role '{r}' is not in [[modbus.role]]: every request gets exception 01"
                    )),
                ),
            },
            None => match self.default.as_deref().and_then(|d| self.roles.get(d)) {
                Some(rights) => (
                    rights.clone(),
                    Some(format!(
                        "certificate has no role: default role '{}'",
                        rights.role
                    )),
                ),
                None => (
                    Arc::new(Rights::none("(none)")),
                    Some(
                        "certificate has no role and no default_role is set: every request gets exception 01"
                            .into(),
                    ),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapConfig;
    use crate::map::Point;
    use po_simulator::{FieldModel, SiteSpec};
    use std::time::Duration;

    /// Two meters of 16 tags, mapped automatically from register 100.
    fn site() -> RegisterMap {
        let model = FieldModel::new(
            3,
            SiteSpec {
                devices: 2,
                tags_per_device: 16,
                scan_period: Duration::from_millis(100),
            },
        )
        .unwrap();
        RegisterMap::build(
            model.catalog(),
            &ModbusConfig::default(),
            &MapConfig::default(),
        )
        .unwrap()
    }

    fn role(read: bool, write: bool, tags: &[&str], registers: &[&str]) -> Rights {
        Rights::of(&RoleConfig {
            name: "r".into(),
            read,
            write,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            registers: registers.iter().map(|r| r.to_string()).collect(),
        })
    }

    fn point<'a>(map: &'a RegisterMap, suffix: &str, nth: usize) -> (&'a Point, String) {
        let (i, p) = map
            .points()
            .iter()
            .enumerate()
            .filter(|(i, _)| map.name(*i as u32).ends_with(suffix))
            .nth(nth)
            .unwrap();
        (p, map.name(i as u32).to_string())
    }

    #[test]
    fn plain_modbus_may_do_everything_and_nothing_means_nothing() {
        let map = site();
        let bank = map.first_bank();
        let all = Rights::unrestricted();
        let none = Rights::none("x");
        for op in [Operation::Read, Operation::Write] {
            for space in [Space::Registers, Space::Coils] {
                assert!(all.permits(op, &map, bank, space, 0, 125));
                assert!(!none.permits(op, &map, bank, space, 100, 1));
            }
        }
    }

    #[test]
    fn read_and_write_are_granted_separately() {
        let map = site();
        let bank = map.first_bank();
        let viewer = role(true, false, &[], &[]);
        assert!(viewer.permits(Operation::Read, &map, bank, Space::Registers, 100, 4));
        assert!(!viewer.permits(Operation::Write, &map, bank, Space::Registers, 100, 2));
        let writer = role(false, true, &[], &[]);
        assert!(!writer.permits(Operation::Read, &map, bank, Space::Registers, 100, 4));
        assert!(writer.permits(Operation::Write, &map, bank, Space::Coils, 0, 1));
    }

    #[test]
    fn a_tag_scope_covers_exactly_the_matching_tags_registers_and_coils() {
        let map = site();
        let bank = map.first_bank();
        let (cmd, name) = point(&map, "BreakerCmd", 1);
        let scoped = role(true, true, &[&name], &[]);
        let w = Operation::Write;
        assert!(scoped.permits(w, &map, bank, Space::Registers, cmd.address, cmd.words));
        // One register more runs into the next tag, which is out of scope.
        assert!(!scoped.permits(w, &map, bank, Space::Registers, cmd.address, cmd.words + 1));
        assert!(!scoped.permits(w, &map, bank, Space::Registers, cmd.address - 1, 1));
        let coil = cmd.coil.unwrap();
        assert!(scoped.permits(w, &map, bank, Space::Coils, coil, 1));
        assert!(!scoped.permits(w, &map, bank, Space::Coils, coil + 1, 1));
        // The other meter's breaker command is another tag.
        let (other, _) = point(&map, "BreakerCmd", 0);
        assert!(!scoped.permits(w, &map, bank, Space::Registers, other.address, 1));
        // Patterns: `?` is one character, `*` any run.
        let (kw, kw_name) = point(&map, ".kW", 0);
        let pattern = format!("{}?W", &kw_name[..kw_name.len() - 2]);
        let wild = role(true, false, &[&pattern], &[]);
        assert!(wild.permits(Operation::Read, &map, bank, Space::Registers, kw.address, 2));
        let star = role(true, false, &["*BreakerCmd"], &[]);
        assert!(star.permits(
            Operation::Read,
            &map,
            bank,
            Space::Registers,
            other.address,
            1
        ));
        assert!(!star.permits(Operation::Read, &map, bank, Space::Registers, kw.address, 2));
    }

    #[test]
    fn the_status_block_is_readable_by_any_scoped_reader_but_never_writable() {
        let map = site();
        let bank = map.first_bank();
        let scoped = role(true, true, &["nothing-matches"], &[]);
        assert!(scoped.permits(Operation::Read, &map, bank, Space::Registers, 0, 14));
        assert!(!scoped.permits(Operation::Write, &map, bank, Space::Registers, 0, 1));
        // Unmapped registers (between the status block and the data) are out of scope.
        assert!(!scoped.permits(Operation::Read, &map, bank, Space::Registers, 50, 1));
    }

    #[test]
    fn register_ranges_are_inclusive_at_both_ends() {
        let map = site();
        let bank = map.first_bank();
        let ranged = role(true, false, &[], &["110-119"]);
        let r = Operation::Read;
        assert!(ranged.permits(r, &map, bank, Space::Registers, 110, 10));
        assert!(!ranged.permits(r, &map, bank, Space::Registers, 109, 1));
        assert!(!ranged.permits(r, &map, bank, Space::Registers, 120, 1));
        assert!(!ranged.permits(r, &map, bank, Space::Registers, 110, 11));
        // A register range grants no coil: coils are numbered by tag, not by register.
        let wide = role(true, true, &[], &["0-65535"]);
        assert!(wide.permits(r, &map, bank, Space::Registers, 100, 125));
        assert!(!wide.permits(r, &map, bank, Space::Coils, 0, 1));
        assert!(!wide.permits(Operation::Write, &map, bank, Space::Coils, 3, 1));
        // The end of the address space does not wrap around.
        let top = role(true, false, &[], &["65535"]);
        assert!(top.permits(r, &map, bank, Space::Registers, 65535, 1));
    }

    #[test]
    fn a_certificate_without_role_gets_the_default_when_one_is_set() {
        let mut config = ModbusConfig {
            roles: vec![RoleConfig {
                name: "viewer".into(),
                read: true,
                write: false,
                tags: vec![],
                registers: vec![],
            }],
            ..ModbusConfig::default()
        };
        config.tls = Some(crate::config::ModbusTlsConfig {
            listen: None,
            cert: "c".into(),
            key: "k".into(),
            ca: "a".into(),
            handshake_timeout: Duration::from_secs(1),
            default_role: Some("viewer".into()),
        });
        let (r, why) = RoleTable::from_config(&config).rights_for(None);
        assert!(r.read && !r.write);
        assert_eq!(r.role, "viewer");
        assert!(why.unwrap().contains("default role 'viewer'"));
    }

    #[test]
    fn an_unknown_role_and_a_missing_one_without_default_get_nothing() {
        let config = ModbusConfig {
            roles: vec![RoleConfig {
                name: "viewer".into(),
                read: true,
                write: false,
                tags: vec![],
                registers: vec![],
            }],
            ..ModbusConfig::default()
        };
        let table = RoleTable::from_config(&config);
        let (r, why) = table.rights_for(Some("admin"));
        assert!(!r.read && !r.write);
        assert!(why.unwrap().contains("'admin' is not in"));
        let (r, why) = table.rights_for(None);
        assert!(!r.read && !r.write);
        assert!(why.unwrap().contains("no default_role"));
        let (r, why) = table.rights_for(Some("viewer"));
        assert!(r.read && !r.write && why.is_none());
    }
}
