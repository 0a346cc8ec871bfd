//! The connector against the real simulator over loopback sockets, read and written
//! by a standard Modbus TCP master (tokio-modbus).

use po_protocol::{TagKind, Value};
use po_simulator::pair::{PairHandle, PairSpec};
use po_simulator::{FieldModel, SiteSpec};
use smart_connector::config::{AccessKind, ConnectorConfig, SourceConfig};
use smart_connector::connector::{ConnectorHandle, start};
use smart_connector::registers::WordOrder;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

const PATIENCE: Duration = Duration::from_secs(15);

fn site() -> SiteSpec {
    SiteSpec {
        devices: 4,
        tags_per_device: 16,
        scan_period: Duration::from_millis(50),
    }
}

fn arch3_config(pair: &PairHandle, licence: &str) -> ConnectorConfig {
    let mut c: ConnectorConfig = toml::from_str(
        r#"
name = "sc-test"
[policy]
source_timeout = "300ms"
stale_after = "1s"
write_timeout = "2s"
[modbus]
listen = "127.0.0.1:0"
"#,
    )
    .unwrap();
    c.sources = pair
        .servers()
        .iter()
        .map(|s| SourceConfig {
            name: s.name().to_string(),
            address: s.client_addr(),
            access: AccessKind::ClientAccess,
            licence: Some(licence.to_string()),
            server_name: None,
        })
        .collect();
    c
}

async fn pair() -> PairHandle {
    let pair = PairHandle::start(&PairSpec::loopback(21, site()))
        .await
        .unwrap();
    assert!(
        pair.a_is_primary(PATIENCE).await,
        "po-a never became Primary"
    );
    pair
}

async fn master(addr: SocketAddr) -> Context {
    tcp::connect_slave(addr, Slave(1)).await.unwrap()
}

async fn status(ctx: &mut Context) -> Vec<u16> {
    ctx.read_holding_registers(0, 14).await.unwrap().unwrap()
}

