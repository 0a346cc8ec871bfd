//! The Smart Connector: subscribes to one or two Power Operation servers over the
//! client-access protocol, follows whichever is Primary, and serves every tag to
//! third-party systems as a Modbus TCP server (docs/design.md §6, docs/connector.md).

pub mod api;
pub mod authz;
pub mod catalog;
pub mod certs;
pub mod certs_opcua;
pub mod change_feed;
pub mod config;
pub mod connector;
pub mod engine;
pub mod engine_core;
pub mod http;
pub mod image;
pub mod image_slot;
pub mod lifecycle;
pub mod listener;
pub mod liveness;
pub mod map;
pub mod metrics;
pub mod modbus;
pub mod opcua;
pub mod points;
pub mod points_client;
pub mod points_page;
pub mod registers;
pub mod selector;
pub mod sequence;
pub mod service;
pub mod service_level;
pub mod service_manager;
pub mod source;
pub mod source_session;
pub mod status;
pub mod status_page;
pub mod switches;
pub mod write_queue;
