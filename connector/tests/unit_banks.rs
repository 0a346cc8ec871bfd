//! A site larger than one Modbus unit (docs/design.md §15): automatic mapping spills over into
//! units 2 and 3, a standard Modbus master (tokio-modbus) reads field values there, and
//! the status block is the same at every unit id.

use po_protocol::{Role, TagKind, Timestamp};
use po_simulator::{ServerConfig, ServerHandle, SiteSpec};
use smart_connector::config::{AccessKind, ConnectorConfig, SourceConfig};
use smart_connector::connector::start;
use smart_connector::points::PointRow;
use smart_connector::registers::{WordOrder, decode, encode};
use std::time::Duration;
use tokio_modbus::prelude::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// 4 500 meters of 16 tags: 72 000 tags, about 2.2 units' worth.
async fn big_server() -> ServerHandle {
    let s = ServerHandle::start(ServerConfig {
        limits: Default::default(),
        tls: None,
        name: "po-big".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        host_address: None,
        licences: vec![],
        seed: 9,
        field_epoch_us: 0,
        heartbeat: Duration::from_millis(100),
        client_queue: 64,
        site: SiteSpec {
            devices: 4500,
            tags_per_device: 16,
            scan_period: Duration::from_secs(1),
        },
        redundancy: None,
    })
    .await
    .unwrap();
    assert_eq!(s.status().unwrap().role, Role::Primary);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_larger_than_one_unit_spills_over_and_every_unit_answers() {
    let server = big_server().await;
    let model = server.model().clone();
    let mut config: ConnectorConfig =
        toml::from_str("name = \"sc-big\"\n[modbus]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    config.sources = vec![SourceConfig {
        name: "po-big".into(),
        address: server.client_addr(),
        access: AccessKind::Local,
        licence: None,
        server_name: None,
    }];
    let sc = start(config, Some(PATIENCE)).await.unwrap();
    let map = sc.image.map().clone();
    let units: Vec<u8> = map.banks().iter().map(|b| b.unit_id).collect();
    assert_eq!(units, vec![1, 2, 3], "72 000 tags need three units");
    let rows: Vec<PointRow> = smart_connector::points::rows(&map);
    assert_eq!(rows.len(), model.tag_count());
    // Each bank starts again at data_base.
    for unit in [2u8, 3] {
        let first = rows.iter().find(|r| r.unit_id == unit).unwrap();
        assert_eq!(first.address, 100, "unit {unit} starts at data_base");
    }

    let mut masters = Vec::new();
    for unit in [1u8, 2, 3, 7] {
        masters.push((
            unit,
            tcp::connect_slave(sc.modbus_addr, Slave(unit))
                .await
                .unwrap(),
        ));
    }
    // Wait for the data, through unit 1's status block.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let s = masters[0]
            .1
            .read_holding_registers(0, 14)
            .await
            .unwrap()
            .unwrap();
        if s[1] == 1 && s[8] == 0 && s[9] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never all Good: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The status block is identical at every unit (the heartbeat register 0 counts
    // seconds and the data age moves, so registers 1..=5 and 8..=13 are compared).
    let mut blocks = Vec::new();
    for (unit, ctx) in masters.iter_mut() {
        let s = ctx.read_holding_registers(0, 14).await.unwrap().unwrap();
        blocks.push((*unit, [&s[1..6], &s[8..14]].concat()));
    }
    for (unit, b) in &blocks[1..] {
        assert_eq!(
            b, &blocks[0].1,
            "status block at unit {unit} differs from unit 1"
        );
    }
    assert_eq!(
        (u32::from(blocks[0].1[7]) << 16) | u32::from(blocks[0].1[8]),
        72_000,
        "tag count spans every unit"
    );

    // Tags of units 2 and 3 read field values (the model's, within a few ticks).
    for unit in [2u8, 3] {
        let ctx = &mut masters.iter_mut().find(|(u, _)| *u == unit).unwrap().1;
        let in_unit: Vec<&PointRow> = rows.iter().filter(|r| r.unit_id == unit).collect();
        for r in [
            in_unit[0],
            in_unit[in_unit.len() / 2],
            in_unit[in_unit.len() - 1],
        ] {
            let info = model.catalog().iter().find(|t| t.name == r.tag).unwrap();
            let regs = ctx
                .read_input_registers(r.address, r.registers)
                .await
                .unwrap()
                .unwrap();
            let got = decode(info.kind, &regs, WordOrder::Big);
            let tick = model.tick_at(Timestamp::now());
            let words = usize::from(r.registers);
            let ok = (tick.saturating_sub(5)..=tick + 1).any(|t| {
                let v = model.value(info.id, t).unwrap();
                let want = decode(
                    info.kind,
                    &encode(v, WordOrder::Big).0[..words],
                    WordOrder::Big,
                );
                format!("{want:?}") == format!("{got:?}")
            });
            assert!(ok, "unit {unit} {} read {got:?}", r.tag);
            if info.kind == TagKind::Digital {
                let bits = ctx
                    .read_discrete_inputs(r.coil.unwrap(), 1)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(u16::from(bits[0]), regs[0]);
            }
        }
    }
    // Past the end of unit 3's data: an illegal address, not another unit's data.
    let last = rows
        .iter()
        .filter(|r| r.unit_id == 3)
        .map(|r| r.address + r.registers)
        .max()
        .unwrap();
    let ctx = &mut masters.iter_mut().find(|(u, _)| *u == 3).unwrap().1;
    assert_eq!(
        ctx.read_input_registers(last, 2).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );

    // The points list names each point's unit, in both formats.
    let csv = smart_connector::points::to_csv(&rows);
    assert!(csv.starts_with("tag,unit_id,address,"));
    assert!(csv.lines().any(|l| l.split(',').nth(1) == Some("3")));
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&serde_json::to_string(&rows).unwrap()).unwrap();
    assert_eq!(json[rows.len() - 1]["unit_id"], 3);
    sc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_mapping_serves_each_meter_at_its_own_unit_with_one_layout() {
    // 4 meters of 16 tags, `map.mode = "device"`: units 1-4, the same register layout.
    let server = ServerHandle::start(ServerConfig {
        limits: Default::default(),
        tls: None,
        name: "po-meters".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        host_address: None,
        licences: vec![],
        seed: 4,
        field_epoch_us: 0,
        heartbeat: Duration::from_millis(100),
        client_queue: 64,
        site: SiteSpec {
            devices: 4,
            tags_per_device: 16,
            scan_period: Duration::from_secs(1),
        },
        redundancy: None,
    })
    .await
    .unwrap();
    let model = server.model().clone();
    let mut config: ConnectorConfig = toml::from_str(
        "name = \"sc-gw\"\n[modbus]\nlisten = \"127.0.0.1:0\"\n[map]\nmode = \"device\"\n",
    )
    .unwrap();
    config.sources = vec![SourceConfig {
        name: "po-meters".into(),
        address: server.client_addr(),
        access: AccessKind::Local,
        licence: None,
        server_name: None,
    }];
    let sc = start(config, Some(PATIENCE)).await.unwrap();
    let rows = smart_connector::points::rows(sc.image.map());
    let layout = |unit: u8| -> Vec<(String, u16)> {
        rows.iter()
            .filter(|r| r.unit_id == unit)
            .map(|r| (r.tag.rsplit_once('.').unwrap().1.to_string(), r.address))
            .collect()
    };
    assert_eq!(layout(1).len(), 16);
    for unit in 2..=4 {
        assert_eq!(
            layout(unit),
            layout(1),
            "unit {unit} has the layout of unit 1"
        );
    }
    // A master reads meter 3's kW at the template's address on unit 3.
    let mut ctx = tcp::connect_slave(sc.modbus_addr, Slave(3)).await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while ctx.read_holding_registers(0, 14).await.unwrap().unwrap()[1] != 1 {
        assert!(std::time::Instant::now() < deadline, "never served data");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kw = rows
        .iter()
        .find(|r| r.unit_id == 3 && r.tag.ends_with(".kW"))
        .unwrap();
    let info = model.catalog().iter().find(|t| t.name == kw.tag).unwrap();
    let regs = ctx
        .read_input_registers(kw.address, 2)
        .await
        .unwrap()
        .unwrap();
    let got = decode(info.kind, &regs, WordOrder::Big);
    let tick = model.tick_at(Timestamp::now());
    assert!(
        (tick.saturating_sub(5)..=tick + 1).any(|t| {
            let v = model.value(info.id, t).unwrap();
            format!(
                "{:?}",
                decode(info.kind, &encode(v, WordOrder::Big).0, WordOrder::Big)
            ) == format!("{got:?}")
        }),
        "{} read {got:?}",
        kw.tag
    );
    // A unit with no device: exception 0B, as a gateway answers.
    let mut none = tcp::connect_slave(sc.modbus_addr, Slave(9)).await.unwrap();
    assert_eq!(
        none.read_holding_registers(0, 14).await.unwrap(),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    sc.shutdown().await;
}
