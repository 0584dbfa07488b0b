//! Scenario 5 (in-process part), memory with many images advertised.
//!
//! Each repeat runs this binary again as a fresh child process (the hidden
//! `--memory-probe` flag), so no earlier allocation hides what is measured.
//! The child reads its own resident set (VmRSS) with only its runtime up,
//! after starting two real routers (a seed and an advertiser that
//! bootstraps from it), and after the advertiser announces `--memory-keys`
//! keys (about five per image: manifest, config, layers, tag), which the
//! seed stores as provider records: both routers' state is counted. Idle
//! and peak RSS of real `peerpull run` processes come from the rollout
//! scenario (see [`super::rollout`]).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use peerpull_oci::{Digest, Key};

use crate::cli::Args;
use crate::procfs::own_rss;
use crate::report::{Row, Section};
use crate::scenario::routers::network;
use crate::scenario::MIB;
use crate::Progress;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let (mut runtime, mut routers, mut keys, mut delta, mut per_key) = (vec![], vec![], vec![], vec![], vec![]);
    for rep in 0..args.repeats {
        let child = tokio::process::Command::new(&exe)
            .args(["--memory-probe", "--memory-keys", &args.memory_keys.to_string()])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PROBE_TIMEOUT, child)
            .await
            .map_err(|_| anyhow!("memory probe took over {PROBE_TIMEOUT:?}"))?
            .context("running the memory probe")?;
        if !output.status.success() {
            bail!("memory probe failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let figures: Vec<u64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        let [before, started, advertised] = figures[..] else { bail!("memory probe printed {text:?}") };
        runtime.push(before as f64 / MIB);
        routers.push(started as f64 / MIB);
        keys.push(advertised as f64 / MIB);
        delta.push(advertised.saturating_sub(started) as f64 / MIB);
        per_key.push(advertised.saturating_sub(started) as f64 / args.memory_keys.max(1) as f64);
        progress.say(format!("memory: repeat {}/{}", rep + 1, args.repeats));
    }
    let n = args.memory_keys;
    let mut section =
        Section::new("memory-routers", format!("5a. Router memory with {n} keys advertised (in a fresh process)"));
    section.note("VmRSS of a fresh child process of the benchmark, one per repeat: with only its async runtime; after starting two real routers (seed + advertiser); after the advertiser announced the keys, which the seed stores as provider records (both routers counted).");
    let (base, two) = ("process with runtime only", "2 routers started, no keys");
    section.rows.push(Row::new(base, "MiB", runtime));
    section.rows.push(Row::new(two, "MiB", routers).vs(base));
    section.rows.push(Row::new(format!("2 routers, {n} keys advertised"), "MiB", keys).vs(two));
    section.rows.push(Row::new(format!("growth for {n} keys"), "MiB", delta));
    section.rows.push(Row::new("growth per advertised key", "B", per_key));
    Ok(section)
}

/// The child's side: prints VmRSS (bytes) with the runtime only, with two
/// routers, and after advertising `keys` keys.
pub(crate) async fn probe(keys: usize) -> anyhow::Result<()> {
    let before = own_rss()?;
    let nodes = network(2).await?;
    let started = own_rss()?;
    let keys: Vec<Key> = (0..keys).map(|i| Key::Digest(Digest::sha256_of(&i.to_le_bytes()))).collect();
    nodes[1].router.advertise(keys).await?;
    let advertised = own_rss()?;
    println!("{before} {started} {advertised}");
    Ok(())
}
