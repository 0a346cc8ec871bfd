//! OPC UA third parties (`[third_party.opcua]`, docs/scenarios.md).
//!
//! Each subscribes to every tag of the map (sampling interval 0: every change the
//! connector ingests) and checks each notification against the field model at its
//! SourceTimestamp, through the run's one [`Recorder`]. A `plain` client stays on the
//! first connector (reconnecting after a loss). A `redundant` one keeps a session to every
//! connector, reads each one's `Server.ServiceLevel` every [`LEVEL_PERIOD`], lets the
//! [`Follower`] choose and, when it moves, re-creates its subscription and monitored items
//! on the new server (OPC UA Part 4 §6.6.2.4.5). Writes go through the Write service to
//! the server it is on, with the same accounting as the Modbus masters'.

use super::client::{TAGS_NAMESPACE, UaIdentity, UaSession, UaTarget, connect};
use super::follower::Follower;
use crate::measure::{Recorder, is_setpoint};
use crate::third_party::ThirdPartyKind;
use anyhow::{Context as _, Result};
use opcua::client::{DataChangeCallback, MonitoredItem, Session};
use opcua::types::{
    AttributeId, DataValue, Identifier, MonitoredItemCreateRequest, NodeId, ReadValueId,
    StatusCode, TimestampsToReturn, VariableId, Variant, WriteValue,
};
use po_protocol::{TagId, Value};
use po_runtime::Net;
use smart_connector::map::Point;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a redundant client reads every server's ServiceLevel.
pub const LEVEL_PERIOD: Duration = Duration::from_millis(100);

/// Longest wait for a session to open or a ServiceLevel read.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct UaClientSpec {
    /// This client's index among the run's third parties (the recorder's timelines).
    pub index: usize,
    pub kind: ThirdPartyKind,
    /// Every connector's endpoint, in topology order.
    pub targets: Vec<UaTarget>,
    pub from: Option<IpAddr>,
    pub net: Arc<dyn Net>,
    pub identity: UaIdentity,
    pub points: Arc<Vec<Point>>,
    /// Tag names by tag index (the catalogue): a tag's NodeId is its name.
    pub names: Arc<Vec<String>>,
    pub publishing_interval: Duration,
    pub writes_per_s: f64,
    pub write_timeout: Duration,
}

/// The tags monitored, by NodeId string: id and whether the tag is writable.
type Tags = Arc<HashMap<String, (TagId, bool)>>;

/// A subscription of every tag on one server.
struct DataSession {
    server: usize,
    ua: UaSession,
    ns: u16,
    /// Cleared when the client leaves this server: notifications its session still
    /// delivers while closing in the background are not the client's data any more and
    /// must not count as fresh data in the failover gap.
    current: Arc<AtomicBool>,
}

/// Runs one OPC UA client until `end`.
pub async fn run(spec: UaClientSpec, rec: Arc<Recorder>, end: Instant) {
    let tags: Tags = Arc::new(
        spec.points
            .iter()
            .map(|p| (spec.names[p.tag.index()].clone(), (p.tag, p.writable)))
            .collect(),
    );
    let (session_tx, session_rx) = watch::channel(None::<(Arc<Session>, u16)>);
    let writer = (spec.writes_per_s > 0.0)
        .then(|| tokio::spawn(writer(spec.clone(), rec.clone(), session_rx, end)));
    let servers = match spec.kind {
        ThirdPartyKind::Plain => 1,
        ThirdPartyKind::Redundant => spec.targets.len(),
    };
    let mut follower = Follower::new(servers);
    let mut watchers: Vec<Option<UaSession>> = (0..servers).map(|_| None).collect();
    let mut data: Option<DataSession> = None;
    let mut tick = tokio::time::interval(LEVEL_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(end) => break,
        }
        let chosen = match spec.kind {
            ThirdPartyKind::Plain => Some(0),
            ThirdPartyKind::Redundant => {
                let levels = futures::future::join_all(
                    watchers
                        .iter_mut()
                        .enumerate()
                        .map(|(i, w)| service_level(&spec, i, w)),
                )
                .await;
                for (i, l) in levels.into_iter().enumerate() {
                    follower.handle_level(i, l);
                }
                follower.poll_choice()
            }
        };
        let Some(chosen) = chosen else { continue };
        let on_it = data
            .as_ref()
            .is_some_and(|d| d.server == chosen && d.ua.is_alive());
        if on_it {
            continue;
        }
        if let Some(old) = data.take() {
            tracing::info!(
                client = spec.index,
                from = old.server,
                to = chosen,
                "OPC UA client moves"
            );
            session_tx.send_replace(None);
            old.current.store(false, Relaxed);
            // Closing the old session is not on the way to the new one: an HA client
            // that waited for a lost or slow server's goodbye would add that wait to
            // the failover gap it reports.
            tokio::spawn(old.ua.close());
        }
        // Bounded by the end of the run: a server that accepts and then never answers
        // must not hold the run past its end.
        let subscribed = tokio::time::timeout_at(end, subscribe(&spec, chosen, &tags, &rec))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the run ended first")));
        match subscribed {
            Ok(d) => {
                session_tx.send_replace(Some((d.ua.session.clone(), d.ns)));
                data = Some(d);
            }
            Err(e) => {
                rec.errors.fetch_add(1, Relaxed);
                tracing::debug!(
                    client = spec.index,
                    server = chosen,
                    "OPC UA subscribe: {e:#}"
                );
            }
        }
    }
    session_tx.send_replace(None);
    if let Some(w) = writer {
        let _ = w.await;
    }
    if let Some(d) = data {
        d.ua.close().await;
    }
    for w in watchers.into_iter().flatten() {
        w.close().await;
    }
}

