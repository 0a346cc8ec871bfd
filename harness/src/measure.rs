//! Measurements exactly as docs/design.md §7 defines them, shared by every third party of a run.
//!
//! - *integrity*: every value read is compared, register for register, with what the
//!   field model gives for that tag at some tick of the allowed window (written setpoints
//!   are also allowed on writable tags);
//! - *freshness latency*: for probe tags (their value is the server's sample time in ms),
//!   read time minus sample time;
//! - *failover gap*: per fault, from the fault until a third party reads a probe sampled
//!   after the fault (the longest such wait over the third parties);
//! - *writes*: sent, acknowledged, applied (seen on read-back), lost, refused.

use hdrhistogram::Histogram;
use po_protocol::{TagId, TagKind, Timestamp, Value};
use po_runtime::Clock;
use po_simulator::FieldModel;
use smart_connector::map::Point;
use smart_connector::registers::{WordOrder, decode, encode};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Ticks searched backwards from now when the probe hint does not match: covers data
/// frozen during a long failover (values are then old, not wrong).
const WINDOW_TICKS: u64 = 600;

/// One write a third party made, and what became of it.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    pub value: Value,
    pub acked: bool,
    pub seen: bool,
    pub seq: u64,
    /// Position in the order of write events (sends and acknowledgements) of the run.
    pub sent_at: u64,
    pub acked_at: Option<u64>,
}

/// Freshness latencies (ms): over the whole run, and since the timeline last looked.
#[derive(Debug)]
struct Latencies {
    run: Histogram<u64>,
    window: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid bounds");
        Latencies {
            run: h(),
            window: h(),
        }
    }
}

impl Latencies {
    fn record(&mut self, ms: u64) {
        self.run.saturating_record(ms);
        self.window.saturating_record(ms);
    }
}

#[derive(Debug)]
pub struct Recorder {
    model: FieldModel,
    /// The clock the servers stamp samples with (virtual in the simulation backend).
    clock: Arc<dyn Clock>,
    order: WordOrder,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub values: AtomicU64,
    pub values_checked: AtomicU64,
    pub values_wrong: AtomicU64,
    pub writes_sent: AtomicU64,
    pub writes_acked: AtomicU64,
    pub writes_refused: AtomicU64,
    write_seq: AtomicU64,
    /// Orders sends and acknowledgements of writes, to tell concurrent writes apart.
    write_events: AtomicU64,
    latency: Mutex<Latencies>,
    /// Per third party: (read time ms, newest probe sample ms seen in that poll).
    timelines: Mutex<Vec<Vec<(u64, u64)>>>,
    wrong_examples: Mutex<Vec<String>>,
    /// Ordered by tag: the read-back visits tags in the same order on every run.
    written: Mutex<BTreeMap<TagId, Vec<WriteRecord>>>,
}

impl Recorder {
    pub fn new(
        model: FieldModel,
        order: WordOrder,
        clients: usize,
        clock: Arc<dyn Clock>,
    ) -> Recorder {
        Recorder {
            model,
            clock,
            order,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            values: AtomicU64::new(0),
            values_checked: AtomicU64::new(0),
            values_wrong: AtomicU64::new(0),
            writes_sent: AtomicU64::new(0),
            writes_acked: AtomicU64::new(0),
            writes_refused: AtomicU64::new(0),
            write_seq: AtomicU64::new(0),
            write_events: AtomicU64::new(0),
            latency: Mutex::new(Latencies::default()),
            timelines: Mutex::new(vec![Vec::new(); clients]),
            wrong_examples: Mutex::new(Vec::new()),
            written: Mutex::new(BTreeMap::new()),
        }
    }

    /// Wall-clock milliseconds since the Unix epoch, on the servers' clock.
    pub fn wall_ms(&self) -> u64 {
        self.clock.wall().as_millis()
    }

    /// The full sample time of a probe from its low 32 bits: the one closest to now.
    fn unwrap_probe(low: u32, now_ms: u64) -> u64 {
        let base = now_ms & !0xFFFF_FFFF;
        [base.wrapping_sub(1 << 32), base, base + (1 << 32)]
            .into_iter()
            .map(|b| b | u64::from(low))
            .min_by_key(|c| c.abs_diff(now_ms))
            .unwrap_or(u64::from(low))
    }

