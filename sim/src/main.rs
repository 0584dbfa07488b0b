//! Routing at scale in virtual time.
//!
//! Runs the production router (`peerpull-routing`: its Kademlia behaviour,
//! event loop, announcement rounds and batch protocol, unchanged) as many
//! instances in this one process, on the simulated network (libp2p's memory
//! transport with a per-byte one-way latency and a plaintext handshake),
//! under tokio's paused clock on one thread. Every time-out (ours, and
//! libp2p's, whose `futures-timer` is replaced by one on tokio's clock) fires
//! on simulated time, however long two cores take to compute a simulated
//! second: the same router code, a thousand instances, in minutes.
//!
//! For each cluster size: the simulated time until every router is ready
//! and at rest, until every router's keys are announced (convergence),
//! lookups one at a time and in a burst (p50/p99 in simulated ms and in
//! one-way hops of the latency model), routing messages (Kademlia requests
//! and batches, sent and answered; liveness probes apart) per router per
//! simulated minute at rest, this process's CPU seconds per simulated minute
//! per router, and lookups again after 10 % of the routers left and as many
//! joined. A table in Markdown goes to standard output (and `--out`); the
//! run fails if any lookup found nothing.
//!
//! What is not simulated: Kademlia times each walk on the wall clock (so
//! walks here get an hour; they end when they converge), libp2p's
//! plaintext handshake stands in for Noise, and liveness probes and record
//! expiry that compare wall-clock instants run on the wall clock.

mod cluster;

use std::time::{Duration, Instant as WallInstant};

use anyhow::{bail, Context as _};
use futures::StreamExt as _;
use peerpull_routing::simulated::Latency;
use tokio::time::Instant;

use cluster::{key, Cluster, SEEDS};

/// Lookups at once in the burst.
const BURST: usize = 32;
/// At rest: below this many routing messages per router per simulated second.
const AT_REST_PER_ROUTER: u64 = 1;
const AT_REST_DEADLINE: Duration = Duration::from_secs(3600);
/// How often connections are counted at rest.
const CONNECTION_SAMPLE: Duration = Duration::from_secs(10);

const USAGE: &str = "usage: peerpull-sim [--routers N,N,..] [--keys N] [--lookups N] [--rest-minutes N] \
[--announce-per-sec F] \
[--latency-ms F] [--jitter-ms F] [--reprovide-secs N] [--ttl-secs N] [--idle-secs N] [--refresh-secs N] [--ping-secs N] [--out FILE]";

/// What to run.
#[derive(Debug, Clone)]
struct Args {
    routers: Vec<usize>,
    keys: usize,
    lookups: usize,
    rest: Duration,
    /// Between one router's first advertisement and the next's.
    announce_gap: Duration,
    latency: Latency,
    /// Router settings that differ from the production defaults (experiments).
    tuning: cluster::Tuning,
    out: Option<std::path::PathBuf>,
}

/// What one size measured.
struct Measured {
    size: usize,
    ready: Duration,
    /// From a router's advertisement until every key of it was announced: p50, max.
    convergence: (Duration, Duration),
    failed: u64,
    one: Lookups,
    burst: Lookups,
    per_minute: f64,
    pings_per_minute: f64,
    cpu_per_minute: f64,
    connections: f64,
    churned: Lookups,
    wall: Duration,
}

/// Lookup latencies (simulated ms) and how many found nothing.
struct Lookups {
    p50: f64,
    p99: f64,
    missed: usize,
    total: usize,
}

fn main() -> anyhow::Result<()> {
    let args = parse(std::env::args().skip(1))?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
    let mut measured = Vec::new();
    for &size in &args.routers {
        let m = runtime.block_on(measure(size, &args)).with_context(|| format!("{size} routers"))?;
        measured.push(m);
    }
    let table = report(&args, &measured);
    print!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    let unfound: usize = measured.iter().map(|m| m.one.missed + m.burst.missed + m.churned.missed).sum();
    if unfound > 0 {
        bail!("{unfound} lookups found nothing (every key looked up is held by a running router)");
    }
    Ok(())
}

