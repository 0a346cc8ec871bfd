//! Connector hot paths, in-process: the register image (ingest and reads, also with
//! concurrent readers) and Modbus request parse + serve. Throughput in updates/s and
//! requests/s (criterion's element throughput).
//!
//! Run: `cargo bench -p benches --bench connector`

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smart_connector::config::ModbusConfig;
use smart_connector::image::RegisterImage;
use smart_connector::metrics::Metrics;
use smart_connector::modbus::decode_request;
use smart_connector::service::ModbusService;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;

fn image(c: &mut Criterion) {
    let (_, map, batch) = common::one_tick();
    let image = Arc::new(RegisterImage::new(map.clone()));
    let mut group = c.benchmark_group("register-image");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("apply 10k updates", |b| {
        b.iter(|| black_box(image.apply(&batch)))
    });

    // The same while two threads read 125-register blocks as fast as they can.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (image, stop) = (image.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut regs = [0u16; 125];
                let end = image.map().register_end() as u16;
                let mut addr = 100;
                while !stop.load(Ordering::Relaxed) {
                    black_box(image.read_registers(image.map().first_bank(), addr, &mut regs));
                    addr = if addr + 250 >= end { 100 } else { addr + 125 };
                }
            })
        })
        .collect();
    group.bench_function("apply 10k updates, 2 concurrent readers", |b| {
        b.iter(|| black_box(image.apply(&batch)))
    });
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }

    group.throughput(Throughput::Elements(1));
    group.bench_function("read 125 registers", |b| {
        let mut regs = [0u16; 125];
        b.iter(|| black_box(image.read_registers(image.map().first_bank(), 1000, &mut regs)))
    });
    group.finish();
}

fn modbus(c: &mut Criterion) {
    let (_, map, batch) = common::one_tick();
    let image = Arc::new(RegisterImage::new(map));
    image.apply(&batch);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (writes, _rx) = tokio::sync::mpsc::channel(16);
    let service = ModbusService::new(
        Arc::new(smart_connector::image_slot::ImageSlot::ready(image)),
        writes,
        &ModbusConfig::default(),
        Duration::from_secs(1),
        Arc::new(Metrics::default()),
    )
    // As `run` builds it: each request counted in progress for a drain.
    .with_lifecycle(Arc::new(smart_connector::lifecycle::Lifecycle::new(
        tokio_util::sync::CancellationToken::new(),
    )));
    // FC3, 125 registers from 1000, transaction 7, unit 1.
    let request = [0u8, 7, 0, 0, 0, 6, 1, 3, 0x03, 0xE8, 0, 125];
    let unrestricted = smart_connector::authz::Rights::unrestricted();
    let mut group = c.benchmark_group("modbus");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse + serve FC3 125 registers", |b| {
        let mut out = BytesMut::with_capacity(512);
        b.iter(|| {
            out.clear();
            let (frame, _) = decode_request(&request).unwrap().unwrap();
            rt.block_on(service.handle(frame, &unrestricted, &mut out));
            black_box(out.len());
        })
    });
    group.bench_function("parse only", |b| {
        b.iter(|| black_box(decode_request(black_box(&request)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, image, modbus);
criterion_main!(benches);
