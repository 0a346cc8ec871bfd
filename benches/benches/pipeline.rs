//! Whole paths, in-process over real loopback sockets:
//! - ingest: `Updates` frames of one tick of 10 000 tags read from a TCP socket, decoded
//!   and stored in the register image (what a connector's source does per frame);
//! - end to end: a simulated server streaming 100 000 updates/s → a Smart Connector → a
//!   tokio-modbus master reading 125 registers (requests/s through the whole stack).
//!
//! Run: `cargo bench -p benches --bench pipeline`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::{SinkExt, StreamExt};
use po_protocol::{Frame, FrameCodec};
use po_simulator::{ServerConfig, ServerHandle};
use smart_connector::config::ConnectorConfig;
use smart_connector::image::RegisterImage;
use std::hint::black_box;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::prelude::*;
use tokio_util::codec::Framed;

mod common;

fn ingest(c: &mut Criterion) {
    let (_, map, batch) = common::one_tick();
    let image = RegisterImage::new(map);
    let n = batch.len() as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A sender that writes one frame per request on the socket, as a server would.
    let (mut reader, requests) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(4);
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            let mut out = Framed::new(s, FrameCodec::<Frame>::new());
            let mut seq = 0;
            while rx.recv().await.is_some() {
                seq += 1;
                out.send(Frame::Updates {
                    seq,
                    batch: batch.clone(),
                })
                .await
                .unwrap();
            }
        });
        let s = TcpStream::connect(addr).await.unwrap();
        let _ = s.set_nodelay(true);
        (Framed::new(s, FrameCodec::<Frame>::new()), tx)
    });
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(n));
    group.bench_function("ingest 10k-update frames socket → image", |b| {
        b.iter(|| {
            rt.block_on(async {
                requests.send(()).await.unwrap();
                match reader.next().await {
                    Some(Ok(Frame::Updates { batch, .. })) => black_box(image.apply(&batch)),
                    other => panic!("{other:?}"),
                }
            })
        })
    });
    group.finish();
}

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, connector, mut ctx) = rt.block_on(async {
        let server = ServerHandle::start(ServerConfig {
            limits: Default::default(),
            tls: None,
            name: "po-bench".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            host_address: None,
            licences: vec![],
            seed: 7,
            field_epoch_us: 0,
            heartbeat: Duration::from_millis(100),
            client_queue: 256,
            site: common::site(),
            redundancy: None,
        })
        .await
        .unwrap();
        let text = format!(
            "name = \"sc-bench\"\n[[source]]\nname = \"po-bench\"\naddress = \"{}\"\n[modbus]\nlisten = \"127.0.0.1:0\"\n",
            server.client_addr()
        );
        let config = ConnectorConfig::parse(&text, "bench").unwrap();
        let connector = smart_connector::connector::start(config, Some(Duration::from_secs(10))).await.unwrap();
        let mut ctx = tcp::connect_slave(connector.modbus_addr, Slave(1)).await.unwrap();
        while ctx.read_holding_registers(1, 1).await.unwrap().unwrap() != [1] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (server, connector, ctx)
    });
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function(
        "end to end: read 125 registers while ingesting 100k updates/s",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    black_box(ctx.read_holding_registers(100, 125).await.unwrap().unwrap())
                })
            })
        },
    );
    group.finish();
    rt.block_on(async {
        connector.shutdown().await;
        server.shutdown().await;
    });
}

criterion_group!(benches, ingest, end_to_end);
criterion_main!(benches);