fn parse(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut args = Args {
        routers: vec![50, 200],
        keys: 100,
        lookups: 200,
        rest: Duration::from_secs(1800),
        announce_gap: Duration::from_secs(1),
        // tokio's clock counts whole milliseconds: a finer latency rounds up.
        latency: Latency { one_way: Duration::from_millis(1), jitter: Duration::ZERO },
        tuning: cluster::Tuning::default(),
        out: None,
    };
    let ms = |v: &str| -> anyhow::Result<Duration> { Ok(Duration::from_secs_f64(v.parse::<f64>()? / 1e3)) };
    let secs = |v: &str| -> anyhow::Result<Duration> {
        match v.parse()? {
            0 => bail!("a positive number of seconds"),
            n => Ok(Duration::from_secs(n)),
        }
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value; {USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("{flag} {value}: {e}; {USAGE}");
        match flag.as_str() {
            "--routers" => {
                args.routers = value.split(',').map(str::parse).collect::<Result<_, _>>().map_err(|e| bad(&e))?
            }
            "--keys" => args.keys = value.parse().map_err(|e| bad(&e))?,
            "--lookups" => args.lookups = value.parse().map_err(|e| bad(&e))?,
            "--rest-minutes" => args.rest = Duration::from_secs(60 * value.parse::<u64>().map_err(|e| bad(&e))?),
            "--latency-ms" => args.latency.one_way = ms(&value).map_err(|e| bad(&e))?,
            "--jitter-ms" => args.latency.jitter = ms(&value).map_err(|e| bad(&e))?,
            "--reprovide-secs" => args.tuning.reprovide = Some(secs(&value).map_err(|e| bad(&e))?),
            "--ttl-secs" => args.tuning.ttl = Some(secs(&value).map_err(|e| bad(&e))?),
            "--idle-secs" => args.tuning.idle = Some(secs(&value).map_err(|e| bad(&e))?),
            "--refresh-secs" => args.tuning.refresh = Some(secs(&value).map_err(|e| bad(&e))?),
            "--ping-secs" => args.tuning.ping = Some(secs(&value).map_err(|e| bad(&e))?),
            "--announce-per-sec" => {
                let rate = value.parse::<f64>().map_err(|e| bad(&e))?;
                if !(rate.is_finite() && rate >= 1.0 / 3600.0) {
                    return Err(bad(&"a rate of at least one an hour"));
                }
                args.announce_gap = Duration::from_secs_f64(1.0 / rate);
            }
            "--out" => args.out = Some(value.into()),
            _ => bail!("unknown flag {flag}; {USAGE}"),
        }
    }
    if args.routers.iter().any(|n| *n < SEEDS + 2) || args.keys == 0 || args.lookups == 0 {
        bail!("at least {} routers per size, one key and one lookup; {USAGE}", SEEDS + 2);
    }
    Ok(args)
}

async fn measure(size: usize, args: &Args) -> anyhow::Result<Measured> {
    let wall = WallInstant::now();
    let say = |what: String| eprintln!("sim: {size} routers: {what} ({:.0?} wall)", wall.elapsed());
    let mut cluster = Cluster::new(args.latency, args.tuning);
    let t0 = Instant::now();
    cluster.grow(size).await?;
    let ready = t0.elapsed();
    let rest = cluster.at_rest(AT_REST_PER_ROUTER, AT_REST_DEADLINE).await?;
    let started = cluster.counters();
    say(format!(
        "ready after {ready:.1?}, at rest {rest:.1?} later (simulated): {:.0} routing messages, {:.1} walks and {:.0} connections per router; announcing {} keys each",
        (started.messages - started.pings) as f64 / size as f64,
        started.bootstraps as f64 / size as f64,
        started.connections as f64 / size as f64,
        args.keys
    ));

    // A node advertises what it holds as it starts; nodes start over minutes.
    // One router at a time every `announce_gap`, so the connections of one
    // router's first round (to the k closest of each of its keys) close
    // before those of a hundred others open.
    let before = cluster.counters();
    let mut rounds = Vec::new();
    for (owner, node) in cluster.nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        let (router, keys) = (node.router.clone(), (0..args.keys).map(|i| key(owner, i)).collect());
        rounds.push(tokio::spawn(async move {
            let t = Instant::now();
            router.advertise(keys).await.map(|()| t.elapsed())
        }));
        tokio::time::sleep(args.announce_gap).await;
    }
    let mut took = Vec::new();
    for round in rounds {
        took.push(round.await.context("an advertising task")?.context("advertising")?);
    }
    took.sort();
    let convergence = (took[took.len() / 2], took[took.len() - 1]);
    let failed = cluster.counters().announcements_failed - before.announcements_failed;
    let rest = cluster.at_rest(AT_REST_PER_ROUTER, AT_REST_DEADLINE).await?;
    say(format!(
        "every router's keys announced: p50 {:.1?}, max {:.1?} after its advertisement ({failed} keys' rounds failed), at rest {rest:.1?} later",
        convergence.0, convergence.1
    ));

    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ size as u64;
    let found = cluster.counters();
    let one = lookups(&cluster, plan(&cluster, &mut rng, args.lookups, args.keys, size), 1).await?;
    let burst = lookups(&cluster, plan(&cluster, &mut rng, args.lookups * 5, args.keys, size), BURST).await?;
    let after = cluster.counters();
    say(format!(
        "lookups p99 {:.2} ms one at a time, {:.2} ms in a burst; providers returned: {} connected already, {} from their record, {} after a dial",
        one.p99,
        burst.p99,
        after.connected - found.connected,
        after.from_record - found.from_record,
        after.dialed - found.dialed
    ));

    // At rest means in the steady state: every router's re-announcement
    // sweep (which starts one interval after the router) under way.
    tokio::time::sleep_until(cluster.last_start + cluster.reprovide_interval()).await;
    let (c0, cpu0) = (cluster.counters(), cpu_seconds()?);
    // Connections open, sampled every 10 simulated seconds.
    let (mut open, mut samples) = (0u64, 0u64);
    let rest_end = Instant::now() + args.rest;
    let mut last = c0;
    while Instant::now() < rest_end {
        tokio::time::sleep(CONNECTION_SAMPLE.min(rest_end - Instant::now())).await;
        let now = cluster.counters();
        open += now.connections;
        samples += 1;
        if samples % 30 == 0 {
            say(format!(
                "at rest, the last 5 simulated minutes: {:.1} messages and {:.1} probes per router per minute",
                ((now.messages - now.pings) - (last.messages - last.pings)) as f64 / 5.0 / size as f64,
                (now.pings - last.pings) as f64 / 5.0 / size as f64
            ));
            last = now;
        }
    }
    let (c1, cpu1) = (cluster.counters(), cpu_seconds()?);
    let router_minutes = args.rest.as_secs_f64() / 60.0 * size as f64;
    let per_minute = ((c1.messages - c1.pings) - (c0.messages - c0.pings)) as f64 / router_minutes;
    let pings_per_minute = (c1.pings - c0.pings) as f64 / router_minutes;
    let cpu_per_minute = (cpu1 - cpu0) / router_minutes;
    let connections = open as f64 / samples.max(1) as f64 / size as f64;
    let rss = rss_mib()?;
    say(format!(
        "{per_minute:.1} messages and {cpu_per_minute:.4} CPU s per router per simulated minute at rest; {connections:.1} connections per router, {rss:.0} MiB resident"
    ));

    // 10 % leave (never a seed), as many join through the seeds.
    let leaving = size / 10;
    let mut left = 0;
    while left < leaving {
        let i = SEEDS + (next(&mut rng) as usize % (size - SEEDS));
        if cluster.nodes[i].is_some() {
            cluster.stop(i);
            left += 1;
        }
    }
    cluster.grow(leaving).await?;
    let churned = lookups(&cluster, plan(&cluster, &mut rng, args.lookups, args.keys, size), 1).await?;
    say(format!("after churn: lookups p99 {:.2} ms, {} found nothing", churned.p99, churned.missed));
    Ok(Measured {
        size,
        ready,
        convergence,
        failed,
        one,
        burst,
        per_minute,
        pings_per_minute,
        cpu_per_minute,
        connections,
        churned,
        wall: wall.elapsed(),
    })
}

