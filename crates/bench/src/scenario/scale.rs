//! Scenario 9, routing at scale: real routers in this process (by default 50
//! and 200; 1,000 do not finish on two cores) on libp2p's in-memory transport
//! (the same router, Noise and Yamux as production, without sockets), with
//! production settings except that each router runs at most `ANNOUNCE_SLOTS`
//! announcements at once, at most `ANNOUNCING_ROUTERS` announce at once at the
//! start, and liveness probes are rarer (they all share two cores here). For
//! each size: the time until every router is ready and at rest, and
//! until every key's first announcement finished (convergence); lookup latency
//! one at a time and `BURST` at a time; the routing messages each router sends
//! and answers per minute at rest; and, after 10 % of the routers leave and as
//! many new ones join, the lookups again. Sizes are compared with the
//! smallest; traffic growth is set against log(N) growth.

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::StreamExt as _;
use peerpull_oci::{Digest, Key};
use peerpull_routing::Config;

use crate::cli::Args;
use crate::report::{Row, Section};
use crate::scenario::routers::Node;
use crate::stats::percentile;
use crate::Progress;

/// Announcements each router runs at once (production: 32, for a router with a machine of its own).
const ANNOUNCE_SLOTS: usize = 2;
/// Routers announcing their keys at once at the start: a real cluster's nodes
/// each announce on a machine of their own; a thousand here at once would
/// starve every walk past Kademlia's query time-out.
const ANNOUNCING_ROUTERS: usize = 50;
/// Liveness probes on every connection (production: 10 s). A real router
/// probes its connections on a machine of its own; here a thousand routers'
/// probes would take most of two cores and the lookups would measure that.
const PING_INTERVAL: Duration = Duration::from_secs(60);
/// How often a long run of lookups reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Lookups at once in the burst.
const BURST: usize = 32;
/// The cluster is at rest, once every router has finished its first
/// routing-table walk, below this many Kademlia requests (liveness probes
/// aside) per router per second.
const AT_REST_PER_ROUTER: u64 = 1;
const AT_REST_DEADLINE: Duration = Duration::from_secs(600);
/// Routers a new one may bootstrap through (several seeds behind a Service).
const SEEDS: usize = 3;
/// Routers started at once.
const START_BATCH: usize = 25;

/// A memory-transport port never used before in this process (a stopped
/// router's port stays taken until its task has wound down).
fn next_port() -> anyhow::Result<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(1);
    match NEXT.fetch_add(1, Ordering::Relaxed) {
        0 => bail!("out of memory-transport ports"),
        port => Ok(port),
    }
}

/// A small deterministic xorshift, so runs pick the same pairs.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn key(owner: usize, i: usize) -> Key {
    Key::Digest(Digest::sha256_of(format!("scale/{owner:05}/{i:04}").as_bytes()))
}

fn tune(c: &mut Config) {
    c.max_concurrent_provides = ANNOUNCE_SLOTS;
    c.ping_interval = PING_INTERVAL;
    c.advertise_timeout = Duration::from_secs(1800);
    c.command_timeout = Duration::from_secs(60);
}

/// What one size measured.
struct Measured {
    ready: f64,
    convergence: f64,
    rest_after: f64,
    one: Latency,
    burst: Latency,
    per_minute: f64,
    connections: f64,
    churned: Latency,
}

