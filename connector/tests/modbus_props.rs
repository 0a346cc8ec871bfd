//! Property tests of our Modbus framing against a standard master: every valid request the
//! tokio-modbus client can send parses to the same request, every response we encode is
//! read back by that client as intended, and arbitrary bytes never panic the parser.

use bytes::BytesMut;
use proptest::prelude::*;
use smart_connector::modbus::{
    ExceptionCode, Request, decode_request, encode_exception, encode_read_bits,
    encode_read_registers, encode_write_echo,
};
use std::borrow::Cow;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::prelude::{Client, Response, Slave};

/// A valid request: quantities within the spec's limits and `addr + qty` inside 0..=65536.
fn request() -> impl Strategy<Value = Request> {
    fn span(max: u16) -> impl Strategy<Value = (u16, u16)> {
        (1..=max).prop_flat_map(|qty| ((0..=(0x1_0000 - u32::from(qty)) as u16), Just(qty)))
    }
    prop_oneof![
        span(2000).prop_map(|(addr, qty)| Request::ReadCoils { addr, qty }),
        span(2000).prop_map(|(addr, qty)| Request::ReadDiscreteInputs { addr, qty }),
        span(125).prop_map(|(addr, qty)| Request::ReadHoldingRegisters { addr, qty }),
        span(125).prop_map(|(addr, qty)| Request::ReadInputRegisters { addr, qty }),
        (any::<u16>(), any::<bool>())
            .prop_map(|(addr, value)| Request::WriteSingleCoil { addr, value }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(addr, value)| Request::WriteSingleRegister { addr, value }),
        span(1968).prop_flat_map(|(addr, qty)| {
            prop::collection::vec(any::<bool>(), usize::from(qty))
                .prop_map(move |values| Request::WriteMultipleCoils { addr, values })
        }),
        span(123).prop_flat_map(|(addr, qty)| {
            prop::collection::vec(any::<u16>(), usize::from(qty))
                .prop_map(move |values| Request::WriteMultipleRegisters { addr, values })
        }),
        (span(125), span(121)).prop_flat_map(|((read_addr, read_qty), (write_addr, write_qty))| {
            prop::collection::vec(any::<u16>(), usize::from(write_qty)).prop_map(move |values| {
                Request::ReadWriteMultipleRegisters {
                    read_addr,
                    read_qty,
                    write_addr,
                    values,
                }
            })
        }),
    ]
}

fn as_tokio_modbus(r: &Request) -> tokio_modbus::Request<'static> {
    use tokio_modbus::Request as T;
    match r.clone() {
        Request::ReadCoils { addr, qty } => T::ReadCoils(addr, qty),
        Request::ReadDiscreteInputs { addr, qty } => T::ReadDiscreteInputs(addr, qty),
        Request::ReadHoldingRegisters { addr, qty } => T::ReadHoldingRegisters(addr, qty),
        Request::ReadInputRegisters { addr, qty } => T::ReadInputRegisters(addr, qty),
        Request::WriteSingleCoil { addr, value } => T::WriteSingleCoil(addr, value),
        Request::WriteSingleRegister { addr, value } => T::WriteSingleRegister(addr, value),
        Request::WriteMultipleCoils { addr, values } => {
            T::WriteMultipleCoils(addr, Cow::Owned(values))
        }
        Request::WriteMultipleRegisters { addr, values } => {
            T::WriteMultipleRegisters(addr, Cow::Owned(values))
        }
        Request::ReadWriteMultipleRegisters {
            read_addr,
            read_qty,
            write_addr,
            values,
        } => T::ReadWriteMultipleRegisters(read_addr, read_qty, write_addr, Cow::Owned(values)),
    }
}

/// Data a server would answer with, derived from the address so it is checkable.
fn regs(addr: u16, qty: u16) -> Vec<u16> {
    (0..qty)
        .map(|i| addr.wrapping_mul(31).wrapping_add(i.wrapping_mul(7)))
        .collect()
}
fn bits(addr: u16, qty: u16) -> Vec<bool> {
    (0..qty)
        .map(|i| (u32::from(addr) + u32::from(i)) % 3 == 0)
        .collect()
}