/// A small deterministic xorshift, so runs pick the same pairs.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `n` lookups: (owner, key index, asker), owner and asker distinct running
/// routers; owners among the first `advertised`, the ones that advertised keys.
fn plan(cluster: &Cluster, rng: &mut u64, n: usize, keys: usize, advertised: usize) -> Vec<(usize, usize, usize)> {
    let up: Vec<usize> = (0..cluster.nodes.len()).filter(|i| cluster.nodes[*i].is_some()).collect();
    let owners: Vec<usize> = up.iter().copied().filter(|i| *i < advertised).collect();
    (0..n)
        .map(|_| {
            let owner = owners[next(rng) as usize % owners.len()];
            let mut from = up[next(rng) as usize % up.len()];
            while from == owner {
                from = up[next(rng) as usize % up.len()];
            }
            (owner, next(rng) as usize % keys, from)
        })
        .collect()
}

/// A lookup to make: (owner, key index, asker).
type Planned = (usize, usize, usize);
/// Whether a lookup found a provider, and when (simulated).
type Outcome = (bool, Duration);

/// Runs the lookups `concurrency` at a time: simulated latency percentiles of those that found a provider.
async fn lookups(cluster: &Cluster, plan: Vec<(usize, usize, usize)>, concurrency: usize) -> anyhow::Result<Lookups> {
    let total = plan.len();
    let results: Vec<anyhow::Result<(Outcome, Planned)>> = futures::stream::iter(plan)
        .map(|(owner, k, from)| async move {
            let node = cluster.nodes[from].as_ref().context("asker stopped")?;
            Ok((node.lookup(&key(owner, k)).await?, (owner, k, from)))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut ms = Vec::new();
    let mut missed = 0;
    for r in results {
        match r? {
            ((true, took), _) => ms.push(took.as_secs_f64() * 1e3),
            ((false, took), (owner, k, from)) => {
                missed += 1;
                // Once more, alone: does the miss last, or was it the moment?
                let node = cluster.nodes[from].as_ref().context("asker stopped")?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let (again, again_took) = node.lookup(&key(owner, k)).await?;
                eprintln!(
                    "sim: router {from} found no provider of router {owner}'s key {k} after {took:.1?}; \
                     2 s later alone: {} after {again_took:.1?}",
                    if again { "found" } else { "none again" }
                );
            }
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(Lookups { p50: percentile(&ms, 0.50), p99: percentile(&ms, 0.99), missed, total })
}

/// The `p` quantile of sorted values (nearest rank); 0 when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// This process's resident memory now, in MiB, from `/proc/self/status`.
fn rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib / 1024.0)
}

/// This process's CPU time so far (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("odd /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i - 3).context("short /proc/self/stat")?.parse::<f64>()?) };
    // utime and stime, fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    Ok((ticks(14)? + ticks(15)?) / 100.0)
}

/// The Markdown table of every size, with what each row is compared against.
fn report(args: &Args, measured: &[Measured]) -> String {
    let hop = args.latency.one_way.as_secs_f64() * 1e3;
    let mut out = format!(
        "Simulated: {}{} keys per router advertised {:.1} routers a second, one-way latency {:.2} ms + up to {:.2} ms jitter, {} lookups one at a time, {} in bursts of {BURST}, {} simulated minutes at rest.\n\n",
        args.tuning,
        args.keys,
        1.0 / args.announce_gap.as_secs_f64(),
        hop,
        args.latency.jitter.as_secs_f64() * 1e3,
        args.lookups,
        args.lookups * 5,
        args.rest.as_secs() / 60
    );
    out.push_str("| routers | ready (s) | keys announced after advertising, p50 / max (s) | rounds failed (keys) | lookup p50 / p99, one at a time (ms) | p99 in one-way hops | burst p50 / p99 (ms) | messages / router / min at rest | probes / router / min | connections / router (mean) | CPU s / router / simulated min | after 10 % churn p50 / p99 (ms) | unfound (one, burst, churn) | wall time (s) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for m in measured {
        out.push_str(&format!(
            "| {} | {:.1} | {:.2} / {:.2} | {} | {:.2} / {:.2} | {:.1} | {:.2} / {:.2} | {:.1} | {:.1} | {:.1} | {:.5} | {:.2} / {:.2} | {}, {}, {} of {}, {}, {} | {:.0} |\n",
            m.size,
            m.ready.as_secs_f64(),
            m.convergence.0.as_secs_f64(),
            m.convergence.1.as_secs_f64(),
            m.failed,
            m.one.p50,
            m.one.p99,
            m.one.p99 / hop,
            m.burst.p50,
            m.burst.p99,
            m.per_minute,
            m.pings_per_minute,
            m.connections,
            m.cpu_per_minute,
            m.churned.p50,
            m.churned.p99,
            m.one.missed,
            m.burst.missed,
            m.churned.missed,
            m.one.total,
            m.burst.total,
            m.churned.total,
            m.wall.as_secs_f64(),
        ));
    }
    if let (Some(first), Some(last)) = (measured.first(), measured.last()) {
        if last.size > first.size {
            out.push_str(&format!(
                "\nFrom {} to {} routers: messages per router at rest {:.2}x, log N {:.2}x.\n",
                first.size,
                last.size,
                last.per_minute / first.per_minute.max(f64::MIN_POSITIVE),
                (last.size as f64).ln() / (first.size as f64).ln()
            ));
        }
    }
    out
}
