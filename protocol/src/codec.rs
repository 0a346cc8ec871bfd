//! Length-delimited postcard framing, as a `tokio_util` codec.
//!
//! Wire format: a big-endian `u32` payload length, then the payload, the postcard
//! encoding of the frame. The decoder never trusts the length: anything above the
//! configured limit (16 MiB by default) is an error before a byte is buffered for it,
//! so a hostile peer cannot make us allocate.

use crate::frame::Frame;
use crate::model::TagValue;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder};

/// Largest payload either side accepts: 16 MiB (a snapshot of ~500 000 tags fits).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

const HEADER_LEN: usize = 4;

/// Why a byte stream could not be turned into frames (or frames into bytes).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { len: usize, max: usize },
    #[error("malformed {len}-byte frame: {source}")]
    Malformed {
        len: usize,
        #[source]
        source: postcard::Error,
    },
    #[error("malformed {len}-byte frame: {trailing} bytes after the end of the frame")]
    TrailingBytes { len: usize, trailing: usize },
    #[error("could not encode frame: {0}")]
    Encode(#[source] postcard::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// True when the peer sent bytes that are not a valid frame (as opposed to a
    /// transport failure); the session answers those with an `Error` frame.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            CodecError::FrameTooLarge { .. }
                | CodecError::Malformed { .. }
                | CodecError::TrailingBytes { .. }
        )
    }
}

/// Codec for any postcard-serialisable frame type: [`Frame`] on client sessions, the
/// simulator's own sync-link frames on the sync link.
#[derive(Debug)]
pub struct FrameCodec<T = Frame> {
    max_len: usize,
    _frame: PhantomData<fn() -> T>,
}

impl<T> Default for FrameCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for FrameCodec<T> {
    fn clone(&self) -> Self {
        Self::with_max_len(self.max_len)
    }
}

impl<T> FrameCodec<T> {
    pub fn new() -> Self {
        Self::with_max_len(MAX_FRAME_LEN)
    }

    /// A codec with a lower frame limit (never above [`MAX_FRAME_LEN`]).
    pub fn with_max_len(max_len: usize) -> Self {
        FrameCodec {
            max_len: max_len.min(MAX_FRAME_LEN),
            _frame: PhantomData,
        }
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl<T: DeserializeOwned> Decoder for FrameCodec<T> {
    type Item = T;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, CodecError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_len {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_len,
            });
        }
        if src.len() < HEADER_LEN + len {
            // Bounded by max_len, checked above.
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        let payload = &src[HEADER_LEN..HEADER_LEN + len];
        let frame = match postcard::take_from_bytes::<T>(payload) {
            // A frame whose length disagrees with its content is malformed too.
            Ok((frame, [])) => frame,
            Ok((_, rest)) => {
                return Err(CodecError::TrailingBytes {
                    len,
                    trailing: rest.len(),
                });
            }
            Err(source) => return Err(CodecError::Malformed { len, source }),
        };
        src.advance(HEADER_LEN + len);
        Ok(Some(frame))
    }
}

impl<T: Serialize> Encoder<&T> for FrameCodec<T> {
    type Error = CodecError;

    fn encode(&mut self, item: &T, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_into(item, dst, self.max_len)
    }
}

impl<T: Serialize> Encoder<T> for FrameCodec<T> {
    type Error = CodecError;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_into(&item, dst, self.max_len)
    }
}

/// Appends one length-prefixed frame to `dst`. Writers batch several frames into one
/// buffer and one syscall, which is why this takes the buffer rather than a sink.
pub fn encode_into<T: Serialize + ?Sized>(
    item: &T,
    dst: &mut BytesMut,
    max_len: usize,
) -> Result<(), CodecError> {
    let start = dst.len();
    dst.put_u32(0);
    if let Err(e) = postcard::serialize_with_flavor(item, BytesMutFlavor(dst)) {
        dst.truncate(start);
        return Err(CodecError::Encode(e));
    }
    let len = dst.len() - start - HEADER_LEN;
    if len > max_len {
        dst.truncate(start);
        return Err(CodecError::FrameTooLarge { len, max: max_len });
    }
    dst[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// postcard output flavour that appends straight into a `BytesMut`.
struct BytesMutFlavor<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.put_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// An `Updates` batch encoded once and sent to many sessions.
///
/// A server publishing one batch per tick to N subscribers would otherwise encode the
/// same values N times; only the per-session `seq` differs, and it precedes the batch
/// on the wire. The bytes produced by [`SharedBatch::encode_frame`] are identical to
/// encoding `Frame::Updates { seq, batch }` (a property test checks this).
#[derive(Debug, Clone)]
pub struct SharedBatch {
    body: Bytes,
    len: usize,
}

impl SharedBatch {
    pub fn new(batch: &[TagValue]) -> Result<SharedBatch, CodecError> {
        let mut buf = BytesMut::with_capacity(16 + batch.len() * 20);
        postcard::serialize_with_flavor(batch, BytesMutFlavor(&mut buf))
            .map_err(CodecError::Encode)?;
        Ok(SharedBatch {
            body: buf.freeze(),
            len: batch.len(),
        })
    }

    /// Number of tag values in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `Frame::Updates { seq, batch }` to `dst`.
    pub fn encode_frame(&self, seq: u64, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut seq_buf = [0u8; 10];
        let seq_bytes = encode_varint(seq, &mut seq_buf);
        let len = 1 + seq_bytes.len() + self.body.len();
        if len > MAX_FRAME_LEN {
            return Err(CodecError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        dst.reserve(HEADER_LEN + len);
        dst.put_u32(len as u32);
        dst.put_u8(Frame::UPDATES_VARIANT);
        dst.put_slice(seq_bytes);
        dst.put_slice(&self.body);
        Ok(())
    }
}

fn encode_varint(mut v: u64, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[i] = byte;
            return &buf[..=i];
        }
        buf[i] = byte | 0x80;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_matches_postcard() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = [0u8; 10];
            assert_eq!(encode_varint(v, &mut buf), postcard::to_stdvec(&v).unwrap());
        }
    }
}
