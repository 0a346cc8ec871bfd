//! The network as seen from inside one namespace: sockets are created by a thread that
//! entered it (a socket belongs to the namespace it was created in, wherever it is used
//! afterwards), then bound, connected and driven by tokio as usual.

use futures::future::BoxFuture;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
    sockopt,
};
use po_runtime::{BoxListener, BoxStream, Net};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, mpsc};

type Reply = mpsc::Sender<io::Result<OwnedFd>>;

/// Binds and dials inside one network namespace.
#[derive(Debug, Clone)]
pub struct NsNet {
    namespace: Arc<str>,
    requests: Arc<Mutex<mpsc::Sender<Reply>>>,
}

impl NsNet {
    /// Starts the thread that makes sockets inside `namespace` (a name under /run/netns).
    pub fn enter(namespace: &str) -> io::Result<NsNet> {
        let file = std::fs::File::open(format!("/run/netns/{namespace}"))?;
        let (requests, rx) = mpsc::channel::<Reply>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("netns {namespace}"))
            .spawn(move || {
                let entered = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered.map_err(io::Error::from));
                if !ok {
                    return;
                }
                // Ends when the last NsNet is dropped.
                while let Ok(reply) = rx.recv() {
                    let s = socket(
                        AddressFamily::Inet,
                        SockType::Stream,
                        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                        None,
                    );
                    let _ = reply.send(s.map_err(io::Error::from));
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("the namespace thread ended"))??;
        Ok(NsNet {
            namespace: namespace.into(),
            requests: Arc::new(Mutex::new(requests)),
        })
    }

    /// A new IPv4 TCP socket inside the namespace (non-blocking, close-on-exec).
    fn socket(&self) -> io::Result<OwnedFd> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .lock()
            .unwrap()
            .send(tx)
            .map_err(|_| io::Error::other("the namespace thread ended"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the namespace thread ended"))?
    }

    fn v4(addr: SocketAddr) -> io::Result<SockaddrIn> {
        match addr {
            SocketAddr::V4(a) => Ok(SockaddrIn::from(a)),
            SocketAddr::V6(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the netns backend's addresses are IPv4",
            )),
        }
    }
}

impl Net for NsNet {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxListener>> {
        let made = (|| {
            let fd = self.socket()?;
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NsNet::v4(addr)?)?;
            listen(&fd, Backlog::new(1024).map_err(io::Error::from)?)?;
            let l = tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd))?;
            Ok(Box::new(l) as BoxListener)
        })();
        Box::pin(async move { made })
    }

    fn connect(
        &self,
        from: Option<IpAddr>,
        to: SocketAddr,
    ) -> BoxFuture<'static, io::Result<BoxStream>> {
        let socket = self.socket().and_then(|fd| {
            let s = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
            if let Some(ip) = from {
                s.bind(SocketAddr::new(ip, 0)).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot bind host address {ip}: {e}"))
                })?;
            }
            Ok(s)
        });
        let namespace = self.namespace.clone();
        Box::pin(async move {
            let s = socket?.connect(to).await.map_err(|e| {
                io::Error::new(e.kind(), format!("{e} (from namespace {namespace})"))
            })?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}
