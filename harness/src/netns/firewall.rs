//! Link and host faults in the kernel (docs/design.md §12): nftables rules and tc shaping inside
//! the hosts' namespaces. The wanted state is kept here and each namespace's ruleset is
//! rewritten whole on every change (`nft -f`, one atomic transaction), so healing never
//! depends on finding the rule that was added.

use super::namespaces::run;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// A link as the kernel sees it: enforced in the namespace of the end that dials
/// (`ns`), matching the packets between it and the `peer` host on `port` (the
/// listener's port, which for the sync link both servers use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPath {
    pub ns: String,
    pub local: Ipv4Addr,
    pub peer_ns: String,
    pub peer: Ipv4Addr,
    pub port: u16,
}

/// What happens to a link's packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkRule {
    /// Dropped silently (the black hole): no FIN, no RST, `connect()` hangs.
    Drop,
    /// Answered with TCP resets.
    Reject,
    /// Each packet dropped with this probability.
    Loss(f64),
}

/// The faults in force, by link and by host.
#[derive(Debug, Default)]
pub struct Firewall {
    links: BTreeMap<String, (LinkPath, LinkRule)>,
    shaped: BTreeMap<String, (LinkPath, String)>,
    isolated: BTreeSet<String>,
}

impl Firewall {
    /// Puts `rule` on link `name` (replacing the rule it had).
    pub fn set_link(&mut self, name: &str, path: LinkPath, rule: LinkRule) -> Result<()> {
        let ns = path.ns.clone();
        self.links.insert(name.to_string(), (path, rule));
        self.commit_nft(&ns)
    }

    /// Caps link `name` at `rate` in both directions.
    pub fn shape(&mut self, name: &str, path: LinkPath, rate: &str) -> Result<()> {
        let (a, b) = (path.ns.clone(), path.peer_ns.clone());
        self.shaped
            .insert(name.to_string(), (path, rate.to_string()));
        self.commit_tc(&a)?;
        self.commit_tc(&b)
    }

    /// Ends every fault on link `name`.
    pub fn heal_link(&mut self, name: &str) -> Result<()> {
        if let Some((path, _)) = self.links.remove(name) {
            self.commit_nft(&path.ns)?;
        }
        if let Some((path, _)) = self.shaped.remove(name) {
            self.commit_tc(&path.ns)?;
            self.commit_tc(&path.peer_ns)?;
        }
        Ok(())
    }

    /// Cuts (or restores) every link of the host whose namespace is `ns`.
    pub fn isolate(&mut self, ns: &str, on: bool) -> Result<()> {
        if on {
            self.isolated.insert(ns.to_string());
        } else {
            self.isolated.remove(ns);
        }
        self.commit_nft(ns)
    }

    fn commit_nft(&self, ns: &str) -> Result<()> {
        let rules: Vec<&(LinkPath, LinkRule)> =
            self.links.values().filter(|(p, _)| p.ns == ns).collect();
        let script = render_nft(self.isolated.contains(ns), &rules);
        run(
            "ip",
            &["netns", "exec", ns, "nft", "-f", "-"],
            Some(&script),
        )
    }

    fn commit_tc(&self, ns: &str) -> Result<()> {
        // Egress of this namespace: towards the peer of links dialled from here, towards
        // the dialling end of links dialled to here.
        let shapes: Vec<(Ipv4Addr, &str)> = self
            .shaped
            .values()
            .filter_map(|(p, rate)| {
                if p.ns == ns {
                    Some((p.peer, rate.as_str()))
                } else if p.peer_ns == ns {
                    Some((p.local, rate.as_str()))
                } else {
                    None
                }
            })
            .collect();
        // Deleting a root qdisc that is not there fails; that is fine.
        let _ = run(
            "ip",
            &[
                "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root",
            ],
            None,
        );
        for cmd in render_tc(&shapes) {
            let mut args = vec!["netns", "exec", ns, "tc"];
            args.extend(cmd.iter().map(String::as_str));
            run("ip", &args, None)?;
        }
        Ok(())
    }
}

