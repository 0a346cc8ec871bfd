//! Client-access codec throughput: `Updates` batches encoded and decoded, reported as
//! tag updates per second (criterion's element throughput).
//!
//! Run: `cargo bench -p benches --bench codec`

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use po_protocol::{Frame, FrameCodec, Quality, SharedBatch, TagId, TagValue, Timestamp, Value};
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder};

/// A batch shaped like one tick of a simulated site: mostly analogs, some counters
/// and digitals, one sample time.
fn batch(n: usize) -> Vec<TagValue> {
    let at = Timestamp(1_790_000_000_000_000);
    (0..n)
        .map(|i| TagValue {
            tag: TagId(i as u32),
            value: match i % 16 {
                0 | 11 | 12 => Value::Counter(1_000_000 + i as u64 * 37),
                13 | 14 => Value::Digital(i % 3 == 0),
                _ => Value::Analog(230.0 + i as f64 * 0.001),
            },
            quality: Quality::Good,
            sampled_at: at,
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for n in [100usize, 1_000, 10_000] {
        let values = batch(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("encode+decode", n),
            &values,
            |b, values| {
                let mut codec = FrameCodec::<Frame>::new();
                let mut buf = BytesMut::with_capacity(n * 24);
                let frame = Frame::Updates {
                    seq: 1,
                    batch: values.clone(),
                };
                b.iter(|| {
                    codec.encode(&frame, &mut buf).unwrap();
                    let back = codec.decode(&mut buf).unwrap().unwrap();
                    black_box(back);
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("encode", n), &values, |b, values| {
            let mut codec = FrameCodec::<Frame>::new();
            let mut buf = BytesMut::with_capacity(n * 24);
            let frame = Frame::Updates {
                seq: 1,
                batch: values.clone(),
            };
            b.iter(|| {
                buf.clear();
                codec.encode(&frame, &mut buf).unwrap();
                black_box(&buf);
            })
        });
        group.bench_with_input(BenchmarkId::new("decode", n), &values, |b, values| {
            let mut codec = FrameCodec::<Frame>::new();
            let mut encoded = BytesMut::new();
            codec
                .encode(
                    &Frame::Updates {
                        seq: 1,
                        batch: values.clone(),
                    },
                    &mut encoded,
                )
                .unwrap();
            b.iter(|| {
                let mut buf = encoded.clone();
                black_box(codec.decode(&mut buf).unwrap().unwrap());
            })
        });
        group.bench_with_input(
            BenchmarkId::new("shared-batch-fanout-8", n),
            &values,
            |b, values| {
                // One encode, eight session frames: the simulator's publish path.
                let mut buf = BytesMut::with_capacity(8 * n * 24);
                b.iter(|| {
                    let shared = SharedBatch::new(values).unwrap();
                    buf.clear();
                    for seq in 0..8 {
                        shared.encode_frame(seq, &mut buf).unwrap();
                    }
                    black_box(&buf);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
