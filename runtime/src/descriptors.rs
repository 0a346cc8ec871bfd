//! File descriptors as a budget: at start a process raises its soft `RLIMIT_NOFILE` to
//! the hard limit, adds up what its configuration may hold open at once (sources, the
//! sync link, every listener's connection cap, its own files) and refuses a
//! configuration that cannot fit, so a flood on one listener can never take the
//! descriptors the data path needs.

use std::fmt;

/// Descriptors a process needs besides its connections: stdio, the log, the runtime's
/// epoll and wake-up descriptors, signal handling, the listeners themselves, and slack
/// for the short moment an over-cap connection is accepted before it is closed.
pub const RESERVED: u64 = 64;

/// What a configuration may hold open at once, part by part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescriptorBudget {
    parts: Vec<(String, u64)>,
}

impl DescriptorBudget {
    /// Starts with [`RESERVED`].
    pub fn new() -> DescriptorBudget {
        DescriptorBudget {
            parts: vec![("reserved (stdio, log, runtime, listeners)".into(), RESERVED)],
        }
    }

    /// Adds `count` descriptors for `what` (a config key, say).
    pub fn add(mut self, what: impl Into<String>, count: u64) -> DescriptorBudget {
        self.parts.push((what.into(), count));
        self
    }

    pub fn total(&self) -> u64 {
        self.parts.iter().map(|(_, n)| n).sum()
    }

    /// `Ok` when the budget fits in `limit` descriptors, else a message naming the parts.
    pub fn fits(&self, limit: u64) -> Result<(), String> {
        if self.total() <= limit {
            return Ok(());
        }
        Err(format!(
            "the configuration may hold {} file descriptors open at once ({self}), but the process may open only {limit} (RLIMIT_NOFILE hard limit); lower the connection caps or raise the limit (systemd: LimitNOFILE=, shell: ulimit -Hn)",
            self.total()
        ))
    }
}

impl fmt::Display for DescriptorBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(what, n)| format!("{what} {n}"))
            .collect();
        f.write_str(&parts.join(" + "))
    }
}

/// The descriptor limit after raising the soft limit as far as the hard limit allows:
/// `(soft, hard)`.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    rlimit::increase_nofile_limit(u64::MAX)?;
    rlimit::getrlimit(rlimit::Resource::NOFILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_that_does_not_fit_names_its_parts() {
        let b = DescriptorBudget::new()
            .add("sources", 4)
            .add("modbus.max_connections", 2000);
        assert_eq!(b.total(), RESERVED + 2004);
        assert!(b.fits(4096).is_ok());
        let err = b.fits(1024).unwrap_err();
        assert!(err.contains("modbus.max_connections 2000"), "{err}");
        assert!(err.contains("only 1024"), "{err}");
    }
}
