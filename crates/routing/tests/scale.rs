//! Scale test: 50 routers in one process, 200 keys each, every key looked up
//! from a random other node. Asserts correctness only; prints timings.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use peerpull_oci::Digest;
use peerpull_routing::Key;
use support::{Node, NodeBuilder};

const DEFAULT_NODES: usize = 50;
const DEFAULT_KEYS_PER_NODE: usize = 200;
const CONCURRENT_LOOKUPS: usize = 32;
/// How many lookups run one at a time, before the rest run concurrently.
const SEQUENTIAL_SAMPLE: usize = 200;
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Keys whose closest node every node is asked for.
const CLOSEST_KEYS: usize = 20;

/// `PEERPULL_SCALE_NODES` / `PEERPULL_SCALE_KEYS` shrink or grow the run.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn key(node: usize, i: usize) -> Key {
    Key::Digest(Digest::sha256_of(format!("{node:04}/{i:06}").as_bytes()))
}

/// A small deterministic xorshift, so a failure can be replayed.
fn pick_other(state: &mut u64, not: usize, nodes: usize) -> usize {
    loop {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let n = (*state % nodes as u64) as usize;
        if n != not {
            return n;
        }
    }
}

fn tune(c: &mut peerpull_routing::Config) {
    c.lookup_timeout = Duration::from_secs(20);
    // Dozens of nodes share two cores: a dial plus Identify can take seconds.
    c.dial_timeout = Duration::from_secs(10);
    c.advertise_timeout = Duration::from_secs(600);
    // The production interval, not the 2 s the other tests use to heal quickly: with
    // 50 nodes a bootstrap round every 2 s each is thousands of requests a second.
    c.bootstrap_interval = Duration::from_secs(30);
    // 50 nodes share two cores here; re-announcing all 10 000 keys every 100 s would
    // need more CPU than the machine has. Re-providing has its own test.
    c.provider_ttl = Duration::from_secs(1800);
    c.reprovide_interval = Duration::from_secs(600);
    if std::env::var_os("PEERPULL_SCALE_NO_PING").is_some() {
        c.ping_interval = Duration::from_secs(3600);
        c.ping_timeout = Duration::from_secs(3600);
    }
}

