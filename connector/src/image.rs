//! `RegisterImage`: the current value of every mapped tag, already encoded as Modbus
//! registers, shared by the ingest path (one writer) and every Modbus connection.
//!
//! Each value is one `AtomicU32` holding both of its registers, so a reader can never
//! see half an old and half a new f32/u32, and neither side ever waits for the other:
//! ingest is a store per tag, a read is a load per tag. Status fields and qualities are
//! atomics too.

pub use crate::change_feed::PointValue;
use crate::map::{Bank, Cell, RegisterMap, StatusField};
use crate::registers::{WordOrder, decode, encode};
use po_protocol::{Quality, TagValue, Timestamp, Value};
use po_runtime::{Clock, SystemClock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// A value as 64 bits, so one atomic holds any kind at full precision.
pub(crate) fn raw_bits(v: Value) -> u64 {
    match v {
        Value::Analog(x) => x.to_bits(),
        Value::Counter(c) => c,
        Value::Digital(b) => u64::from(b),
    }
}

/// The inverse of [`raw_bits`] for a tag of `kind`.
pub(crate) fn from_raw_bits(kind: po_protocol::TagKind, bits: u64) -> Value {
    match kind {
        po_protocol::TagKind::Analog => Value::Analog(f64::from_bits(bits)),
        po_protocol::TagKind::Counter => Value::Counter(bits),
        po_protocol::TagKind::Digital => Value::Digital(bits != 0),
    }
}

/// Connector state shown in status register 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ServeState {
    Starting = 0,
    Primary = 1,
    Standby = 2,
    Stale = 3,
    /// Shutting down on SIGTERM: still answering, but a third party should move away
    /// (docs/service.md "Graceful drain").
    Draining = 4,
}

#[derive(Debug)]
pub struct RegisterImage {
    map: Arc<RegisterMap>,
    /// Per point: registers `address`, `address+1` as `(w0 << 16) | w1`.
    values: Vec<AtomicU32>,
    qualities: Vec<AtomicU8>,
    /// Per point: the server's timestamp of the sample served (µs since the Unix epoch;
    /// 0 before the first), for the status page's ages.
    sampled_us: Vec<AtomicU64>,
    /// Per point: the value at full precision (`f64` bits, the `u64` counter, 0/1), which
    /// the registers cannot hold (an f32, the low 32 bits of a counter): OPC UA serves it.
    raw: Vec<AtomicU64>,
    /// Per point: when this connector received the sample (µs since the Unix epoch), the
    /// OPC UA `ServerTimestamp`.
    received_us: Vec<AtomicU64>,
    /// When the whole image went stale (µs since the Unix epoch; 0: not stale): OPC UA
    /// says `BadNoCommunication` once it has been stale for `stale_after` more.
    stale_since_us: AtomicU64,
    /// Wakes the faces that follow changes (OPC UA); `None`: nobody follows them.
    feed: Option<crate::change_feed::ChangeFeed>,
    not_good: AtomicU32,
    stale: AtomicBool,
    newest_sample_us: AtomicU64,
    /// Monotonic and wall time for the status block (given, so a simulation can run it).
    clock: Arc<dyn Clock>,
    started: Instant,
    state: AtomicU8,
    /// Set once on SIGTERM; status register 1 then reads `Draining` whatever the engine
    /// still publishes.
    draining: AtomicBool,
    /// Published by the engine (`service_level`); 0 while draining, whatever it says.
    service_level: AtomicU8,
    active_source: AtomicU8,
    active_role: AtomicU8,
    active_epoch: AtomicU32,
    switches: AtomicU32,
}

fn quality_code(q: u8) -> Quality {
    match q {
        0 => Quality::Good,
        1 => Quality::Uncertain,
        2 => Quality::Bad,
        _ => Quality::Stale,
    }
}

impl RegisterImage {
    /// A new image: every value 0 with quality `Stale` (nothing received yet).
    pub fn new(map: Arc<RegisterMap>) -> RegisterImage {
        RegisterImage::with_clock(map, Arc::new(SystemClock))
    }

