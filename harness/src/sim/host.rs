//! The software of a simulated host: it starts the host's components with the simulated
//! network and clock, and applies lifecycle faults to them on the runner's command.

use crate::observed::{Observed, RunningConnector};
use crate::scenario::FaultAction;
use po_runtime::Env;
use po_simulator::{ServerConfig, ServerHandle};
use smart_connector::config::ConnectorConfig;
use smart_connector::connector::ConnectorHandle;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the runner asks of a simulated host; the host carries it out in its own runtime
/// (binding and dialling need the host's network context).
pub(super) enum HostCmd {
    // Boxed: the configurations are hundreds of bytes, the lifecycle command a few.
    StartServer(Box<ServerConfig>, oneshot::Sender<Result<(), String>>),
    StartConnector(Box<ConnectorConfig>, oneshot::Sender<Result<(), String>>),
    Lifecycle(String, FaultAction, oneshot::Sender<Result<(), String>>),
}

pub(super) type Shared<T> = Arc<Mutex<T>>;

/// The software of one simulated host: starts components and applies lifecycle faults
/// on command.
pub(super) async fn host_main(
    inbox: Rc<RefCell<Option<mpsc::UnboundedReceiver<HostCmd>>>>,
    env: Env,
    observed: Shared<Observed>,
) {
    let Some(mut inbox) = inbox.borrow_mut().take() else {
        return std::future::pending().await;
    };
    let mut servers: BTreeMap<String, ServerHandle> = BTreeMap::new();
    let mut connectors: BTreeMap<String, ConnectorSlot> = BTreeMap::new();
    while let Some(cmd) = inbox.recv().await {
        match cmd {
            HostCmd::StartServer(config, reply) => {
                let name = config.name.clone();
                let r = ServerHandle::start_in(*config, env.clone()).await;
                let r = r.map(|h| {
                    observed
                        .lock()
                        .unwrap()
                        .servers
                        .insert(name.clone(), h.clone());
                    servers.insert(name, h);
                });
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            HostCmd::StartConnector(config, reply) => {
                let wait = Some(Duration::from_secs(30));
                let r = start_connector(&config, wait, &env, &observed).await;
                let ok = r.as_ref().map(|_| ()).map_err(|e| e.clone());
                let slot = ConnectorSlot {
                    config: (*config).clone(),
                    running: Rc::new(RefCell::new(r.ok())),
                    starting: None,
                };
                connectors.insert(config.name.clone(), slot);
                let _ = reply.send(ok);
            }
            HostCmd::Lifecycle(name, action, reply) => {
                let r = if let Some(h) = servers.get(&name) {
                    server_fault(h, action).await
                } else if let Some(slot) = connectors.get_mut(&name) {
                    slot.fault(action, &env, &observed).await
                } else {
                    Err(format!("no component {name} on this host"))
                };
                let _ = reply.send(r);
            }
        }
    }
}

async fn start_connector(
    config: &ConnectorConfig,
    catalog_wait: Option<Duration>,
    env: &Env,
    observed: &Shared<Observed>,
) -> Result<ConnectorHandle, String> {
    let h = smart_connector::connector::start_in(config.clone(), catalog_wait, env.clone())
        .await
        .map_err(|e| format!("{e:#}"))?;
    observed.lock().unwrap().connectors.insert(
        config.name.clone(),
        Some(RunningConnector {
            metrics: h.metrics.clone(),
            image: h.image.clone(),
            status: h.status.clone(),
        }),
    );
    Ok(h)
}

async fn server_fault(h: &ServerHandle, action: FaultAction) -> Result<(), String> {
    match action {
        FaultAction::Crash => h.crash_and_wait().await,
        FaultAction::Restart => {
            if h.is_running() {
                h.crash_and_wait().await;
            }
            h.restart().await.map_err(|e| e.to_string())?;
        }
        FaultAction::Pause => h.pause(),
        FaultAction::Resume => h.resume(),
        a => return Err(format!("{} is not a lifecycle fault", a.as_str())),
    }
    Ok(())
}

/// A connector of a simulated host.
struct ConnectorSlot {
    config: ConnectorConfig,
    running: Rc<RefCell<Option<ConnectorHandle>>>,
    /// A restart in progress: like the binary, a restarted connector waits for a
    /// catalogue as long as it takes (its servers may be unreachable for a while).
    starting: Option<tokio::task::JoinHandle<()>>,
}

impl ConnectorSlot {
    async fn fault(
        &mut self,
        action: FaultAction,
        env: &Env,
        observed: &Shared<Observed>,
    ) -> Result<(), String> {
        if !matches!(action, FaultAction::Crash | FaultAction::Restart) {
            return Err(format!(
                "{} cannot be applied to connector {}",
                action.as_str(),
                self.config.name
            ));
        }
        if let Some(start) = self.starting.take() {
            start.abort();
        }
        let running = self.running.borrow_mut().take();
        if let Some(h) = running {
            h.shutdown().await;
        }
        observed
            .lock()
            .unwrap()
            .connectors
            .insert(self.config.name.clone(), None);
        if action == FaultAction::Restart {
            let (config, env, observed, slot) = (
                self.config.clone(),
                env.clone(),
                observed.clone(),
                self.running.clone(),
            );
            self.starting = Some(tokio::task::spawn_local(async move {
                match start_connector(&config, None, &env, &observed).await {
                    Ok(h) => *slot.borrow_mut() = Some(h),
                    Err(e) => {
                        tracing::warn!(connector = %config.name, error = %e, "restart failed")
                    }
                }
            }));
        }
        Ok(())
    }
}

impl std::fmt::Debug for HostCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostCmd::StartServer(c, _) => write!(f, "StartServer({})", c.name),
            HostCmd::StartConnector(c, _) => write!(f, "StartConnector({})", c.name),
            HostCmd::Lifecycle(n, a, _) => write!(f, "Lifecycle({n}, {})", a.as_str()),
        }
    }
}
