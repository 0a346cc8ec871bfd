//! The scenario runner (docs/design.md §7): builds any of the three architectures, drives
//! third-party Modbus masters against it, injects faults, measures and reports.

pub mod backend;
pub mod bench;
pub mod capability;
pub mod child;
pub mod escape;
pub mod explore;
pub mod fault;
pub mod flood;
pub mod html;
pub mod invariants;
pub mod launch;
pub mod load;
pub mod measure;
pub mod netns;
pub mod observed;
pub mod opcua;
pub mod opcua_load;
pub mod page_probe;
pub mod plan;
pub mod probe;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seam;
pub mod security;
pub mod server_watch;
pub mod sim;
pub mod status_poll;
pub mod third_party;
pub mod timeline;
pub mod topology;
pub mod wiring;