/// Awaits `work`, printing `done` of `total` every few seconds so a slow run shows where it is.
async fn progress<T>(what: &str, done: &AtomicUsize, total: usize, work: impl std::future::Future<Output = T>) -> T {
    let start = Instant::now();
    let mut work = std::pin::pin!(work);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = every.tick() => {
                eprintln!("scale: {} of {total} {what} after {:?}", done.load(Ordering::Relaxed), start.elapsed());
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// The full-size run (50 nodes x 200 keys, every key looked up from a random other node).
/// Ignored by default: announcing 10 000 keys to k = 20 peers each is about 700 000
/// Kademlia requests, all served by the two cores of one process; a release build
/// takes about 2 minutes 15 s on a quiet 2-core machine, a debug build several times
/// that. Run it with
/// `cargo test --release -p peerpull-routing --test scale -- --ignored --nocapture`
/// (`PEERPULL_SCALE_NODES` / `PEERPULL_SCALE_KEYS` change the size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes minutes on 2 cores; run explicitly"]
async fn fifty_nodes_two_hundred_keys_each() {
    run(env_or("PEERPULL_SCALE_NODES", DEFAULT_NODES), env_or("PEERPULL_SCALE_KEYS", DEFAULT_KEYS_PER_NODE)).await;
}

/// The same scenario at a size that runs in every `cargo test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_nodes_twenty_five_keys_each() {
    run(12, 25).await;
}

async fn run(nodes_n: usize, keys_n: usize) {
    let t0 = Instant::now();
    let seed = NodeBuilder::new("127.0.0.1:0").config(tune).start().await;
    let mut nodes = vec![];
    for i in 1..nodes_n {
        // Spread bootstrap over the first few nodes, like several seeds behind a Service.
        let via = if i < 4 { &seed } else { &nodes[(i * 7) % 3] };
        let n = NodeBuilder::new("127.0.0.1:0").config(tune).bootstrap_to(via).start().await;
        nodes.push(n);
    }
    nodes.insert(0, seed);
    for n in &nodes {
        n.wait_ready().await;
    }
    let ready_after = t0.elapsed();

    eprintln!("scale: {nodes_n} nodes ready after {ready_after:?}; announcing");

    let t1 = Instant::now();
    let announced = AtomicUsize::new(0);
    let advertised = nodes.iter().enumerate().map(|(i, n)| {
        let keys = (0..keys_n).map(|k| key(i, k)).collect();
        let announced = &announced;
        async move {
            let r = n.router.advertise(keys).await;
            announced.fetch_add(1, Ordering::Relaxed);
            r
        }
    });
    let results = progress("nodes done announcing", &announced, nodes_n, futures::future::join_all(advertised)).await;
    for r in results {
        r.unwrap();
    }
    let advertise_took = t1.elapsed();
    eprintln!("scale: announced in {advertise_took:?}; looking up");

    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut jobs = vec![];
    for owner in 0..nodes_n {
        for k in 0..keys_n {
            jobs.push((owner, k, pick_other(&mut rng, owner, nodes_n)));
        }
    }
    // A sample one at a time gives the latency of a lookup on an otherwise idle DHT; the
    // rest, CONCURRENT_LOOKUPS at a time, the latency under a burst of pulls. Every key
    // is looked up exactly once (a second lookup of a key could come from the cache).
    let rest = jobs.split_off(SEQUENTIAL_SAMPLE.min(jobs.len()));
    let (mut one_at_a_time, mut missing) = lookup_all(&nodes, jobs, 1).await;
    let t2 = Instant::now();
    let (mut burst, missing_in_burst) = lookup_all(&nodes, rest, CONCURRENT_LOOKUPS).await;
    let lookups_took = t2.elapsed();
    missing.extend(missing_in_burst);
    one_at_a_time.sort();
    burst.sort();
    let mut peers = vec![];
    for n in &nodes {
        peers.push(n.router.peer_count().await.unwrap());
    }
    peers.sort();

    for m in &missing {
        eprintln!("scale: MISSING {m}");
    }
    println!("scale: {nodes_n} nodes x {keys_n} keys = {} lookups", nodes_n * keys_n);
    println!("scale: all nodes ready after {ready_after:?}");
    println!("scale: convergence (every key's first announcement done) {advertise_took:?}");
    for (label, lat) in [("one at a time", &one_at_a_time), (&format!("{CONCURRENT_LOOKUPS} at a time"), &burst)] {
        if let Some(max) = lat.last() {
            println!(
                "scale: lookup latency to first provider, {} lookups {label}: p50 {:?} p99 {:?} max {max:?}",
                lat.len(),
                percentile(lat, 0.50),
                percentile(lat, 0.99),
            );
        }
    }
    println!(
        "scale: {} lookups {CONCURRENT_LOOKUPS} at a time took {lookups_took:?}; routing table sizes min {} max {}",
        burst.len(),
        peers[0],
        peers[nodes_n - 1]
    );
    // Every node names the same node to fetch a key from the upstream.
    let mut disagreements = 0;
    for k in 0..CLOSEST_KEYS {
        let key = Key::Digest(Digest::sha256_of(format!("closest/{k}").as_bytes()));
        let mut chosen = std::collections::HashSet::new();
        for n in &nodes {
            let closest = n.router.closest(&key, &[]).await.unwrap();
            chosen.insert(closest.map_or(n.router.local_peer_id(), |p| p.peer));
        }
        if chosen.len() > 1 {
            disagreements += 1;
            eprintln!("scale: key {k}: the nodes named {} different fetchers", chosen.len());
        }
    }
    println!("scale: closest node: {disagreements} of {CLOSEST_KEYS} keys with more than one fetcher named");
    println!("scale: total {:?}", t0.elapsed());
    assert_eq!(disagreements, 0, "nodes disagree on the fetcher of some keys");
    assert!(missing.is_empty(), "{} of {} keys were not found (see MISSING lines)", missing.len(), nodes_n * keys_n);
    assert_eq!(one_at_a_time.len() + burst.len(), nodes_n * keys_n);
}

/// Looks every `(owner, key, from)` job up, `concurrency` at a time. Returns the
/// latency to the first provider of each key found, and a line for each key not found.
async fn lookup_all(
    nodes: &[Node],
    jobs: Vec<(usize, usize, usize)>,
    concurrency: usize,
) -> (Vec<Duration>, Vec<String>) {
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    let done_ref = &done;
    let lookups = futures::stream::iter(jobs)
        .map(|(owner, k, from)| async move {
            let start = Instant::now();
            let mut stream = nodes[from].router.lookup(&key(owner, k), 1).await.unwrap();
            let first = stream.next().await;
            let took = start.elapsed();
            done_ref.fetch_add(1, Ordering::Relaxed);
            match first {
                Some(p) => {
                    assert_eq!(p.peer, nodes[owner].router.local_peer_id());
                    assert_eq!(p.mirror, nodes[owner].mirror);
                    Ok(took)
                }
                None => Err(format!("key {k} of node {owner} not found from node {from} after {took:?}")),
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<Result<Duration, String>>>();
    let results = progress(&format!("lookups ({concurrency} at a time) done"), &done, total, lookups).await;
    let (mut found, mut missing) = (vec![], vec![]);
    for r in results {
        match r {
            Ok(took) => found.push(took),
            Err(m) => missing.push(m),
        }
    }
    (found, missing)
}