/// Our response to `r`, and what the tokio-modbus client should make of it.
fn respond(tid: u16, unit: u8, function: u8, r: &Request, out: &mut BytesMut) -> Response {
    match r {
        Request::ReadCoils { addr, qty } | Request::ReadDiscreteInputs { addr, qty } => {
            let b = bits(*addr, *qty);
            encode_read_bits(tid, unit, function, &b, out);
            if function == 1 {
                Response::ReadCoils(b)
            } else {
                Response::ReadDiscreteInputs(b)
            }
        }
        Request::ReadHoldingRegisters { addr, qty } | Request::ReadInputRegisters { addr, qty } => {
            let w = regs(*addr, *qty);
            encode_read_registers(tid, unit, function, &w, out);
            if function == 3 {
                Response::ReadHoldingRegisters(w)
            } else {
                Response::ReadInputRegisters(w)
            }
        }
        Request::WriteSingleCoil { addr, value } => {
            encode_write_echo(
                tid,
                unit,
                function,
                *addr,
                if *value { 0xFF00 } else { 0 },
                out,
            );
            Response::WriteSingleCoil(*addr, *value)
        }
        Request::WriteSingleRegister { addr, value } => {
            encode_write_echo(tid, unit, function, *addr, *value, out);
            Response::WriteSingleRegister(*addr, *value)
        }
        Request::WriteMultipleCoils { addr, values } => {
            encode_write_echo(tid, unit, function, *addr, values.len() as u16, out);
            Response::WriteMultipleCoils(*addr, values.len() as u16)
        }
        Request::WriteMultipleRegisters { addr, values } => {
            encode_write_echo(tid, unit, function, *addr, values.len() as u16, out);
            Response::WriteMultipleRegisters(*addr, values.len() as u16)
        }
        Request::ReadWriteMultipleRegisters {
            read_addr,
            read_qty,
            ..
        } => {
            let w = regs(*read_addr, *read_qty);
            encode_read_registers(tid, unit, function, &w, out);
            Response::ReadWriteMultipleRegisters(w)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `req` from a tokio-modbus client through an in-memory pipe; returns what our
/// parser made of it and what the client made of our answer (`exception`: answer with it).
fn exchange(
    req: &Request,
    unit: u8,
    exception: Option<ExceptionCode>,
) -> (Request, u8, Response, tokio_modbus::Result<Response>) {
    runtime().block_on(async {
        let (client_io, mut server_io) = tokio::io::duplex(1024);
        let mut ctx = tokio_modbus::client::tcp::attach_slave(client_io, Slave(unit));
        let sent = as_tokio_modbus(req);
        let client = tokio::spawn(async move { ctx.call(sent).await });
        let mut input = BytesMut::new();
        let (frame, used) = loop {
            if let Some(x) = decode_request(&input).expect("framing") {
                break x;
            }
            assert!(
                server_io.read_buf(&mut input).await.unwrap() > 0,
                "client closed"
            );
        };
        assert_eq!(used, input.len(), "one request, nothing left over");
        let parsed = frame.request.clone().expect("a valid request");
        let mut out = BytesMut::new();
        let expected = match exception {
            Some(code) => {
                encode_exception(
                    frame.transaction_id,
                    frame.unit_id,
                    frame.function,
                    code,
                    &mut out,
                );
                Response::Custom(0, Default::default())
            }
            None => respond(
                frame.transaction_id,
                frame.unit_id,
                frame.function,
                &parsed,
                &mut out,
            ),
        };
        server_io.write_all(&out).await.unwrap();
        let got = client.await.unwrap();
        (parsed, frame.unit_id, expected, got)
    })
}

fn truncate_bits(r: Response, req: &Request) -> Response {
    // The client returns whole bytes of bits; the master API truncates to the quantity.
    match (r, req) {
        (Response::ReadCoils(mut b), Request::ReadCoils { qty, .. }) => {
            b.truncate(usize::from(*qty));
            Response::ReadCoils(b)
        }
        (Response::ReadDiscreteInputs(mut b), Request::ReadDiscreteInputs { qty, .. }) => {
            b.truncate(usize::from(*qty));
            Response::ReadDiscreteInputs(b)
        }
        (r, _) => r,
    }
}

proptest! {
    #[test]
    fn agrees_with_the_tokio_modbus_client(req in request(), unit in any::<u8>()) {
        let (parsed, got_unit, expected, got) = exchange(&req, unit, None);
        prop_assert_eq!(&parsed, &req);
        prop_assert_eq!(got_unit, unit);
        let got = got.expect("transport").expect("not an exception");
        prop_assert_eq!(truncate_bits(got, &req), expected);
    }

    #[test]
    fn exceptions_reach_the_client(req in request(), code in prop_oneof![
        Just(ExceptionCode::IllegalFunction), Just(ExceptionCode::IllegalDataAddress),
        Just(ExceptionCode::IllegalDataValue), Just(ExceptionCode::ServerDeviceFailure),
        Just(ExceptionCode::GatewayTargetFailedToRespond),
    ]) {
        let (_, _, _, got) = exchange(&req, 1, Some(code));
        let e = got.expect("transport").expect_err("an exception");
        prop_assert_eq!(u8::from(e), code as u8);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        // Walk the buffer as the listener does: parse, advance, repeat until incomplete
        // or a framing error.
        let mut rest = &bytes[..];
        while let Ok(Some((frame, used))) = decode_request(rest) {
            prop_assert!((8..=260).contains(&used) && used <= rest.len());
            if let Ok(r) = &frame.request {
                // Whatever parsed satisfies the limits the service relies on.
                let within = |a: u16, q: u16, max: u16| (1..=max).contains(&q) && u32::from(a) + u32::from(q) <= 0x1_0000;
                let ok = match r {
                    Request::ReadCoils { addr, qty } | Request::ReadDiscreteInputs { addr, qty } => within(*addr, *qty, 2000),
                    Request::ReadHoldingRegisters { addr, qty } | Request::ReadInputRegisters { addr, qty } => within(*addr, *qty, 125),
                    Request::WriteMultipleCoils { addr, values } => within(*addr, values.len() as u16, 1968),
                    Request::WriteMultipleRegisters { addr, values } => within(*addr, values.len() as u16, 123),
                    Request::ReadWriteMultipleRegisters { read_addr, read_qty, write_addr, values } =>
                        within(*read_addr, *read_qty, 125) && within(*write_addr, values.len() as u16, 121),
                    Request::WriteSingleCoil { .. } | Request::WriteSingleRegister { .. } => true,
                };
                prop_assert!(ok, "{r:?}");
            }
            rest = &rest[used..];
        }
    }

    #[test]
    fn valid_headers_with_random_pdus_never_panic(tid in any::<u16>(), unit in any::<u8>(),
                                                  pdu in prop::collection::vec(any::<u8>(), 1..=253)) {
        let mut bytes = tid.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
        bytes.push(unit);
        bytes.extend_from_slice(&pdu);
        let (frame, used) = decode_request(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(frame.transaction_id, tid);
        // Every prefix is "incomplete", never an error or a different frame.
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode_request(&bytes[..cut]), Ok(None));
        }
    }

    #[test]
    fn pdus_too_short_for_their_function_are_exception_03(
        (function, body) in prop_oneof![
            Just(1u8), Just(2), Just(3), Just(4), Just(5), Just(6), Just(0x0F), Just(0x10), Just(0x17),
        ].prop_flat_map(|f| {
            // The fixed part of each request: address and quantity or value (4 bytes),
            // plus a byte count for FC15/FC16 (5), or two ranges and a count for FC23 (9).
            let fixed = match f { 0x0F | 0x10 => 5, 0x17 => 9, _ => 4 };
            (Just(f), prop::collection::vec(any::<u8>(), 0..fixed))
        }),
        tid in any::<u16>(),
    ) {
        let mut bytes = tid.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        bytes.extend_from_slice(&[1, function]);
        bytes.extend_from_slice(&body);
        let (frame, used) = decode_request(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(frame.function, function);
        prop_assert_eq!(frame.request, Err(ExceptionCode::IllegalDataValue));
    }

    #[test]
    fn an_exception_response_is_the_function_with_its_high_bit_set(
        tid in any::<u16>(), unit in any::<u8>(), function in any::<u8>(),
        code in prop_oneof![
            Just(ExceptionCode::IllegalFunction), Just(ExceptionCode::IllegalDataAddress),
            Just(ExceptionCode::IllegalDataValue), Just(ExceptionCode::ServerDeviceFailure),
            Just(ExceptionCode::GatewayTargetFailedToRespond),
        ],
    ) {
        // Even for a (reserved) function code that already has it: a master must never
        // mistake an exception for a normal response.
        let mut out = BytesMut::new();
        encode_exception(tid, unit, function, code, &mut out);
        let [t0, t1] = tid.to_be_bytes();
        prop_assert_eq!(&out[..], &[t0, t1, 0, 0, 0, 3, unit, function | 0x80, code as u8][..]);
    }

    #[test]
    fn responses_are_framed_byte_for_byte(
        tid in any::<u16>(), unit in any::<u8>(),
        regs in prop::collection::vec(any::<u16>(), 0..=125),
        (addr, value) in (any::<u16>(), any::<u16>()),
    ) {
        // Read registers: MBAP (length = unit + function + count + data), byte count, data.
        let mut out = BytesMut::new();
        encode_read_registers(tid, unit, 3, &regs, &mut out);
        let mut want = tid.to_be_bytes().to_vec();
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&(3 + 2 * regs.len() as u16).to_be_bytes());
        want.extend_from_slice(&[unit, 3, 2 * regs.len() as u8]);
        want.extend(regs.iter().flat_map(|r| r.to_be_bytes()));
        prop_assert_eq!(&out[..], &want[..]);
        // A write echo: address and value (or quantity).
        let mut out = BytesMut::new();
        encode_write_echo(tid, unit, 6, addr, value, &mut out);
        let mut want = tid.to_be_bytes().to_vec();
        want.extend_from_slice(&[0, 0, 0, 6, unit, 6]);
        want.extend_from_slice(&addr.to_be_bytes());
        want.extend_from_slice(&value.to_be_bytes());
        prop_assert_eq!(&out[..], &want[..]);
    }
}