    /// Checks the values of `points` read as `regs` (registers from `first`). Returns the
    /// newest probe sample time seen (ms), if any.
    pub fn check_block(&self, points: &[Point], first: u16, regs: &[u16]) -> Option<u64> {
        let now = self.clock.wall();
        let now_ms = now.as_millis();
        let now_tick = self.model.tick_at(now);
        let mut newest_probe = None;
        let mut hint: Option<u64> = None;
        let mut checked = 0u64;
        let mut wrong = 0u64;
        for p in points {
            let at = usize::from(p.address - first);
            let words = &regs[at..at + usize::from(p.words)];
            // A probe is a Counter holding the sample time in ms; Modbus carries its low
            // 32 bits.
            if self.model.is_probe(p.tag)
                && let Value::Counter(low) = decode(p.kind, words, self.order)
            {
                let sample = Self::unwrap_probe(low as u32, now_ms);
                self.latency
                    .lock()
                    .unwrap()
                    .record(now_ms.saturating_sub(sample).max(1));
                newest_probe = newest_probe.max(Some(sample));
                hint = Some(self.model.tick_at(Timestamp(sample.saturating_mul(1000))));
            }
            checked += 1;
            if !self.value_is_right(p, words, hint.unwrap_or(now_tick), now_tick) {
                wrong += 1;
                let mut ex = self.wrong_examples.lock().unwrap();
                if ex.len() < 10 {
                    ex.push(format!(
                        "{} at register {} read {:?}",
                        self.model.catalog()[p.tag.index()].name,
                        p.address,
                        words
                    ));
                }
            }
        }
        self.values.fetch_add(checked, Relaxed);
        self.values_checked.fetch_add(checked, Relaxed);
        self.values_wrong.fetch_add(wrong, Relaxed);
        newest_probe
    }

