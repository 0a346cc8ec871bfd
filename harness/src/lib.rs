//! The scenario runner (DESIGN §7): builds any of the three architectures, drives
//! third-party Modbus masters against it, injects faults, measures and reports.

pub mod backend;
pub mod bench;
pub mod child;
pub mod explore;
pub mod fault;
pub mod flood;
pub mod invariants;
pub mod launch;
pub mod load;
pub mod measure;
pub mod netns;
pub mod observed;
pub mod plan;
pub mod probe;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seam;
pub mod sim;
pub mod third_party;
pub mod topology;
