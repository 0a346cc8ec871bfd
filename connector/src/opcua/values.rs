//! What a point looks like in OPC UA (docs/opcua.md "Values"): the quality → StatusCode
//! table, the data types, timestamps, engineering units, and a written Variant back to a
//! value. Sans-IO: plain functions of their arguments.

use crate::image::PointValue;
use opcua::types::{DataTypeId, DataValue, DateTime, EUInformation, StatusCode, Variant};
use po_protocol::{Quality, TagKind, Value};
use std::time::Duration;

/// The StatusCode of a value (docs/opcua.md, "Quality"): Good, Uncertain and Bad as they
/// are; a stale value is `UncertainLastUsableValue`, and once the whole image has been
/// stale for another `stale_after`, `BadNoCommunication`.
pub fn status_of(
    quality: Quality,
    stale_since_us: Option<u64>,
    now_us: u64,
    stale_after: Duration,
) -> StatusCode {
    if let Some(since) = stale_since_us
        && now_us.saturating_sub(since) >= stale_after.as_micros() as u64
    {
        return StatusCode::BadNoCommunication;
    }
    match quality {
        Quality::Good => StatusCode::Good,
        Quality::Uncertain => StatusCode::Uncertain,
        Quality::Bad => StatusCode::Bad,
        Quality::Stale => StatusCode::UncertainLastUsableValue,
    }
}

/// Analog values are Double, counters UInt64, digitals Boolean.
pub fn variant_of(v: Value) -> Variant {
    match v {
        Value::Analog(x) => Variant::Double(x),
        Value::Counter(c) => Variant::UInt64(c),
        Value::Digital(b) => Variant::Boolean(b),
    }
}

pub fn data_type_of(kind: TagKind) -> DataTypeId {
    match kind {
        TagKind::Analog => DataTypeId::Double,
        TagKind::Counter => DataTypeId::UInt64,
        TagKind::Digital => DataTypeId::Boolean,
    }
}

/// µs since the Unix epoch as an OPC UA DateTime; 0 (never) is `None`.
pub fn datetime_of(us: u64) -> Option<DateTime> {
    (us > 0).then(|| {
        let t = chrono_from_us(us);
        DateTime::from(t)
    })
}

fn chrono_from_us(us: u64) -> opcua::types::date_time::DateTimeUtc {
    let secs = (us / 1_000_000) as i64;
    let nanos = ((us % 1_000_000) * 1000) as u32;
    opcua::types::date_time::DateTimeUtc::from_timestamp(secs, nanos).unwrap_or_default()
}

/// A point's DataValue: value, StatusCode, SourceTimestamp (the server's sample time),
/// ServerTimestamp (this connector's receipt).
pub fn data_value(p: &PointValue, status: StatusCode) -> DataValue {
    DataValue {
        value: (p.sampled_us > 0 || p.received_us > 0).then(|| variant_of(p.value)),
        status: Some(status),
        source_timestamp: datetime_of(p.sampled_us),
        source_picoseconds: None,
        server_timestamp: datetime_of(p.received_us),
        server_picoseconds: None,
    }
}

/// What a client wrote, as a value of the tag's kind. The exact type is expected; an
/// integer written to an analog tag and a 0/1 integer to a digital one are accepted too
/// (clients that do not read `DataType` first send those). A NaN or infinite setpoint
/// is out of range, as on Modbus.
pub fn value_from_variant(kind: TagKind, v: &Variant) -> Result<Value, StatusCode> {
    let int = |v: &Variant| -> Option<i128> {
        Some(match *v {
            Variant::SByte(x) => x.into(),
            Variant::Byte(x) => x.into(),
            Variant::Int16(x) => x.into(),
            Variant::UInt16(x) => x.into(),
            Variant::Int32(x) => x.into(),
            Variant::UInt32(x) => x.into(),
            Variant::Int64(x) => x.into(),
            Variant::UInt64(x) => x.into(),
            _ => return None,
        })
    };
    match kind {
        TagKind::Analog => {
            let x = match *v {
                Variant::Double(x) => x,
                Variant::Float(x) => f64::from(x),
                ref other => int(other).ok_or(StatusCode::BadTypeMismatch)? as f64,
            };
            if x.is_finite() {
                Ok(Value::Analog(x))
            } else {
                Err(StatusCode::BadOutOfRange)
            }
        }
        TagKind::Counter => {
            let n = int(v).ok_or(StatusCode::BadTypeMismatch)?;
            u64::try_from(n)
                .map(Value::Counter)
                .map_err(|_| StatusCode::BadOutOfRange)
        }
        TagKind::Digital => match *v {
            Variant::Boolean(b) => Ok(Value::Digital(b)),
            ref other => match int(other) {
                Some(0) => Ok(Value::Digital(false)),
                Some(1) => Ok(Value::Digital(true)),
                Some(_) => Err(StatusCode::BadOutOfRange),
                None => Err(StatusCode::BadTypeMismatch),
            },
        },
    }
}

