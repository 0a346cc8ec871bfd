//! `harness explore` (docs/design.md §11): a random fault schedule per seed, run in the
//! simulation with the invariants checked; a failing seed is shrunk to the fewest fault
//! episodes that still fail and written as a scenario file that replays it.

use crate::report::Report;
use crate::scenario::{Fault, FaultAction, Scenario};
use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What to explore.
#[derive(Debug, Clone)]
pub struct ExploreSpec {
    pub architecture: u8,
    /// Seeds, both ends included.
    pub seeds: std::ops::RangeInclusive<u64>,
    /// `(k, n)`: run the seeds whose position in the range is `k - 1` modulo `n`.
    pub shard: (u64, u64),
    /// Virtual duration of each run.
    pub duration: Duration,
    /// Where failing schedules are written.
    pub out_dir: PathBuf,
    /// Simulations run at once (each on one thread).
    pub jobs: usize,
}

/// One seed that broke an invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub seed: u64,
    pub violations: Vec<String>,
    /// Fault episodes drawn, and left after shrinking.
    pub episodes: usize,
    pub shrunk_to: usize,
    pub file: String,
    pub replay: String,
}

/// The `--json` summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub architecture: u8,
    pub seeds_run: usize,
    pub held: usize,
    pub failed: Vec<Failure>,
    pub virtual_s: f64,
    pub wall_s: f64,
    pub seeds_per_s: f64,
    /// Virtual seconds simulated per wall-clock second, all jobs together.
    pub speedup: f64,
}

