//! `harness plan`: everything about a run, without running it.

use crate::report::expectation_limits;
use crate::scenario::{Scenario, ThirdPartyKind};
use crate::topology::{CA_LICENCES, ComponentKind, LinkKind, Topology};
use crate::wiring::Wiring;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// The plan of `s` on topology `t` as wiring `w` realises it (hosts are loopback aliases
/// in the proxy backends, network stacks of their own in sim and netns: docs/scenarios.md,
/// "Topology").
pub fn render_plan(t: &Topology, s: &Scenario, w: &Wiring) -> String {
    let mut o = String::new();
    let address = |host: &str| -> String {
        w.host_address(host)
            .map_or_else(|| "?".to_string(), |a| a.to_string())
    };
    let backend_name = w.backend.as_str();
    let arch = match t.architecture {
        1 => "one server and its connector on one host",
        2 => "redundant pair, a connector on each server's host",
        _ => "distributed: servers and connectors on four hosts, Client Access to both servers",
    };
    let _ = writeln!(
        o,
        "scenario {} — architecture {} ({arch})",
        s.name, t.architecture
    );
    let _ = writeln!(
        o,
        "backend {backend_name}, duration {}, seed {}, {} tags ({} devices × {}) every {} = {:.0} updates/s",
        humantime::format_duration(s.duration),
        s.seed,
        s.site.devices * s.site.tags_per_device,
        s.site.devices,
        s.site.tags_per_device,
        humantime::format_duration(s.site.scan_period),
        f64::from(s.site.devices * s.site.tags_per_device) / s.site.scan_period.as_secs_f64()
    );
    let _ = writeln!(o, "\nhosts");
    for (i, h) in t.hosts.iter().enumerate() {
        let names: Vec<String> = t
            .components
            .iter()
            .filter(|c| c.host == i)
            .map(|c| match (c.kind, t.architecture, c.index) {
                (ComponentKind::PoServer, 1, _) => {
                    format!("{} (Power Operation server)", c.name)
                }
                (ComponentKind::PoServer, _, 0) => {
                    format!("{} (Power Operation server, preferred Primary)", c.name)
                }
                (ComponentKind::PoServer, _, _) => {
                    format!("{} (Power Operation server, Standby)", c.name)
                }
                (ComponentKind::Connector, _, _) => format!("{} (Smart Connector)", c.name),
            })
            .collect();
        let _ = writeln!(
            o,
            "  {:<8} {:<10} {}",
            h.name,
            address(&h.name),
            names.join(", ")
        );
    }
    let tp = &s.third_party;
    let _ = writeln!(
        o,
        "  {:<8} {:<10} third parties: {} × {}, poll every {}, {} writes/s",
        t.third_party_host.name,
        address(&t.third_party_host.name),
        tp.clients,
        match tp.kind {
            ThirdPartyKind::Plain => "plain",
            ThirdPartyKind::Redundant => "redundant",
        },
        humantime::format_duration(tp.poll_period),
        tp.writes_per_s
    );
    if let Some(ua) = &tp.opcua {
        let _ = writeln!(
            o,
            "  {:<19} OPC UA clients: {} × {}, {}, {}, publishing every {}, {} writes/s (to each connector's own endpoint)",
            "",
            ua.clients,
            match ua.kind {
                ThirdPartyKind::Plain => "plain",
                ThirdPartyKind::Redundant => "redundant (highest ServiceLevel)",
            },
            ua.security.as_str(),
            if ua.users.is_empty() {
                "anonymous".to_string()
            } else {
                let users: Vec<&str> = ua.users.iter().map(|u| u.as_str()).collect();
                format!("users {}", users.join(", "))
            },
            humantime::format_duration(ua.publishing_interval),
            ua.writes_per_s
        );
    }
    let _ = writeln!(o, "\nlinks");
    for (l, carrier) in &w.links {
        let kind = match l.kind {
            LinkKind::Sync => "sync link".to_string(),
            LinkKind::Local => "client access, Local (same host)".to_string(),
            LinkKind::ClientAccess => {
                let idx = t.component(&l.from).map_or(0, |c| c.index);
                format!("client access, licence {}", CA_LICENCES[idx])
            }
            LinkKind::Modbus => "Modbus TCP".to_string(),
        };
        let _ = writeln!(o, "  {:<12} {:<34} {}", l.name, kind, carrier.describe());
    }
    render_listeners(&mut o, w);
    let _ = writeln!(o, "\nlicences");
    let _ = writeln!(o, "  Power Operation server  {}", t.licences.po_server);
    let _ = writeln!(
        o,
        "  Smart Connector         {}",
        t.licences.smart_connector
    );
    let _ = writeln!(o, "  Client Access           {}", t.licences.client_access);
    if !s.faults.is_empty() {
        let _ = writeln!(o, "\nfaults");
        for f in &s.faults {
            let extra = match (f.latency, f.fraction, &f.rate) {
                (Some(l), _, _) => format!(" ({})", humantime::format_duration(l)),
                (_, Some(x), _) => format!(" ({x})"),
                (_, _, Some(r)) => format!(" ({r})"),
                _ => String::new(),
            };
            let _ = writeln!(
                o,
                "  {:>6}  {} {}{extra}",
                humantime::format_duration(f.at).to_string(),
                f.action.as_str(),
                f.target
            );
        }
    }
    if !s.floods.is_empty() {
        let _ = writeln!(o, "\nfloods");
        for f in &s.floods {
            let until = f.until.unwrap_or(s.duration);
            let _ = writeln!(
                o,
                "  {:>6}  {} until {}",
                humantime::format_duration(f.at).to_string(),
                f.label(),
                humantime::format_duration(until)
            );
        }
    }
    let _ = writeln!(o, "\nexpectations");
    let rows = expectation_limits(&s.expect);
    if rows.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for (name, limit) in rows {
        let _ = writeln!(o, "  {name:<22} {limit}");
    }
    o
}