    /// [`RegisterImage::new`] with the clock given by the caller.
    pub fn with_clock(map: Arc<RegisterMap>, clock: Arc<dyn Clock>) -> RegisterImage {
        let started = clock.now();
        RegisterImage::with_clock_since(map, clock, started)
    }

    /// [`RegisterImage::with_clock`] whose heartbeat (status register 0) counts from
    /// `started`: the connector's start, which is before its catalogue arrived.
    pub fn with_clock_since(
        map: Arc<RegisterMap>,
        clock: Arc<dyn Clock>,
        started: Instant,
    ) -> RegisterImage {
        let n = map.points().len();
        RegisterImage {
            values: (0..n).map(|_| AtomicU32::new(0)).collect(),
            qualities: (0..n)
                .map(|_| AtomicU8::new(Quality::Stale.code() as u8))
                .collect(),
            sampled_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            raw: (0..n).map(|_| AtomicU64::new(0)).collect(),
            received_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stale_since_us: AtomicU64::new(0),
            feed: None,
            not_good: AtomicU32::new(n as u32),
            stale: AtomicBool::new(false),
            newest_sample_us: AtomicU64::new(0),
            started,
            clock,
            state: AtomicU8::new(ServeState::Starting as u8),
            draining: AtomicBool::new(false),
            service_level: AtomicU8::new(crate::service_level::NO_DATA),
            active_source: AtomicU8::new(0),
            active_role: AtomicU8::new(0),
            active_epoch: AtomicU32::new(0),
            switches: AtomicU32::new(0),
            map,
        }
    }

    /// Follows every change with a [`crate::change_feed::ChangeFeed`] that wakes `wake`.
    pub fn with_feed(mut self, wake: Arc<tokio::sync::Notify>) -> RegisterImage {
        self.feed = Some(crate::change_feed::ChangeFeed::new(self.values.len(), wake));
        self
    }

    /// The change feed, if the image has one.
    pub fn feed(&self) -> Option<&crate::change_feed::ChangeFeed> {
        self.feed.as_ref()
    }

