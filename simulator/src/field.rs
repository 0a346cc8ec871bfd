//! The deterministic field model: what the meters and breakers of a simulated site read.
//!
//! Every value is a pure function of `(seed, tag, tick)`, where
//! `tick = floor((now - field_epoch) / scan_period)`. Two servers of a pair (which poll
//! the same field devices) therefore publish identical values, and the harness can
//! recompute any value a third party read, which is how data integrity is checked end to
//! end. Nothing here reads a clock or keeps state.
//!
//! A site is `devices` power meters, each with `tags_per_device` tags laid out from a
//! fixed 16-slot template (see [`SLOTS`]); wider devices repeat the template as extra
//! measurement channels (`Ch1.Va`, ...). Slot 0 of every device is a probe: its value is
//! the sample time in milliseconds, which lets a Modbus master measure freshness.

use po_protocol::{TagId, TagInfo, TagKind, Timestamp, Value};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Size and pace of a simulated site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// Number of field devices (power meters).
    pub devices: u32,
    /// Tags per device; the total tag count is `devices * tags_per_device`.
    pub tags_per_device: u32,
    /// How often the field devices are scanned; one tick per scan.
    #[serde(with = "humantime_serde")]
    pub scan_period: Duration,
}

impl Default for SiteSpec {
    fn default() -> Self {
        SiteSpec {
            devices: 20,
            tags_per_device: 16,
            scan_period: Duration::from_millis(100),
        }
    }
}

/// Largest site the simulator builds (catalogues and snapshots go out in parts of
/// `PART_TAGS`, so the frame limit does not bound it; memory does: about 200 bytes a tag).
pub const MAX_TAGS: u64 = 2_000_000;

/// Why a [`SiteSpec`] cannot be simulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}", self.key(), self.requirement())]
pub enum SiteError {
    NoDevices,
    NoTags,
    TooManyTags(u64),
    ScanTooFast(Duration),
}

impl SiteError {
    /// The configuration key it is about (po-sim lists problems by key).
    pub fn key(&self) -> &'static str {
        match self {
            SiteError::NoDevices => "site.devices",
            SiteError::NoTags => "site.tags_per_device",
            SiteError::TooManyTags(_) => "site",
            SiteError::ScanTooFast(_) => "site.scan_period",
        }
    }

    /// What is wrong, without the key.
    pub fn requirement(&self) -> String {
        match self {
            SiteError::NoDevices | SiteError::NoTags => "must be at least 1".into(),
            SiteError::TooManyTags(n) => format!("has {n} tags; at most {MAX_TAGS} are supported"),
            SiteError::ScanTooFast(d) => format!("must be at least 1ms (got {d:?})"),
        }
    }
}

impl SiteSpec {
    /// Everything that keeps this site from being simulated (empty: it can be).
    pub fn problems(&self) -> Vec<SiteError> {
        let mut out = Vec::new();
        if self.devices == 0 {
            out.push(SiteError::NoDevices);
        }
        if self.tags_per_device == 0 {
            out.push(SiteError::NoTags);
        }
        let total = u64::from(self.devices) * u64::from(self.tags_per_device);
        if total > MAX_TAGS {
            out.push(SiteError::TooManyTags(total));
        }
        if self.scan_period < Duration::from_millis(1) {
            out.push(SiteError::ScanTooFast(self.scan_period));
        }
        out
    }
}

/// What a template slot measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measurement {
    /// Probe: sample time in ms since the Unix epoch.
    SampleTime,
    Voltage,
    Current,
    ActivePower,
    ReactivePower,
    PowerFactor,
    Frequency,
    ActiveEnergy,
    ReactiveEnergy,
    BreakerClosed,
    BreakerCommand,
    PowerSetpoint,
    /// Slot 0 of repeated channels: total harmonic distortion.
    Thd,
}

/// One template slot: name suffix, unit, kind, writability and what it measures.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: TagKind,
    pub writable: bool,
    pub measurement: Measurement,
}

