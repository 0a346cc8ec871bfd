//! Limits and hostile input on the Modbus side: allow-list, max_connections, idle
//! timeout, read-only mode, and frames that must close one connection and nothing else.

use po_simulator::ServerHandle;
use smart_connector::config::ConnectorConfig;
use smart_connector::connector::{ConnectorHandle, start};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_modbus::prelude::*;

const PATIENCE: Duration = Duration::from_secs(15);

mod common;

async fn server() -> ServerHandle {
    common::solo_server(2).await
}

async fn connector(server: &ServerHandle, modbus: &str) -> ConnectorHandle {
    let text = format!(
        r#"
name = "sc-hard"
[[source]]
name = "po-solo"
address = "{}"
[modbus]
listen = "127.0.0.1:0"
{modbus}
"#,
        server.client_addr()
    );
    let config = ConnectorConfig::parse(&text, "test.toml").unwrap();
    start(config, Some(PATIENCE)).await.unwrap()
}

async fn connect_from(addr: SocketAddr, from: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    s.connect(addr).await.unwrap()
}

/// True when the peer closes the connection (EOF or reset) without answering.
async fn closed_without_answer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A valid FC3 request for register 0, quantity 1.
fn read_request(tid: u16) -> Vec<u8> {
    let mut v = tid.to_be_bytes().to_vec();
    v.extend_from_slice(&[0, 0, 0, 6, 1, 3, 0, 0, 0, 1]);
    v
}

