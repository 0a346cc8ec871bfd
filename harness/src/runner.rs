//! Runs one scenario on any backend (through the `Backend` seam): wait until data flows, start the third parties, inject the
//! faults on schedule, sample the connectors, and turn it all into a [`Report`].

use crate::measure::Recorder;
use crate::opcua::third_party::UaClientSpec;
use crate::report::{
    Failover, Ingest, Integrity, Latency, Licences, Modbus, Report, Resource, ThirdPartyGap, Writes,
};
use crate::scenario::Scenario;
use crate::seam::Backend;
use crate::status_poll::StatusPoller;
use crate::third_party::{self, ThirdPartySpec};
use crate::timeline::{SAMPLE_INTERVAL, Sample, Sampler};
use crate::topology::Topology;
use crate::wiring::Wiring;
use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use po_runtime::Net;
use po_simulator::{FieldModel, SiteSpec};
use smart_connector::config::{MapConfig, ModbusConfig};
use smart_connector::map::RegisterMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::Instant;
use tokio_modbus::prelude::*;

pub(crate) async fn status(
    net: &dyn Net,
    from: std::net::IpAddr,
    addr: SocketAddr,
) -> Option<Vec<u16>> {
    let fut = async {
        let mut ctx = third_party::connect(net, addr, Some(from), Duration::from_secs(1)).await?;
        ctx.read_holding_registers(0, 14).await.ok()?.ok()
    };
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .ok()
        .flatten()
}

