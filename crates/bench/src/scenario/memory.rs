//! Scenario 5 (in-process part), memory with many images advertised: the
//! resident set of this process before and after starting two real routers
//! (a seed and an advertiser), and after the advertiser announces
//! `--memory-keys` keys (about five per image: manifest, config, layers,
//! tag). Both routers' state is counted, the seed's stored provider records
//! too. Peak and idle RSS of real `peerpull run` processes come from the
//! rollout scenario (see [`super::rollout`]).

use crate::cli::Args;
use crate::procfs::own_rss;
use crate::report::{Row, Section};
use crate::scenario::routers::network;
use crate::scenario::MIB;
use crate::Progress;

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let (mut idle, mut with_keys, mut per_key) = (vec![], vec![], vec![]);
    for rep in 0..args.repeats {
        let before = own_rss()?;
        let nodes = network(2).await?;
        let started = own_rss()?;
        let keys: Vec<String> = (0..args.memory_keys).map(|i| format!("sha256:{rep:04}{i:060}")).collect();
        nodes[1].router.advertise(keys).await?;
        let advertised = own_rss()?;
        idle.push(started.saturating_sub(before) as f64 / MIB);
        with_keys.push(advertised.saturating_sub(before) as f64 / MIB);
        per_key.push(advertised.saturating_sub(started) as f64 / args.memory_keys.max(1) as f64);
        drop(nodes);
        progress.say(format!("memory: repeat {}/{}", rep + 1, args.repeats));
    }
    let mut section = Section::new(
        "memory-routers",
        format!("5a. Router memory with {} keys advertised (in process)", args.memory_keys),
    );
    section.note("RSS deltas of this benchmark process (VmRSS from /proc/self/status): two real routers (seed + advertiser) started, then the advertiser announces the keys, which the seed stores as provider records. Freed memory may stay with the allocator, so later repeats can read lower.");
    section.rows.push(Row::new("2 routers started, no keys", "MiB", idle));
    section.rows.push(
        Row::new(format!("2 routers, {} keys advertised", args.memory_keys), "MiB", with_keys)
            .vs("2 routers started, no keys"),
    );
    section.rows.push(Row::new("per advertised key", "B", per_key));
    Ok(section)
}
