//! How a tag value becomes Modbus registers and back (docs/register-map.md).
//!
//! Kept free of any map or image so the encoding can be property-tested on its own and
//! reused by the harness, which must decode exactly what a third-party master sees.

use po_protocol::{TagKind, Value};
use serde::{Deserialize, Serialize};

/// Registers 0..32 are the status block (docs/design.md §6); mapped tags start above it.
pub const STATUS_REGISTERS: u16 = 32;

/// Order of the two 16-bit words of a 32-bit value. Bytes inside a word are always
/// big-endian (Modbus); only the word order differs between masters, so it is the one
/// knob an integration engineer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    /// High word in the lower address ("ABCD"); the default.
    #[default]
    Big,
    /// Low word in the lower address ("CDAB").
    Little,
}

/// Why a register write cannot become a tag value (Modbus exception 03).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegisterError {
    #[error("a {kind:?} value needs {expected} register(s), got {got}")]
    WrongLength {
        kind: TagKind,
        expected: usize,
        got: usize,
    },
    #[error("a digital value must be 0 or 1, got {0}")]
    NotABit(u16),
    #[error("an analog setpoint must be a finite number, got {0}")]
    NotFinite(f32),
}

/// Registers one value of `kind` occupies.
pub const fn register_count(kind: TagKind) -> u16 {
    match kind {
        TagKind::Analog | TagKind::Counter => 2,
        TagKind::Digital => 1,
    }
}

fn split(x: u32, order: WordOrder) -> [u16; 2] {
    let (hi, lo) = ((x >> 16) as u16, x as u16);
    match order {
        WordOrder::Big => [hi, lo],
        WordOrder::Little => [lo, hi],
    }
}

fn join(w: &[u16], order: WordOrder) -> u32 {
    let (hi, lo) = match order {
        WordOrder::Big => (w[0], w[1]),
        WordOrder::Little => (w[1], w[0]),
    };
    (u32::from(hi) << 16) | u32::from(lo)
}

/// Encodes a value; returns the words and how many of them are used (1 or 2).
///
/// Analog: the `f64` rounded to the nearest `f32`. Counter: the low 32 bits (a third
/// party sees the counter wrap at 2^32, as energy meters' 32-bit registers do).
pub fn encode(value: Value, order: WordOrder) -> ([u16; 2], usize) {
    match value {
        Value::Analog(v) => (split((v as f32).to_bits(), order), 2),
        Value::Counter(v) => (split(v as u32, order), 2),
        Value::Digital(b) => ([u16::from(b), 0], 1),
    }
}

/// Decodes what a master read. `words` must hold at least `register_count(kind)` words.
///
/// # Panics
/// If `words` is shorter than `register_count(kind)`.
pub fn decode(kind: TagKind, words: &[u16], order: WordOrder) -> Value {
    match kind {
        TagKind::Analog => Value::Analog(f64::from(f32::from_bits(join(words, order)))),
        TagKind::Counter => Value::Counter(u64::from(join(words, order))),
        TagKind::Digital => Value::Digital(words[0] != 0),
    }
}

