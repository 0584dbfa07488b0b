//! What the content scenario asks of its running nodes: whether sampled
//! keys are findable from another node, how long lookups take, and what
//! each daemon spends over a window at rest.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use futures::StreamExt as _;
use peerpull_testbed::Peerpull;

use crate::cluster::{pid, Node};
use crate::procfs::{cpu_seconds, memory};
use crate::prom::Scrape;
use crate::scenario::MIB;
use crate::stats::percentile;
use crate::Progress;

/// How long, from the daemons' start, every sampled key may take to become findable.
const FINDABLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Pause between rounds of asking for keys not found yet (an empty answer is cached for 1 s).
const POLL: Duration = Duration::from_millis(250);
/// Lookups in flight at once while polling.
const IN_FLIGHT: usize = 8;
/// How long one `Locate` may take (a lookup gives up after 5 s).
const LOCATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a long wait reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// The routing message counter (Kademlia requests and batches) of a node's `/metrics`.
const REQUESTS: &str = "peerpull_routing_requests_total";
/// The finished-announcement counter.
const ANNOUNCEMENTS: &str = "peerpull_routing_announcements_total";

/// Lookup latencies (ms) and how many found nothing.
pub(super) struct Latency {
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) missed: usize,
    pub(super) total: usize,
}

/// Per node, over a window at rest.
pub(super) struct Activity {
    /// CPU seconds per minute.
    pub(super) cpu: Vec<f64>,
    /// Resident set at the end, MiB.
    pub(super) rss: Vec<f64>,
    /// Routing messages sent per minute.
    pub(super) sent: Vec<f64>,
    /// Routing messages answered per minute.
    pub(super) answered: Vec<f64>,
    /// `add_provider` requests sent per minute.
    pub(super) add_provider: Vec<f64>,
    /// Batches of provider records sent per minute.
    pub(super) batches: Vec<f64>,
    /// Announcements finished (either way) per minute.
    pub(super) announcements: Vec<f64>,
}

/// One node's counters at one moment.
struct Counters {
    at: Instant,
    cpu: f64,
    sent: f64,
    answered: f64,
    add_provider: f64,
    batches: f64,
    announcements: f64,
}

/// Each node's peer id.
pub(super) async fn peer_ids(nodes: &[Node]) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(nodes.len());
    for node in nodes {
        ids.push(node.peerpull.status().await.context("asking a node's status")?.peer_id);
    }
    Ok(ids)
}

