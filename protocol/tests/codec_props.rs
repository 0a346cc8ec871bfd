//! Property tests of the codec: every frame round-trips, hostile bytes never panic or
//! make the decoder buffer beyond the limit.

use bytes::BytesMut;
use po_protocol::codec::encode_into;
use po_protocol::*;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>().prop_map(Value::Analog),
        any::<bool>().prop_map(Value::Digital),
        any::<u64>().prop_map(Value::Counter),
    ]
}

fn quality() -> impl Strategy<Value = Quality> {
    prop_oneof![
        Just(Quality::Good),
        Just(Quality::Uncertain),
        Just(Quality::Bad),
        Just(Quality::Stale)
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Primary), Just(Role::Standby)]
}

fn tag_info() -> impl Strategy<Value = TagInfo> {
    (any::<u32>(), ".{0,30}", ".{0,4}", kind(), any::<bool>()).prop_map(
        |(id, name, unit, kind, writable)| TagInfo {
            id: TagId(id),
            name,
            unit,
            kind,
            writable,
        },
    )
}

fn tag_value() -> impl Strategy<Value = TagValue> {
    (any::<u32>(), value(), quality(), any::<u64>()).prop_map(|(t, value, quality, ts)| TagValue {
        tag: TagId(t),
        value,
        quality,
        sampled_at: Timestamp(ts),
    })
}

fn kind() -> impl Strategy<Value = TagKind> {
    prop_oneof![
        Just(TagKind::Analog),
        Just(TagKind::Digital),
        Just(TagKind::Counter)
    ]
}

fn outcome() -> impl Strategy<Value = WriteOutcome> {
    prop_oneof![
        Just(WriteOutcome::Applied),
        Just(WriteOutcome::NotPrimary),
        Just(WriteOutcome::UnknownTag),
        Just(WriteOutcome::ReadOnly),
        Just(WriteOutcome::TypeMismatch),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Malformed),
        Just(ErrorCode::UnsupportedVersion),
        Just(ErrorCode::UnexpectedFrame),
        Just(ErrorCode::LocalAccessDenied),
        Just(ErrorCode::LicenceMissing),
        Just(ErrorCode::LicenceInUse),
        Just(ErrorCode::SlowConsumer),
        Just(ErrorCode::ShuttingDown),
        Just(ErrorCode::UnknownTag),
        Just(ErrorCode::LicenceIdentityMismatch),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u16>(),
            ".{0,20}",
            prop_oneof![
                Just(Access::Local),
                ".{0,12}".prop_map(|licence| Access::ClientAccess { licence })
            ]
        )
            .prop_map(|(version, client_name, access)| Frame::Hello {
                version,
                client_name,
                access
            }),
        Just(Frame::Browse),
        prop_oneof![
            Just(TagSelection::All),
            prop::collection::vec(any::<u32>().prop_map(TagId), 0..20).prop_map(TagSelection::List)
        ]
        .prop_map(|tags| Frame::Subscribe { tags }),
        (any::<u64>(), any::<u32>(), value()).prop_map(|(request_id, t, value)| Frame::Write {
            request_id,
            tag: TagId(t),
            value
        }),
        Just(Frame::Ping),
        (".{0,20}", role(), any::<u64>()).prop_map(|(server_name, role, epoch)| Frame::Welcome {
            server_name,
            role,
            epoch
        }),
        prop::collection::vec(tag_info(), 0..20).prop_map(|tags| Frame::Catalog { tags }),
        prop::collection::vec(tag_info(), 0..20).prop_map(|tags| Frame::CatalogPart { tags }),
        (any::<u64>(), prop::collection::vec(tag_value(), 0..50))
            .prop_map(|(seq, values)| Frame::Snapshot { seq, values }),
        (
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
            prop::collection::vec(tag_value(), 0..50)
        )
            .prop_map(|(seq, part, last, values)| Frame::SnapshotPart {
                seq,
                part,
                last,
                values
            }),
        (any::<u64>(), prop::collection::vec(tag_value(), 0..50))
            .prop_map(|(seq, batch)| Frame::Updates { seq, batch }),
        (role(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(role, epoch, seq, t)| {
            Frame::Heartbeat {
                role,
                epoch,
                seq,
                sent_at: Timestamp(t),
            }
        }),
        (any::<u64>(), outcome()).prop_map(|(request_id, outcome)| Frame::WriteResult {
            request_id,
            outcome
        }),
        (error_code(), ".{0,40}").prop_map(|(code, message)| Frame::Error { code, message }),
        Just(Frame::Unsubscribe),
    ]
}

