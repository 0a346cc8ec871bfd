//! What an architecture is made of: hosts (one loopback address 127.0.H.1 each),
//! components, links, fault proxies and the licence bill of materials (docs/design.md §1).

use crate::fault::FaultAction;
use crate::third_party::ThirdPartyKind;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};

/// A topology host's address where hosts have network stacks of their own (sim and
/// netns backends): 198.18.H.1 (the benchmarking range, RFC 2544) for 127.0.H.1.
/// Loopback addresses cannot be used there: turmoil treats them as the host itself, and
/// a namespace's loopback is its own.
pub fn lab_ip(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, a.octets()[2], 1))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    PoServer,
    Connector,
}

#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    /// Index into `Topology::hosts`.
    pub host: usize,
    /// For servers: 0 = preferred Primary, 1 = the other. For connectors: 0 = first.
    pub index: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// Server ↔ server redundancy link.
    Sync,
    /// Connector → server, `Local` access (same host).
    Local,
    /// Connector → server, Client Access licence.
    ClientAccess,
    /// Third party → connector, Modbus TCP.
    Modbus,
}

#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub name: String,
    pub kind: LinkKind,
    /// Component names; for `Modbus` links `from` is the third-party host `tp`.
    pub from: String,
    pub to: String,
    /// Links between hosts get a fault proxy (cut, heal, delay act there).
    pub crosses_hosts: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Licences {
    pub po_server: u32,
    pub smart_connector: u32,
    pub client_access: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    pub architecture: u8,
    pub hosts: Vec<Host>,
    pub components: Vec<Component>,
    pub links: Vec<Link>,
    pub licences: Licences,
    /// The host third parties run on.
    pub third_party_host: Host,
}

/// What a fault target resolves to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Host(&'a Host, usize),
    Component(&'a Component),
    Link(&'a Link),
}

impl Target<'_> {
    /// Whether `action` makes sense on this target, and why not.
    pub fn accepts(&self, action: FaultAction) -> Result<(), String> {
        use FaultAction::*;
        match (self, action) {
            (Target::Link(_), Cut | Heal | Delay | Loss | Reject | Bandwidth) => Ok(()),
            (Target::Link(_), _) => Err(
                "a link can be cut, rejected, delayed, made lossy, rate-limited or healed".into(),
            ),
            (Target::Host(..), Isolate | Heal) => Ok(()),
            (_, Isolate) => Err("isolate acts on hosts (the pulled cable)".into()),
            (Target::Component(_), Heal) => {
                Err("heal acts on links and on isolated hosts, not on components".into())
            }
            (_, Cut | Delay | Loss | Reject | Bandwidth) => {
                Err("network faults act on links (see `harness plan`)".into())
            }
            (Target::Component(c), Pause | Resume) if c.kind == ComponentKind::Connector => Err(
                "pause/resume act on servers (a silent server); crash a connector instead".into(),
            ),
            _ => Ok(()),
        }
    }
}

/// A listener of a component (flood targets: `component:listener`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// A server's client-access listener.
    Client,
    /// A server's sync-link listener (architectures 2 and 3).
    Sync,
    /// A connector's Modbus TCP listener.
    Modbus,
    /// A connector's HTTP (metrics) listener.
    Http,
}

impl ListenerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Client => "client",
            ListenerKind::Sync => "sync",
            ListenerKind::Modbus => "modbus",
            ListenerKind::Http => "http",
        }
    }
}

pub const CA_LICENCES: [&str; 2] = ["CA-1", "CA-2"];