const fn slot(
    name: &'static str,
    unit: &'static str,
    kind: TagKind,
    writable: bool,
    measurement: Measurement,
) -> Slot {
    Slot {
        name,
        unit,
        kind,
        writable,
        measurement,
    }
}

use Measurement as M;
use TagKind::{Analog, Counter, Digital};

/// The per-device tag template.
pub const SLOTS: [Slot; 16] = [
    slot("SampleTime", "ms", Counter, false, M::SampleTime),
    slot("Va", "V", Analog, false, M::Voltage),
    slot("Vb", "V", Analog, false, M::Voltage),
    slot("Vc", "V", Analog, false, M::Voltage),
    slot("Ia", "A", Analog, false, M::Current),
    slot("Ib", "A", Analog, false, M::Current),
    slot("Ic", "A", Analog, false, M::Current),
    slot("kW", "kW", Analog, false, M::ActivePower),
    slot("kVAr", "kVAr", Analog, false, M::ReactivePower),
    slot("PF", "", Analog, false, M::PowerFactor),
    slot("Hz", "Hz", Analog, false, M::Frequency),
    slot("kWh", "kWh", Counter, false, M::ActiveEnergy),
    slot("kVArh", "kVArh", Counter, false, M::ReactiveEnergy),
    slot("BreakerClosed", "", Digital, false, M::BreakerClosed),
    slot("BreakerCmd", "", Digital, true, M::BreakerCommand),
    slot("kWSetpoint", "kW", Analog, true, M::PowerSetpoint),
];

const THD_SLOT: Slot = slot("THD", "%", Analog, false, M::Thd);

/// Ticks in one simulated "day" of the load curve.
const LOAD_CYCLE_TICKS: u64 = 3000;
/// Ticks a breaker state holds at least.
const BREAKER_HOLD_TICKS: u64 = 600;

/// Per-tag constants derived once from the seed.
#[derive(Debug, Clone, Copy)]
struct Shape {
    measurement: Measurement,
    /// Device rating in kW (50..=2000).
    rated_kw: f64,
    /// Phase of the device's load curve, in ticks.
    phase: u64,
    /// Counter base and increment per tick.
    base: u64,
    rate: u64,
}

/// The deterministic field model of one site.
#[derive(Debug, Clone)]
pub struct FieldModel {
    seed: u64,
    spec: SiteSpec,
    field_epoch: Timestamp,
    catalog: Vec<TagInfo>,
    shapes: Vec<Shape>,
}

impl FieldModel {
    /// Builds the site. The field epoch defaults to the Unix epoch, so two processes with
    /// the same seed and spec agree on the tick from their wall clocks alone.
    pub fn new(seed: u64, spec: SiteSpec) -> Result<FieldModel, SiteError> {
        if let Some(e) = spec.problems().into_iter().next() {
            return Err(e);
        }
        let total = u64::from(spec.devices) * u64::from(spec.tags_per_device);
        let mut catalog = Vec::with_capacity(total as usize);
        let mut shapes = Vec::with_capacity(total as usize);
        for device in 0..spec.devices {
            let device_name = format!("Feeder{:02}.Meter{}", device / 8 + 1, device % 8 + 1);
            let dev_hash = mix(seed, u64::from(device), 0xD3E1_CE00);
            let rated_kw = 50.0 + (dev_hash % 1951) as f64;
            let phase = (dev_hash >> 20) % LOAD_CYCLE_TICKS;
            for j in 0..spec.tags_per_device {
                let channel = j / SLOTS.len() as u32;
                let slot = match (channel, j as usize % SLOTS.len()) {
                    (0, s) => SLOTS[s],
                    (_, 0) => THD_SLOT,
                    (_, s) => SLOTS[s],
                };
                let id = TagId(catalog.len() as u32);
                let name = if channel == 0 {
                    format!("{device_name}.{}", slot.name)
                } else {
                    format!("{device_name}.Ch{channel}.{}", slot.name)
                };
                let tag_hash = mix(seed, u64::from(id.0), 0x7A65_0000);
                shapes.push(Shape {
                    measurement: slot.measurement,
                    rated_kw,
                    phase,
                    base: tag_hash % 1_000_000_000,
                    rate: 1 + (tag_hash >> 40) % 50,
                });
                catalog.push(TagInfo {
                    id,
                    name,
                    unit: slot.unit.to_string(),
                    kind: slot.kind,
                    writable: slot.writable,
                });
            }
        }
        Ok(FieldModel {
            seed,
            spec,
            field_epoch: Timestamp(0),
            catalog,
            shapes,
        })
    }