/// Where each component listens and how many fault proxies the run starts, from the
/// wiring; a port the run picks free at its start shows as `<free>`.
fn render_listeners(o: &mut String, w: &Wiring) {
    let addr = |a: SocketAddr| -> String {
        if a.port() == 0 {
            format!("{}:<free>", a.ip())
        } else {
            a.to_string()
        }
    };
    let _ = writeln!(o, "\nlisteners");
    for sw in &w.servers {
        let mut parts = vec![format!("client {}", addr(sw.config.listen))];
        if let Some(r) = &sw.config.redundancy {
            parts.push(format!("sync {}", addr(r.sync_listen)));
        }
        let _ = writeln!(o, "  {:<8} {}", sw.config.name, parts.join(" · "));
    }
    for c in &w.connectors {
        let mut parts = vec![format!("modbus {}", addr(c.modbus))];
        if let Some(a) = c.modbus_secure {
            parts.push(format!("modbus/tls {}", addr(a)));
        }
        if let Some(a) = c.metrics {
            parts.push(format!("http {}", addr(a)));
        }
        if let Some(ua) = &c.opcua {
            parts.push(format!("opc.tcp {}", addr(ua.addr)));
        }
        let _ = writeln!(o, "  {:<8} {}", c.name, parts.join(" · "));
    }
    if !w.proxies.is_empty() {
        let mut links: Vec<(&str, usize)> = Vec::new();
        for p in &w.proxies {
            match links.iter_mut().find(|(l, _)| *l == p.link) {
                Some((_, n)) => *n += 1,
                None => links.push((&p.link, 1)),
            }
        }
        let names: Vec<String> = links
            .iter()
            .map(|(l, n)| {
                if *n > 1 {
                    format!("{l} ×{n}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        let _ = writeln!(
            o,
            "  fault proxies ({}): {}",
            w.proxies.len(),
            names.join(", ")
        );
    }
}
