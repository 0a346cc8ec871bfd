//! The fault proxies of a run, started where the wiring says, by the link they carry.

use crate::proxy::FaultProxy;
use crate::scenario::{Fault, FaultAction};
use crate::wiring::Wiring;
use anyhow::{Result, anyhow};
use po_runtime::Net;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Every proxy of the wiring, by link (the sync link has one per direction).
#[derive(Debug, Default)]
pub struct ProxySet {
    by_link: BTreeMap<String, Vec<FaultProxy>>,
}

impl ProxySet {
    /// Starts every proxy of `w`; `net_of(host)` is the network of the host a proxy lives
    /// in (`None`: the harness's own).
    pub async fn start(
        w: &Wiring,
        net_of: impl Fn(Option<&str>) -> Result<Arc<dyn Net>>,
    ) -> Result<ProxySet> {
        let mut set = ProxySet::default();
        for p in &w.proxies {
            let proxy = FaultProxy::start_at(
                net_of(p.host.as_deref())?,
                &p.link,
                p.listen,
                p.from,
                p.target,
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "starting the fault proxy of {} on {}: {e}",
                    p.link,
                    p.listen
                )
            })?;
            set.by_link.entry(p.link.clone()).or_default().push(proxy);
        }
        Ok(set)
    }

    /// The proxies of `link` (none where it has none).
    pub fn of(&self, link: &str) -> &[FaultProxy] {
        self.by_link.get(link).map_or(&[], Vec::as_slice)
    }

    /// Applies a link fault (cut, heal, delay) at the link's proxies; returns how.
    pub fn apply(&self, f: &Fault) -> Result<&'static str> {
        let proxies = self.of(&f.target);
        if proxies.is_empty() {
            return Err(anyhow!(
                "link {} has no fault proxy (it does not cross hosts)",
                f.target
            ));
        }
        for p in proxies {
            match f.action {
                FaultAction::Cut => p.cut(),
                FaultAction::Heal => {
                    p.heal();
                    p.set_delay(Duration::ZERO);
                }
                _ => p.set_delay(f.latency.unwrap_or_default()),
            }
        }
        Ok(match f.action {
            FaultAction::Cut => "fault proxy: connections closed, new ones refused",
            FaultAction::Heal => "fault proxy: relaying again",
            _ => "fault proxy: bytes held back",
        })
    }

    /// Stops every proxy.
    pub async fn stop(&self) {
        for p in self.by_link.values().flatten() {
            p.stop().await;
        }
    }
}
