//! What a scenario with `[third_party.opcua]` needs before anything starts: the
//! connectors' `[opcua]` (endpoints, redundancy, users and roles) and, for a secure
//! endpoint, the OPC UA PKI of the run: each connector's application instance certificate,
//! the harness client's certificate trusted by every connector.

use super::client::{CLIENT_URI, UaIdentity, password_of};
use crate::scenario::{MasterRole, OpcUaClientSection, OpcUaSecurity};
use crate::security::RunPki;
use crate::topology::Topology;
use anyhow::{Context as _, Result};
use smart_connector::config::{
    ConnectorConfig, OpcUaConfig, OpcUaRedundancy, OpcUaUser, RedundancySupportKind,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The client certificate's name (`clients/NAME.der`).
const CLIENT_NAME: &str = "harness";

/// The run's OPC UA files, under `RUN_DIR/opcua`.
#[derive(Debug, Clone)]
pub struct UaSetup {
    dir: PathBuf,
    section: OpcUaClientSection,
}

impl UaSetup {
    /// The run's OPC UA files under `run_dir/opcua` (made by [`UaSetup::create`]).
    pub fn at(run_dir: &Path, section: &OpcUaClientSection) -> UaSetup {
        UaSetup {
            dir: run_dir.join("opcua"),
            section: section.clone(),
        }
    }

    /// Makes the client's certificate (secure endpoints).
    pub fn create(&self) -> Result<()> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir.join("client-pki"))
            .with_context(|| format!("creating {}", dir.display()))?;
        if self.section.security != OpcUaSecurity::None {
            smart_connector::certs_opcua::client(
                &dir.join("client"),
                CLIENT_NAME,
                CLIENT_URI,
                None,
                true,
            )
            .context("making the harness's OPC UA client certificate")?;
        }
        Ok(())
    }

    /// Turns on `[opcua]` in connector `name`'s configuration, listening on `listen`:
    /// the scenario's endpoint, warm redundancy naming the other connectors, the
    /// harness's users (with their roles) or anonymous sessions with the operator role.
    pub fn enable(
        &self,
        t: &Topology,
        config: &mut ConnectorConfig,
        listen: SocketAddr,
    ) -> Result<()> {
        let name = config.name.clone();
        let mut o = OpcUaConfig {
            listen,
            security: vec![self.section.security.as_str().into()],
            // Namespaces have no loopback: the lab's `none` endpoint is on purpose.
            allow_insecure: self.section.security == OpcUaSecurity::None,
            redundancy: OpcUaRedundancy {
                support: if t.connectors().count() > 1 {
                    RedundancySupportKind::Warm
                } else {
                    RedundancySupportKind::None
                },
                peers: t
                    .connectors()
                    .filter(|c| c.name != name)
                    .map(|c| format!("urn:smart-connector:{}", c.name))
                    .collect(),
            },
            ..OpcUaConfig::default()
        };
        if self.section.users.is_empty() {
            o.anonymous = true;
            o.anonymous_role = Some(MasterRole::Operator.as_str().into());
        } else {
            for role in [MasterRole::Operator, MasterRole::Viewer] {
                o.users.push(OpcUaUser {
                    name: role.as_str().into(),
                    password_hash: smart_connector::opcua::auth::hash_password(&password_of(role))
                        .map_err(|e| anyhow::anyhow!("hashing a lab password: {e}"))?,
                    role: role.as_str().into(),
                });
            }
        }
        if self.section.security != OpcUaSecurity::None {
            o.pki_dir = Some(self.dir.join(format!("pki-{name}")));
        }
        config.modbus.roles = RunPki::roles();
        config.opcua = Some(o);
        Ok(())
    }

    /// Makes connector `name`'s OPC UA certificate in the directory its `[opcua]` names
    /// (secure endpoints), trusting the harness's client.
    pub fn make_server_certs(&self, name: &str, o: &OpcUaConfig) -> Result<()> {
        let Some(pki) = &o.pki_dir else {
            return Ok(());
        };
        smart_connector::certs_opcua::server(
            pki,
            &o.application_uri(name),
            &[],
            &[o.listen.ip()],
            true,
        )
        .with_context(|| format!("making {name}'s OPC UA certificate"))?;
        // Trust the harness's client: its certificate goes where `certs opcua-client`
        // files a trusted one.
        let trusted = self.dir.join("client").join("trusted");
        for f in
            std::fs::read_dir(&trusted).with_context(|| format!("reading {}", trusted.display()))?
        {
            let f = f?;
            std::fs::copy(f.path(), pki.join("trusted").join(f.file_name()))?;
        }
        Ok(())
    }

    /// How OPC UA client `index` identifies itself.
    pub fn identity(&self, index: usize) -> UaIdentity {
        let clients = self.dir.join("client").join("clients");
        UaIdentity {
            security: self.section.security,
            user: self.section.user_of(index),
            cert: (self.section.security != OpcUaSecurity::None).then(|| {
                (
                    clients.join(format!("{CLIENT_NAME}.der")),
                    clients.join(format!("{CLIENT_NAME}.pem")),
                )
            }),
            pki_dir: self.dir.join("client-pki"),
        }
    }
}