/// The namespace of UNECE Recommendation 20 unit codes (OPC UA Part 8 §5.6.3).
pub const UNECE_NAMESPACE: &str = "http://www.opcfoundation.org/UA/units/un/cefact";

/// `EngineeringUnits` of a catalogue unit: the UNECE code of the units a power
/// monitoring system reports; an unknown unit keeps its text with `unitId` -1.
pub fn eu_information(unit: &str) -> EUInformation {
    let (code, description) = match unit {
        "V" => ("VLT", "volt"),
        "kV" => ("KVT", "kilovolt"),
        "A" => ("AMP", "ampere"),
        "W" => ("WTT", "watt"),
        "kW" => ("KWT", "kilowatt"),
        "MW" => ("MAW", "megawatt"),
        "kVAr" | "kvar" => ("KVR", "kilovar"),
        "kVA" => ("KVA", "kilovolt ampere"),
        "kWh" => ("KWH", "kilowatt hour"),
        "MWh" => ("MWH", "megawatt hour"),
        "kVArh" | "kvarh" => ("K3", "kilovar hour"),
        "Hz" => ("HTZ", "hertz"),
        "%" => ("P1", "percent"),
        "ms" => ("C26", "millisecond"),
        "s" => ("SEC", "second"),
        "°C" | "degC" => ("CEL", "degree Celsius"),
        _ => ("", ""),
    };
    EUInformation {
        namespace_uri: UNECE_NAMESPACE.into(),
        unit_id: unece_id(code),
        display_name: opcua::types::LocalizedText::new("", unit),
        description: opcua::types::LocalizedText::new("", description),
    }
}

/// A UNECE code as the Int32 OPC UA uses: its (up to three) ASCII bytes, big-endian;
/// -1 for none.
pub fn unece_id(code: &str) -> i32 {
    if code.is_empty() {
        return -1;
    }
    code.bytes().fold(0i32, |acc, b| (acc << 8) | i32::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_quality_table_of_the_design() {
        let s = Duration::from_secs(3);
        assert_eq!(status_of(Quality::Good, None, 0, s), StatusCode::Good);
        assert_eq!(
            status_of(Quality::Uncertain, None, 0, s),
            StatusCode::Uncertain
        );
        assert_eq!(status_of(Quality::Bad, None, 0, s), StatusCode::Bad);
        assert_eq!(
            status_of(Quality::Stale, Some(1_000_000), 3_999_999, s),
            StatusCode::UncertainLastUsableValue,
            "stale, for less than stale_after more"
        );
        assert_eq!(
            status_of(Quality::Stale, Some(1_000_000), 4_000_000, s),
            StatusCode::BadNoCommunication,
            "stale for stale_after more: no communication"
        );
    }

    #[test]
    fn unece_codes_are_the_published_numbers() {
        // Part 8 Annex: "VLT" is 5655636, "KWT" 4937556, "HTZ" 4740186, "P1" 20529.
        assert_eq!(unece_id("VLT"), 5_655_636);
        assert_eq!(unece_id("KWT"), 4_937_556);
        assert_eq!(unece_id("HTZ"), 4_740_186);
        assert_eq!(unece_id("P1"), 20_529);
        assert_eq!(eu_information("furlong").unit_id, -1);
        assert_eq!(eu_information("kW").unit_id, 4_937_556);
    }

    #[test]
    fn writes_of_the_wrong_type_or_range_are_refused_with_their_codes() {
        assert_eq!(
            value_from_variant(TagKind::Analog, &Variant::Double(f64::NAN)),
            Err(StatusCode::BadOutOfRange)
        );
        assert_eq!(
            value_from_variant(TagKind::Analog, &Variant::String("1".into())),
            Err(StatusCode::BadTypeMismatch)
        );
        assert_eq!(
            value_from_variant(TagKind::Digital, &Variant::Int32(2)),
            Err(StatusCode::BadOutOfRange)
        );
        assert_eq!(
            value_from_variant(TagKind::Counter, &Variant::Int64(-1)),
            Err(StatusCode::BadOutOfRange)
        );
        assert_eq!(
            value_from_variant(TagKind::Digital, &Variant::Int32(1)),
            Ok(Value::Digital(true))
        );
    }

    proptest! {
        /// What a client reads it can write back unchanged.
        #[test]
        fn a_value_read_writes_back_as_itself(x in any::<f64>().prop_filter("finite", |x| x.is_finite()), c in any::<u64>(), b in any::<bool>()) {
            for v in [Value::Analog(x), Value::Counter(c), Value::Digital(b)] {
                prop_assert_eq!(value_from_variant(v.kind(), &variant_of(v)), Ok(v));
            }
        }

        #[test]
        fn timestamps_keep_microseconds(us in 1u64..4_000_000_000_000_000) {
            let dt = datetime_of(us).unwrap();
            let back = dt.as_chrono().timestamp_micros();
            prop_assert_eq!(back as u64, us);
        }
    }
}