/// Lookup latencies (ms) and how many found nothing.
struct Latency {
    p50: f64,
    p99: f64,
    missed: usize,
    total: usize,
}

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let sizes = &args.scale_routers;
    let mut section = Section::new("scale", "9. Routing at scale (in-process routers on the memory transport)");
    section.note(format!(
        "Routers {sizes:?}, {} keys each, production settings but {ANNOUNCE_SLOTS} announcements at once per router, at most {ANNOUNCING_ROUTERS} routers announcing at once at the start, and liveness probes every {}s (all share two cores). One run per size (--repeats does not apply). Lookups: {} one at a time and {} {BURST} at a time, each for a key of a random other router, time to the first provider; measured once the cluster is at rest (every router finished its first routing-table walk, then under {AT_REST_PER_ROUTER} Kademlia requests per router per second). Traffic at rest: Kademlia requests sent and answered per router per minute, over {}s, and the connections each router holds (in production each is probed 6 times a minute). Churn: 10 % of the routers stop and as many new ones join; then {} lookups one at a time of keys whose owner is still up, from any router.",
        args.scale_keys, PING_INTERVAL.as_secs(), args.scale_lookups, args.scale_lookups * 5, args.scale_rest_secs, args.scale_lookups
    ));
    let base = sizes.first().copied().unwrap_or(0);
    for &size in sizes {
        let m = measure(size, args, progress).await?;
        let label = |what: &str| format!("{what}, {size} routers");
        let vs = |row: Row, what: &str| if size == base { row } else { row.vs(format!("{what}, {base} routers")) };
        let rows = [
            vs(Row::new(label("all ready"), "s", vec![m.ready]), "all ready"),
            vs(Row::new(label("convergence"), "s", vec![m.convergence]), "convergence"),
            Row::new(label("at rest after convergence"), "s", vec![m.rest_after]),
            vs(Row::new(label("lookup p50, one at a time"), "ms", vec![m.one.p50]), "lookup p50, one at a time"),
            vs(Row::new(label("lookup p99, one at a time"), "ms", vec![m.one.p99]), "lookup p99, one at a time"),
            vs(Row::new(label("lookup p50, burst"), "ms", vec![m.burst.p50]), "lookup p50, burst"),
            vs(Row::new(label("lookup p99, burst"), "ms", vec![m.burst.p99]), "lookup p99, burst"),
            vs(
                Row::new(label("Kademlia requests per router per minute at rest"), "msg", vec![m.per_minute]),
                "Kademlia requests per router per minute at rest",
            ),
            vs(
                Row::new(label("connections per router at rest"), "conn", vec![m.connections]),
                "connections per router at rest",
            ),
            Row::new(label("log(N) relative to the smallest size"), "x", vec![(size as f64).ln() / (base as f64).ln()]),
            vs(Row::new(label("lookup p50 after 10 % churn"), "ms", vec![m.churned.p50]), "lookup p50, one at a time"),
            vs(Row::new(label("lookup p99 after 10 % churn"), "ms", vec![m.churned.p99]), "lookup p99, one at a time"),
            Row::new(
                label("lookups that found nothing (one at a time, burst, after churn)"),
                "keys",
                vec![(m.one.missed + m.burst.missed + m.churned.missed) as f64],
            ),
        ];
        section.rows.extend(rows);
        progress.say(format!(
            "scale: {size} routers: lookups found nothing {} of {}, {} of {}, {} of {}",
            m.one.missed, m.one.total, m.burst.missed, m.burst.total, m.churned.missed, m.churned.total
        ));
    }
    Ok(section)
}

