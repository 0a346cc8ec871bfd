//! The run's network namespaces: one per host plus a switch namespace holding the bridge
//! that joins them, created with iproute2 and removed however the run ends (docs/design.md §12).
//!
//! Names are `harness-<pid>-<run>-<host>`: the pid tells a later run whether the run
//! that made them is still alive, so what a killed run left behind is removed at the
//! next start while a concurrent run's namespaces are left alone.

use anyhow::{Context as _, Result, bail};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Every namespace of every run starts with this.
pub const FAMILY: &str = "harness-";
/// The namespace holding the bridge (not a host).
const SWITCH: &str = "switch";
/// The prefix length of the run's addresses: 198.18.0.0/15 (RFC 2544).
const PREFIX_LEN: u8 = 15;

/// The namespaces of one run; dropping it removes them.
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
    /// Created so far, switch first (removed in reverse).
    created: Vec<String>,
}

impl Namespaces {
    /// Creates the switch and one namespace per host (name, address) with `eth0` on the
    /// bridge and `lo` up. Blocking (runs `ip`).
    pub fn create(hosts: &[(String, Ipv4Addr)]) -> Result<Namespaces> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let mut ns = Namespaces {
            prefix: format!(
                "{FAMILY}{}-{}-",
                std::process::id(),
                RUN.fetch_add(1, Relaxed)
            ),
            created: vec![],
        };
        let switch = ns.add(SWITCH)?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (i, (host, address)) in hosts.iter().enumerate() {
            let name = ns.add(host)?;
            let port = format!("p{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &name,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{address}/{PREFIX_LEN}"),
                "dev",
                "eth0",
            ])?;
            // One wire packet per segment: without this the veth hands 64 KiB segments
            // to the firewall, and "5 % of packets" would mean 5 % of TSO bursts.
            ip(&[
                "-n",
                &name,
                "link",
                "set",
                "dev",
                "eth0",
                "gso_max_size",
                "1500",
                "gro_max_size",
                "1500",
                "up",
            ])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    fn add(&mut self, host: &str) -> Result<String> {
        let name = self.name(host);
        ip(&["netns", "add", &name])?;
        self.created.push(name.clone());
        Ok(name)
    }

    /// The namespace of `host`.
    pub fn name(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// Kills whatever still runs in the namespaces and deletes them (with their links,
    /// rules and qdiscs). Idempotent; blocking.
    pub fn remove(&mut self) {
        while let Some(name) = self.created.pop() {
            remove_namespace(&name);
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.remove();
    }
}

fn remove_namespace(name: &str) {
    if let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "pids", name])
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Err(e) = ip(&["netns", "delete", name]) {
        tracing::warn!(namespace = name, error = %e, "could not delete a namespace");
    }
}

/// Removes the namespaces of runs whose process is gone (a killed harness); returns
/// their names. Namespaces of live runs (this process included) are left alone.
pub fn remove_stale() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return vec![];
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| owner(n).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()))
        .collect();
    names.sort();
    for n in &names {
        remove_namespace(n);
    }
    names
}

/// The pid in `harness-<pid>-<run>-<host>`.
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(FAMILY)?.split('-').next()?.parse().ok()
}

/// Whether this process may create namespaces and rules, with the reason when not.
pub fn check_privileges() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "--backend netns needs root (CAP_NET_ADMIN) to create network namespaces, links and firewall rules; run it as root, or use --backend process or sim".into(),
        );
    }
    for (program, package) in [("ip", "iproute2"), ("nft", "nftables"), ("tc", "iproute2")] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
        if !found {
            return Err(format!(
                "--backend netns needs `{program}` (Debian package {package}); install it, or use --backend process or sim"
            ));
        }
    }
    Ok(())
}

/// Runs `ip ARGS`, failing with its stderr.
pub(super) fn ip(args: &[&str]) -> Result<()> {
    run("ip", args, None)
}

/// Runs a command (with `stdin` fed to it), failing with its stderr.
pub(super) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("running {program}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("feeding {program}"))?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_read_from_the_name() {
        assert_eq!(owner("harness-4242-0-host-a"), Some(4242));
        assert_eq!(owner("harness-4242-3-switch"), Some(4242));
        assert_eq!(owner("harness-x-0-host-a"), None);
        assert_eq!(owner("other-4242-0-host-a"), None);
    }
}
