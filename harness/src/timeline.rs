//! The timeline of a run (docs/design.md §14): what happened when, sampled once per
//! [`SAMPLE_INTERVAL`] of the runner's clock (virtual in the simulation backend), for the
//! HTML report and the JSON key `timeline` (docs/scenarios.md, "Reports").
//!
//! As bands (consecutive samples with the same state merged), every sample: each server's
//! role and epoch, each connector's serving state, active source, its role and epoch
//! (from the connector's Modbus status block). Per [`WINDOW`]: ingest rate per connector,
//! delivered rate, freshness p50/p99, write outcomes and Modbus errors. And the faults as
//! applied.

use crate::measure::Recorder;
use po_protocol::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// How often the runner samples states (and reads ingest counters).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// The window rates are computed over: a multiple of the usual scan and poll periods
/// (100, 50, 10 ms), so that each window holds the same number of scans and polls (a
/// 250 ms window holds two or three 100 ms scans: its rates would zigzag).
pub const WINDOW: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    /// How often states (the bands) were sampled.
    pub interval_ms: u64,
    /// The nominal length of a window (the last one may be shorter).
    #[serde(default)]
    pub window_ms: u64,
    /// One entry per window, in time order.
    pub windows: Vec<Window>,
    /// Each server's role and epoch over time, in topology order.
    pub servers: Vec<Track<ServerState>>,
    /// Each connector's serving state, active source, role and epoch, in topology order.
    pub connectors: Vec<Track<ConnectorState>>,
    /// Each fault at the time it was applied.
    pub faults: Vec<FaultMark>,
}

/// The figures of one sampling window, which ends at `t_s`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// End of the window: seconds since the measured run started.
    pub t_s: f64,
    /// Per connector: tag updates/s accepted in the window; `null` when its counter
    /// could not be read at the end of the window (the connector down, or its metrics
    /// endpoint not answering; the next window that reads it counts what was missed).
    pub ingest_per_s: BTreeMap<String, Option<f64>>,
    /// Tag values/s the third parties read in the window.
    pub delivered_per_s: f64,
    /// Freshness of the probe reads in the window; `null` without a probe read.
    pub freshness_p50_ms: Option<u64>,
    pub freshness_p99_ms: Option<u64>,
    /// Probe reads in the window.
    pub freshness_samples: u64,
    /// Writes sent, acknowledged and refused in the window.
    pub writes_sent: u64,
    pub writes_acked: u64,
    pub writes_refused: u64,
    /// At the end of the window: acknowledged writes not read back yet that would count
    /// as lost if the run ended there (the final `writes.lost` comes after a read-back).
    pub writes_unconfirmed: u64,
    /// Exceptions, timeouts and connection failures the third parties saw in the window.
    pub modbus_errors: u64,
}

/// One component's state over time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Track<S> {
    pub name: String,
    pub bands: Vec<Band<S>>,
}

/// A stretch of time with one state: from the first sample that saw it to the first
/// sample that saw another (the last band ends at the last sample).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Band<S> {
    pub from_s: f64,
    pub to_s: f64,
    #[serde(flatten)]
    pub state: S,
}

/// A server's own view: `null` role and epoch while it is down (crashed, or its status
/// unknown to the harness).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerState {
    pub role: Option<Role>,
    pub epoch: Option<u64>,
}

/// What a connector's status block says (docs/register-map.md).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Serving {
    /// Register 1 = 0.
    Starting,
    /// Register 1 = 1: serving Primary data.
    Primary,
    /// Register 1 = 2: serving Standby data.
    Standby,
    /// Register 1 = 3: no source, data stale.
    Stale,
    /// The status block could not be read (connector down, paused or cut off).
    #[default]
    Unreachable,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectorState {
    pub state: Serving,
    /// The active source by server name; `null` without one.
    pub source: Option<String>,
    /// The active source's role; `null` when unknown or without a source.
    pub role: Option<Role>,
    /// The active source's epoch; `null` without a source.
    pub epoch: Option<u64>,
    /// The connector's service level (status register 14, equal to OPC UA
    /// `Server.ServiceLevel`); absent where it was not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_level: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultMark {
    /// When it was applied: seconds since the measured run started.
    pub at_s: f64,
    pub fault: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mechanism: String,
}