    /// Moves tick 0 to `epoch` (both servers of a pair must use the same one).
    pub fn with_field_epoch(mut self, epoch: Timestamp) -> FieldModel {
        self.field_epoch = epoch;
        self
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn spec(&self) -> &SiteSpec {
        &self.spec
    }

    pub fn field_epoch(&self) -> Timestamp {
        self.field_epoch
    }

    pub fn catalog(&self) -> &[TagInfo] {
        &self.catalog
    }

    pub fn tag_count(&self) -> usize {
        self.catalog.len()
    }

    pub fn tag(&self, id: TagId) -> Option<&TagInfo> {
        self.catalog.get(id.index())
    }

    /// The tick in force at `now`.
    pub fn tick_at(&self, now: Timestamp) -> u64 {
        now.0.saturating_sub(self.field_epoch.0) / self.scan_micros()
    }

    /// The sample time of `tick`: when the field devices were scanned for it.
    pub fn tick_time(&self, tick: u64) -> Timestamp {
        Timestamp(
            self.field_epoch
                .0
                .saturating_add(tick.saturating_mul(self.scan_micros())),
        )
    }

    fn scan_micros(&self) -> u64 {
        (self.spec.scan_period.as_micros() as u64).max(1)
    }

    /// Probe tags: their value is the sample time in ms.
    pub fn is_probe(&self, tag: TagId) -> bool {
        self.shapes
            .get(tag.index())
            .is_some_and(|s| s.measurement == Measurement::SampleTime)
    }

    pub fn probes(&self) -> impl Iterator<Item = TagId> + '_ {
        self.shapes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.measurement == Measurement::SampleTime)
            .map(|(i, _)| TagId(i as u32))
    }

    /// The value of `tag` at `tick`. For writable tags this is the value before any
    /// write: servers overlay what clients wrote. `None` for an unknown tag.
    pub fn value(&self, tag: TagId, tick: u64) -> Option<Value> {
        let shape = self.shapes.get(tag.index())?;
        Some(self.compute(tag.0, shape, tick))
    }

    /// Every tag's value at `tick`, in tag order, into `out` (cleared first). The
    /// server's per-tick path: no allocation once `out` has grown.
    pub fn values_at(&self, tick: u64, out: &mut Vec<Value>) {
        out.clear();
        out.extend(
            self.shapes
                .iter()
                .enumerate()
                .map(|(i, s)| self.compute(i as u32, s, tick)),
        );
    }

    fn compute(&self, tag: u32, s: &Shape, tick: u64) -> Value {
        let noise = || unit_noise(mix(self.seed, u64::from(tag), tick));
        let load = || {
            let x = ((tick + s.phase) % LOAD_CYCLE_TICKS) as f64 / LOAD_CYCLE_TICKS as f64;
            0.6 + 0.3 * (std::f64::consts::TAU * x).sin()
        };
        match s.measurement {
            M::SampleTime => Value::Counter(self.tick_time(tick).as_millis()),
            M::Voltage => Value::Analog(230.0 * (1.0 + 0.01 * noise()) - 2.0 * load()),
            M::Current => Value::Analog(s.rated_kw * 1.45 * load() * (1.0 + 0.02 * noise())),
            M::ActivePower => Value::Analog(s.rated_kw * load() * (1.0 + 0.01 * noise())),
            M::ReactivePower => Value::Analog(s.rated_kw * 0.3 * load() * (1.0 + 0.02 * noise())),
            M::PowerFactor => Value::Analog(0.92 + 0.03 * noise()),
            M::Frequency => Value::Analog(50.0 + 0.02 * noise()),
            M::ActiveEnergy | M::ReactiveEnergy => {
                Value::Counter(s.base.wrapping_add(tick.wrapping_mul(s.rate)))
            }
            M::BreakerClosed => {
                let bucket = tick / BREAKER_HOLD_TICKS;
                Value::Digital(mix(self.seed, u64::from(tag), bucket) % 16 != 0)
            }
            M::BreakerCommand => Value::Digital(false),
            M::PowerSetpoint => Value::Analog(s.rated_kw.round()),
            M::Thd => Value::Analog(3.0 + 1.5 * noise()),
        }
    }
}