/// The whole `inet harness` table of one namespace: created if missing, emptied, and
/// filled with the isolation rules and each link's rules, in both directions.
pub fn render_nft(isolated: bool, links: &[&(LinkPath, LinkRule)]) -> String {
    let mut input = String::new();
    let mut output = String::new();
    if isolated {
        input.push_str("    iifname \"eth0\" drop\n");
        output.push_str("    oifname \"eth0\" drop\n");
    }
    for (p, rule) in links {
        let verdict = match rule {
            // The counters count what the fault did (`nft list ruleset` in the namespace).
            LinkRule::Drop => "counter drop".to_string(),
            LinkRule::Reject => "counter reject with tcp reset".to_string(),
            LinkRule::Loss(f) => format!(
                "numgen random mod 10000 < {} counter drop",
                (f * 10000.0).round() as u32
            ),
        };
        // Both port directions: the sync link has a listener on the same port at each
        // end, and each server dials the other.
        for dir in ["dport", "sport"] {
            let _ = writeln!(
                output,
                "    ip daddr {} tcp {dir} {} {verdict}",
                p.peer, p.port
            );
            let _ = writeln!(
                input,
                "    ip saddr {} tcp {dir} {} {verdict}",
                p.peer, p.port
            );
        }
    }
    format!(
        "table inet harness {{}}\nflush table inet harness\ntable inet harness {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{input}  }}\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{output}  }}\n}}\n"
    )
}

/// tc commands (arguments after `tc`) that cap the egress towards each destination:
/// an htb root whose unclassified traffic passes unshaped, one class per destination,
/// and a u32 filter on the destination address (this kernel has no prio qdisc and no
/// flower classifier).
pub fn render_tc(shapes: &[(Ipv4Addr, &str)]) -> Vec<Vec<String>> {
    if shapes.is_empty() {
        return vec![];
    }
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut out = vec![s(&[
        "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb",
    ])];
    for (i, (dst, rate)) in shapes.iter().enumerate() {
        let class = format!("1:{}", 10 + i);
        out.push(s(&[
            "class", "add", "dev", "eth0", "parent", "1:", "classid", &class, "htb", "rate", rate,
            "ceil", rate,
        ]));
        out.push(s(&[
            "filter",
            "add",
            "dev",
            "eth0",
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "dst",
            &format!("{dst}/32"),
            "flowid",
            &class,
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> LinkPath {
        LinkPath {
            ns: "harness-1-0-host-c".into(),
            local: Ipv4Addr::new(198, 18, 3, 1),
            peer_ns: "harness-1-0-host-a".into(),
            peer: Ipv4Addr::new(198, 18, 1, 1),
            port: 7000,
        }
    }

    #[test]
    fn a_cut_drops_both_directions_of_the_links_port() {
        let link = (path(), LinkRule::Drop);
        let script = render_nft(false, &[&link]);
        insta::assert_snapshot!(script);
    }

    #[test]
    fn loss_and_isolation_render_their_rules() {
        let link = (path(), LinkRule::Loss(0.05));
        let script = render_nft(true, &[&link]);
        assert!(script.contains("numgen random mod 10000 < 500 counter drop"));
        assert!(script.contains("iifname \"eth0\" drop"));
        assert!(script.contains("oifname \"eth0\" drop"));
        let healed = render_nft(false, &[]);
        assert!(!healed.contains("drop"), "{healed}");
        assert!(healed.contains("flush table inet harness"));
    }

    #[test]
    fn shaping_classifies_by_destination() {
        let cmds = render_tc(&[(Ipv4Addr::new(198, 18, 1, 1), "2mbit")]);
        assert_eq!(cmds.len(), 3);
        assert!(cmds[1].join(" ").ends_with("htb rate 2mbit ceil 2mbit"));
        assert!(
            cmds[2]
                .join(" ")
                .contains("match ip dst 198.18.1.1/32 flowid 1:10")
        );
        assert!(render_tc(&[]).is_empty());
    }
}