/// Registers 0..=14 of a connector's status block, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusBlock {
    pub state: u16,
    /// 0 none, 1 first configured source, 2 second.
    pub source: u16,
    /// 0 unknown, 1 Primary, 2 Standby.
    pub role: u16,
    pub epoch: u32,
    /// Register 14, when read: the service level (docs/register-map.md).
    pub service_level: Option<u16>,
}

impl StatusBlock {
    /// Decodes registers 0.. of the status block (at least 6; the service level from 15).
    pub fn decode(regs: &[u16]) -> Option<StatusBlock> {
        (regs.len() >= 6).then(|| StatusBlock {
            state: regs[1],
            source: regs[2],
            role: regs[3],
            epoch: (u32::from(regs[4]) << 16) | u32::from(regs[5]),
            service_level: regs.get(14).copied(),
        })
    }

    /// The connector's state, with the source named from its configured `sources`.
    pub fn state(&self, sources: &[String]) -> ConnectorState {
        let source = usize::from(self.source)
            .checked_sub(1)
            .and_then(|i| sources.get(i))
            .cloned();
        ConnectorState {
            state: match self.state {
                0 => Serving::Starting,
                1 => Serving::Primary,
                2 => Serving::Standby,
                _ => Serving::Stale,
            },
            role: match (self.role, &source) {
                (1, Some(_)) => Some(Role::Primary),
                (2, Some(_)) => Some(Role::Standby),
                _ => None,
            },
            epoch: source.as_ref().map(|_| u64::from(self.epoch)),
            source,
            service_level: self.service_level,
        }
    }
}

/// The counters of the previous sample.
#[derive(Debug, Clone)]
struct Last {
    t: Duration,
    ingest: Vec<u64>,
    values: u64,
    sent: u64,
    acked: u64,
    refused: u64,
    errors: u64,
}

/// Builds a [`Timeline`] from the runner's samples.
#[derive(Debug)]
pub struct Sampler {
    connectors: Vec<String>,
    /// Per connector, its configured sources by name (status register 2 counts from 1).
    sources: Vec<Vec<String>>,
    last: Option<Last>,
    timeline: Timeline,
}