async fn measure(size: usize, args: &Args, progress: &Progress) -> anyhow::Result<Measured> {
    if size < SEEDS + 2 {
        bail!("--scale-routers: at least {} routers", SEEDS + 2);
    }
    let t0 = Instant::now();
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for _ in 0..SEEDS {
        let seed = nodes.first().and_then(Option::as_ref);
        nodes.push(Some(Node::in_memory(next_port()?, seed, tune).await?));
    }
    nodes.extend(start_batch(&nodes, size - SEEDS).await?.into_iter().map(Some));
    for node in nodes.iter().flatten() {
        node.wait_ready().await?;
    }
    let ready = t0.elapsed();
    eprintln!("scale: {size} routers ready after {ready:?}; waiting for the cluster to come to rest");
    let started_rest = at_rest(&nodes).await.context("the cluster never came to rest after starting")?;
    progress.say(format!(
        "scale: {size} routers ready after {ready:?}, at rest {started_rest:?} later; announcing {} keys each",
        args.scale_keys
    ));

    let t1 = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let all = futures::stream::iter(nodes.iter().enumerate())
        .filter_map(|(owner, n)| async move { n.as_ref().map(|n| (owner, n)) })
        .map(|(owner, n)| {
            let done = &done;
            async move {
                let r = n.router.advertise((0..args.scale_keys).map(|i| key(owner, i)).collect()).await;
                done.fetch_add(1, Ordering::Relaxed);
                r
            }
        })
        .buffer_unordered(ANNOUNCING_ROUTERS)
        .collect::<Vec<_>>();
    let announced = watched(&nodes, "routers announcing", &done, size, all).await;
    for result in announced {
        result.context("advertising")?;
    }
    let failed = activity(&nodes).2;
    let convergence = t1.elapsed();
    let rest_after = at_rest(&nodes).await.context("the cluster never came to rest")?;
    progress.say(format!(
        "scale: converged after {convergence:?} ({failed} announcements failed), at rest {rest_after:?} later; looking up"
    ));

    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ size as u64;
    let one = lookups(&nodes, plan(&nodes, &mut rng, args.scale_lookups, args.scale_keys, size), 1).await?;
    let burst = lookups(&nodes, plan(&nodes, &mut rng, args.scale_lookups * 5, args.scale_keys, size), BURST).await?;

    let before = activity(&nodes).0;
    tokio::time::sleep(Duration::from_secs(args.scale_rest_secs)).await;
    let after = activity(&nodes).0;
    let minutes = args.scale_rest_secs as f64 / 60.0 * size as f64;
    let per_minute = (after - before) as f64 / minutes;
    let connections = nodes.iter().flatten().map(|n| n.router.counters().connections).sum::<u64>() as f64 / size as f64;
    progress.say(format!(
        "scale: {per_minute:.0} Kademlia requests per router per minute at rest, {connections:.0} connections each; churning 10 %"
    ));

    // 10 % leave (never a seed), as many join through the seeds.
    let leaving = size / 10;
    for _ in 0..leaving {
        let i = SEEDS + (next(&mut rng) as usize % (size - SEEDS));
        nodes[i] = None;
    }
    let joined = start_batch(&nodes, leaving).await?;
    for node in &joined {
        node.wait_ready().await?;
    }
    nodes.extend(joined.into_iter().map(Some));
    let churned = lookups(&nodes, plan(&nodes, &mut rng, args.scale_lookups, args.scale_keys, size), 1).await?;
    Ok(Measured {
        ready: ready.as_secs_f64(),
        convergence: convergence.as_secs_f64(),
        rest_after: rest_after.as_secs_f64(),
        one,
        burst,
        per_minute,
        connections,
        churned,
    })
}

/// Starts `n` routers, `START_BATCH` at a time, each bootstrapping through one
/// of the seeds (the first `SEEDS` of `nodes`). One at a time, each start
/// would wait for its turn among all the busy routers before it.
async fn start_batch(nodes: &[Option<Node>], n: usize) -> anyhow::Result<Vec<Node>> {
    let mut started: Vec<Node> = Vec::with_capacity(n);
    let mut report = Instant::now() + PROGRESS_EVERY;
    for batch in (0..n).collect::<Vec<_>>().chunks(START_BATCH) {
        let starts = batch.iter().map(|i| {
            let seed = nodes[i % SEEDS].as_ref();
            async move { Node::in_memory(next_port()?, seed, tune).await }
        });
        for node in futures::future::join_all(starts).await {
            started.push(node?);
        }
        if Instant::now() >= report {
            report = Instant::now() + PROGRESS_EVERY;
            let connections: u64 = started.iter().map(|n| n.router.counters().connections).sum();
            eprintln!("scale: {} of {n} routers started; {connections} connections among them", started.len());
        }
    }
    Ok(started)
}

/// Runs `work`, reporting every `PROGRESS_EVERY` how much of it is `done` and
/// the cluster's routing activity meanwhile.
async fn watched<T>(
    nodes: &[Option<Node>],
    what: &str,
    done: &std::sync::atomic::AtomicUsize,
    total: usize,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut last = activity(nodes);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                let now = activity(nodes);
                eprintln!(
                    "scale: {what}: {} of {total} done; in the last {PROGRESS_EVERY:?}: {} Kademlia requests, {} announcements ({} failed); {} connections",
                    done.load(Ordering::Relaxed), now.0 - last.0, now.1 - last.1, now.2 - last.2, now.3
                );
                last = now;
            }
        }
    }
}

