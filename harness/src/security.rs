//! `[security] tls = true` (docs/scenarios.md): a lab PKI made for one run with
//! `smart-connector certs`' library, and the TLS parts of every component's configuration.
//!
//! - one CA and the servers' certificate naming every host address of the topology (the
//!   servers serve with it and present it to their peer on the sync link; a fault proxy
//!   may listen on any host's address);
//! - a server certificate per connector for its Modbus/TCP Security port (server
//!   authentication only: a connector's key cannot pose as a server or a sync peer),
//!   naming its host's and the third-party host's addresses;
//! - a client certificate per connector, its common name the connector's name: each
//!   server binds licence `CA_LICENCES[i]` to connector `i`;
//! - a client certificate per master role (`master-operator`, `master-viewer`) with the
//!   Modbus/TCP Security role extension.

use crate::scenario::MasterRole;
use crate::scenario::SecuritySection;
use crate::topology::{CA_LICENCES, Topology, lab_ip};
use anyhow::{Context, Result};
use po_runtime::tls::{TlsClient, TlsFiles, TlsVersions};
use po_simulator::config::ServerConfig;
use po_simulator::config::ServerTlsSection;
use smart_connector::config::ConnectorConfig;
use smart_connector::config::{ModbusTlsConfig, RoleConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The certificates of one run, in `dir`.
#[derive(Debug, Clone)]
pub struct RunPki {
    dir: PathBuf,
}

const ROLES: [MasterRole; 2] = [MasterRole::Operator, MasterRole::Viewer];

impl RunPki {
    /// The certificates of a run in `dir` (made there by [`RunPki::create`]): the
    /// configurations can name their files before they exist.
    pub fn at(dir: &Path) -> RunPki {
        RunPki {
            dir: dir.to_path_buf(),
        }
    }

    /// Makes the CA and every certificate the topology needs in its directory (replacing
    /// any).
    pub fn create(&self, t: &Topology) -> Result<()> {
        let dir = self.dir.as_path();
        // Every host's address in every backend (loopback 127.0.H.1, namespaces
        // 198.18.H.1): a fault proxy listens on one of them and the certificate must
        // carry whichever address a client dialled.
        let mut ips: Vec<IpAddr> = Vec::new();
        for h in t.hosts.iter().chain(std::iter::once(&t.third_party_host)) {
            ips.push(IpAddr::V4(h.address));
            ips.push(lab_ip(h.address));
        }
        ips.push(IpAddr::from([127, 0, 0, 1]));
        smart_connector::certs::init(&smart_connector::certs::InitOptions {
            dir: dir.to_path_buf(),
            names: vec!["localhost".into()],
            ips,
            force: true,
        })
        .with_context(|| format!("making the run's lab CA in {}", dir.display()))?;
        for c in t.connectors() {
            smart_connector::certs::client(dir, &c.name, None, true)?;
            let host = &t.hosts[c.host];
            let ips = [host.address, t.third_party_host.address]
                .into_iter()
                .flat_map(|a| [IpAddr::V4(a), lab_ip(a)])
                .collect::<Vec<_>>();
            smart_connector::certs::server(dir, &modbus_name(&c.name), &[], &ips, true)?;
        }
        for role in ROLES {
            smart_connector::certs::client(dir, &master_name(role), Some(role.as_str()), true)?;
        }
        Ok(())
    }

    fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
            ca: self.dir.join("ca.crt"),
        }
    }

    /// A server's `[tls]`: licence `CA_LICENCES[i]` bound to connector `i`.
    pub fn server_tls(&self, t: &Topology) -> ServerTlsSection {
        let files = self.files("server");
        ServerTlsSection {
            cert: files.cert,
            key: files.key,
            ca: files.ca,
            licence_holders: t
                .connectors()
                .filter_map(|c| Some((CA_LICENCES.get(c.index)?.to_string(), c.name.clone())))
                .collect(),
        }
    }

    /// A connector's `[tls]` towards the servers.
    pub fn connector_client(&self, name: &str) -> TlsFiles {
        self.files(name)
    }

    /// Connector `name`'s `[modbus.tls]`, listening on `listen`.
    pub fn modbus_tls(&self, name: &str, listen: SocketAddr) -> ModbusTlsConfig {
        let files = self.files(&modbus_name(name));
        ModbusTlsConfig {
            listen: Some(listen),
            cert: files.cert,
            key: files.key,
            ca: files.ca,
            handshake_timeout: Duration::from_secs(5),
            default_role: None,
        }
    }

    /// The role table of every connector: operators read and write, viewers read.
    pub fn roles() -> Vec<RoleConfig> {
        ROLES
            .iter()
            .map(|r| RoleConfig {
                name: r.as_str().into(),
                read: true,
                write: *r == MasterRole::Operator,
                tags: vec![],
                registers: vec![],
            })
            .collect()
    }

    /// Turns TLS on in a server's configuration: only licences with a holder stay
    /// installed (with TLS each is bound to one connector), and only installed ones are
    /// bound.
    pub fn secure_server(&self, config: &mut ServerConfig, t: &Topology) {
        let mut tls = self.server_tls(t);
        // Architectures without client access install no licence: nothing to bind.
        tls.licence_holders
            .retain(|l, _| config.licences.contains(l));
        config
            .licences
            .retain(|l| tls.licence_holders.contains_key(l));
        config.tls = Some(tls);
    }

    /// Turns TLS on in a connector's configuration: towards the servers, and Modbus/TCP
    /// Security on `secure_listen` with the harness's role table. Plain Modbus stays on
    /// for the harness's own observers (status block, read-back).
    pub fn secure_connector(&self, config: &mut ConnectorConfig, secure_listen: SocketAddr) {
        config.tls = Some(self.connector_client(&config.name));
        config.modbus.tls = Some(self.modbus_tls(&config.name, secure_listen));
        config.modbus.roles = RunPki::roles();
    }

    /// The TLS client end of third-party master `index`, by its role in `security`.
    pub fn master_for(
        &self,
        security: &SecuritySection,
        index: usize,
    ) -> Result<Option<TlsClient>> {
        match security.role_of(index) {
            Some(role) => Ok(Some(self.master(role)?)),
            None => Ok(None),
        }
    }

    /// The TLS client end of a master with `role`.
    pub fn master(&self, role: MasterRole) -> Result<TlsClient> {
        Ok(TlsClient::load(
            &self.files(&master_name(role)),
            TlsVersions::Tls12And13,
        )?)
    }
}

/// The files of a connector's Modbus/TCP Security certificate.
fn modbus_name(connector: &str) -> String {
    format!("{connector}-modbus")
}

fn master_name(role: MasterRole) -> String {
    format!("master-{}", role.as_str())
}