/// NaN != NaN, so compare analog values bitwise.
fn same(a: &Frame, b: &Frame) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

proptest! {
    #[test]
    fn every_frame_round_trips(frames in prop::collection::vec(frame(), 1..8)) {
        let mut codec = FrameCodec::<Frame>::new();
        let mut buf = BytesMut::new();
        for f in &frames {
            codec.encode(f, &mut buf).unwrap();
        }
        for f in &frames {
            let decoded = codec.decode(&mut buf).unwrap().expect("a whole frame");
            prop_assert!(same(f, &decoded), "{f:?} != {decoded:?}");
        }
        prop_assert!(buf.is_empty());
        prop_assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn frames_split_anywhere_still_decode(f in frame(), split in any::<prop::sample::Index>()) {
        let mut codec = FrameCodec::<Frame>::new();
        let mut whole = BytesMut::new();
        codec.encode(&f, &mut whole).unwrap();
        let at = split.index(whole.len());
        let mut buf = BytesMut::from(&whole[..at]);
        prop_assert!(codec.decode(&mut buf).unwrap().is_none(), "a truncated frame is incomplete, not an error");
        buf.extend_from_slice(&whole[at..]);
        let decoded = codec.decode(&mut buf).unwrap().unwrap();
        prop_assert!(same(&f, &decoded));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut codec = FrameCodec::<Frame>::new();
        let mut buf = BytesMut::from(&bytes[..]);
        // Decode until error or need-more; either is fine, a panic is not.
        for _ in 0..64 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        prop_assert!(buf.capacity() <= bytes.len().max(64) + MAX_FRAME_LEN + 4);
    }

    #[test]
    fn garbage_payload_with_valid_length_is_an_error_not_a_panic(
        payload in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        let mut codec = FrameCodec::<Frame>::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        match codec.decode(&mut buf) {
            Ok(Some(f)) => {
                // Then the payload really was a frame: it survives a round trip.
                let mut again = BytesMut::new();
                codec.encode(&f, &mut again).unwrap();
                let back = codec.decode(&mut again).unwrap().unwrap();
                prop_assert!(same(&f, &back));
            }
            Ok(None) => prop_assert!(false, "a complete frame must decode or fail"),
            Err(e) => prop_assert!(e.is_protocol_violation()),
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_buffering(len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX) {
        let mut codec = FrameCodec::<Frame>::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&[0u8; 16]);
        let before = buf.capacity();
        let err = codec.decode(&mut buf).unwrap_err();
        let is_too_large = matches!(err, CodecError::FrameTooLarge { .. });
        prop_assert!(is_too_large);
        prop_assert_eq!(buf.capacity(), before);
    }

    #[test]
    fn shared_batch_encodes_exactly_like_updates(seq in any::<u64>(), batch in prop::collection::vec(tag_value(), 0..50)) {
        let shared = SharedBatch::new(&batch).unwrap();
        prop_assert_eq!(shared.len(), batch.len());
        let mut a = BytesMut::new();
        shared.encode_frame(seq, &mut a).unwrap();
        let mut b = BytesMut::new();
        encode_into(&Frame::Updates { seq, batch }, &mut b, MAX_FRAME_LEN).unwrap();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn lower_limit_is_enforced_on_both_sides() {
    let mut codec = FrameCodec::<Frame>::with_max_len(64);
    let big = Frame::Error {
        code: ErrorCode::Malformed,
        message: "x".repeat(100),
    };
    let mut buf = BytesMut::new();
    assert!(matches!(
        codec.encode(&big, &mut buf),
        Err(CodecError::FrameTooLarge { max: 64, .. })
    ));
    assert!(buf.is_empty(), "a refused frame leaves nothing behind");
    let mut codec_big = FrameCodec::<Frame>::new();
    codec_big.encode(&big, &mut buf).unwrap();
    assert!(matches!(
        codec.decode(&mut buf),
        Err(CodecError::FrameTooLarge { max: 64, .. })
    ));
}

#[test]
fn trailing_bytes_inside_a_frame_are_malformed() {
    let mut buf = BytesMut::new();
    encode_into(&Frame::Ping, &mut buf, MAX_FRAME_LEN).unwrap();
    // Lengthen the frame by one byte of junk.
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) + 1;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&[0]);
    let err = FrameCodec::<Frame>::new().decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, CodecError::TrailingBytes { trailing: 1, .. }),
        "{err}"
    );
}