async fn answered(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 260];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn the_allow_list_refuses_other_networks() {
    let s = server().await;
    let sc = connector(&s, r#"allow = ["127.0.0.0/24"]"#).await;
    let mut outsider = connect_from(sc.modbus_addr, "127.0.9.1").await;
    outsider.write_all(&read_request(1)).await.unwrap();
    assert!(closed_without_answer(&mut outsider).await);
    let mut insider = connect_from(sc.modbus_addr, "127.0.0.1").await;
    insider.write_all(&read_request(2)).await.unwrap();
    assert_eq!(&answered(&mut insider).await[..2], &[0, 2]);
    assert_eq!(
        sc.metrics
            .modbus_refused_allow_list
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_and_idle_ones_closed() {
    let s = server().await;
    // The idle timeout is long enough that a and b still hold both slots when c comes,
    // however slowly the machine schedules this test.
    let sc = connector(&s, "max_connections = 2\nidle_timeout = \"2s\"").await;
    let mut a = TcpStream::connect(sc.modbus_addr).await.unwrap();
    let mut b = TcpStream::connect(sc.modbus_addr).await.unwrap();
    a.write_all(&read_request(1)).await.unwrap();
    b.write_all(&read_request(2)).await.unwrap();
    answered(&mut a).await;
    answered(&mut b).await;
    let mut c = TcpStream::connect(sc.modbus_addr).await.unwrap();
    c.write_all(&read_request(3)).await.unwrap();
    assert!(
        closed_without_answer(&mut c).await,
        "third connection refused"
    );
    // Idle connections are closed, which frees the slots.
    let started = Instant::now();
    assert!(
        closed_without_answer(&mut a).await,
        "idle connection closed"
    );
    eprintln!("idle close after {:?}", started.elapsed());
    assert!(closed_without_answer(&mut b).await);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut d = TcpStream::connect(sc.modbus_addr).await.unwrap();
        d.write_all(&read_request(4)).await.unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(PATIENCE, d.read(&mut buf)).await
            && n > 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn at_the_cap_a_connection_without_a_request_makes_room_and_a_working_one_never_does() {
    let s = server().await;
    let sc = connector(&s, "max_connections = 2").await;
    // `working` has been answered; `silent` never sent a byte.
    let mut working = TcpStream::connect(sc.modbus_addr).await.unwrap();
    working.write_all(&read_request(1)).await.unwrap();
    answered(&mut working).await;
    let mut silent = TcpStream::connect(sc.modbus_addr).await.unwrap();
    // A newcomer at the cap: the silent one is closed to make room, the newcomer served.
    let mut newcomer = TcpStream::connect(sc.modbus_addr).await.unwrap();
    newcomer.write_all(&read_request(2)).await.unwrap();
    answered(&mut newcomer).await;
    assert!(
        closed_without_answer(&mut silent).await,
        "the silent one made room"
    );
    // Now both open connections work: a further one is refused and they stay.
    let mut third = TcpStream::connect(sc.modbus_addr).await.unwrap();
    third.write_all(&read_request(3)).await.unwrap();
    assert!(
        closed_without_answer(&mut third).await,
        "refused: no room to make"
    );
    working.write_all(&read_request(4)).await.unwrap();
    answered(&mut working).await;
    newcomer.write_all(&read_request(5)).await.unwrap();
    answered(&mut newcomer).await;
    assert_eq!(
        sc.metrics
            .modbus_accept
            .evicted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn read_only_mode_refuses_every_write_with_01() {
    let s = server().await;
    let sc = connector(&s, "read_only = true").await;
    let mut ctx = tcp::connect_slave(sc.modbus_addr, Slave(1)).await.unwrap();
    let p = sc
        .image
        .map()
        .points()
        .iter()
        .find(|p| p.writable)
        .unwrap()
        .clone();
    let e = match p.coil {
        Some(c) => ctx.write_single_coil(c, true).await.unwrap().unwrap_err(),
        None => ctx
            .write_multiple_registers(p.address, &[0, 0])
            .await
            .unwrap()
            .unwrap_err(),
    };
    assert_eq!(e, ExceptionCode::IllegalFunction);
    assert!(s.setpoint(p.tag).is_none(), "nothing reached the server");
    assert!(
        ctx.read_holding_registers(0, 14).await.unwrap().is_ok(),
        "reads still work"
    );
}

#[tokio::test]
async fn hostile_frames_close_only_their_connection() {
    let s = server().await;
    let sc = connector(&s, "").await;
    let mut good = tcp::connect_slave(sc.modbus_addr, Slave(1)).await.unwrap();
    assert!(good.read_holding_registers(0, 14).await.unwrap().is_ok());

    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "bad protocol id",
            vec![0, 1, 0x12, 0x34, 0, 6, 1, 3, 0, 0, 0, 1],
        ),
        ("MBAP length 0", vec![0, 1, 0, 0, 0, 0, 1, 3]),
        (
            "MBAP length past 254",
            vec![0, 1, 0, 0, 0xff, 0xff, 1, 3, 0, 0],
        ),
    ];
    for (what, bytes) in hostile {
        let mut s = TcpStream::connect(sc.modbus_addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        assert!(
            closed_without_answer(&mut s).await,
            "{what}: connection not closed"
        );
    }
    // Well-framed but invalid PDUs get the spec's exception and the connection stays.
    let exceptions: Vec<(&str, Vec<u8>, u8)> = vec![
        (
            "FC16 quantity 0x8000",
            vec![0, 9, 0, 0, 0, 7, 1, 0x10, 0, 100, 0x80, 0, 0],
            3,
        ),
        (
            "FC3 quantity 0",
            vec![0, 9, 0, 0, 0, 6, 1, 3, 0, 0, 0, 0],
            3,
        ),
        (
            "FC3 quantity 126",
            vec![0, 9, 0, 0, 0, 6, 1, 3, 0, 0, 0, 126],
            3,
        ),
        (
            "FC16 byte count mismatch",
            vec![0, 9, 0, 0, 0, 9, 1, 0x10, 0, 100, 0, 1, 4, 0, 0],
            3,
        ),
        ("unknown function", vec![0, 9, 0, 0, 0, 2, 1, 0x2b], 1),
    ];
    let mut s2 = TcpStream::connect(sc.modbus_addr).await.unwrap();
    for (what, bytes, code) in exceptions {
        s2.write_all(&bytes).await.unwrap();
        let reply = answered(&mut s2).await;
        assert_eq!(reply.len(), 9, "{what}: {reply:?}");
        assert_eq!(reply[7], bytes[7] | 0x80, "{what}");
        assert_eq!(reply[8], code, "{what}");
    }
    // A truncated frame followed by silence: the connection simply waits (idle timeout
    // applies); meanwhile everyone else is served.
    let mut truncated = TcpStream::connect(sc.modbus_addr).await.unwrap();
    truncated
        .write_all(&[0, 1, 0, 0, 0, 6, 1, 3])
        .await
        .unwrap();
    assert!(good.read_holding_registers(0, 14).await.unwrap().is_ok());
    let n = (sc.image.map().register_end() - 100).min(125) as u16;
    let data = good.read_input_registers(100, n).await.unwrap().unwrap();
    assert_eq!(data.len(), usize::from(n));
}

#[tokio::test]
async fn the_metrics_endpoint_counts_requests_and_shows_the_active_source() {
    let s = server().await;
    let text = format!(
        "name = \"sc-metrics\"\n[[source]]\nname = \"po-solo\"\naddress = \"{}\"\n[modbus]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        s.client_addr()
    );
    let sc = start(
        ConnectorConfig::parse(&text, "test.toml").unwrap(),
        Some(PATIENCE),
    )
    .await
    .unwrap();
    let mut ctx = tcp::connect_slave(sc.modbus_addr, Slave(1)).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while ctx.read_holding_registers(1, 1).await.unwrap().unwrap() != [1] {
        assert!(Instant::now() < deadline, "never served Primary data");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = ctx
        .read_holding_registers(60_000, 1)
        .await
        .unwrap()
        .unwrap_err();
    let mut http = TcpStream::connect(sc.metrics_addr.unwrap()).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    let value = |name: &str| -> u64 {
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .map(|v| v.trim().parse::<u64>().unwrap())
            })
            .unwrap_or_else(|| panic!("{name} missing in {body}"))
    };
    assert!(value("sc_modbus_requests_total ") >= 2);
    assert_eq!(value("sc_modbus_exceptions_total{code=\"02\"} "), 1);
    assert_eq!(value("sc_active_source "), 1);
    assert!(value("sc_ingest_updates_total ") > 0);
}