impl Topology {
    /// The topology of `architecture` (docs/design.md §1) with third parties of `kind`.
    pub fn build(architecture: u8, third_parties: ThirdPartyKind) -> Topology {
        let host = |name: &str, h: u8| Host {
            name: name.to_string(),
            address: Ipv4Addr::new(127, 0, h, 1),
        };
        let comp = |name: &str, kind, host, index| Component {
            name: name.to_string(),
            kind,
            host,
            index,
        };
        let link = |name: &str, kind, from: &str, to: &str, crosses_hosts| Link {
            name: name.to_string(),
            kind,
            from: from.to_string(),
            to: to.to_string(),
            crosses_hosts,
        };
        use ComponentKind::*;
        let (hosts, components, mut links, licences) = match architecture {
            1 => (
                vec![host("host-a", 1)],
                vec![comp("po-a", PoServer, 0, 0), comp("sc-a", Connector, 0, 0)],
                vec![link("sc-a->po-a", LinkKind::Local, "sc-a", "po-a", false)],
                Licences {
                    po_server: 1,
                    smart_connector: 1,
                    client_access: 0,
                },
            ),
            2 => (
                vec![host("host-a", 1), host("host-b", 2)],
                vec![
                    comp("po-a", PoServer, 0, 0),
                    comp("sc-a", Connector, 0, 0),
                    comp("po-b", PoServer, 1, 1),
                    comp("sc-b", Connector, 1, 1),
                ],
                vec![
                    link("po-a<->po-b", LinkKind::Sync, "po-a", "po-b", true),
                    link("sc-a->po-a", LinkKind::Local, "sc-a", "po-a", false),
                    link("sc-b->po-b", LinkKind::Local, "sc-b", "po-b", false),
                ],
                Licences {
                    po_server: 2,
                    smart_connector: 2,
                    client_access: 0,
                },
            ),
            _ => (
                vec![
                    host("host-a", 1),
                    host("host-b", 2),
                    host("host-c", 3),
                    host("host-d", 4),
                ],
                vec![
                    comp("po-a", PoServer, 0, 0),
                    comp("po-b", PoServer, 1, 1),
                    comp("sc-a", Connector, 2, 0),
                    comp("sc-b", Connector, 3, 1),
                ],
                vec![
                    link("po-a<->po-b", LinkKind::Sync, "po-a", "po-b", true),
                    link("sc-a->po-a", LinkKind::ClientAccess, "sc-a", "po-a", true),
                    link("sc-a->po-b", LinkKind::ClientAccess, "sc-a", "po-b", true),
                    link("sc-b->po-a", LinkKind::ClientAccess, "sc-b", "po-a", true),
                    link("sc-b->po-b", LinkKind::ClientAccess, "sc-b", "po-b", true),
                ],
                Licences {
                    po_server: 2,
                    smart_connector: 2,
                    client_access: 2,
                },
            ),
        };
        let connectors: Vec<&Component> =
            components.iter().filter(|c| c.kind == Connector).collect();
        let polled = match third_parties {
            ThirdPartyKind::Plain => 1,
            ThirdPartyKind::Redundant => connectors.len(),
        };
        for c in connectors.iter().take(polled) {
            links.push(link(
                &format!("tp->{}", c.name),
                LinkKind::Modbus,
                "tp",
                &c.name,
                true,
            ));
        }
        Topology {
            architecture,
            hosts,
            components,
            links,
            licences,
            third_party_host: host("host-tp", 9),
        }
    }

    pub fn servers(&self) -> impl Iterator<Item = &Component> {
        self.components
            .iter()
            .filter(|c| c.kind == ComponentKind::PoServer)
    }

    pub fn connectors(&self) -> impl Iterator<Item = &Component> {
        self.components
            .iter()
            .filter(|c| c.kind == ComponentKind::Connector)
    }

    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn host_of(&self, component: &str) -> Option<&Host> {
        self.component(component).map(|c| &self.hosts[c.host])
    }

    /// The links a connector uses to reach servers, in source order.
    pub fn sources_of(&self, connector: &str) -> Vec<&Link> {
        self.links
            .iter()
            .filter(|l| {
                l.from == connector && matches!(l.kind, LinkKind::Local | LinkKind::ClientAccess)
            })
            .collect()
    }

    pub fn target(&self, name: &str) -> Option<Target<'_>> {
        if let Some((i, h)) = self.hosts.iter().enumerate().find(|(_, h)| h.name == name) {
            return Some(Target::Host(h, i));
        }
        if let Some(c) = self.component(name) {
            return Some(Target::Component(c));
        }
        self.link(name).map(Target::Link)
    }

    pub fn target_names(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| h.name.clone())
            .chain(self.components.iter().map(|c| c.name.clone()))
            .chain(self.links.iter().map(|l| l.name.clone()))
            .collect()
    }

    /// The listener `component:listener` names, or why it names none.
    pub fn listener(&self, name: &str) -> Result<(String, ListenerKind), String> {
        let (component, listener) = name.split_once(':').ok_or_else(|| {
            format!("`{name}` is not `component:listener` (e.g. `sc-a:http`, `po-a:client`)")
        })?;
        let c = self.component(component).ok_or_else(|| {
            let names: Vec<&str> = self.components.iter().map(|c| c.name.as_str()).collect();
            format!(
                "`{component}` is not a component of architecture {} (one of: {})",
                self.architecture,
                names.join(", ")
            )
        })?;
        let allowed: &[ListenerKind] = match (c.kind, self.architecture) {
            (ComponentKind::PoServer, 1) => &[ListenerKind::Client],
            (ComponentKind::PoServer, _) => &[ListenerKind::Client, ListenerKind::Sync],
            (ComponentKind::Connector, _) => &[ListenerKind::Modbus, ListenerKind::Http],
        };
        allowed
            .iter()
            .find(|k| k.as_str() == listener)
            .map(|k| (component.to_string(), *k))
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
                format!(
                    "{component} has no `{listener}` listener (it has: {})",
                    names.join(", ")
                )
            })
    }

    /// Components a host/component target stands for.
    pub fn components_of_target(&self, name: &str) -> Vec<&Component> {
        match self.target(name) {
            Some(Target::Host(_, i)) => self.components.iter().filter(|c| c.host == i).collect(),
            Some(Target::Component(c)) => vec![c],
            _ => vec![],
        }
    }
}
