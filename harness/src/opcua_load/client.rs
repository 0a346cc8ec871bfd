//! The IO of `harness load --protocol opcua`: connect the sessions, browse with the first
//! (walk.rs decides what), subscribe each to its share, count what arrives (stats.rs).

use super::stats::NotificationStats;
use super::walk::{BrowseWalk, session_items};
use super::{OpcUaLoadResult, OpcUaLoadSpec};
use anyhow::{Context as _, Result, anyhow, bail};
use opcua::client::{Client, ClientBuilder, DataChangeCallback, IdentityToken, Session};
use opcua::types::{
    BrowseDescription, BrowseDirection, BrowseResult, ByteString, DateTime, EndpointDescription,
    MonitoredItemCreateRequest, NodeClass, NodeId, ReferenceTypeId, TimestampsToReturn,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long connecting (endpoints, then each session) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Nodes per Browse request, and monitored items per CreateMonitoredItems request (the
/// connector and node-opcua both accept far more; this keeps each message small).
const BROWSE_BATCH: usize = 500;
const CREATE_BATCH: usize = 5000;
/// After the last item is created: the initial values of every item arrive first, and
/// would be counted as if they were changes.
const MIN_WARM_UP: Duration = Duration::from_secs(2);

struct LoadSession {
    session: Arc<Session>,
    event_loop: JoinHandle<opcua::types::StatusCode>,
    stats: Arc<Mutex<NotificationStats>>,
}

/// Runs the load; the error says what failed (unreachable server, no matching endpoint,
/// too few variables, a refused session).
pub async fn run_opcua_load(spec: &OpcUaLoadSpec) -> Result<OpcUaLoadResult> {
    let target = super::parse_target(&spec.target).map_err(|e| anyhow!(e))?;
    let temp_pki = std::env::temp_dir().join(format!("harness-opcua-load-{}", std::process::id()));
    let pki = spec.pki_dir.clone().unwrap_or_else(|| temp_pki.clone());
    let result = run(spec, &target, &pki).await;
    if spec.pki_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp_pki);
    }
    result
}

async fn run(spec: &OpcUaLoadSpec, target: &str, pki: &std::path::Path) -> Result<OpcUaLoadResult> {
    let mut client: Client = ClientBuilder::new()
        .application_name("harness load")
        .application_uri("urn:smart-connector:harness-load")
        .product_uri("urn:smart-connector:harness")
        .pki_dir(pki)
        .create_sample_keypair(spec.pki_dir.is_none())
        // A load generator, not a client to trust data to: whatever certificate the
        // server shows is accepted (its host name need not match the target either).
        .trust_server_certs(true)
        .verify_server_certs(false)
        .session_retry_limit(0)
        .max_message_size(64 << 20)
        .max_chunk_count(4096)
        .max_array_length(1_000_000)
        .request_timeout(Duration::from_secs(60))
        .client()
        .map_err(|e| anyhow!("OPC UA client configuration: {}", e.join("; ")))?;
    let endpoints = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.get_server_endpoints_from_url(target),
    )
    .await
    .map_err(|_| anyhow!("{target}: no answer within {CONNECT_TIMEOUT:?}"))?
    .map_err(|e| anyhow!("{target}: cannot get its endpoints: {e}"))?;
    let endpoint = pick_endpoint(&endpoints, spec, target)?;

    let mut sessions = Vec::with_capacity(spec.sessions);
    for i in 0..spec.sessions {
        let s = connect(&mut client, &endpoint)
            .await
            .with_context(|| format!("{target}: session {} of {}", i + 1, spec.sessions))?;
        sessions.push(s);
    }
    let measured = measure(spec, target, &sessions).await;
    for s in &sessions {
        let _ = tokio::time::timeout(Duration::from_secs(5), s.session.disconnect()).await;
        s.event_loop.abort();
    }
    measured
}

/// The server's endpoint with the wanted policy and mode, reached through `target` (a
/// server may advertise a host name the load machine cannot resolve).
fn pick_endpoint(
    endpoints: &[EndpointDescription],
    spec: &OpcUaLoadSpec,
    target: &str,
) -> Result<EndpointDescription> {
    let policy = spec.security.policy.to_uri();
    let Some(found) = endpoints.iter().find(|e| {
        e.security_policy_uri.as_ref() == policy && e.security_mode == spec.security.mode
    }) else {
        let offered: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{} {:?}", e.security_policy_uri, e.security_mode))
            .collect();
        bail!(
            "{target} offers no {} endpoint (it offers: {})",
            spec.security,
            offered.join(", ")
        );
    };
    let mut e = found.clone();
    e.endpoint_url = target.into();
    Ok(e)
}

async fn connect(client: &mut Client, endpoint: &EndpointDescription) -> Result<LoadSession> {
    let (session, event_loop) = client
        .connect_to_endpoint_directly(endpoint.clone(), IdentityToken::Anonymous)
        .map_err(|e| anyhow!("{e}"))?;
    let mut event_loop = event_loop.spawn();
    tokio::select! {
        _ = session.wait_for_connection() => {}
        ended = &mut event_loop => bail!("the session was refused: {}", match ended {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }),
        _ = tokio::time::sleep(CONNECT_TIMEOUT) => bail!("no session within {CONNECT_TIMEOUT:?}"),
    }
    Ok(LoadSession {
        session,
        event_loop,
        stats: Arc::default(),
    })
}

