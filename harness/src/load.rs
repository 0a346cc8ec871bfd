//! Modbus load: many masters reading one block as fast as the server answers, and the
//! bare tokio-modbus server that load is compared with (docs/design.md §8: the connector's Modbus
//! throughput is reported as a ratio of a server that does nothing but return a slice).

use anyhow::{Context as _, Result};
use std::future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

/// What to ask for.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub target: SocketAddr,
    pub connections: usize,
    pub address: u16,
    pub quantity: u16,
    pub duration: Duration,
    pub unit: u8,
    /// Modbus/TCP Security: connect over TLS with this client end (its certificate needs
    /// a role that may read); `None`: plain Modbus TCP.
    pub tls: Option<po_runtime::tls::TlsClient>,
}

/// What came back.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LoadResult {
    pub requests: u64,
    pub exceptions: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub registers_per_s: f64,
}

/// Runs `spec.connections` masters, one request in flight each, for `spec.duration`.
pub async fn run_load(spec: &LoadSpec) -> Result<LoadResult> {
    let ok = Arc::new(AtomicU64::new(0));
    let exceptions = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut contexts = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        let ctx = match &spec.tls {
            None => tcp::connect_slave(spec.target, Slave(spec.unit))
                .await
                .with_context(|| format!("connecting to {}", spec.target))?,
            Some(tls) => {
                let stream: po_runtime::BoxStream = Box::new(
                    tokio::net::TcpStream::connect(spec.target)
                        .await
                        .with_context(|| format!("connecting to {}", spec.target))?,
                );
                let _ = stream.set_nodelay(true);
                let stream = tls
                    .connect(
                        stream,
                        &spec.target.ip().to_string(),
                        Duration::from_secs(5),
                    )
                    .await
                    .with_context(|| format!("Modbus/TCP Security with {}", spec.target))?;
                tcp::attach_slave(stream, Slave(spec.unit))
            }
        };
        contexts.push(ctx);
    }
    let started = Instant::now();
    let end = started + spec.duration;
    let mut tasks = Vec::new();
    for mut ctx in contexts {
        let (ok, exceptions, errors) = (ok.clone(), exceptions.clone(), errors.clone());
        let (addr, qty) = (spec.address, spec.quantity);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                match ctx.read_holding_registers(addr, qty).await {
                    Ok(Ok(_)) => ok.fetch_add(1, Relaxed),
                    Ok(Err(_)) => exceptions.fetch_add(1, Relaxed),
                    Err(_) => {
                        errors.fetch_add(1, Relaxed);
                        return;
                    }
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = ok.load(Relaxed);
    Ok(LoadResult {
        requests,
        exceptions: exceptions.load(Relaxed),
        errors: errors.load(Relaxed),
        elapsed_s: elapsed,
        requests_per_s: requests as f64 / elapsed,
        registers_per_s: requests as f64 * f64::from(spec.quantity) / elapsed,
    })
}

#[derive(Debug, Clone)]
struct StaticSlice(Arc<Vec<u16>>);

impl tokio_modbus::server::Service for StaticSlice {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let read = |addr: u16, qty: u16| {
            let (a, n) = (usize::from(addr), usize::from(qty));
            self.0
                .get(a..a + n)
                .map(<[u16]>::to_vec)
                .ok_or(ExceptionCode::IllegalDataAddress)
        };
        future::ready(match req {
            Request::ReadHoldingRegisters(a, q) => read(a, q).map(Response::ReadHoldingRegisters),
            Request::ReadInputRegisters(a, q) => read(a, q).map(Response::ReadInputRegisters),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Serves FC3/FC4 from a static 64 Ki-register slice with the stock tokio-modbus server,
/// until the future is dropped.
pub async fn serve_bare(listener: TcpListener) -> Result<()> {
    let slice = StaticSlice(Arc::new((0..=u16::MAX).collect()));
    let server = Server::new(listener);
    let new_service = move |_addr| Ok(Some(slice.clone()));
    let on_connected = |stream, addr| {
        let new_service = new_service.clone();
        async move { accept_tcp_connection(stream, addr, new_service) }
    };
    server
        .serve(
            &on_connected,
            |e| tracing::debug!(error = %e, "bare server connection"),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn load_against_the_bare_server_counts_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_bare(listener));
        let r = run_load(&LoadSpec {
            target,
            connections: 2,
            address: 100,
            quantity: 125,
            duration: Duration::from_millis(200),
            unit: 1,
            tls: None,
        })
        .await
        .unwrap();
        assert!(r.requests > 0);
        assert_eq!((r.exceptions, r.errors), (0, 0));
        let past_end = run_load(&LoadSpec {
            target,
            connections: 1,
            address: u16::MAX,
            quantity: 2,
            duration: Duration::from_millis(50),
            unit: 1,
            tls: None,
        })
        .await
        .unwrap();
        assert_eq!(past_end.requests, 0);
        assert!(past_end.exceptions > 0);
        server.abort();
    }
}
