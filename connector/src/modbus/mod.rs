//! Our own Modbus TCP framing (MBAP + PDU), in front of everything else.
//!
//! tokio-modbus 0.17's server keeps its framing private, has no connection limit and
//! panics in debug builds on FC16/FC23 quantities ≥ 0x8000 (docs/design.md §9). Owning this small,
//! sans-IO layer lets us validate lengths and quantities before any other code sees a
//! request, and answer many pipelined requests with one write.

mod frame;

pub use frame::{
    ExceptionCode, FrameError, MAX_READ_BITS, MAX_READ_REGISTERS, MAX_RW_WRITE_REGISTERS,
    MAX_WRITE_BITS, MAX_WRITE_REGISTERS, Request, RequestFrame, decode_request, encode_exception,
    encode_read_bits, encode_read_registers, encode_write_echo,
};