/// Polls the status block until `want` holds (the connector's state is only visible
/// through Modbus, which is the point).
async fn wait_status(ctx: &mut Context, what: &str, want: impl Fn(&[u16]) -> bool) -> Vec<u16> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = status(ctx).await;
        if want(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn u32_at(regs: &[u16], i: usize) -> u32 {
    (u32::from(regs[i]) << 16) | u32::from(regs[i + 1])
}

/// Checks registers read from `data_base` against the field model, allowing the tick
/// window a read can straddle.
/// Checks each value read against the field model near `tick`; a setpoint the test wrote
/// (`written`) may read as the written value instead: the server publishes its stored
/// setpoints at its next tick, which under load may come before the read.
fn check_against_model(
    model: &FieldModel,
    regs: &[u16],
    base_tag: usize,
    tick: u64,
    written: Option<(po_protocol::TagId, Value)>,
) -> usize {
    let mut checked = 0;
    let mut i = 0;
    let mut tag = base_tag;
    while i < regs.len() && tag < model.tag_count() {
        let info = &model.catalog()[tag];
        let words = if info.kind == TagKind::Digital { 1 } else { 2 };
        if i + words > regs.len() {
            break;
        }
        let got =
            smart_connector::registers::decode(info.kind, &regs[i..i + words], WordOrder::Big);
        let was_written =
            written.is_some_and(|(id, v)| id == info.id && format!("{v:?}") == format!("{got:?}"));
        let ok = was_written
            || (tick.saturating_sub(10)..=tick + 2).any(|t| {
                let v = model.value(info.id, t).unwrap();
                let expected = smart_connector::registers::decode(
                    info.kind,
                    &smart_connector::registers::encode(v, WordOrder::Big).0[..words],
                    WordOrder::Big,
                );
                format!("{expected:?}") == format!("{got:?}")
            });
        assert!(
            ok,
            "{} read {got:?}, not a field value near tick {tick}",
            info.name
        );
        checked += 1;
        i += words;
        tag += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_master_reads_field_values_and_follows_a_failover() {
    let pair = pair().await;
    let model = pair.a.model().clone();
    let sc: ConnectorHandle = start(arch3_config(&pair, "CA-1"), Some(PATIENCE))
        .await
        .unwrap();
    let mut ctx = master(sc.modbus_addr).await;
    let s = wait_status(&mut ctx, "Primary data from source 1", |s| {
        s[1] == 1 && s[2] == 1
    })
    .await;
    let epoch = u32_at(&s, 4);
    // The connector may have served the Standby's data first (serve_standby) if its
    // connection came up first; that move to the Primary counts as a switch too.
    let switches_before = u32_at(&s, 12);
    assert_eq!(s[3], 1, "role Primary");
    assert_eq!(u32_at(&s, 10), model.tag_count() as u32);
    assert_eq!(u32_at(&s, 8), 0, "all tags Good");

    // Every tag, in 125-register reads.
    let mut checked = 0;
    let mut reg = 100u16;
    let mut tag = 0usize;
    while tag < model.tag_count() {
        let regs = ctx.read_input_registers(reg, 120).await.unwrap().unwrap();
        let tick = model.tick_at(po_protocol::Timestamp::now());
        let n = check_against_model(&model, &regs, tag, tick, None);
        // Advance by whole tags.
        let used: usize = model.catalog()[tag..tag + n]
            .iter()
            .map(|t| if t.kind == TagKind::Digital { 1 } else { 2 })
            .sum();
        reg += used as u16;
        tag += n;
        checked += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(checked, model.tag_count());

    // Crash the Primary: the connector follows the promoted Standby.
    pair.a.crash();
    // A write issued during the switch waits for the new Primary instead of failing.
    let setpoint = sc
        .image
        .map()
        .points()
        .iter()
        .find(|p| p.writable && p.kind == TagKind::Analog)
        .unwrap()
        .clone();
    let words = smart_connector::registers::encode(Value::Analog(7.25), WordOrder::Big).0;
    let mut writer = master(sc.modbus_addr).await;
    writer
        .write_multiple_registers(setpoint.address, &words)
        .await
        .unwrap()
        .expect("the write waits for the promoted Standby");
    assert_eq!(pair.b.setpoint(setpoint.tag), Some(Value::Analog(7.25)));
    let s = wait_status(&mut ctx, "Primary data from source 2", |s| {
        s[1] == 1 && s[2] == 2
    })
    .await;
    assert!(u32_at(&s, 4) > epoch, "epoch rises");
    // At least one: a source that looks silent for a moment under load may add a
    // switch away and back, which is also counted.
    assert!(u32_at(&s, 12) > switches_before, "the switch is counted");
    let regs = ctx.read_holding_registers(100, 100).await.unwrap().unwrap();
    let tick = model.tick_at(po_protocol::Timestamp::now());
    let written = Some((setpoint.tag, Value::Analog(7.25)));
    assert!(check_against_model(&model, &regs, 0, tick, written) > 0);
    sc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_the_primary_and_read_only_tags_refuse() {
    let pair = pair().await;
    let model = pair.a.model().clone();
    let sc = start(arch3_config(&pair, "CA-2"), Some(PATIENCE))
        .await
        .unwrap();
    let mut ctx = master(sc.modbus_addr).await;
    wait_status(&mut ctx, "Primary data", |s| s[1] == 1).await;
    let points = sc.image.map().points().to_vec();
    let setpoint = points
        .iter()
        .find(|p| p.writable && p.kind == TagKind::Analog)
        .unwrap();
    let words = smart_connector::registers::encode(Value::Analog(42.5), WordOrder::Big).0;
    ctx.write_multiple_registers(setpoint.address, &words)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pair.a.setpoint(setpoint.tag), Some(Value::Analog(42.5)));
    assert_eq!(
        pair.b.setpoint(setpoint.tag),
        Some(Value::Analog(42.5)),
        "replicated"
    );
    // Read back once the next tick has carried it.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = ctx
            .read_holding_registers(setpoint.address, 2)
            .await
            .unwrap()
            .unwrap();
        if r == words {
            break;
        }
        assert!(Instant::now() < deadline, "write never read back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let breaker = points
        .iter()
        .find(|p| p.writable && p.kind == TagKind::Digital)
        .unwrap();
    ctx.write_single_coil(breaker.coil.unwrap(), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pair.a.setpoint(breaker.tag), Some(Value::Digital(true)));

    let read_only = points.iter().find(|p| !p.writable).unwrap();
    let e = ctx
        .write_multiple_registers(read_only.address, &[0, 0])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e, ExceptionCode::IllegalDataAddress);
    let e = ctx.write_single_register(3, 1).await.unwrap().unwrap_err();
    assert_eq!(
        e,
        ExceptionCode::IllegalDataAddress,
        "status block is read-only"
    );
    let e = ctx
        .write_single_register(setpoint.address, 1)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e, ExceptionCode::IllegalDataAddress, "half an f32");
    let end = sc.image.map().register_end() as u16;
    let e = ctx
        .read_holding_registers(end - 1, 2)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e,
        ExceptionCode::IllegalDataAddress,
        "past the end of the map"
    );
    let _ = model;
    sc.shutdown().await;
}