    /// Checks one value a third party received with its sample time (OPC UA: the
    /// SourceTimestamp, µs since the epoch): a written setpoint of the tag, or the field's
    /// value at exactly that sample. A probe's freshness is recorded. Returns whether the
    /// value was right.
    pub fn check_sample(&self, tag: TagId, writable: bool, value: Value, sample_us: u64) -> bool {
        let now_ms = self.clock.wall().as_millis();
        let sample_ms = sample_us / 1000;
        if self.model.is_probe(tag) {
            self.latency
                .lock()
                .unwrap()
                .record(now_ms.saturating_sub(sample_ms).max(1));
        }
        let same = |a: Value, b: Value| match (a, b) {
            (Value::Analog(x), Value::Analog(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            (a, b) => a == b,
        };
        let mut right = false;
        if writable && let Some(list) = self.written.lock().unwrap().get_mut(&tag) {
            for w in list.iter_mut().filter(|w| same(w.value, value)) {
                w.seen = true;
                right = true;
            }
        }
        if !right {
            let tick = self.model.tick_at(Timestamp(sample_us));
            right = self.model.tick_time(tick) == Timestamp(sample_us)
                && self.model.value(tag, tick).is_some_and(|v| same(v, value));
        }
        self.values.fetch_add(1, Relaxed);
        self.values_checked.fetch_add(1, Relaxed);
        if !right {
            self.values_wrong.fetch_add(1, Relaxed);
            let mut ex = self.wrong_examples.lock().unwrap();
            if ex.len() < 10 {
                ex.push(format!(
                    "{} = {value} at SourceTimestamp {sample_us} µs",
                    self.model.catalog()[tag.index()].name
                ));
            }
        }
        right
    }

    /// A value a third party received without a usable quality (not checked: its value
    /// is the last usable one, or none).
    pub fn value_unchecked(&self) {
        self.values.fetch_add(1, Relaxed);
    }

    fn value_is_right(&self, p: &Point, words: &[u16], hint: u64, now_tick: u64) -> bool {
        let n = usize::from(p.words);
        let matches = |v: Value| encode(v, self.order).0[..n] == *words;
        if p.writable {
            let mut written = self.written.lock().unwrap();
            if let Some(list) = written.get_mut(&p.tag) {
                let mut hit = false;
                for w in list.iter_mut().filter(|w| matches(w.value)) {
                    w.seen = true;
                    hit = true;
                }
                if hit {
                    return true;
                }
            }
        }
        let at = |t: u64| self.model.value(p.tag, t).is_some_and(matches);
        // The probe of the same device usually names the tick; neighbours cover a read
        // that straddled an update.
        let near = [
            hint,
            hint.wrapping_sub(1),
            hint + 1,
            hint.wrapping_sub(2),
            hint + 2,
        ];
        if near.iter().any(|t| *t <= now_tick + 1 && at(*t)) {
            return true;
        }
        // Once plenty of values are wrong (a misconfigured master), stop the deep search.
        if self.values_wrong.load(Relaxed) > 10_000 {
            return false;
        }
        (now_tick.saturating_sub(WINDOW_TICKS)..=now_tick + 1)
            .rev()
            .any(at)
    }

    /// One poll cycle of third party `client` ended at `read_ms` with this newest probe.
    pub fn record_cycle(&self, client: usize, read_ms: u64, newest_probe: Option<u64>) {
        if let Some(s) = newest_probe {
            self.timelines.lock().unwrap()[client].push((read_ms, s));
        }
    }

    pub fn next_write_seq(&self) -> u64 {
        self.write_seq.fetch_add(1, Relaxed)
    }

    pub fn write_sent(&self, tag: TagId, value: Value, seq: u64) {
        self.writes_sent.fetch_add(1, Relaxed);
        self.written
            .lock()
            .unwrap()
            .entry(tag)
            .or_default()
            .push(WriteRecord {
                value,
                acked: false,
                seen: false,
                seq,
                sent_at: self.write_events.fetch_add(1, Relaxed),
                acked_at: None,
            });
    }

    pub fn write_acked(&self, tag: TagId, seq: u64) {
        self.writes_acked.fetch_add(1, Relaxed);
        if let Some(w) = self
            .written
            .lock()
            .unwrap()
            .get_mut(&tag)
            .and_then(|l| l.iter_mut().find(|w| w.seq == seq))
        {
            w.acked = true;
            w.acked_at = Some(self.write_events.fetch_add(1, Relaxed));
        }
    }

    pub fn write_refused(&self) {
        self.writes_refused.fetch_add(1, Relaxed);
    }

    /// Tags written at least once (for the final read-back).
    pub fn written_tags(&self) -> Vec<TagId> {
        self.written.lock().unwrap().keys().copied().collect()
    }

    /// The lost writes (as `write_outcome` counts them), each with its tag's history.
    pub fn lost_examples(&self) -> Vec<String> {
        let written = self.written.lock().unwrap();
        let mut out = Vec::new();
        for (tag, list) in written.iter() {
            if out.len() >= 10 {
                break;
            }
            if Self::lost_in(list).is_empty() {
                continue;
            }
            let history: Vec<String> = list
                .iter()
                .map(|w| {
                    format!(
                        "#{} {} sent@{} {} {}",
                        w.seq,
                        w.value,
                        w.sent_at,
                        w.acked_at
                            .map_or("unanswered".into(), |a| format!("acked@{a}")),
                        if w.seen { "seen" } else { "unseen" }
                    )
                })
                .collect();
            out.push(format!("tag {tag}: {}", history.join(", ")));
        }
        out
    }

    /// The lost writes of one tag's list.
    fn lost_in(list: &[WriteRecord]) -> Vec<u64> {
        let last_acked = list.iter().filter(|w| w.acked).map(|w| w.seq).max();
        list.iter()
            .filter(|w| w.acked && !w.seen && Some(w.seq) == last_acked)
            .filter(|w| {
                !list
                    .iter()
                    .any(|v| v.seq != w.seq && v.seen && v.acked_at.is_none_or(|a| a > w.sent_at))
            })
            .map(|w| w.seq)
            .collect()
    }

    /// (applied, lost): an acknowledged write is applied once read back. One never seen
    /// is lost if it is the tag's last acknowledged write and no other write to the tag
    /// that may have been applied after it was seen in its place: one sent after it, or
    /// one still unanswered when it was sent (concurrent writes of two masters, or a
    /// timed-out write, may reach the server in either order, as Modbus allows).
    pub fn write_outcome(&self) -> (u64, u64) {
        let written = self.written.lock().unwrap();
        let (mut applied, mut lost) = (0, 0);
        for list in written.values() {
            applied += list.iter().filter(|w| w.acked && w.seen).count() as u64;
            lost += Self::lost_in(list).len() as u64;
        }
        (applied, lost)
    }

    pub fn latency_ms(&self) -> (u64, u64, u64) {
        let l = self.latency.lock().unwrap();
        let h = &l.run;
        if h.is_empty() {
            return (0, 0, 0);
        }
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
    }

    pub fn latency_samples(&self) -> u64 {
        self.latency.lock().unwrap().run.len()
    }

    /// Freshness of the probe reads since the last call (the timeline's window): p50,
    /// p99 (`None` without a read) and the number of reads; starts the next window.
    pub fn take_window_latency(&self) -> (Option<u64>, Option<u64>, u64) {
        let mut l = self.latency.lock().unwrap();
        let h = &mut l.window;
        let out = if h.is_empty() {
            (None, None, 0)
        } else {
            (
                Some(h.value_at_quantile(0.5)),
                Some(h.value_at_quantile(0.99)),
                h.len(),
            )
        };
        h.reset();
        out
    }

    /// Failover gap of a fault at `fault_ms`: the longest wait over third parties until
    /// one of their polls saw a probe sampled after the fault and fresher than
    /// `stale_threshold_ms`; `Err` if some third party never did (the gap lasted until
    /// `end_ms`).
    pub fn gap_after(
        &self,
        fault_ms: u64,
        end_ms: u64,
        stale_threshold_ms: u64,
    ) -> Result<u64, u64> {
        let clients = self.timelines.lock().unwrap().len();
        let mut worst = 0;
        for c in 0..clients {
            worst = worst.max(self.gap_of(c, fault_ms, end_ms, stale_threshold_ms)?);
        }
        Ok(worst)
    }

    /// [`Recorder::gap_after`] of third party `client` alone.
    pub fn gap_of(
        &self,
        client: usize,
        fault_ms: u64,
        end_ms: u64,
        stale_threshold_ms: u64,
    ) -> Result<u64, u64> {
        let timelines = self.timelines.lock().unwrap();
        let fresh = |(read, sample): &&(u64, u64)| {
            *sample > fault_ms && read.saturating_sub(*sample) < stale_threshold_ms
        };
        match timelines.get(client).and_then(|t| t.iter().find(fresh)) {
            Some((read, _)) => Ok(read.saturating_sub(fault_ms)),
            None => Err(end_ms.saturating_sub(fault_ms)),
        }
    }

    pub fn wrong_examples(&self) -> Vec<String> {
        self.wrong_examples.lock().unwrap().clone()
    }
}

/// A block of registers a master reads in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    /// The Modbus unit (bank) holding it (docs/design.md §15).
    pub unit: u8,
    pub first: u16,
    pub count: u16,
    /// The points it covers, as a range of the points list.
    pub points: std::ops::Range<usize>,
}

/// Register blocks a master reads: contiguous runs of ≤ 125 registers of one unit that
/// never split a value, covering every point. `points` must be sorted by unit, then
/// address (as the automatic map lays them out).
pub fn read_blocks(points: &[Point]) -> Vec<ReadBlock> {
    debug_assert!(
        points
            .windows(2)
            .all(|w| (w[0].unit_id, w[0].address) < (w[1].unit_id, w[1].address))
    );
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < points.len() {
        let (unit, start) = (points[i].unit_id, points[i].address);
        let mut j = i;
        while j < points.len()
            && points[j].unit_id == unit
            && u32::from(points[j].address) + u32::from(points[j].words) - u32::from(start) <= 125
        {
            j += 1;
        }
        let last = &points[j - 1];
        blocks.push(ReadBlock {
            unit,
            first: start,
            // In u32: a bank's last value may end at register 65535.
            count: (u32::from(last.address) + u32::from(last.words) - u32::from(start)) as u16,
            points: i..j,
        });
        i = j;
    }
    blocks
}

/// Whether a tag can be written as an f32 setpoint by the third parties.
pub fn is_setpoint(p: &Point) -> bool {
    p.writable && p.kind == TagKind::Analog
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(clients: usize) -> Recorder {
        let model = FieldModel::new(1, po_simulator::SiteSpec::default()).unwrap();
        Recorder::new(
            model,
            WordOrder::Big,
            clients,
            Arc::new(po_runtime::SystemClock),
        )
    }

    #[test]
    fn the_gap_ends_at_the_first_fresh_read_of_data_sampled_after_the_fault() {
        let r = recorder(2);
        // Client 0: old data until 1_300, then a fresh post-fault sample at 1_400.
        r.record_cycle(0, 1_100, Some(990));
        r.record_cycle(0, 1_300, Some(995));
        r.record_cycle(0, 1_400, Some(1_350));
        // Client 1 recovers sooner, but first reads a post-fault sample that is stale.
        r.record_cycle(1, 1_150, Some(1_010));
        r.record_cycle(1, 2_200, Some(1_020));
        r.record_cycle(1, 1_600, Some(1_550));
        assert_eq!(
            r.gap_after(1_000, 5_000, 1_000),
            Ok(400),
            "the slower third party counts"
        );
        assert_eq!(
            r.gap_after(1_000, 5_000, 100),
            Ok(600),
            "140 ms old is not fresh at 100 ms"
        );
        assert_eq!(
            r.gap_after(1_380, 5_000, 1_000),
            Err(3_620),
            "never recovered: gap until the end"
        );
    }

    #[test]
    fn an_acknowledged_write_overwritten_by_a_later_unanswered_one_is_not_lost() {
        let r = recorder(1);
        let tag = TagId(3);
        let mark_seen = |seq: u64| {
            let mut w = r.written.lock().unwrap();
            w.get_mut(&tag)
                .unwrap()
                .iter_mut()
                .find(|x| x.seq == seq)
                .unwrap()
                .seen = true;
        };
        r.write_sent(tag, Value::Analog(1.0), 1);
        r.write_acked(tag, 1);
        r.write_sent(tag, Value::Analog(2.0), 2); // timed out: outcome unknown
        assert_eq!(
            r.write_outcome(),
            (0, 1),
            "nothing seen yet: the acked write counts as lost"
        );
        mark_seen(2);
        assert_eq!(
            r.write_outcome(),
            (0, 0),
            "the later write was applied over it"
        );
        // Write 2's answer arrives after all: its place in the order is known now.
        r.write_acked(tag, 2);
        r.write_sent(tag, Value::Analog(3.0), 3);
        r.write_acked(tag, 3);
        assert_eq!(
            r.write_outcome(),
            (1, 1),
            "a later acknowledged write must itself be seen"
        );
        mark_seen(3);
        assert_eq!(r.write_outcome(), (2, 0));
        // Two masters write at once: 5 is sent, 6 is sent and answered, then 5 is
        // answered. The server may have applied 6 before 5: seeing 5 explains 6.
        r.write_sent(tag, Value::Analog(5.0), 5);
        r.write_sent(tag, Value::Analog(6.0), 6);
        r.write_acked(tag, 6);
        r.write_acked(tag, 5);
        assert_eq!(r.write_outcome(), (2, 1));
        mark_seen(5);
        assert_eq!(r.write_outcome(), (3, 0));
        // But a write answered before 7 was sent cannot explain 7 away.
        r.write_sent(tag, Value::Analog(7.0), 7);
        r.write_acked(tag, 7);
        assert_eq!(r.write_outcome(), (3, 1));
    }

    #[test]
    fn a_sample_is_checked_at_its_source_timestamp() {
        let model = FieldModel::new(1, po_simulator::SiteSpec::default()).unwrap();
        let r = recorder(1);
        let analog = model
            .catalog()
            .iter()
            .find(|t| t.kind == TagKind::Analog && !t.writable)
            .unwrap()
            .id;
        // Ticks whose values differ: a value stamped with the wrong sample is wrong.
        let (t1, t2) = (1_000u64..)
            .map(|t| (t, t + 1))
            .find(|(a, b)| model.value(analog, *a) != model.value(analog, *b))
            .unwrap();
        let at = |t: u64| model.tick_time(t).0;
        let v1 = model.value(analog, t1).unwrap();
        assert!(r.check_sample(analog, false, v1, at(t1)));
        assert!(
            !r.check_sample(analog, false, v1, at(t2)),
            "another sample's value"
        );
        assert!(
            !r.check_sample(analog, false, v1, at(t1) + 1),
            "a SourceTimestamp that is no sample time"
        );
        assert_eq!(
            (r.values_checked.load(Relaxed), r.values_wrong.load(Relaxed)),
            (3, 2)
        );
        // A value written to a writable tag is right whatever the sample, and seen.
        let setpoint = model.catalog().iter().find(|t| t.writable).unwrap().id;
        r.write_sent(setpoint, Value::Analog(1_000_007.0), 7);
        r.write_acked(setpoint, 7);
        assert_eq!(r.write_outcome(), (0, 1));
        assert!(r.check_sample(setpoint, true, Value::Analog(1_000_007.0), at(t2)));
        assert_eq!(r.write_outcome(), (1, 0));
    }

    #[test]
    fn probe_unwrapping_picks_the_nearest_epoch() {
        let now = 0x0000_01A0_0000_1000u64;
        assert_eq!(
            Recorder::unwrap_probe(0x0000_0F00, now),
            0x0000_01A0_0000_0F00
        );
        // Just before a 2^32 boundary seen from just after it.
        assert_eq!(
            Recorder::unwrap_probe(0xFFFF_FF00, now),
            0x0000_019F_FFFF_FF00
        );
    }
}