/// splitmix64 finaliser: a cheap, well-distributed 64-bit mix.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b)
}

/// Maps a hash to [-1, 1).
fn unit_noise(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(seed: u64) -> FieldModel {
        FieldModel::new(
            seed,
            SiteSpec {
                devices: 3,
                tags_per_device: 40,
                scan_period: Duration::from_millis(100),
            },
        )
        .unwrap()
    }

    #[test]
    fn catalogue_is_dense_and_named_like_a_site() {
        let m = model(1);
        assert_eq!(m.tag_count(), 120);
        for (i, t) in m.catalog().iter().enumerate() {
            assert_eq!(t.id, TagId(i as u32));
        }
        let names: Vec<&str> = m.catalog().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names[0], "Feeder01.Meter1.SampleTime");
        assert_eq!(names[7], "Feeder01.Meter1.kW");
        assert_eq!(names[16], "Feeder01.Meter1.Ch1.THD");
        assert_eq!(names[40], "Feeder01.Meter2.SampleTime");
        assert_eq!(m.probes().count(), 3);
        assert!(m.catalog().iter().any(|t| t.writable));
    }

    #[test]
    fn counters_only_grow_and_probes_are_sample_times() {
        let m = model(9);
        for tag in m.catalog().iter().filter(|t| t.kind == TagKind::Counter) {
            let mut last = 0;
            for tick in 1_000_000..1_000_050 {
                let Some(Value::Counter(v)) = m.value(tag.id, tick) else {
                    panic!("counter tag gave another kind")
                };
                assert!(v > last, "{} went from {last} to {v}", tag.name);
                last = v;
            }
        }
        assert_eq!(m.value(TagId(0), 10), Some(Value::Counter(1000)));
        assert_eq!(m.tick_at(Timestamp(1_234_567)), 12);
        assert_eq!(m.tick_time(12), Timestamp(1_200_000));
    }

    #[test]
    fn values_look_like_a_power_site() {
        let m = model(3);
        let mut out = Vec::new();
        m.values_at(17_000_000, &mut out);
        for (info, v) in m.catalog().iter().zip(&out) {
            assert_eq!(v.kind(), info.kind, "{}", info.name);
            if let Value::Analog(x) = v {
                match info.unit.as_str() {
                    "V" => assert!((220.0..240.0).contains(x), "{}={x}", info.name),
                    "Hz" => assert!((49.9..50.1).contains(x), "{}={x}", info.name),
                    _ => assert!(x.is_finite() && *x >= 0.0, "{}={x}", info.name),
                }
            }
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        let spec = |devices, tags_per_device, ms| SiteSpec {
            devices,
            tags_per_device,
            scan_period: Duration::from_millis(ms),
        };
        assert_eq!(
            FieldModel::new(0, spec(0, 1, 100)).unwrap_err(),
            SiteError::NoDevices
        );
        assert_eq!(
            FieldModel::new(0, spec(1, 0, 100)).unwrap_err(),
            SiteError::NoTags
        );
        assert!(matches!(
            FieldModel::new(0, spec(100_000, 100, 100)).unwrap_err(),
            SiteError::TooManyTags(10_000_000)
        ));
        assert!(matches!(
            FieldModel::new(0, spec(1, 1, 0)).unwrap_err(),
            SiteError::ScanTooFast(_)
        ));
    }
}