/// Waits until every connector serves data and one of them Primary data.
pub(crate) async fn wait_ready<B: Backend>(w: &Wiring, d: &B) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let net = d.env().net;
    loop {
        let mut states = Vec::new();
        for a in w.modbus_direct() {
            states.push(status(&*net, w.third_party_ip, a).await.map(|s| s[1]));
        }
        let all_serving = states.iter().all(|s| matches!(s, Some(1 | 2)));
        if all_serving && states.contains(&Some(1)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "connectors not serving data after 30 s (states {:?}; {} backend)",
                states,
                w.backend.as_str()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn progress(s: &Scenario, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(s.duration.as_millis() as u64);
    // The times are in the message, from the runner's clock: indicatif's `{duration}` is
    // an estimate (0s before the first step) and its clock is wall time, which the sim
    // backend's virtual run does not follow.
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(s.name.clone());
    pb.set_message(progress_message(Duration::ZERO, s.duration, None));
    pb
}

/// What the progress bar says at `elapsed` of `total`: the figures so far (ingest per
/// second of the busiest connector, values delivered per second, wrong values, errors),
/// or "starting" while nothing has been measured over a whole sample interval yet (a rate
/// over no time would read 0/s).
pub fn progress_message(
    elapsed: Duration,
    total: Duration,
    figures: Option<(u64, u64, u64, u64)>,
) -> String {
    let times = format!(
        "{}/{}",
        humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
        humantime::format_duration(total)
    );
    match figures {
        Some((ingest, values, wrong, errors)) if elapsed >= SAMPLE_INTERVAL => {
            let secs = elapsed.as_secs_f64();
            format!(
                "{times} · ingest {:.0}/s · delivered {:.0} values/s · wrong {wrong} · errors {errors}",
                ingest as f64 / secs,
                values as f64 / secs
            )
        }
        _ => format!("{times} · starting: first figures after {SAMPLE_INTERVAL:?}"),
    }
}

pub(crate) async fn drive<B: Backend>(
    s: &Scenario,
    t: &Topology,
    w: &Wiring,
    d: &mut B,
    quiet: bool,
) -> Result<Report> {
    wait_ready(w, d).await?;
    let model = FieldModel::new(
        s.seed,
        SiteSpec {
            devices: s.site.devices,
            tags_per_device: s.site.tags_per_device,
            scan_period: s.site.scan_period,
        },
    )?;
    // The points list the third parties are configured with, built from our own copy of
    // the catalogue (the field model), as an integrator would from `smart-connector points`.
    let modbus = ModbusConfig {
        word_order: s.third_party_word_order(),
        ..ModbusConfig::default()
    };
    let map = RegisterMap::build(model.catalog(), &modbus, &MapConfig::default())?;
    let mut points = map.points().to_vec();
    points.sort_by_key(|p| (p.unit_id, p.address));
    let points = Arc::new(points);
    let env = d.env();
    // Tag names by tag index: an OPC UA NodeId is the tag's name.
    let tag_names: Arc<Vec<String>> =
        Arc::new(model.catalog().iter().map(|i| i.name.clone()).collect());
    let opcua_clients = s.third_party.opcua.as_ref().map_or(0, |o| o.clients);
    // The Modbus masters first, then the OPC UA clients: one recorder for all.
    let rec = Arc::new(Recorder::new(
        model,
        s.third_party_word_order(),
        s.third_party.clients + opcua_clients,
        env.clock.clone(),
    ));

    // The timeline: connectors' status blocks read in the background, one sample per
    // interval of the loop below.
    let names = w.connector_names();
    let poller = StatusPoller::start(
        env.net.clone(),
        w.third_party_ip,
        &w.modbus_direct(),
        SAMPLE_INTERVAL / 2,
    );
    poller.first_round().await;
    // Servers watched over a session of their own (child processes) are known within a
    // retry or two.
    let known_by = Instant::now() + Duration::from_secs(2);
    while d.server_status().iter().any(|(_, st)| st.is_none()) && Instant::now() < known_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server_names: Vec<String> = t.servers().map(|c| c.name.clone()).collect();
    let mut sampler = Sampler::new(
        &server_names,
        &names
            .iter()
            .map(|n| {
                let sources = t.sources_of(n).iter().map(|l| l.to.clone()).collect();
                (n.clone(), sources)
            })
            .collect::<Vec<_>>(),
    );

    let started = Instant::now();
    let usage_at_start: Vec<(String, u32, f64)> = d
        .component_pids()
        .into_iter()
        .filter_map(|(n, p)| crate::child::process_usage(p).map(|(cpu, _)| (n, p, cpu)))
        .collect();
    let end = started + s.duration;
    let mut tasks = Vec::new();
    for i in 0..s.third_party.clients {
        let spec = ThirdPartySpec {
            index: i,
            kind: s.third_party.kind,
            targets: w.modbus_targets(),
            from: Some(w.third_party_ip),
            points: points.clone(),
            order: s.third_party_word_order(),
            poll_period: s.third_party.poll_period,
            writes_per_s: s.third_party.writes_per_s,
            request_timeout: s.third_party.request_timeout,
            write_timeout: s.connector.write_timeout + Duration::from_secs(1),
            net: env.net.clone(),
            tls: w.master_tls(i)?,
        };
        tasks.push(tokio::spawn(third_party::run(spec, rec.clone(), end)));
    }
    if let (Some(o), Some((targets, setup))) = (&s.third_party.opcua, w.opcua()) {
        for i in 0..o.clients {
            let spec = UaClientSpec {
                index: s.third_party.clients + i,
                kind: o.kind,
                targets: targets.clone(),
                from: Some(w.third_party_ip),
                net: env.net.clone(),
                identity: setup.identity(i),
                points: points.clone(),
                names: tag_names.clone(),
                publishing_interval: o.publishing_interval,
                writes_per_s: o.writes_per_s,
                write_timeout: s.connector.write_timeout + Duration::from_secs(1),
            };
            tasks.push(tokio::spawn(crate::opcua::third_party::run(
                spec,
                rec.clone(),
                end,
            )));
        }
    } else if s.third_party.opcua.is_some() {
        bail!(
            "the {} backend has no OPC UA endpoints for [third_party.opcua]",
            w.backend.as_str()
        );
    }

    let pb = progress(s, quiet);
    // Floods not started yet, and the running ones (they stop by themselves).
    let mut floods_waiting: Vec<&crate::scenario::Flood> = s.floods.iter().collect();
    floods_waiting.sort_by_key(|f| f.at);
    let mut floods_running = Vec::new();
    let mut faults: Vec<_> = s.faults.iter().collect();
    faults.sort_by_key(|f| f.at);
    let mut next_fault = 0;
    let mut applied = Vec::new();
    let mut ingest_total = vec![0u64; names.len()];
    let mut last = d.ingest_counters().await;
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        let fault_at = faults.get(next_fault).map(|f| started + f.at);
        let sample = tokio::select! {
            _ = tick.tick() => true,
            _ = async { tokio::time::sleep_until(fault_at.unwrap_or(end)).await }, if fault_at.is_some() => false,
        };
        let now = Instant::now();
        while let Some(f) = faults.get(next_fault)
            && started + f.at <= now
        {
            let at_ms = rec.wall_ms();
            let at = Instant::now().saturating_duration_since(started);
            let mechanism = d
                .apply(t, f)
                .await
                .with_context(|| format!("applying fault {}", f.label()))?;
            tracing::info!(fault = %f.label(), %mechanism, "fault applied");
            pb.println(format!("  fault: {} ({mechanism})", f.label()));
            sampler.fault(at, f.label(), mechanism.clone());
            applied.push((f.label(), f.at.as_secs_f64(), at_ms, mechanism));
            next_fault += 1;
        }
        while let Some(f) = floods_waiting.first()
            && started + f.at <= now
        {
            let f = floods_waiting.remove(0);
            let (component, listener) = t
                .listener(&f.target)
                .map_err(|why| anyhow::anyhow!("flood {}: {why}", f.target))?;
            let target = w.listener_addr(&component, listener).with_context(|| {
                format!(
                    "flood {}: the {} backend has no such listener",
                    f.target,
                    w.backend.as_str()
                )
            })?;
            let spec = crate::flood::FloodSpec {
                target,
                connections: f.connections,
                mode: f.mode,
                from: Some(w.third_party_ip),
                reconnect_delay: Duration::from_secs(1),
                net: env.net.clone(),
            };
            let stats = Arc::new(crate::flood::FloodStats::default());
            let until = started + f.until.unwrap_or(s.duration);
            let task = tokio::spawn(crate::flood::run_flood(
                spec.clone(),
                stats.clone(),
                tokio::time::sleep_until(until),
            ));
            tracing::info!(flood = %f.label(), %target, "flood started");
            pb.println(format!("  flood: {} on {target}", f.label()));
            floods_running.push((f.target.clone(), spec, stats, task));
        }
        let counters = d.ingest_counters().await;
        for (i, c) in counters.iter().enumerate() {
            if let Some(c) = c {
                let prev = last[i].unwrap_or(0);
                // A restarted connector counts from 0 again.
                ingest_total[i] += if *c >= prev { c - prev } else { *c };
                // A counter that could not be read (a connector down, or its metrics
                // port flooded) keeps the last value read: the next read adds the
                // difference, not the whole count again.
                last[i] = Some(*c);
            }
        }
        let elapsed = now.saturating_duration_since(started);
        if sample || now >= end {
            let ingest: Vec<(u64, bool)> = ingest_total
                .iter()
                .zip(&counters)
                .map(|(total, c)| (*total, c.is_some()))
                .collect();
            let servers = d.server_status();
            let servers: Vec<Option<(po_protocol::Role, u64)>> = server_names
                .iter()
                .map(|n| servers.iter().find(|(s, _)| s == n).and_then(|(_, st)| *st))
                .collect();
            sampler.sample(
                &Sample {
                    t: Instant::now().saturating_duration_since(started),
                    ingest: &ingest,
                    servers: &servers,
                    status: &poller.latest(),
                    last: now >= end,
                },
                &rec,
            );
        }
        pb.set_position(elapsed.as_millis() as u64);
        pb.set_message(progress_message(
            elapsed,
            s.duration,
            Some((
                ingest_total.iter().copied().max().unwrap_or(0),
                rec.values.load(Relaxed),
                rec.values_wrong.load(Relaxed),
                rec.errors.load(Relaxed),
            )),
        ));
        if now >= end {
            break;
        }
    }
    drop(poller);
    for task in tasks {
        let _ = task.await;
    }
    let mut floods = Vec::new();
    for (target, spec, stats, task) in floods_running {
        let _ = task.await;
        floods.push(stats.summary(&target, &spec));
    }
    let duration_s = started.elapsed().as_secs_f64();
    let end_ms = rec.wall_ms();
    // A component restarted during the run has a new pid: it is left out.
    let resources = usage_at_start
        .iter()
        .filter_map(|(name, pid, cpu0)| {
            crate::child::process_usage(*pid).map(|(cpu1, rss)| Resource {
                component: name.clone(),
                cpu_percent: (cpu1 - cpu0) / duration_s * 100.0,
                rss_mib: rss as f64 / 1024.0,
            })
        })
        .collect();
    pb.finish_and_clear();

    // Final read-back of written setpoints from the connector serving Primary data.
    if rec.writes_sent.load(Relaxed) > 0 {
        for a in w.modbus_direct() {
            let st = status(&*env.net, w.third_party_ip, a).await;
            tracing::debug!(connector = %a, status = ?st, "read-back candidate");
            if st.is_some_and(|s| s[1] == 1) {
                let patience =
                    s.site.scan_period * 4 + s.third_party.poll_period + Duration::from_secs(1);
                third_party::read_back(
                    &*env.net,
                    a,
                    Some(w.third_party_ip),
                    &points,
                    &rec,
                    patience,
                )
                .await;
                break;
            }
        }
    }

    let (p50, p99, max) = rec.latency_ms();
    let (writes_applied, writes_lost) = rec.write_outcome();
    let requests = rec.requests.load(Relaxed);
    let values = rec.values.load(Relaxed);
    let per_connector: Vec<(String, f64)> = names
        .iter()
        .zip(&ingest_total)
        .map(|(n, u)| (n.clone(), *u as f64 / duration_s))
        .collect();
    let mut report = Report {
        schema_version: 1,
        scenario: s.name.clone(),
        architecture: s.architecture,
        backend: w.backend.as_str().to_string(),
        passed: false,
        duration_s,
        licences: Licences {
            po_server: t.licences.po_server,
            smart_connector: t.licences.smart_connector,
            client_access: t.licences.client_access,
        },
        ingest: Ingest {
            updates: ingest_total.iter().sum(),
            updates_per_s: per_connector.iter().map(|(_, r)| *r).fold(0.0, f64::max),
            per_connector,
        },
        modbus: Modbus {
            requests,
            requests_per_s: requests as f64 / duration_s,
            values_per_s: values as f64 / duration_s,
            errors: rec.errors.load(Relaxed),
        },
        latency_ms: Latency {
            p50,
            p99,
            max,
            samples: rec.latency_samples(),
        },
        failovers: applied
            .iter()
            .map(|(label, at_s, at_ms, mechanism)| {
                let (gap_ms, recovered) = match rec.gap_after(
                    *at_ms,
                    end_ms,
                    s.third_party.stale_threshold.as_millis() as u64,
                ) {
                    Ok(g) => (g, true),
                    Err(g) => (g, false),
                };
                Failover {
                    fault: label.clone(),
                    at_s: *at_s,
                    gap_ms,
                    recovered,
                    mechanism: mechanism.clone(),
                    by_third_party: if opcua_clients == 0 {
                        vec![]
                    } else {
                        (0..s.third_party.clients + opcua_clients)
                            .map(|c| {
                                let (gap_ms, recovered) = match rec.gap_of(
                                    c,
                                    *at_ms,
                                    end_ms,
                                    s.third_party.stale_threshold.as_millis() as u64,
                                ) {
                                    Ok(g) => (g, true),
                                    Err(g) => (g, false),
                                };
                                ThirdPartyGap {
                                    third_party: match c.checked_sub(s.third_party.clients) {
                                        None => format!("modbus {c}"),
                                        Some(o) => format!("opcua {o}"),
                                    },
                                    gap_ms,
                                    recovered,
                                }
                            })
                            .collect()
                    },
                }
            })
            .collect(),
        integrity: Integrity {
            values_checked: rec.values_checked.load(Relaxed),
            values_wrong: rec.values_wrong.load(Relaxed),
            wrong_examples: rec.wrong_examples(),
        },
        writes: Writes {
            sent: rec.writes_sent.load(Relaxed),
            acked: rec.writes_acked.load(Relaxed),
            applied: writes_applied,
            lost: writes_lost,
            refused: rec.writes_refused.load(Relaxed),
            lost_examples: rec.lost_examples(),
        },
        expectations: vec![],
        resources,
        floods,
        sim: None,
        timeline: Some(sampler.finish()),
    };
    report.judge(&s.expect);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_says_starting_before_the_first_measurement() {
        let total = Duration::from_secs(15);
        let first = progress_message(Duration::ZERO, total, Some((0, 0, 0, 0)));
        assert_eq!(first, "0s/15s · starting: first figures after 250ms");
        assert!(!first.contains("0/s"), "{first}");
        assert_eq!(progress_message(Duration::ZERO, total, None), first);
        assert_eq!(
            progress_message(
                Duration::from_millis(2500),
                total,
                Some((25_000, 5_000, 0, 1))
            ),
            "2s/15s · ingest 10000/s · delivered 2000 values/s · wrong 0 · errors 1"
        );
    }
}
