//! The harness's OPC UA third parties (`[third_party.opcua]`, docs/scenarios.md): sessions
//! on async-opcua's client over the backend's network (`client`), the connectors' `[opcua]`
//! and the run's OPC UA certificates (`setup`), the redundant client's choice of server
//! (`follower`, sans-IO) and the clients themselves (`third_party`).

pub mod client;
pub mod follower;
pub mod setup;
pub mod third_party;
