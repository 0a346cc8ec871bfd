//! A minimal client-access client for the simulator's integration tests.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use po_protocol::{Access, Frame, FrameCodec, PROTOCOL_VERSION};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::Framed;

/// Upper bound on waiting for anything in these tests; reaching it is a failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestClient {
    pub framed: Framed<TcpStream, FrameCodec<Frame>>,
}

impl TestClient {
    pub async fn connect(addr: SocketAddr) -> TestClient {
        Self::connect_from(addr, "127.0.0.1".parse().unwrap()).await
    }

    /// Connects with the given source address (a host address in the 127/8 range).
    pub async fn connect_from(addr: SocketAddr, from: IpAddr) -> TestClient {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        TestClient {
            framed: Framed::new(stream, FrameCodec::new()),
        }
    }

    pub async fn send(&mut self, frame: Frame) {
        self.framed.send(frame).await.unwrap();
    }

    /// Says Hello and returns the answer (`Welcome` or `Error`).
    pub async fn hello(&mut self, name: &str, access: Access) -> Frame {
        self.send(Frame::Hello {
            version: PROTOCOL_VERSION,
            client_name: name.into(),
            access,
        })
        .await;
        self.recv().await.expect("an answer to Hello")
    }

    /// Next frame, or `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Frame> {
        match tokio::time::timeout(PATIENCE, self.framed.next()).await {
            Ok(Some(Ok(f))) => Some(f),
            Ok(Some(Err(e))) => panic!("client could not decode: {e}"),
            Ok(None) => None,
            Err(_) => panic!("nothing received within {PATIENCE:?}"),
        }
    }

    /// Next frame that is not a heartbeat.
    pub async fn recv_non_heartbeat(&mut self) -> Option<Frame> {
        loop {
            match self.recv().await {
                Some(Frame::Heartbeat { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Reads until the server closes; returns everything received.
    pub async fn drain(&mut self) -> Vec<Frame> {
        let mut all = Vec::new();
        while let Some(f) = self.recv().await {
            all.push(f);
        }
        all
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
}
