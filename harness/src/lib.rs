//! The scenario runner (DESIGN §7): builds any of the three architectures, drives
//! third-party Modbus masters against it, injects faults, measures and reports.

pub mod load;