/// Kademlia requests, announcements and failed ones so far, and connections now, of every running router.
fn activity(nodes: &[Option<Node>]) -> (u64, u64, u64, u64) {
    nodes.iter().flatten().map(|n| n.router.counters()).fold((0, 0, 0, 0), |(m, a, f, c), n| {
        (m + n.messages - n.pings, a + n.announcements, f + n.announcements_failed, c + n.connections)
    })
}

/// Waits until every router has finished its first routing-table walk (so
/// start-up traffic is over, not in a lull) and then the cluster's Kademlia
/// traffic falls below `AT_REST_PER_ROUTER` requests per router per second;
/// how long that took.
async fn at_rest(nodes: &[Option<Node>]) -> Option<Duration> {
    let start = Instant::now();
    let running = nodes.iter().flatten().count() as u64;
    let kademlia = || activity(nodes).0;
    let walked = || nodes.iter().flatten().filter(|n| n.router.counters().bootstraps > 0).count() as u64;
    let mut last = kademlia();
    let mut report = Instant::now() + PROGRESS_EVERY;
    while start.elapsed() < AT_REST_DEADLINE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = kademlia();
        let walked = walked();
        if now - last < AT_REST_PER_ROUTER * running && walked == running {
            return Some(start.elapsed());
        }
        if Instant::now() >= report {
            report = Instant::now() + PROGRESS_EVERY;
            eprintln!(
                "scale: coming to rest: {walked} of {running} routers have walked; {} Kademlia requests in the last second; {} connections",
                now - last,
                activity(nodes).3
            );
        }
        last = now;
    }
    None
}

/// `n` lookups: (owner, key index, asker), owner and asker distinct running
/// routers; owners among the first `advertised`, the ones that advertised keys.
fn plan(nodes: &[Option<Node>], rng: &mut u64, n: usize, keys: usize, advertised: usize) -> Vec<(usize, usize, usize)> {
    let up: Vec<usize> = (0..nodes.len()).filter(|i| nodes[*i].is_some()).collect();
    let owners: Vec<usize> = up.iter().copied().filter(|i| *i < advertised).collect();
    (0..n)
        .map(|_| {
            let owner = owners[next(rng) as usize % owners.len()];
            let mut from = up[next(rng) as usize % up.len()];
            while from == owner {
                from = up[next(rng) as usize % up.len()];
            }
            (owner, next(rng) as usize % keys.max(1), from)
        })
        .collect()
}

/// Runs the lookups `concurrency` at a time: latency percentiles of those that found a provider.
async fn lookups(
    nodes: &[Option<Node>],
    plan: Vec<(usize, usize, usize)>,
    concurrency: usize,
) -> anyhow::Result<Latency> {
    let total = plan.len();
    let started = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let all = futures::stream::iter(plan)
        .map(|(owner, k, from)| {
            let done = &done;
            async move {
                let node = nodes[from].as_ref().context("asker stopped")?;
                let r = node.lookup(&key(owner, k)).await;
                done.fetch_add(1, Ordering::Relaxed);
                r
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<anyhow::Result<(bool, Duration)>>>();
    let results = watched(nodes, &format!("lookups {concurrency} at a time"), &done, total, all).await;
    let mut ms = Vec::new();
    let mut missed = 0;
    for r in results {
        let (found, took) = r?;
        if found {
            ms.push(took.as_secs_f64() * 1e3);
        } else {
            missed += 1;
        }
    }
    eprintln!("scale: {total} lookups {concurrency} at a time took {:?}, {missed} found nothing", started.elapsed());
    Ok(Latency { p50: percentile(&ms, 0.50), p99: percentile(&ms, 0.99), missed, total })
}
