//! A sequence gap on a source's data stream makes the connector subscribe again, and
//! `sc_resubscribes_total` counts it (the Grafana dashboard draws that counter).
//!
//! The server here is a script on a real socket speaking the client-access protocol, so
//! the gap is exact: data frames 1 and 2, then 4.

use futures::{SinkExt, StreamExt};
use po_protocol::{
    Frame, FrameCodec, Quality, Role, TagId, TagInfo, TagKind, TagValue, Timestamp, Value,
};
use smart_connector::config::ConnectorConfig;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::codec::Framed;

fn sample(seq: u64) -> Vec<TagValue> {
    vec![TagValue {
        tag: TagId(0),
        value: Value::Analog(seq as f64),
        quality: Quality::Good,
        sampled_at: Timestamp(1_000_000 + seq),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_gap_is_counted_in_sc_resubscribes_total() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut link = Framed::new(stream, FrameCodec::<Frame>::new());
        let mut subscribes = 0u32;
        while let Some(Ok(frame)) = link.next().await {
            match frame {
                Frame::Hello { .. } => link
                    .send(Frame::Welcome {
                        server_name: "po-script".into(),
                        role: Role::Primary,
                        epoch: 1,
                    })
                    .await
                    .unwrap(),
                Frame::Browse => link
                    .send(Frame::Catalog {
                        tags: vec![TagInfo {
                            id: TagId(0),
                            name: "Feeder01.Meter1.kW".into(),
                            unit: "kW".into(),
                            kind: TagKind::Analog,
                            writable: false,
                        }],
                    })
                    .await
                    .unwrap(),
                Frame::Subscribe { .. } => {
                    subscribes += 1;
                    subscribed_tx.send(subscribes).unwrap();
                    // The first subscription gets frames 1, 2, then 4: frame 3 is lost.
                    let seqs: &[u64] = if subscribes == 1 { &[1, 2, 4] } else { &[1, 2] };
                    for &seq in seqs {
                        let frame = if seq == 1 {
                            Frame::Snapshot {
                                seq,
                                values: sample(seq),
                            }
                        } else {
                            Frame::Updates {
                                seq,
                                batch: sample(seq),
                            }
                        };
                        link.send(frame).await.unwrap();
                    }
                }
                _ => {}
            }
        }
    });
    let mut config: ConnectorConfig = toml::from_str(&format!(
        "name = \"sc-gap\"\n[[source]]\nname = \"po-script\"\naddress = \"{server_addr}\"\n\
         [modbus]\nlisten = \"127.0.0.1:0\"\n"
    ))
    .unwrap();
    // Nothing in this test depends on the server being silent or not.
    config.policy.source_timeout = Duration::from_secs(30);
    let sc = smart_connector::connector::start(config, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(sc.metrics.resubscribes.load(Relaxed), 0);
    // The connector subscribes, sees the gap and subscribes again.
    let wait = async {
        while let Some(n) = subscribed.recv().await {
            if n == 2 {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("the connector subscribes again after the gap");
    // The engine counts it a moment after the source subscribed again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sc.metrics.resubscribes.load(Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sc.metrics.resubscribes.load(Relaxed), 1);
    assert!(
        sc.metrics.render().contains("\nsc_resubscribes_total 1\n"),
        "{}",
        sc.metrics.render()
    );
    sc.shutdown().await;
    server.abort();
}
