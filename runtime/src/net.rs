//! The network as a component sees it: listeners that accept byte streams, and dialling
//! from a given host address.

use futures::future::BoxFuture;
use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream (TCP in every backend: kernel or simulated).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + Debug {
    /// Disables Nagle's algorithm where the transport has one.
    fn set_nodelay(&self, on: bool) -> io::Result<()>;
}

pub type BoxStream = Box<dyn Stream>;

/// A bound listener.
pub trait Listener: Send + Sync + Debug {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

pub type BoxListener = Box<dyn Listener>;

/// Binds listeners and dials peers.
pub trait Net: Send + Sync + Debug + 'static {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxListener>>;
    /// Dials `to`. With `from`, the connection leaves from that host address (bind before
    /// connect), so a fault on a host's address means the same in every backend.
    fn connect(
        &self,
        from: Option<IpAddr>,
        to: SocketAddr,
    ) -> BoxFuture<'static, io::Result<BoxStream>>;
}

/// Tokio's (the kernel's) network.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

impl Stream for tokio::net::TcpStream {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        tokio::net::TcpStream::set_nodelay(self, on)
    }
}

impl Listener for tokio::net::TcpListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, a) = tokio::net::TcpListener::accept(self).await?;
            Ok((Box::new(s) as BoxStream, a))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl Net for TokioNet {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxListener>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(l) as BoxListener)
        })
    }

    fn connect(
        &self,
        from: Option<IpAddr>,
        to: SocketAddr,
    ) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let socket = match to {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            if let Some(ip) = from {
                socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot bind host address {ip}: {e}"))
                })?;
            }
            let s = socket.connect(to).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}