/// Times to the millisecond.
fn secs(t: Duration) -> f64 {
    (t.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Rates to a tenth: more digits would only be noise in the JSON.
fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn extend<S: PartialEq>(track: &mut Track<S>, t: f64, state: S) {
    match track.bands.last_mut() {
        Some(b) if b.state == state => b.to_s = t,
        last => {
            if let Some(b) = last {
                b.to_s = t;
            }
            track.bands.push(Band {
                from_s: t,
                to_s: t,
                state,
            });
        }
    }
}

/// What the runner read at one sampling instant.
#[derive(Debug)]
pub struct Sample<'a> {
    /// Since the measured run started.
    pub t: Duration,
    /// Per connector: updates accepted since the start of the measured run, and whether
    /// its counter was read at this instant.
    pub ingest: &'a [(u64, bool)],
    /// Per server (in the order given to [`Sampler::new`]): role and epoch, `None` while down.
    pub servers: &'a [Option<(Role, u64)>],
    /// Per connector: its status block, `None` when it could not be read.
    pub status: &'a [Option<StatusBlock>],
    /// The end of the run: closes the last window, however short.
    pub last: bool,
}

impl Sampler {
    /// `sources`: per connector, its configured sources' server names in order.
    pub fn new(servers: &[String], connectors: &[(String, Vec<String>)]) -> Sampler {
        Sampler {
            connectors: connectors.iter().map(|(n, _)| n.clone()).collect(),
            sources: connectors.iter().map(|(_, s)| s.clone()).collect(),
            last: None,
            timeline: Timeline {
                interval_ms: SAMPLE_INTERVAL.as_millis() as u64,
                window_ms: WINDOW.as_millis() as u64,
                servers: servers
                    .iter()
                    .map(|n| Track {
                        name: n.clone(),
                        bands: vec![],
                    })
                    .collect(),
                connectors: connectors
                    .iter()
                    .map(|(n, _)| Track {
                        name: n.clone(),
                        bands: vec![],
                    })
                    .collect(),
                ..Timeline::default()
            },
        }
    }

    /// Records one sample: states always, a window once [`WINDOW`] has passed since the
    /// last one (or at the end).
    pub fn sample(&mut self, s: &Sample<'_>, rec: &Recorder) {
        let t_s = secs(s.t);
        for (track, st) in self.timeline.servers.iter_mut().zip(s.servers) {
            let state = ServerState {
                role: st.map(|(r, _)| r),
                epoch: st.map(|(_, e)| e),
            };
            extend(track, t_s, state);
        }
        for ((track, st), sources) in self
            .timeline
            .connectors
            .iter_mut()
            .zip(s.status)
            .zip(&self.sources)
        {
            let state = st.map(|b| b.state(sources)).unwrap_or_default();
            extend(track, t_s, state);
        }
        // A window closes once it is long enough (a tick may come a little early after
        // a late one), or at the end if it is not empty.
        let since = self.last.as_ref().map(|l| s.t.saturating_sub(l.t));
        let close = match since {
            None => true,
            Some(d) if s.last => d >= Duration::from_millis(1),
            Some(d) => d >= WINDOW - SAMPLE_INTERVAL / 2,
        };
        if !close {
            return;
        }
        let now = Last {
            t: s.t,
            ingest: s.ingest.iter().map(|(n, _)| *n).collect(),
            values: rec.values.load(Relaxed),
            sent: rec.writes_sent.load(Relaxed),
            acked: rec.writes_acked.load(Relaxed),
            refused: rec.writes_refused.load(Relaxed),
            errors: rec.errors.load(Relaxed),
        };
        let (p50, p99, probes) = rec.take_window_latency();
        if let Some(last) = &self.last {
            let dt = s.t.saturating_sub(last.t).as_secs_f64();
            let ingest_per_s = self
                .connectors
                .iter()
                .zip(s.ingest)
                .zip(&last.ingest)
                .map(|((name, (total, read)), before)| {
                    let rate = read.then(|| round1(total.saturating_sub(*before) as f64 / dt));
                    (name.clone(), rate)
                })
                .collect();
            self.timeline.windows.push(Window {
                t_s,
                ingest_per_s,
                delivered_per_s: round1(now.values.saturating_sub(last.values) as f64 / dt),
                freshness_p50_ms: p50,
                freshness_p99_ms: p99,
                freshness_samples: probes,
                writes_sent: now.sent.saturating_sub(last.sent),
                writes_acked: now.acked.saturating_sub(last.acked),
                writes_refused: now.refused.saturating_sub(last.refused),
                writes_unconfirmed: rec.write_outcome().1,
                modbus_errors: now.errors.saturating_sub(last.errors),
            });
        }
        self.last = Some(now);
    }

    /// A fault applied at `t` since the start of the measured run.
    pub fn fault(&mut self, t: Duration, fault: String, mechanism: String) {
        self.timeline.faults.push(FaultMark {
            at_s: secs(t),
            fault,
            mechanism,
        });
    }

    pub fn finish(self) -> Timeline {
        self.timeline
    }
}

impl Timeline {
    /// The first time at or after `from_s` at which connector `name` served data from
    /// `source` (for tests and the HTML report's switch table).
    pub fn connector_switch_to(&self, name: &str, source: &str, from_s: f64) -> Option<f64> {
        self.connectors
            .iter()
            .find(|c| c.name == name)?
            .bands
            .iter()
            .find(|b| b.to_s >= from_s && b.state.source.as_deref() == Some(source))
            .map(|b| b.from_s.max(from_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_blocks_name_the_source_and_bands_merge_equal_states() {
        let sources = vec!["po-a".to_string(), "po-b".to_string()];
        let b = StatusBlock::decode(&[7, 1, 2, 1, 0, 3, 0, 0]).unwrap();
        assert_eq!(
            b.state(&sources),
            ConnectorState {
                state: Serving::Primary,
                source: Some("po-b".into()),
                role: Some(Role::Primary),
                epoch: Some(3),
                service_level: None,
            }
        );
        let none = StatusBlock::decode(&[7, 3, 0, 0, 0, 3]).unwrap();
        assert_eq!(none.state(&sources).source, None);
        assert_eq!(none.state(&sources).epoch, None);
        assert!(StatusBlock::decode(&[1, 2]).is_none());

        let mut track = Track::default();
        for (t, v) in [(0.0, 1), (0.25, 1), (0.5, 2), (0.75, 2), (1.0, 2)] {
            extend(&mut track, t, v);
        }
        let spans: Vec<_> = track
            .bands
            .iter()
            .map(|b| (b.from_s, b.to_s, b.state))
            .collect();
        assert_eq!(spans, [(0.0, 0.5, 1), (0.5, 1.0, 2)]);
    }
}
