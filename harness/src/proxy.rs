//! Fault proxy: a TCP relay placed on a link between two hosts, so network faults can be
//! injected without touching either end. `cut` closes every relayed connection and refuses
//! new ones (what a broken cable or a firewall reset looks like); `heal` lets connections
//! through again; `delay` adds one-way latency to every byte in both directions.

use bytes::Bytes;
use po_runtime::{BoxStream, Net, TokioNet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkState {
    cut: bool,
    delay: Duration,
    /// Bumped on every cut so relays of the previous generation end.
    generation: u64,
}

/// A running proxy; dropping it does not stop it, `stop` does.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    pub name: String,
    /// Where clients connect (on the destination host's address).
    pub listen: SocketAddr,
    pub target: SocketAddr,
    state: watch::Sender<LinkState>,
    pub bytes: Arc<AtomicU64>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Where the relay's outbound connections are made (the listener's network).
    net: Arc<dyn Net>,
}

impl FaultProxy {
    /// Listens on `listen_ip` (any port) and relays to `target`, connecting from
    /// `from_ip` so the server still sees the client host's address.
    pub async fn start(
        name: &str,
        listen_ip: IpAddr,
        from_ip: Option<IpAddr>,
        target: SocketAddr,
    ) -> std::io::Result<FaultProxy> {
        FaultProxy::start_in(Arc::new(TokioNet), name, listen_ip, from_ip, target).await
    }

    /// As [`FaultProxy::start`], listening and dialling through `net` (the netns backend
    /// passes a namespace's network).
    pub async fn start_in(
        net: Arc<dyn Net>,
        name: &str,
        listen_ip: IpAddr,
        from_ip: Option<IpAddr>,
        target: SocketAddr,
    ) -> std::io::Result<FaultProxy> {
        FaultProxy::start_at(net, name, SocketAddr::new(listen_ip, 0), from_ip, target).await
    }

    /// As [`FaultProxy::start_in`], listening on `listen` (a port the wiring chose; 0 for
    /// any).
    pub async fn start_at(
        net: Arc<dyn Net>,
        name: &str,
        listen: SocketAddr,
        from_ip: Option<IpAddr>,
        target: SocketAddr,
    ) -> std::io::Result<FaultProxy> {
        let listener = net.bind(listen).await?;
        let listen = listener.local_addr()?;
        let (state, _) = watch::channel(LinkState {
            cut: false,
            delay: Duration::ZERO,
            generation: 0,
        });
        let proxy = FaultProxy {
            name: name.to_string(),
            listen,
            target,
            state,
            bytes: Arc::default(),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            net,
        };
        let p = proxy.clone();
        proxy.tracker.spawn(async move {
            loop {
                let (inbound, _) = tokio::select! {
                    _ = p.cancel.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(_) => continue,
                    },
                };
                if p.state.borrow().cut {
                    drop(inbound);
                    continue;
                }
                let p2 = p.clone();
                p.tracker.spawn(async move {
                    let _ = p2.relay(inbound, from_ip).await;
                });
            }
        });
        Ok(proxy)
    }

    async fn relay(&self, inbound: BoxStream, from_ip: Option<IpAddr>) -> std::io::Result<()> {
        let outbound = self.net.connect(from_ip, self.target).await?;
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let generation = self.state.borrow().generation;
        let (ir, iw) = tokio::io::split(inbound);
        let (or, ow) = tokio::io::split(outbound);
        let mut state = self.state.subscribe();
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = state.wait_for(|s| s.cut || s.generation != generation) => {}
            _ = pipe(ir, ow, self.state.subscribe(), self.bytes.clone()) => {}
            _ = pipe(or, iw, self.state.subscribe(), self.bytes.clone()) => {}
        }
        Ok(())
    }

    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.cut = true;
            s.generation += 1;
        });
    }

    pub fn heal(&self) {
        self.state.send_modify(|s| s.cut = false);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.send_modify(|s| s.delay = delay);
    }

    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// One direction: read chunks, stamp them, and write each no earlier than stamp + delay.
async fn pipe(
    mut from: tokio::io::ReadHalf<BoxStream>,
    mut to: tokio::io::WriteHalf<BoxStream>,
    state: watch::Receiver<LinkState>,
    bytes: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(256);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = Instant::now() + state.borrow().delay;
                    if tx
                        .send((due, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            // Only wait when there is a delay: a timer, even an expired one, costs a
            // timer-wheel tick (~1 ms) per chunk.
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            bytes.fetch_add(chunk.len() as u64, Relaxed);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn relays_cuts_and_heals() {
        let target = echo_server().await;
        let p = FaultProxy::start("t", "127.0.0.1".parse().unwrap(), None, target)
            .await
            .unwrap();
        assert_eq!(round_trip(p.listen).await.unwrap(), b"ping");
        // An open connection is closed by the cut.
        let mut open = TcpStream::connect(p.listen).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        p.cut();
        let mut rest = Vec::new();
        let n = open.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "closed by the cut");
        assert!(round_trip(p.listen).await.is_err(), "refused while cut");
        p.heal();
        assert_eq!(round_trip(p.listen).await.unwrap(), b"ping");
        assert!(p.bytes.load(Relaxed) >= 8);
        p.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn delay_holds_bytes_back() {
        let target = echo_server().await;
        let p = FaultProxy::start("t", "127.0.0.1".parse().unwrap(), None, target)
            .await
            .unwrap();
        p.set_delay(Duration::from_millis(200));
        let started = Instant::now();
        assert_eq!(round_trip(p.listen).await.unwrap(), b"ping");
        // Both directions delayed: at least 400 ms of (virtual) time passed.
        assert!(started.elapsed() >= Duration::from_millis(400));
        p.stop().await;
    }
}