/// A small deterministic generator (splitmix64): schedules depend on the seed alone.
#[derive(Debug)]
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        let r = crate::sim::splitmix(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        r
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// A fault and the fault that ends it.
#[derive(Debug, Clone)]
struct Episode {
    start: Fault,
    end: Fault,
}

fn fault(at: Duration, action: FaultAction, target: &str) -> Fault {
    Fault {
        at,
        action,
        target: target.to_string(),
        latency: None,
        fraction: None,
        rate: None,
    }
}

/// The scenario every schedule of an architecture is laid on: 1 000 tags at 100 ms
/// (the §8 simulation target), a redundant third party writing setpoints.
pub fn base_scenario(architecture: u8, seed: u64, duration: Duration) -> Result<Scenario> {
    let text = format!(
        r#"name = "explore-arch{architecture}-seed{seed}"
architecture = {architecture}
backend = "sim"
duration = "{duration}"
seed = {seed}

[site]
devices = 20
tags_per_device = 50
scan_period = "100ms"

[redundancy]
heartbeat = "100ms"
failover_timeout = "500ms"

[third_party]
kind = "redundant"
clients = 2
poll_period = "100ms"
writes_per_s = 5

[expect]
max_values_wrong = 0
max_writes_lost = 0
invariants = true
"#,
        duration = humantime::format_duration(duration)
    );
    Ok(Scenario::parse(&text, "explore")?)
}

/// Draws 1 to 4 fault episodes (possibly overlapping), each ended before the recovery
/// window at the end of the run.
fn draw_episodes(s: &Scenario, seed: u64) -> Vec<Episode> {
    let t = s.topology();
    let mut d = Draw(seed ^ 0x5EED_F417);
    let servers: Vec<String> = t.servers().map(|c| c.name.clone()).collect();
    let connectors: Vec<String> = t.connectors().map(|c| c.name.clone()).collect();
    let hosts: Vec<String> = t.hosts.iter().map(|h| h.name.clone()).collect();
    let links: Vec<String> = t
        .links
        .iter()
        .filter(|l| l.crosses_hosts)
        .map(|l| l.name.clone())
        .collect();
    let total = s.duration.as_millis() as u64;
    let tail = crate::sim::recovery_window(s).as_millis() as u64 + 3_000;
    let count = 1 + d.below(4);
    let mut out = Vec::new();
    for _ in 0..count {
        let len = d.between_ms(300, 10_000);
        let latest_start = total
            .saturating_sub(tail + len.as_millis() as u64)
            .max(2_000);
        let at = d.between_ms(2_000, latest_start);
        let end_at = at + len;
        // What, on which kind of target, and what ends it.
        let (pool, action, ends_with) = match d.below(7) {
            0 => (&servers, FaultAction::Crash, FaultAction::Restart),
            1 => (&servers, FaultAction::Pause, FaultAction::Resume),
            2 => (&connectors, FaultAction::Crash, FaultAction::Restart),
            3 => (&links, FaultAction::Cut, FaultAction::Heal),
            4 => (&links, FaultAction::Delay, FaultAction::Heal),
            5 => (&links, FaultAction::Loss, FaultAction::Heal),
            _ => (&hosts, FaultAction::Isolate, FaultAction::Heal),
        };
        let t = d.pick(pool);
        let mut start = fault(at, action, t);
        match action {
            FaultAction::Delay => start.latency = Some(d.between_ms(5, 400)),
            FaultAction::Loss => start.fraction = Some((1 + d.below(30)) as f64 / 100.0),
            _ => {}
        }
        let end = fault(end_at, ends_with, t);
        out.push(Episode { start, end });
    }
    out
}

fn with_episodes(base: &Scenario, episodes: &[Episode]) -> Scenario {
    let mut s = base.clone();
    s.faults = episodes
        .iter()
        .flat_map(|e| [e.start.clone(), e.end.clone()])
        .collect();
    s.faults.sort_by_key(|f| f.at);
    s
}

/// The invariant violations of one run (empty: it held).
fn violations(s: &Scenario) -> Result<(Vec<String>, f64)> {
    let report: Report = crate::sim::run_scenario(s, true)?;
    let virtual_s = report.sim.as_ref().map_or(0.0, |x| x.virtual_s);
    let broken = report
        .expectations
        .iter()
        .filter(|e| !e.passed)
        .map(|e| format!("{}: {}", e.name, e.actual))
        .collect();
    Ok((broken, virtual_s))
}

/// Removes episodes one at a time while the run still fails.
fn shrink(base: &Scenario, mut episodes: Vec<Episode>) -> Result<Vec<Episode>> {
    let mut i = 0;
    while i < episodes.len() && episodes.len() > 1 {
        let mut fewer = episodes.clone();
        fewer.remove(i);
        if !violations(&with_episodes(base, &fewer))?.0.is_empty() {
            episodes = fewer;
        } else {
            i += 1;
        }
    }
    Ok(episodes)
}

/// Runs one seed; on failure shrinks it and writes the replay file.
fn explore_seed(spec: &ExploreSpec, seed: u64) -> Result<(Option<Failure>, f64)> {
    let base = base_scenario(spec.architecture, seed, spec.duration)?;
    let episodes = draw_episodes(&base, seed);
    let drawn = episodes.len();
    let s = with_episodes(&base, &episodes);
    let (broken, virtual_s) = violations(&s)?;
    if broken.is_empty() {
        return Ok((None, virtual_s));
    }
    let kept = shrink(&base, episodes)?;
    let shrunk = with_episodes(&base, &kept);
    let (broken_shrunk, _) = violations(&shrunk)?;
    std::fs::create_dir_all(&spec.out_dir)
        .with_context(|| format!("creating {}", spec.out_dir.display()))?;
    let file = spec.out_dir.join(format!("{}.toml", shrunk.name));
    write_scenario(&file, &shrunk, &broken_shrunk)?;
    let replay = format!("harness run {} --backend sim", file.display());
    Ok((
        Some(Failure {
            seed,
            violations: broken_shrunk,
            episodes: drawn,
            shrunk_to: kept.len(),
            file: file.display().to_string(),
            replay,
        }),
        virtual_s,
    ))
}

fn write_scenario(path: &Path, s: &Scenario, broken: &[String]) -> Result<()> {
    let mut text = String::from(
        "# Written by `harness explore`: the shrunk fault schedule of a failing seed.\n",
    );
    for b in broken {
        text.push_str(&format!("# broke: {b}\n"));
    }
    text.push_str(&toml::to_string(s).context("serialising the scenario")?);
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Explores every seed of the shard; `progress` is told after each seed (seeds done,
/// failures so far).
pub fn explore(spec: &ExploreSpec, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<Summary> {
    let (k, n) = spec.shard;
    if n == 0 || k == 0 || k > n {
        bail!("--shard {k}/{n}: K must be between 1 and N");
    }
    let seeds: Vec<u64> = spec
        .seeds
        .clone()
        .enumerate()
        .filter(|(i, _)| *i as u64 % n == k - 1)
        .map(|(_, s)| s)
        .collect();
    let wall = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<(u64, Option<Failure>, f64)>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..spec.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    match explore_seed(spec, seed) {
                        Ok((f, v)) => results.lock().unwrap().push((seed, f, v)),
                        Err(e) => {
                            first_error
                                .lock()
                                .unwrap()
                                .get_or_insert(e.context(format!("seed {seed}")));
                            next.store(seeds.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let failed = results
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|r| r.1.is_some())
                        .count();
                    progress(d, failed);
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let wall_s = wall.elapsed().as_secs_f64();
    let virtual_s: f64 = results.iter().map(|r| r.2).sum();
    let failed: Vec<Failure> = results.iter().filter_map(|r| r.1.clone()).collect();
    Ok(Summary {
        architecture: spec.architecture,
        seeds_run: results.len(),
        held: results.len() - failed.len(),
        failed,
        virtual_s,
        wall_s,
        seeds_per_s: results.len() as f64 / wall_s.max(1e-9),
        speedup: virtual_s / wall_s.max(1e-9),
    })
}

/// Parses `A..B` (both ends included) or a single seed.
pub fn parse_seeds(text: &str) -> Result<std::ops::RangeInclusive<u64>, String> {
    let (a, b) = text.split_once("..").unwrap_or((text, text));
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: expected seeds as A..B, e.g. 1..1000"))?;
    let b: u64 = b
        .trim_start_matches('=')
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: expected seeds as A..B, e.g. 1..1000"))?;
    if b < a {
        return Err(format!("`{text}`: the range is empty ({b} < {a})"));
    }
    Ok(a..=b)
}

/// Parses `K/N`.
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("`{text}`: expected K/N with 1 <= K <= N, e.g. 2/4");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let (k, n): (u64, u64) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}
