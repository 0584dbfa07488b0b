//! Scenario 3, rollout (Spegel's published scenario, scaled down): N nodes
//! pull the same new image from an upstream registry whose bandwidth is
//! shaped, rolling (a batch of nodes at a time) or all at once, in three
//! set-ups: (a) no mirror, every node straight to the upstream; (b) a
//! pull-through cache (`docker-registry` in proxy mode, the Harbor-style
//! choice) that every node pulls through; (c) peerpull on every node.
//! Each rollout starts once the disk's dirty pages are written ([`settle`]).
//!
//! Reported per image size and pattern: the time until every node has the
//! image and the blob bytes the upstream served, against (a) and against the
//! physical limit (image size ÷ upstream bandwidth). The peerpull nodes'
//! idle and peak resident sets are measured here too (scenario 5).
//!
//! Implementation notes: images are pushed once to a testbed registry on
//! loopback; the shaped upstream is a second `docker-registry` inside a
//! network namespace of our own serving that same storage, behind a veth
//! with a token-bucket filter. Every (size, pattern, repeat) has its own
//! image, so no node or cache holds it before; the three set-ups pull the
//! same images, each on fresh nodes.

use std::time::Instant;

use anyhow::Context as _;
use peerpull_testbed::{free_port, Containerd, ImageBuilder, Platform, Upstream};

use crate::cli::{Args, Pattern};
use crate::cluster::{peer_cluster, plain_node, Node};
use crate::procfs::memory;
use crate::registry::{Mode, Registry};
use crate::report::{Row, Section};
use crate::scenario::{secs, settle, MIB};
use crate::shaped::Link;
use crate::Progress;

/// The three set-ups, in the order they run.
const SETUPS: [&str; 3] = ["no mirror", "pull-through cache", "peerpull"];

