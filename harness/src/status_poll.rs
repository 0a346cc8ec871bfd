//! Reads every connector's Modbus status block in the background, as a third party
//! would (from the third-party host, through the backend's network), so the runner can
//! sample the latest one without waiting on a slow or dead connector.

use crate::third_party;
use crate::timeline::StatusBlock;
use po_runtime::Net;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_modbus::prelude::*;

/// Longest wait for a connection or a status read; after it the connector counts as
/// unreachable until a read succeeds again.
const TIMEOUT: Duration = Duration::from_millis(500);

/// One task per connector, each with one Modbus connection reading registers 0..=14
/// (register 14: the service level, for the timeline).
#[derive(Debug)]
pub struct StatusPoller {
    /// Per connector: `None` before the first read was tried, then the latest outcome.
    latest: Arc<Mutex<Vec<Option<Option<StatusBlock>>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl StatusPoller {
    /// Starts polling `targets` every `period`, dialling from `from` on `net`.
    pub fn start(
        net: Arc<dyn Net>,
        from: IpAddr,
        targets: &[SocketAddr],
        period: Duration,
    ) -> StatusPoller {
        let latest = Arc::new(Mutex::new(vec![None; targets.len()]));
        let tasks = targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                let (net, latest, target) = (net.clone(), latest.clone(), *target);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut ctx = None;
                    loop {
                        tick.tick().await;
                        if ctx.is_none() {
                            ctx = third_party::connect(&*net, target, Some(from), TIMEOUT).await;
                        }
                        let read = match ctx.as_mut() {
                            Some(c) => {
                                tokio::time::timeout(TIMEOUT, c.read_holding_registers(0, 15))
                                    .await
                                    .ok()
                                    .and_then(|r| r.ok())
                                    .and_then(|r| r.ok())
                            }
                            None => None,
                        };
                        let block = read.as_deref().and_then(StatusBlock::decode);
                        if block.is_none() {
                            // A late reply would poison the context: reconnect.
                            ctx = None;
                        }
                        latest.lock().unwrap()[i] = Some(block);
                    }
                })
            })
            .collect();
        StatusPoller { latest, tasks }
    }

    /// The latest status block of each connector (`None`: the last read failed, or none
    /// was tried yet).
    pub fn latest(&self) -> Vec<Option<StatusBlock>> {
        self.latest
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.flatten())
            .collect()
    }

    /// Waits until every connector's status was read (or tried) once, at most a second.
    pub async fn first_round(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.latest.lock().unwrap().iter().any(Option::is_none)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for StatusPoller {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
