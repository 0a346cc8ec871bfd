//! MBAP framing and PDU parsing for the requests a Smart Connector serves.
//!
//! Two kinds of bad input are told apart, as the Modbus spec does:
//! - a broken **frame** (protocol id not 0, MBAP length outside 2..=254): the byte stream
//!   can no longer be trusted, so the connection is closed ([`FrameError`]);
//! - a well-framed but invalid **request** (unknown function, quantity out of range, byte
//!   count not matching the quantity, wrong PDU length): answered with an exception
//!   (`RequestFrame::request` is `Err`), and the connection carries on.

use bytes::{BufMut, BytesMut};

/// Most registers one FC3/FC4 (or FC23 read) may ask for.
pub const MAX_READ_REGISTERS: u16 = 125;
/// Most coils/discrete inputs one FC1/FC2 may ask for.
pub const MAX_READ_BITS: u16 = 2000;
/// Most registers one FC16 may write.
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// Most registers FC23 may write.
pub const MAX_RW_WRITE_REGISTERS: u16 = 121;
/// Most coils one FC15 may write.
pub const MAX_WRITE_BITS: u16 = 1968;

const MBAP_LEN: usize = 7;
/// Unit id + function code.
const MIN_LENGTH: u16 = 2;
/// Unit id + the 253-byte maximum PDU.
const MAX_LENGTH: u16 = 254;

/// The Modbus exception codes a Smart Connector answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExceptionCode {
    /// 01: function not supported, or any write in read-only mode.
    IllegalFunction = 0x01,
    /// 02: an address outside the map, or not a writable tag.
    IllegalDataAddress = 0x02,
    /// 03: a quantity out of range, a malformed PDU, a value the tag cannot take.
    IllegalDataValue = 0x03,
    /// 04: the server refused the write.
    ServerDeviceFailure = 0x04,
    /// 0B: no answer from the Primary in time, or a unit id we do not serve.
    GatewayTargetFailedToRespond = 0x0B,
}

/// A framing error: the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("MBAP protocol id is {0}, not 0 (not Modbus TCP)")]
    ProtocolId(u16),
    #[error("MBAP length {0} outside {MIN_LENGTH}..={MAX_LENGTH}")]
    Length(u16),
}

/// One parsed request. Validation has already happened: quantities are in range, and
/// `addr + qty` does not pass 65536.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ReadCoils {
        addr: u16,
        qty: u16,
    },
    ReadDiscreteInputs {
        addr: u16,
        qty: u16,
    },
    ReadHoldingRegisters {
        addr: u16,
        qty: u16,
    },
    ReadInputRegisters {
        addr: u16,
        qty: u16,
    },
    WriteSingleCoil {
        addr: u16,
        value: bool,
    },
    WriteSingleRegister {
        addr: u16,
        value: u16,
    },
    WriteMultipleCoils {
        addr: u16,
        values: Vec<bool>,
    },
    WriteMultipleRegisters {
        addr: u16,
        values: Vec<u16>,
    },
    ReadWriteMultipleRegisters {
        read_addr: u16,
        read_qty: u16,
        write_addr: u16,
        values: Vec<u16>,
    },
}

impl Request {
    /// Whether the request writes anything (FC5, 6, 15, 16, 23).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Request::ReadCoils { .. }
                | Request::ReadDiscreteInputs { .. }
                | Request::ReadHoldingRegisters { .. }
                | Request::ReadInputRegisters { .. }
        )
    }
}

/// A request as framed: the header fields needed to answer, and either the request or the
/// exception to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    pub transaction_id: u16,
    pub unit_id: u8,
    pub function: u8,
    pub request: Result<Request, ExceptionCode>,
}

fn be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses one request from the front of `buf`.
///
/// `Ok(None)`: not complete yet (read more). `Ok(Some((frame, used)))`: `used` bytes form
/// one request. `Err`: close the connection. Never panics, whatever the bytes; the header
/// is checked as soon as its six bytes are there, so a hostile length is refused without
/// waiting for (or buffering) a body.
pub fn decode_request(buf: &[u8]) -> Result<Option<(RequestFrame, usize)>, FrameError> {
    if buf.len() < 6 {
        return Ok(None);
    }
    let protocol = be(buf, 2);
    if protocol != 0 {
        return Err(FrameError::ProtocolId(protocol));
    }
    let length = be(buf, 4);
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return Err(FrameError::Length(length));
    }
    let total = 6 + usize::from(length);
    if buf.len() < total {
        return Ok(None);
    }
    let transaction_id = be(buf, 0);
    let unit_id = buf[6];
    let function = buf[MBAP_LEN];
    let data = &buf[MBAP_LEN + 1..total];
    let frame = RequestFrame {
        transaction_id,
        unit_id,
        function,
        request: parse_pdu(function, data),
    };
    Ok(Some((frame, total)))
}

fn range_ok(addr: u16, qty: u16) -> Result<(), ExceptionCode> {
    if u32::from(addr) + u32::from(qty) > 0x1_0000 {
        Err(ExceptionCode::IllegalDataAddress)
    } else {
        Ok(())
    }
}