/// Decodes what a master wrote, refusing values the tag cannot take: a digital other than
/// 0/1 (a stray 0xFF00 in a register is a mistake, not "true"), a NaN or infinite setpoint.
pub fn decode_write(
    kind: TagKind,
    words: &[u16],
    order: WordOrder,
) -> Result<Value, RegisterError> {
    let expected = usize::from(register_count(kind));
    if words.len() != expected {
        return Err(RegisterError::WrongLength {
            kind,
            expected,
            got: words.len(),
        });
    }
    match kind {
        TagKind::Digital => match words[0] {
            0 => Ok(Value::Digital(false)),
            1 => Ok(Value::Digital(true)),
            w => Err(RegisterError::NotABit(w)),
        },
        TagKind::Analog => {
            let f = f32::from_bits(join(words, order));
            if f.is_finite() {
                Ok(Value::Analog(f64::from(f)))
            } else {
                Err(RegisterError::NotFinite(f))
            }
        }
        TagKind::Counter => Ok(decode(kind, words, order)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order() -> impl Strategy<Value = WordOrder> {
        prop_oneof![Just(WordOrder::Big), Just(WordOrder::Little)]
    }

    #[test]
    fn big_puts_the_high_word_first() {
        assert_eq!(
            encode(Value::Counter(0x1234_5678), WordOrder::Big).0,
            [0x1234, 0x5678]
        );
        assert_eq!(
            encode(Value::Counter(0x1234_5678), WordOrder::Little).0,
            [0x5678, 0x1234]
        );
        // 1.0f32 = 0x3F80_0000
        assert_eq!(encode(Value::Analog(1.0), WordOrder::Big), ([0x3F80, 0], 2));
        assert_eq!(encode(Value::Digital(true), WordOrder::Little), ([1, 0], 1));
    }

    proptest! {
        #[test]
        fn analog_round_trips_as_f32(v in any::<f64>(), order in order()) {
            let (w, n) = encode(Value::Analog(v), order);
            prop_assert_eq!(n, 2);
            let Value::Analog(back) = decode(TagKind::Analog, &w, order) else { unreachable!() };
            let want = v as f32;
            prop_assert!(back.to_bits() == f64::from(want).to_bits() || (back.is_nan() && want.is_nan()));
        }

        #[test]
        fn counter_round_trips_low_32_bits(v in any::<u64>(), order in order()) {
            let (w, n) = encode(Value::Counter(v), order);
            prop_assert_eq!(n, 2);
            prop_assert_eq!(decode(TagKind::Counter, &w, order), Value::Counter(v & 0xFFFF_FFFF));
            prop_assert_eq!(decode_write(TagKind::Counter, &w, order), Ok(Value::Counter(v & 0xFFFF_FFFF)));
        }

        #[test]
        fn digital_round_trips(b in any::<bool>(), order in order()) {
            let (w, n) = encode(Value::Digital(b), order);
            prop_assert_eq!(n, 1);
            prop_assert_eq!(decode(TagKind::Digital, &w[..1], order), Value::Digital(b));
            prop_assert_eq!(decode_write(TagKind::Digital, &w[..1], order), Ok(Value::Digital(b)));
        }

        #[test]
        fn finite_setpoints_are_accepted_exactly(v in any::<f32>().prop_filter("finite", |f| f.is_finite()), order in order()) {
            let (w, _) = encode(Value::Analog(f64::from(v)), order);
            prop_assert_eq!(decode_write(TagKind::Analog, &w, order), Ok(Value::Analog(f64::from(v))));
        }

        #[test]
        fn word_orders_are_mirror_images(x in any::<u32>()) {
            let (mut b, _) = encode(Value::Counter(u64::from(x)), WordOrder::Big);
            let (l, _) = encode(Value::Counter(u64::from(x)), WordOrder::Little);
            b.reverse();
            prop_assert_eq!(b, l);
        }

        #[test]
        fn digital_writes_other_than_0_or_1_are_refused(w in 2u16..) {
            prop_assert_eq!(decode_write(TagKind::Digital, &[w], WordOrder::Big), Err(RegisterError::NotABit(w)));
        }
    }

    #[test]
    fn non_finite_and_short_writes_are_refused() {
        let (nan, _) = encode(Value::Analog(f64::NAN), WordOrder::Big);
        assert!(matches!(
            decode_write(TagKind::Analog, &nan, WordOrder::Big),
            Err(RegisterError::NotFinite(_))
        ));
        assert_eq!(
            decode_write(TagKind::Analog, &[1], WordOrder::Big),
            Err(RegisterError::WrongLength {
                kind: TagKind::Analog,
                expected: 2,
                got: 1
            })
        );
    }
}