    /// The clock every part of the connector reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn map(&self) -> &Arc<RegisterMap> {
        &self.map
    }

    /// Stores a batch of samples. Unmapped tags are skipped (they are not served).
    /// Returns the number of values stored.
    pub fn apply(&self, batch: &[TagValue]) -> usize {
        let order = self.map.word_order();
        let mut newest = 0;
        let mut stored = 0;
        let received = self.clock.wall().0;
        let mut changes = self.feed.as_ref().and_then(|f| f.collector());
        for tv in batch {
            let Some(p) = self.map.point_of(tv.tag) else {
                continue;
            };
            let (words, n) = encode(tv.value, order);
            let packed = if n == 2 {
                (u32::from(words[0]) << 16) | u32::from(words[1])
            } else {
                u32::from(words[0]) << 16
            };
            self.values[p as usize].store(packed, Relaxed);
            self.set_quality(p, tv.quality);
            self.sampled_us[p as usize].store(tv.sampled_at.0, Relaxed);
            self.raw[p as usize].store(raw_bits(tv.value), Relaxed);
            self.received_us[p as usize].store(received, Relaxed);
            if let Some(c) = changes.as_mut() {
                c.push(p, tv, received);
            }
            newest = newest.max(tv.sampled_at.0);
            stored += 1;
        }
        self.newest_sample_us.fetch_max(newest, Relaxed);
        if let (Some(c), Some(f)) = (changes, &self.feed) {
            f.publish(c);
        }
        stored
    }

    /// A point's value at full precision, its quality as served, the server's sample
    /// time and this connector's receipt time (µs since the Unix epoch; 0 before the
    /// first sample).
    pub fn point_value(&self, point: u32) -> PointValue {
        let kind = self.map.point(point).kind;
        PointValue {
            value: from_raw_bits(kind, self.raw[point as usize].load(Relaxed)),
            quality: self.quality(point),
            sampled_us: self.sampled_us[point as usize].load(Relaxed),
            received_us: self.received_us[point as usize].load(Relaxed),
        }
    }

    /// Since when the whole image is stale (µs since the Unix epoch); `None`: it is not.
    pub fn stale_since_us(&self) -> Option<u64> {
        let since = self.stale_since_us.load(Relaxed);
        (self.is_stale() && since > 0).then_some(since)
    }

    fn poke_feed(&self) {
        if let Some(f) = &self.feed {
            f.status_changed();
        }
    }

    fn set_quality(&self, point: u32, q: Quality) {
        let new = q.code() as u8;
        let old = self.qualities[point as usize].swap(new, Relaxed);
        let was_good = old == 0;
        let is_good = new == 0;
        if was_good && !is_good {
            self.not_good.fetch_add(1, Relaxed);
        } else if !was_good && is_good {
            self.not_good.fetch_sub(1, Relaxed);
        }
    }

    /// Marks every tag `Stale` (no healthy source for `stale_after`), or lifts it.
    pub fn set_stale(&self, stale: bool) {
        let was = self.stale.swap(stale, Relaxed);
        if stale {
            self.state.store(ServeState::Stale as u8, Relaxed);
        }
        if was != stale {
            let since = if stale { self.clock.wall().0.max(1) } else { 0 };
            self.stale_since_us.store(since, Relaxed);
            // Every value's status changes with it: the faces re-announce them.
            if let Some(f) = &self.feed {
                f.everything_changed();
            }
        }
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Relaxed)
    }

    /// Records whose data is served (status registers 1-5).
    pub fn set_active(&self, state: ServeState, source: u8, role: u8, epoch: u64) {
        self.active_source.store(source, Relaxed);
        self.active_role.store(role, Relaxed);
        self.active_epoch
            .store(epoch.min(u64::from(u32::MAX)) as u32, Relaxed);
        // Last, and released: a reader that sees the new state also sees its source.
        self.state
            .store(state as u8, std::sync::atomic::Ordering::Release);
    }

    /// What the status block says is served: (state as in register 1, active epoch).
    pub fn serving(&self) -> (u8, u32) {
        let state = if self.is_draining() {
            ServeState::Draining as u8
        } else {
            self.state.load(Relaxed)
        };
        (state, self.active_epoch.load(Relaxed))
    }

    /// The service level a third party is told (status register 14): 0 while draining.
    pub fn service_level(&self) -> u8 {
        if self.is_draining() {
            crate::service_level::MAINTENANCE
        } else {
            self.service_level.load(Relaxed)
        }
    }

    /// Publishes the service level (the engine, on every change of its inputs).
    pub fn set_service_level(&self, level: u8) {
        if self.service_level.swap(level, Relaxed) != level {
            self.poke_feed();
        }
    }

    /// Says "draining" in status register 1 from now on (SIGTERM).
    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
        self.poke_feed();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Whose data is served (status registers 2-5): the 1-based source, its role and
    /// epoch; `None` while starting or stale.
    pub fn active(&self) -> Option<(usize, po_protocol::Role, u64)> {
        let state = self.state.load(std::sync::atomic::Ordering::Acquire);
        if state != ServeState::Primary as u8 && state != ServeState::Standby as u8 {
            return None;
        }
        let source = usize::from(self.active_source.load(Relaxed));
        if source == 0 {
            return None;
        }
        let role = match self.active_role.load(Relaxed) {
            1 => po_protocol::Role::Primary,
            _ => po_protocol::Role::Standby,
        };
        Some((source, role, u64::from(self.active_epoch.load(Relaxed))))
    }

    pub fn set_switches(&self, n: u64) {
        self.switches
            .store(n.min(u64::from(u32::MAX)) as u32, Relaxed);
    }

    pub fn quality(&self, point: u32) -> Quality {
        if self.is_stale() {
            return Quality::Stale;
        }
        quality_code(self.qualities[point as usize].load(Relaxed))
    }

    pub fn tags_not_good(&self) -> u32 {
        if self.is_stale() {
            self.values.len() as u32
        } else {
            self.not_good.load(Relaxed)
        }
    }

    /// A point's served value (decoded from its registers, so exactly what a master
    /// reads), quality, and the server's timestamp of the sample (`None` before the first).
    pub fn live(&self, point: u32) -> (Value, Quality, Option<Timestamp>) {
        let p = self.map.point(point);
        let packed = self.values[point as usize].load(Relaxed);
        let words = [(packed >> 16) as u16, packed as u16];
        let value = decode(p.kind, &words, self.map.word_order());
        let sampled = self.sampled_us[point as usize].load(Relaxed);
        (
            value,
            self.quality(point),
            (sampled > 0).then_some(Timestamp(sampled)),
        )
    }

    /// Age of the newest sample served (status register 6); `None` before any data.
    pub fn data_age(&self, now: Timestamp) -> Option<std::time::Duration> {
        let newest = self.newest_sample_us.load(Relaxed);
        (newest > 0).then(|| std::time::Duration::from_micros(now.0.saturating_sub(newest)))
    }

    /// The raw packed registers of a point (for tests and benches).
    pub fn packed(&self, point: u32) -> u32 {
        self.values[point as usize].load(Relaxed)
    }

    fn status_u32(&self, f: StatusField, now: Timestamp) -> u32 {
        match f {
            StatusField::Heartbeat => {
                let up = self.clock.now().saturating_duration_since(self.started);
                (up.as_secs() & 0xffff) as u32
            }
            StatusField::State => u32::from(self.serving().0),
            StatusField::ActiveSource => u32::from(self.active_source.load(Relaxed)),
            StatusField::ActiveRole => u32::from(self.active_role.load(Relaxed)),
            StatusField::ActiveEpoch => self.active_epoch.load(Relaxed),
            StatusField::DataAgeMs => {
                let newest = self.newest_sample_us.load(Relaxed);
                if newest == 0 {
                    u32::MAX
                } else {
                    (now.0.saturating_sub(newest) / 1000).min(u64::from(u32::MAX)) as u32
                }
            }
            StatusField::TagsNotGood => self.tags_not_good(),
            StatusField::TagCount => self.values.len() as u32,
            StatusField::Switches => self.switches.load(Relaxed),
            StatusField::ServiceLevel => u32::from(self.service_level()),
        }
    }

    /// Reads holding/input registers `start..start+out.len()` into `out`. The caller has
    /// checked that the range lies inside the map. A two-register value is loaded once,
    /// so its words always belong together.
    pub fn read_registers(&self, bank: &Bank, start: u16, out: &mut [u16]) -> bool {
        let Some(cells) = bank.cells(start, out.len() as u16) else {
            return false;
        };
        // The status block needs the wall clock; data reads (nearly every request) do not.
        let mut now = None;
        let mut status_cache: Option<(StatusField, u32)> = None;
        let mut k = 0;
        while k < cells.len() {
            match cells[k] {
                Cell::Empty => {
                    out[k] = 0;
                    k += 1;
                }
                Cell::Value { point, word } => {
                    // A run of two-register values of consecutive points (the usual
                    // automatic map): copy it straight from the value array.
                    let pairs =
                        (usize::from(bank.pair_run(start + k as u16)).min(out.len() - k)) / 2;
                    if pairs > 0 {
                        let values = &self.values[point as usize..point as usize + pairs];
                        for (words, value) in out[k..k + 2 * pairs].chunks_exact_mut(2).zip(values)
                        {
                            let packed = value.load(Relaxed);
                            words[0] = (packed >> 16) as u16;
                            words[1] = packed as u16;
                        }
                        k += 2 * pairs;
                        continue;
                    }
                    // One load for both words of a value (its registers are adjacent), so
                    // they always belong together.
                    let packed = self.values[point as usize].load(Relaxed);
                    out[k] = word_of(packed, word);
                    k += 1;
                    if let Some(&Cell::Value { point: next, word }) = cells.get(k) {
                        if next == point {
                            out[k] = word_of(packed, word);
                            k += 1;
                        }
                    }
                }
                Cell::Quality { point } => {
                    out[k] = self.quality(point).code();
                    k += 1;
                }
                Cell::Status(field, word) => {
                    let v = match status_cache {
                        Some((f, v)) if f == field => v,
                        _ => {
                            let now = *now.get_or_insert_with(|| self.clock.wall());
                            let v = self.status_u32(field, now);
                            status_cache = Some((field, v));
                            v
                        }
                    };
                    let two_words = !matches!(
                        field,
                        StatusField::Heartbeat
                            | StatusField::State
                            | StatusField::ActiveSource
                            | StatusField::ActiveRole
                            | StatusField::ServiceLevel
                    );
                    out[k] = match (two_words, word) {
                        (false, _) => v as u16,
                        (true, 0) => (v >> 16) as u16,
                        (true, _) => v as u16,
                    };
                    k += 1;
                }
            }
        }
        true
    }

    /// Reads coils/discrete inputs (digital tags at their tag index).
    pub fn read_bits(&self, bank: &Bank, start: u16, out: &mut [bool]) -> bool {
        if u32::from(start) + out.len() as u32 > bank.coil_end() {
            return false;
        }
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = match bank.coil(start + i as u16).flatten() {
                Some(p) => self.values[p as usize].load(Relaxed) >> 16 != 0,
                None => false,
            };
        }
        true
    }

    pub fn word_order(&self) -> WordOrder {
        self.map.word_order()
    }
}
/// Word `word` of a point's packed registers: 0 the first register (the high half; a
/// one-register value is stored there), 1 the second (the word order was applied when the
/// value was packed).
fn word_of(packed: u32, word: u8) -> u16 {
    if word == 0 {
        (packed >> 16) as u16
    } else {
        packed as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MapConfig, ModbusConfig};
    use po_protocol::{TagId, TagInfo, TagKind};
    use proptest::prelude::*;

    fn kind(k: u8) -> TagKind {
        match k % 3 {
            0 => TagKind::Analog,
            1 => TagKind::Digital,
            _ => TagKind::Counter,
        }
    }

    fn value(kind: TagKind, seed: u64) -> Value {
        match kind {
            TagKind::Analog => Value::Analog(seed as f64 * 0.37),
            TagKind::Digital => Value::Digital(seed % 2 == 1),
            TagKind::Counter => Value::Counter(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    proptest! {
        /// A block read gives exactly what reading each of its registers alone gives,
        /// whatever the mix of kinds, word order, quality registers and where the block
        /// starts or ends (in the middle of a value too): the copy of runs of
        /// two-register values is only a faster way to the same answer.
        #[test]
        fn a_block_read_equals_its_registers_read_one_by_one(
            kinds in proptest::collection::vec(any::<u8>(), 1..80),
            little in any::<bool>(),
            quality in any::<bool>(),
            seed in any::<u64>(),
            start_pick in any::<u16>(),
            len in 1u16..=125,
        ) {
            let catalog: Vec<TagInfo> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| TagInfo {
                    id: TagId(i as u32),
                    name: format!("t{i}"),
                    unit: String::new(),
                    kind: kind(*k),
                    writable: false,
                })
                .collect();
            let mut modbus = ModbusConfig::default();
            if little {
                modbus.word_order = WordOrder::Little;
            }
            if quality {
                modbus.quality_base = Some(1000);
            }
            let map = RegisterMap::build(&catalog, &modbus, &MapConfig::default()).unwrap();
            let image = RegisterImage::new(Arc::new(map));
            let batch: Vec<TagValue> = catalog
                .iter()
                .enumerate()
                .map(|(i, t)| TagValue {
                    tag: t.id,
                    value: value(t.kind, seed.wrapping_add(i as u64)),
                    quality: Quality::Good,
                    sampled_at: Timestamp(1),
                })
                .collect();
            image.apply(&batch);
            let bank = &image.map().banks()[0];
            // Past the status block (registers 0..31, whose ages move with the clock).
            let first = 32u32;
            let end = bank.register_end();
            let len = u32::from(len).min(end - first) as u16;
            let start = (first + u32::from(start_pick) % (end - first - u32::from(len) + 1)) as u16;
            let mut block = vec![0u16; len as usize];
            prop_assert!(image.read_registers(bank, start, &mut block));
            let one_by_one: Vec<u16> = (start..start + len)
                .map(|a| {
                    let mut one = [0u16; 1];
                    assert!(image.read_registers(bank, a, &mut one));
                    one[0]
                })
                .collect();
            prop_assert_eq!(block, one_by_one);
        }
    }
}
