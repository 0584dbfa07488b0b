//! Scenario 6, DHT lookups: many real routers in this process; every lookup
//! asks one router for a key another one advertised, and times the first
//! provider. Each repeat looks up keys not looked up before, so no cache
//! answers. The baseline is the same lookups in a network of two routers
//! (one hop).

use anyhow::bail;
use peerpull_oci::{Digest, Key};

use crate::cli::Args;
use crate::report::{Row, Section};
use crate::scenario::routers::{network, Node};
use crate::stats::percentile;
use crate::Progress;

/// A small deterministic xorshift, so runs pick the same pairs.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn key(repeat: usize, i: usize) -> Key {
    Key::Digest(Digest::sha256_of(format!("{repeat:04}/{i:06}").as_bytes()))
}

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let mut section =
        Section::new("dht", format!("6. DHT provider lookups ({} routers in one process)", args.dht_routers));
    section.note(format!(
        "{} lookups per repeat, one at a time, each for a key advertised by a random other router; time to the first provider. Baseline: the same in a 2-router network. Before measuring, every key is looked up once from a third router; keys not found then (their first announcement failed) are left out and counted.",
        args.dht_lookups
    ));
    let sizes = [(String::from("2 routers"), 2), (format!("{} routers", args.dht_routers), args.dht_routers)];
    for (i, (label, size)) in sizes.iter().enumerate() {
        progress.say(format!("dht: starting {size} routers"));
        let nodes = network(*size).await?;
        let m = measure(&nodes, args.repeats, args.dht_lookups).await?;
        progress.say(format!("dht: {label}: lookups done"));
        let (p50, p99) = (
            Row::new(format!("lookup p50, {label}"), "ms", m.p50),
            Row::new(format!("lookup p99, {label}"), "ms", m.p99),
        );
        if i == 0 {
            section.rows.extend([p50, p99]);
        } else {
            section.rows.extend([p50.vs("lookup p50, 2 routers"), p99.vs("lookup p99, 2 routers")]);
        }
        section.rows.push(Row::new(
            format!("keys not findable after advertise (left out), {label}"),
            "keys",
            m.unfindable,
        ));
        section.rows.push(Row::new(format!("measured lookups that found no provider, {label}"), "keys", m.missed));
    }
    Ok(section)
}

/// Per repeat: the p50 and p99 (ms) of the lookups, and the planned lookups left out.
struct Measured {
    p50: Vec<f64>,
    p99: Vec<f64>,
    unfindable: Vec<f64>,
    missed: Vec<f64>,
}

/// Advertises the keys, checks each is findable, then looks up `lookups` keys per repeat.
///
/// A key whose first announcement failed is found by nobody until its
/// re-provide, so before measuring each key is looked up once from a router
/// that is neither its owner nor the one measured (which so has nothing
/// cached); keys not found then are left out and counted.
async fn measure(nodes: &[Node], repeats: usize, lookups: usize) -> anyhow::Result<Measured> {
    let n = nodes.len() as u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut plan = Vec::new();
    let mut keys: Vec<Vec<Key>> = vec![Vec::new(); nodes.len()];
    for repeat in 0..repeats {
        for i in 0..lookups {
            let owner = (next(&mut rng) % n) as usize;
            let from = (owner + 1 + (next(&mut rng) % (n - 1)) as usize) % nodes.len();
            keys[owner].push(key(repeat, i));
            plan.push((repeat, key(repeat, i), owner, from));
        }
    }
    let advertised = nodes.iter().zip(keys).map(|(node, keys)| node.router.advertise(keys));
    for result in futures::future::join_all(advertised).await {
        result?;
    }
    let mut measured =
        Measured { p50: vec![], p99: vec![], unfindable: vec![0.0; repeats], missed: vec![0.0; repeats] };
    let mut findable = Vec::new();
    for (repeat, key, owner, from) in plan {
        let check = (0..nodes.len()).find(|c| *c != owner && *c != from);
        let ok = match check {
            Some(check) => nodes[check].lookup(&key).await?.0,
            None => true,
        };
        if ok {
            findable.push((repeat, key, from));
        } else {
            measured.unfindable[repeat] += 1.0;
        }
    }
    for repeat in 0..repeats {
        let mut latencies = Vec::new();
        for (_, key, from) in findable.iter().filter(|(r, _, _)| *r == repeat) {
            let (found, took) = nodes[*from].lookup(key).await?;
            if found {
                latencies.push(took.as_secs_f64() * 1e3);
            } else {
                measured.missed[repeat] += 1.0;
            }
        }
        if latencies.is_empty() {
            bail!("no lookup found a provider in repeat {repeat}");
        }
        measured.p50.push(percentile(&latencies, 0.50));
        measured.p99.push(percentile(&latencies, 0.99));
    }
    Ok(measured)
}