fn qty_ok(qty: u16, max: u16) -> Result<(), ExceptionCode> {
    if (1..=max).contains(&qty) {
        Ok(())
    } else {
        Err(ExceptionCode::IllegalDataValue)
    }
}

fn exact(data: &[u8], len: usize) -> Result<(), ExceptionCode> {
    if data.len() == len {
        Ok(())
    } else {
        Err(ExceptionCode::IllegalDataValue)
    }
}

/// Validation order follows the spec's server state diagrams: function code (01), then
/// quantity and structure (03), then address range (02).
fn parse_pdu(function: u8, d: &[u8]) -> Result<Request, ExceptionCode> {
    match function {
        0x01..=0x04 => {
            exact(d, 4)?;
            let (addr, qty) = (be(d, 0), be(d, 2));
            let max = if function <= 0x02 {
                MAX_READ_BITS
            } else {
                MAX_READ_REGISTERS
            };
            qty_ok(qty, max)?;
            range_ok(addr, qty)?;
            Ok(match function {
                0x01 => Request::ReadCoils { addr, qty },
                0x02 => Request::ReadDiscreteInputs { addr, qty },
                0x03 => Request::ReadHoldingRegisters { addr, qty },
                _ => Request::ReadInputRegisters { addr, qty },
            })
        }
        0x05 => {
            exact(d, 4)?;
            let value = match be(d, 2) {
                0xFF00 => true,
                0x0000 => false,
                _ => return Err(ExceptionCode::IllegalDataValue),
            };
            Ok(Request::WriteSingleCoil {
                addr: be(d, 0),
                value,
            })
        }
        0x06 => {
            exact(d, 4)?;
            Ok(Request::WriteSingleRegister {
                addr: be(d, 0),
                value: be(d, 2),
            })
        }
        0x0F => {
            if d.len() < 5 {
                return Err(ExceptionCode::IllegalDataValue);
            }
            let (addr, qty, count) = (be(d, 0), be(d, 2), usize::from(d[4]));
            qty_ok(qty, MAX_WRITE_BITS)?;
            if count != usize::from(qty).div_ceil(8) {
                return Err(ExceptionCode::IllegalDataValue);
            }
            exact(d, 5 + count)?;
            range_ok(addr, qty)?;
            let bytes = &d[5..];
            let values = (0..usize::from(qty))
                .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
                .collect();
            Ok(Request::WriteMultipleCoils { addr, values })
        }
        0x10 => {
            if d.len() < 5 {
                return Err(ExceptionCode::IllegalDataValue);
            }
            let (addr, qty, count) = (be(d, 0), be(d, 2), usize::from(d[4]));
            qty_ok(qty, MAX_WRITE_REGISTERS)?;
            if count != 2 * usize::from(qty) {
                return Err(ExceptionCode::IllegalDataValue);
            }
            exact(d, 5 + count)?;
            range_ok(addr, qty)?;
            let values = d[5..]
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Ok(Request::WriteMultipleRegisters { addr, values })
        }
        0x17 => {
            if d.len() < 9 {
                return Err(ExceptionCode::IllegalDataValue);
            }
            let (read_addr, read_qty) = (be(d, 0), be(d, 2));
            let (write_addr, write_qty, count) = (be(d, 4), be(d, 6), usize::from(d[8]));
            qty_ok(read_qty, MAX_READ_REGISTERS)?;
            qty_ok(write_qty, MAX_RW_WRITE_REGISTERS)?;
            if count != 2 * usize::from(write_qty) {
                return Err(ExceptionCode::IllegalDataValue);
            }
            exact(d, 9 + count)?;
            range_ok(read_addr, read_qty)?;
            range_ok(write_addr, write_qty)?;
            let values = d[9..]
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Ok(Request::ReadWriteMultipleRegisters {
                read_addr,
                read_qty,
                write_addr,
                values,
            })
        }
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

fn header(tid: u16, unit: u8, pdu_len: usize, dst: &mut BytesMut) {
    dst.reserve(MBAP_LEN + pdu_len);
    dst.put_u16(tid);
    dst.put_u16(0);
    dst.put_u16((pdu_len + 1) as u16);
    dst.put_u8(unit);
}

/// Appends an exception response (function | 0x80, code).
pub fn encode_exception(tid: u16, unit: u8, function: u8, code: ExceptionCode, dst: &mut BytesMut) {
    header(tid, unit, 2, dst);
    dst.put_u8(function | 0x80);
    dst.put_u8(code as u8);
}

/// Appends an FC3/FC4/FC23 response. `regs.len()` must be at most 125.
pub fn encode_read_registers(tid: u16, unit: u8, function: u8, regs: &[u16], dst: &mut BytesMut) {
    debug_assert!(regs.len() <= usize::from(MAX_READ_REGISTERS));
    let count = regs.len() * 2;
    header(tid, unit, 2 + count, dst);
    dst.put_u8(function);
    dst.put_u8(count as u8);
    // Big-endian words into a stack buffer, then one copy: `put_u16` per register
    // checked capacity and advanced the buffer 125 times per answer (~1 800 instructions of
    // the ~10 000 a request cost; scripts/modbus-cost.sh).
    let mut body = [0u8; 2 * MAX_READ_REGISTERS as usize];
    for (bytes, r) in body.chunks_exact_mut(2).zip(regs) {
        bytes.copy_from_slice(&r.to_be_bytes());
    }
    dst.extend_from_slice(&body[..count]);
}

/// Appends an FC1/FC2 response, bits packed LSB first. `bits.len()` must be at most 2000.
pub fn encode_read_bits(tid: u16, unit: u8, function: u8, bits: &[bool], dst: &mut BytesMut) {
    debug_assert!(bits.len() <= usize::from(MAX_READ_BITS));
    let count = bits.len().div_ceil(8);
    header(tid, unit, 2 + count, dst);
    dst.put_u8(function);
    dst.put_u8(count as u8);
    for chunk in bits.chunks(8) {
        let byte = chunk
            .iter()
            .enumerate()
            .fold(0u8, |b, (i, &on)| b | (u8::from(on) << i));
        dst.put_u8(byte);
    }
}

/// Appends an FC5/FC6 (address, value) or FC15/FC16 (address, quantity) response.
pub fn encode_write_echo(
    tid: u16,
    unit: u8,
    function: u8,
    addr: u16,
    value: u16,
    dst: &mut BytesMut,
) {
    header(tid, unit, 5, dst);
    dst.put_u8(function);
    dst.put_u16(addr);
    dst.put_u16(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&tid.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
        v.push(unit);
        v.extend_from_slice(pdu);
        v
    }

    fn req(pdu: &[u8]) -> Result<Request, ExceptionCode> {
        let bytes = frame(7, 1, pdu);
        let (f, used) = decode_request(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        f.request
    }

    #[test]
    fn reads_parse() {
        assert_eq!(
            req(&[3, 0, 100, 0, 125]),
            Ok(Request::ReadHoldingRegisters {
                addr: 100,
                qty: 125
            })
        );
        assert_eq!(
            req(&[1, 0, 0, 0x07, 0xD0]),
            Ok(Request::ReadCoils { addr: 0, qty: 2000 })
        );
    }

    #[test]
    fn quantities_out_of_range_are_exception_03() {
        assert_eq!(
            req(&[3, 0, 0, 0, 126]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(req(&[4, 0, 0, 0, 0]), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(
            req(&[1, 0, 0, 0x07, 0xD1]),
            Err(ExceptionCode::IllegalDataValue)
        );
        // The tokio-modbus 0.17 debug panic: FC16 with quantity 0x8000.
        assert_eq!(
            req(&[0x10, 0, 0, 0x80, 0, 0]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            req(&[0x17, 0, 0, 0, 1, 0, 0, 0x80, 0, 0]),
            Err(ExceptionCode::IllegalDataValue)
        );
    }

    #[test]
    fn byte_count_must_match_quantity() {
        assert_eq!(
            req(&[0x10, 0, 0, 0, 2, 2, 0, 1]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            req(&[0x10, 0, 0, 0, 1, 2, 0, 1]),
            Ok(Request::WriteMultipleRegisters {
                addr: 0,
                values: vec![1]
            })
        );
        assert_eq!(
            req(&[0x0F, 0, 0, 0, 9, 1, 0xFF]),
            Err(ExceptionCode::IllegalDataValue)
        );
    }

    #[test]
    fn ranges_past_65535_are_exception_02() {
        assert_eq!(
            req(&[3, 0xFF, 0xFF, 0, 2]),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            req(&[3, 0xFF, 0xFF, 0, 1]),
            Ok(Request::ReadHoldingRegisters {
                addr: 0xFFFF,
                qty: 1
            })
        );
    }

    #[test]
    fn unknown_functions_and_bad_coil_values() {
        assert_eq!(
            req(&[0x2B, 0x0E, 1, 0]),
            Err(ExceptionCode::IllegalFunction)
        );
        assert_eq!(
            req(&[5, 0, 1, 0x12, 0x34]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            req(&[5, 0, 1, 0xFF, 0]),
            Ok(Request::WriteSingleCoil {
                addr: 1,
                value: true
            })
        );
    }

    #[test]
    fn broken_headers_close_the_connection() {
        let mut bad = frame(1, 1, &[3, 0, 0, 0, 1]);
        bad[3] = 1;
        assert_eq!(decode_request(&bad), Err(FrameError::ProtocolId(1)));
        // A hostile length is refused from the header alone.
        assert_eq!(
            decode_request(&[0, 1, 0, 0, 0xFF, 0xFF]),
            Err(FrameError::Length(0xFFFF))
        );
        assert_eq!(
            decode_request(&[0, 1, 0, 0, 0, 1]),
            Err(FrameError::Length(1))
        );
        assert_eq!(decode_request(&[0, 1, 0, 0, 0, 6, 1]), Ok(None));
    }

    #[test]
    fn bits_pack_lsb_first() {
        let mut out = BytesMut::new();
        encode_read_bits(
            9,
            1,
            1,
            &[true, false, true, false, false, false, false, false, true],
            &mut out,
        );
        assert_eq!(&out[..], &[0, 9, 0, 0, 0, 5, 1, 1, 2, 0b101, 1]);
    }
}
