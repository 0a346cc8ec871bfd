//! A server's role and epoch as the server itself announces them, for backends whose
//! servers are child processes (process, netns): one client-access session per server
//! that never subscribes, opened with `Local` access from the server's own host address
//! (no licence), reading the `Welcome` and the heartbeats every session gets.

use futures::{SinkExt as _, StreamExt as _};
use po_protocol::{Access, Frame, FrameCodec, PROTOCOL_VERSION, Role};
use po_runtime::Net;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// Wait between attempts while the server is down.
const RETRY: Duration = Duration::from_millis(100);

/// Follows one server's role and epoch; `None` while no session is up (the server down).
/// A paused server keeps its last announced role, as it does in its own view.
#[derive(Debug)]
pub struct ServerWatch {
    latest: Arc<Mutex<Option<(Role, u64)>>>,
    task: JoinHandle<()>,
}

impl ServerWatch {
    /// Watches the server listening for clients at `addr`, dialling from `host` (its own
    /// host address) on `net`.
    pub fn start(net: Arc<dyn Net>, host: IpAddr, addr: SocketAddr) -> ServerWatch {
        let latest: Arc<Mutex<Option<(Role, u64)>>> = Arc::default();
        let task = {
            let latest = latest.clone();
            tokio::spawn(async move {
                loop {
                    let connected =
                        tokio::time::timeout(Duration::from_secs(1), net.connect(Some(host), addr))
                            .await;
                    if let Ok(Ok(stream)) = connected {
                        let mut frames = Framed::new(stream, FrameCodec::<Frame>::new());
                        let hello = Frame::Hello {
                            version: PROTOCOL_VERSION,
                            client_name: "harness-timeline".into(),
                            access: Access::Local,
                        };
                        if frames.send(hello).await.is_ok() {
                            while let Some(Ok(frame)) = frames.next().await {
                                match frame {
                                    Frame::Welcome { role, epoch, .. }
                                    | Frame::Heartbeat { role, epoch, .. } => {
                                        *latest.lock().unwrap() = Some((role, epoch));
                                    }
                                    Frame::Error { message, .. } => {
                                        // Refused (not its host address, say): it
                                        // will not change, so stop asking.
                                        tracing::debug!(%addr, %message, "server watch refused");
                                        *latest.lock().unwrap() = None;
                                        return;
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    *latest.lock().unwrap() = None;
                    tokio::time::sleep(RETRY).await;
                }
            })
        };
        ServerWatch { latest, task }
    }

    pub fn status(&self) -> Option<(Role, u64)> {
        *self.latest.lock().unwrap()
    }
}

impl Drop for ServerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