/// Up to `n` distinct entries of `from`, picked pseudo-randomly from `rng`.
pub(super) fn sample<'a>(from: &[&'a str], n: usize, rng: &mut u64) -> Vec<&'a str> {
    let mut all = from.to_vec();
    let n = n.min(all.len());
    for i in 0..n {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let j = i + (*rng % (all.len() - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(n);
    all
}

/// Polls until every digest of `sample[owner]` is found at `holders[owner]`
/// from the next node; returns the seconds since `t0` when the last was.
pub(super) async fn findable(
    nodes: &[Node],
    holders: &[String],
    sample: &[Vec<&str>],
    t0: Instant,
    progress: &Progress,
) -> anyhow::Result<f64> {
    let mut pending: Vec<(usize, &str)> =
        sample.iter().enumerate().flat_map(|(owner, keys)| keys.iter().map(move |k| (owner, *k))).collect();
    let total = pending.len();
    let mut said = Instant::now();
    loop {
        let asked = futures::stream::iter(&pending)
            .map(|&(owner, key)| located(&nodes[(owner + 1) % nodes.len()].peerpull, key, &holders[owner]))
            .buffered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let mut still = Vec::new();
        for (entry, found) in pending.iter().zip(asked) {
            if !found? {
                still.push(*entry);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() >= FINDABLE_TIMEOUT {
            bail!(
                "{} of {total} sampled keys were still not found at their holder from another node {FINDABLE_TIMEOUT:?} after the daemons started",
                pending.len()
            );
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            progress.say(format!("content: {} of {total} sampled keys findable so far", total - pending.len()));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Looks up each digest of `sample[owner]` from the node two after it, one
/// at a time; the time of each `Locate` to the first provider.
pub(super) async fn lookups(nodes: &[Node], holders: &[String], sample: &[Vec<&str>]) -> anyhow::Result<Latency> {
    let (mut times, mut missed) = (Vec::new(), 0);
    let longest = sample.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for (owner, keys) in sample.iter().enumerate() {
            let Some(key) = keys.get(i) else { continue };
            let asker = &nodes[(owner + 2) % nodes.len()].peerpull;
            let started = Instant::now();
            let found = located(asker, key, &holders[owner]).await?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            missed += usize::from(!found);
        }
    }
    Ok(Latency { p50: percentile(&times, 0.5), p99: percentile(&times, 0.99), missed, total: times.len() })
}

/// Whether `asker` finds `holder` for `digest` (asking for one provider).
async fn located(asker: &Peerpull, digest: &str, holder: &str) -> anyhow::Result<bool> {
    let answer = tokio::time::timeout(LOCATE_TIMEOUT, asker.locate_with(digest, 1))
        .await
        .map_err(|_| anyhow!("Locate {digest} took over {LOCATE_TIMEOUT:?}"))?
        .with_context(|| format!("Locate {digest}"))?;
    Ok(answer.blobs.iter().any(|b| b.providers.iter().any(|p| p.peer_id == holder)))
}

/// Each node's CPU, memory and routing traffic over `window`.
pub(super) async fn at_rest(nodes: &[Node], window: Duration) -> anyhow::Result<Activity> {
    let before = counters(nodes).await?;
    tokio::time::sleep(window).await;
    let after = counters(nodes).await?;
    let mut activity = Activity {
        cpu: Vec::new(),
        rss: Vec::new(),
        sent: Vec::new(),
        answered: Vec::new(),
        add_provider: Vec::new(),
        batches: Vec::new(),
        announcements: Vec::new(),
    };
    for ((node, b), a) in nodes.iter().zip(&before).zip(&after) {
        let minutes = a.at.duration_since(b.at).as_secs_f64() / 60.0;
        activity.cpu.push((a.cpu - b.cpu) / minutes);
        activity.rss.push(memory(pid(node)?)?.0 as f64 / MIB);
        activity.sent.push((a.sent - b.sent) / minutes);
        activity.answered.push((a.answered - b.answered) / minutes);
        activity.add_provider.push((a.add_provider - b.add_provider) / minutes);
        activity.batches.push((a.batches - b.batches) / minutes);
        activity.announcements.push((a.announcements - b.announcements) / minutes);
    }
    Ok(activity)
}

/// Every node's counters now; fails if a daemon is no longer running.
async fn counters(nodes: &[Node]) -> anyhow::Result<Vec<Counters>> {
    let mut all = Vec::with_capacity(nodes.len());
    for (n, node) in nodes.iter().enumerate() {
        if !node.peerpull.is_running() {
            let log = node.peerpull.log();
            let start = log.len().saturating_sub(2000);
            let start = (start..log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(log.len());
            bail!("node {n}'s peerpull run exited; the end of its log: {}", &log[start..]);
        }
        let page = Scrape::of(&node.peerpull.metrics_url()).await?;
        let metric = |name: &str, labels: &[(&str, &str)]| {
            page.sum(name, labels).with_context(|| format!("reading node {n}'s routing counters"))
        };
        all.push(Counters {
            at: Instant::now(),
            cpu: cpu_seconds(pid(node)?)?,
            sent: metric(REQUESTS, &[("direction", "sent")])?,
            answered: metric(REQUESTS, &[("direction", "answered")])?,
            add_provider: metric(REQUESTS, &[("direction", "sent"), ("kind", "add_provider")])?,
            batches: metric(REQUESTS, &[("direction", "sent"), ("kind", "provide_batch")])?,
            announcements: metric(ANNOUNCEMENTS, &[])?,
        });
    }
    Ok(all)
}