/// Browses down from `Objects` until `limit` variables are found or nothing is left.
async fn browse(
    session: &Session,
    limit: usize,
    only: Option<std::sync::Arc<std::collections::HashSet<String>>>,
) -> Result<Vec<NodeId>> {
    let mut walk = BrowseWalk::new(limit);
    if let Some(names) = only {
        walk = walk.only(names);
    }
    loop {
        let nodes = walk.poll_nodes(BROWSE_BATCH);
        if nodes.is_empty() {
            break;
        }
        let descriptions: Vec<BrowseDescription> = nodes
            .into_iter()
            .map(|node_id| BrowseDescription {
                node_id,
                browse_direction: BrowseDirection::Forward,
                reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                include_subtypes: true,
                node_class_mask: NodeClass::Object as u32 | NodeClass::Variable as u32,
                // NodeClass only: all the walk needs.
                result_mask: 0x04,
            })
            .collect();
        let mut results = session
            .browse(&descriptions, 0, None)
            .await
            .map_err(|e| anyhow!("browsing: {e}"))?;
        loop {
            let mut more: Vec<ByteString> = Vec::new();
            for r in results {
                handle_browse_result(&mut walk, &r);
                if !r.continuation_point.is_null() {
                    more.push(r.continuation_point);
                }
            }
            if more.is_empty() {
                break;
            }
            let release = walk.is_done();
            results = session
                .browse_next(release, &more)
                .await
                .map_err(|e| anyhow!("browsing: {e}"))?;
            if release {
                break;
            }
        }
    }
    Ok(walk.into_variables())
}

fn handle_browse_result(walk: &mut BrowseWalk, r: &BrowseResult) {
    let refs = r.references.iter().flatten().map(|d| {
        (
            d.node_id.node_id.clone(),
            d.node_class,
            d.node_id.server_index == 0,
        )
    });
    walk.handle_references(refs);
}

async fn measure(
    spec: &OpcUaLoadSpec,
    target: &str,
    sessions: &[LoadSession],
) -> Result<OpcUaLoadResult> {
    let wanted = spec.sessions * spec.items;
    let found = browse(&sessions[0].session, wanted, spec.only.clone()).await?;
    if found.len() < spec.items {
        bail!(
            "{target}: found only {} Variable node(s) below Objects (the Server object skipped{}); --items {} needs {}",
            found.len(),
            if spec.only.is_some() {
                ", only those named in --tags"
            } else {
                ""
            },
            spec.items,
            spec.items
        );
    }
    let mut errors = 0u64;
    for (i, s) in sessions.iter().enumerate() {
        let stats = s.stats.clone();
        let subscription = s
            .session
            .create_subscription(
                spec.publishing,
                // Lifetime and keep-alive counts (publishing intervals): the lifetime
                // must be at least three keep-alives.
                300,
                10,
                0,
                0,
                true,
                DataChangeCallback::new(move |dv, _item| {
                    let now = DateTime::now();
                    let good = dv.status.is_none_or(|s| s.is_good());
                    stats.lock().expect("stats lock").handle_data_value(
                        dv.source_timestamp.as_ref(),
                        dv.server_timestamp.as_ref(),
                        &now,
                        good,
                    );
                }),
            )
            .await
            .map_err(|e| anyhow!("{target}: creating a subscription: {e}"))?;
        let items = session_items(&found, i, spec.items).expect("enough variables, checked");
        for chunk in items.chunks(CREATE_BATCH) {
            let requests: Vec<MonitoredItemCreateRequest> = chunk
                .iter()
                .map(|n| {
                    let mut r: MonitoredItemCreateRequest = n.clone().into();
                    r.requested_parameters.sampling_interval = spec.sampling.as_secs_f64() * 1e3;
                    r.requested_parameters.queue_size = 1;
                    r
                })
                .collect();
            let created = s
                .session
                .create_monitored_items(subscription, TimestampsToReturn::Both, requests)
                .await
                .map_err(|e| anyhow!("{target}: creating monitored items: {e}"))?;
            errors += created
                .iter()
                .filter(|c| !c.result.status_code.is_good())
                .count() as u64;
        }
    }
    tokio::time::sleep(MIN_WARM_UP.max(spec.publishing * 2)).await;
    for s in sessions {
        *s.stats.lock().expect("stats lock") = NotificationStats::default();
    }
    let started = Instant::now();
    let total = || {
        let mut all = NotificationStats::default();
        for s in sessions {
            all.merge(&s.stats.lock().expect("stats lock"));
        }
        all
    };
    let end = started + spec.duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let next = spec.progress.map_or(end, |p| (now + p).min(end));
        tokio::time::sleep_until(next.into()).await;
        if spec.progress.is_some() && Instant::now() < end {
            let t = total();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "opcua load {target}: {secs:.0}/{:.0} s · {:.0} notifications/s · latency p99 {:.0} ms · bad {}",
                spec.duration.as_secs_f64(),
                t.notifications as f64 / secs,
                t.latency().p99_ms,
                t.bad_status,
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let all = total();
    errors += sessions
        .iter()
        .filter(|s| s.event_loop.is_finished())
        .count() as u64;
    Ok(OpcUaLoadResult {
        protocol: "opcua".into(),
        target: target.to_string(),
        security: spec.security.to_string(),
        sessions: spec.sessions,
        items_per_session: spec.items,
        monitored_items: wanted,
        variables_found: found.len(),
        publishing_ms: spec.publishing.as_secs_f64() * 1e3,
        sampling_ms: spec.sampling.as_secs_f64() * 1e3,
        elapsed_s: elapsed,
        notifications: all.notifications,
        notifications_per_s: all.notifications as f64 / elapsed,
        latency: all.latency(),
        latency_to_server: all.to_server(),
        bad_status: all.bad_status,
        no_timestamp: all.no_timestamp,
        errors,
    })
}
