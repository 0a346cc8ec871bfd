//! The client-access frame codec on arbitrary bytes: never panics, never asks for more than
//! its frame limit, and every frame it decodes encodes back to a frame that decodes equal.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use po_protocol::{Frame, FrameCodec};
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::<Frame>::new();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let mut out = BytesMut::new();
        codec
            .encode(frame.clone(), &mut out)
            .expect("a decoded frame encodes");
        let again = codec.decode(&mut out).expect("decodes").expect("whole");
        assert_eq!(format!("{again:?}"), format!("{frame:?}"));
    }
});