/// Server `i`'s ServiceLevel over its watching session (opened, or reopened after a
/// loss, as needed); `None` when it cannot be read.
async fn service_level(spec: &UaClientSpec, i: usize, w: &mut Option<UaSession>) -> Option<u8> {
    if w.as_ref().is_some_and(|s| !s.is_alive()) {
        *w = None;
    }
    if w.is_none() {
        *w = connect(
            spec.net.clone(),
            spec.from,
            &spec.targets[i],
            &spec.identity,
            READ_TIMEOUT,
            CONNECT_TIMEOUT,
        )
        .await
        .inspect_err(|e| tracing::debug!(server = i, "OPC UA watch: {e:#}"))
        .ok();
    }
    let s = w.as_ref()?;
    let node = ReadValueId {
        node_id: VariableId::Server_ServiceLevel.into(),
        attribute_id: AttributeId::Value as u32,
        ..Default::default()
    };
    let read = tokio::time::timeout(
        READ_TIMEOUT,
        s.session.read(&[node], TimestampsToReturn::Neither, 0.0),
    )
    .await;
    match read {
        Ok(Ok(v)) => match v.first().and_then(|d| d.value.as_ref()) {
            Some(Variant::Byte(l)) => Some(*l),
            _ => None,
        },
        _ => {
            // A session that does not answer is as good as lost: open a new one.
            *w = None;
            None
        }
    }
}

/// Opens a session on server `i` and subscribes to every tag.
async fn subscribe(
    spec: &UaClientSpec,
    i: usize,
    tags: &Tags,
    rec: &Arc<Recorder>,
) -> Result<DataSession> {
    let ua = connect(
        spec.net.clone(),
        spec.from,
        &spec.targets[i],
        &spec.identity,
        spec.write_timeout,
        CONNECT_TIMEOUT,
    )
    .await?;
    let ns = ua
        .session
        .get_namespace_index(TAGS_NAMESPACE)
        .await
        .context("resolving the tags' namespace")?;
    let (client, tags_cb, rec_cb) = (spec.index, tags.clone(), rec.clone());
    let current = Arc::new(AtomicBool::new(true));
    let current_cb = current.clone();
    let sub = ua
        .session
        .create_subscription(
            spec.publishing_interval,
            60,
            10,
            0,
            0,
            true,
            DataChangeCallback::new(move |dv, item| {
                if current_cb.load(Relaxed) {
                    on_value(&rec_cb, &tags_cb, client, dv, item);
                }
            }),
        )
        .await
        .context("CreateSubscription")?;
    let items: Vec<MonitoredItemCreateRequest> = tags
        .keys()
        .map(|name| {
            let mut r: MonitoredItemCreateRequest = NodeId::new(ns, name.clone()).into();
            // Every change the connector ingests (docs/opcua.md, Subscriptions).
            r.requested_parameters.sampling_interval = 0.0;
            r.requested_parameters.queue_size = 100;
            r.requested_parameters.discard_oldest = true;
            r
        })
        .collect();
    let created = ua
        .session
        .create_monitored_items(sub, TimestampsToReturn::Both, items)
        .await
        .context("CreateMonitoredItems")?;
    let refused = created
        .iter()
        .filter(|c| !c.result.status_code.is_good())
        .count();
    if refused > 0 {
        anyhow::bail!("{refused} of {} monitored items refused", created.len());
    }
    Ok(DataSession {
        server: i,
        ua,
        ns,
        current,
    })
}