/// One image size and pattern, with an image per repeat.
#[derive(Debug)]
struct Cell {
    size_mib: u64,
    layers: usize,
    pattern: Pattern,
    references: Vec<String>,
    pull_size: u64,
    /// Per set-up: (seconds until every node has it, upstream blob MiB), one per repeat.
    results: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Runs the scenario; returns a section per cell and the peerpull memory section.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<(Vec<Section>, Section)> {
    let rate = args.rollout_rate_mbps * 1_000_000;
    let mut seed = Upstream::start().await?;
    let link = Link::create(rate).context("creating the shaped link (needs root, ip and tc)")?;
    let storage = seed.storage();
    let upstream = Registry::start(Some(link.ns()), link.ns_ip, 5000, Mode::Storage(&storage)).await?;
    let mut cells = Vec::new();
    for (i, size_mib) in args.rollout_sizes_mib.iter().enumerate() {
        let layers = args.rollout_layers.get(i).copied().unwrap_or(1).max(1);
        let sizes = vec![(size_mib << 20) / layers as u64; layers];
        for pattern in &args.rollout_patterns {
            progress.say(format!("rollout: building {} images of {size_mib} MiB in {layers} layer(s)", args.repeats));
            let mut cell = Cell {
                size_mib: *size_mib,
                layers,
                pattern: *pattern,
                references: vec![],
                pull_size: 0,
                results: vec![],
            };
            for rep in 0..args.repeats {
                let name = format!("bench/roll-{size_mib}m-{pattern}-{rep}:v1");
                let image = ImageBuilder::new(&name).layers(&sizes).build()?;
                image.push(&seed, &name).await?;
                cell.pull_size = image.pull_size(&Platform::host());
                cell.references.push(format!("{}/{name}", upstream.host()));
            }
            cells.push(cell);
        }
    }
    seed.stop();

    let nodes_n = args.rollout_nodes.max(1);
    let rolling_batch = (nodes_n * args.rollout_batch_percent).div_ceil(100).clamp(1, nodes_n);
    let (mut idle, mut peak) = (vec![], vec![]);
    for setup in SETUPS {
        progress.say(format!("rollout: starting {nodes_n} nodes ({setup})"));
        let (mut plain, mut peers, mut cache) = (Vec::<Containerd>::new(), Vec::<Node>::new(), None);
        match setup {
            "peerpull" => peers = peer_cluster(nodes_n, &upstream.url()).await?,
            "pull-through cache" => {
                let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
                let proxy = Registry::start(None, ip, free_port(ip)?, Mode::Proxy(&upstream.url())).await?;
                for _ in 0..nodes_n {
                    plain.push(plain_node(&upstream.url(), Some(&proxy.url())).await?);
                }
                cache = Some(proxy);
            }
            _ => {
                for _ in 0..nodes_n {
                    plain.push(plain_node(&upstream.url(), None).await?);
                }
            }
        }
        for node in &peers {
            idle.push(memory(crate::cluster::pid(node)?)?.0 as f64 / MIB);
        }
        let containerds: Vec<&Containerd> =
            if peers.is_empty() { plain.iter().collect() } else { peers.iter().map(|n| &n.containerd).collect() };
        for cell in &mut cells {
            let batch = if cell.pattern == Pattern::Rolling { rolling_batch } else { nodes_n };
            let (mut times, mut bytes) = (vec![], vec![]);
            for (rep, reference) in cell.references.iter().enumerate() {
                settle().await?;
                let before = upstream.blob_bytes_served()?;
                let took = rollout(&containerds, reference, batch).await?;
                times.push(took);
                bytes.push((upstream.blob_bytes_served()? - before) as f64 / MIB);
                progress.say(format!(
                    "rollout: {} MiB {} {setup}: repeat {}/{}: {took:.2} s, upstream served {:.1} MiB",
                    cell.size_mib,
                    cell.pattern,
                    rep + 1,
                    args.repeats,
                    bytes[rep]
                ));
            }
            cell.results.push((times, bytes));
        }
        for node in &peers {
            peak.push(memory(crate::cluster::pid(node)?)?.1 as f64 / MIB);
        }
        drop(cache);
    }
    drop(link);

    let sections = cells.iter().map(|cell| section(cell, args, nodes_n, rolling_batch, rate)).collect();
    let mut mem = Section::new("memory-peerpull", "5b. peerpull run memory during the rollout");
    mem.note(format!("Per node of the peerpull set-up ({nodes_n} nodes; samples are nodes, not repeats): VmRSS right after the node was ready with no images, and VmHWM (peak RSS since start) after every rollout of scenario 3."));
    mem.rows.push(Row::new("idle RSS after ready (VmRSS)", "MiB", idle));
    mem.rows.push(Row::new("peak RSS during the rollouts (VmHWM)", "MiB", peak).vs("idle RSS after ready (VmRSS)"));
    Ok((sections, mem))
}

/// Pulls `reference` on every node through CRI, `batch` nodes at a time;
/// returns the seconds until every node has it.
async fn rollout(nodes: &[&Containerd], reference: &str, batch: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for group in nodes.chunks(batch.max(1)) {
        futures::future::try_join_all(group.iter().map(|n| n.cri_pull(reference))).await?;
    }
    Ok(secs(start.elapsed()))
}

fn section(cell: &Cell, args: &Args, nodes: usize, batch: usize, rate: u64) -> Section {
    let pattern = match cell.pattern {
        Pattern::Rolling => format!("rolling, {batch} node(s) at a time"),
        Pattern::AllAtOnce => "all at once".to_owned(),
    };
    let mut section = Section::new(
        format!("rollout-{}m-{}", cell.size_mib, cell.pattern),
        format!(
            "3. Rollout: {} MiB in {} layer(s), {nodes} nodes, {pattern}, upstream {} MB/s",
            cell.size_mib, cell.layers, args.rollout_rate_mbps
        ),
    );
    section.note("Time: from the first CRI PullImage until every node has the image. Bytes: blob bytes the shaped upstream served (its access log).");
    section.note("Physical limit: the image's blob bytes ÷ the configured upstream bandwidth, i.e. one copy through the shaped link.");
    section.note("peerpull runs as the chart deploys it (--upstream-fallback true): a blob no node holds is fetched from the upstream by one node for the whole cluster while the others stream it from that node. In the rolling pattern the next batch starts as soon as the previous one is done, with no pause.");
    let limit = "physical limit (size ÷ bandwidth)";
    let size = "image size";
    let n = cell.references.len();
    section.rows.push(Row::new(limit, "s", vec![cell.pull_size as f64 / rate as f64; n]));
    section.rows.push(Row::new(size, "MiB", vec![cell.pull_size as f64 / MIB; n]));
    for (setup, (times, bytes)) in SETUPS.iter().zip(&cell.results) {
        let (time, served) = (format!("{setup}: time to all nodes"), format!("{setup}: upstream bytes"));
        let (mut t, mut b) = (Row::new(time, "s", times.clone()), Row::new(served, "MiB", bytes.clone()));
        if *setup != SETUPS[0] {
            t = t.vs(format!("{}: time to all nodes", SETUPS[0]));
            b = b.vs(format!("{}: upstream bytes", SETUPS[0]));
        }
        section.rows.push(t.vs(limit));
        section.rows.push(b.vs(size));
    }
    section
}