/// The field value an OPC UA Variant carries, by the tag kinds' types (docs/opcua.md).
fn value_of(v: &Variant) -> Option<Value> {
    match v {
        Variant::Double(x) => Some(Value::Analog(*x)),
        Variant::UInt64(c) => Some(Value::Counter(*c)),
        Variant::Boolean(b) => Some(Value::Digital(*b)),
        _ => None,
    }
}

/// One notification: a Good value is checked against the field model at its
/// SourceTimestamp; its sample time counts for the failover gap.
fn on_value(rec: &Recorder, tags: &Tags, client: usize, dv: DataValue, item: &MonitoredItem) {
    let Identifier::String(name) = &item.item_to_monitor().node_id.identifier else {
        return;
    };
    let Some(&(tag, writable)) = tags.get(name.as_ref()) else {
        return;
    };
    let good = dv.status.is_none_or(|s| s.is_good());
    let sample_us = dv
        .source_timestamp
        .map(|t| t.as_chrono().timestamp_micros())
        .and_then(|us| u64::try_from(us).ok());
    match (good, dv.value.as_ref().and_then(value_of), sample_us) {
        (true, Some(value), Some(us)) => {
            if rec.check_sample(tag, writable, value, us) {
                rec.record_cycle(client, rec.wall_ms(), Some(us / 1000));
            }
        }
        (true, None, _) | (true, _, None) => {
            // A Good value without a value of the tag's type or a sample time is wrong.
            rec.values.fetch_add(1, Relaxed);
            rec.values_checked.fetch_add(1, Relaxed);
            rec.values_wrong.fetch_add(1, Relaxed);
        }
        (false, ..) => rec.value_unchecked(),
    }
}

/// Writes unique setpoint values, round-robin over the setpoint tags, to the server the
/// client is on (nothing while it is on none).
async fn writer(
    spec: UaClientSpec,
    rec: Arc<Recorder>,
    session: watch::Receiver<Option<(Arc<Session>, u16)>>,
    end: Instant,
) {
    let setpoints: Vec<&Point> = spec.points.iter().filter(|p| is_setpoint(p)).collect();
    if setpoints.is_empty() {
        return;
    }
    let interval = Duration::from_secs_f64(1.0 / spec.writes_per_s);
    let mut next = Instant::now() + interval;
    let mut k = 0usize;
    // The last writes are read back after the run: stop a little early.
    let stop = end - spec.publishing_interval * 2;
    while next < stop {
        tokio::time::sleep_until(next).await;
        next = (next + interval).max(Instant::now());
        let Some((s, ns)) = session.borrow().clone() else {
            continue;
        };
        let p = setpoints[(spec.index + k * 7919) % setpoints.len()];
        k += 1;
        let seq = rec.next_write_seq();
        // Unique and exact (in f32 too, for the Modbus read-back): 1 000 000 + sequence.
        let x = 1_000_000.0 + seq as f64;
        rec.write_sent(p.tag, Value::Analog(x), seq);
        let w = WriteValue {
            node_id: NodeId::new(ns, spec.names[p.tag.index()].clone()),
            attribute_id: AttributeId::Value as u32,
            value: DataValue {
                value: Some(Variant::Double(x)),
                ..Default::default()
            },
            ..Default::default()
        };
        let result = tokio::time::timeout(spec.write_timeout, s.write(&[w])).await;
        tracing::debug!(client = spec.index, seq, tag = %p.tag, ?result, "OPC UA write");
        match result {
            Ok(Ok(codes)) => match codes
                .first()
                .copied()
                .unwrap_or(StatusCode::BadUnexpectedError)
            {
                c if c.is_good() => rec.write_acked(p.tag, seq),
                StatusCode::BadUserAccessDenied | StatusCode::BadNotWritable => rec.write_refused(),
                _ => {
                    rec.errors.fetch_add(1, Relaxed);
                }
            },
            _ => {
                rec.errors.fetch_add(1, Relaxed);
            }
        }
    }
}
