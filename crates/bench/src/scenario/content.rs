//! Scenario 11, content at rest: what DHT routing costs real nodes as a
//! function of how many keys each holds.
//!
//! For each of `--content-keys` (keys per node), a fresh cluster of
//! [`NODES`] nodes, each its own containerd and `peerpull run` on loopback,
//! set up as the chart deploys them. Before the daemons start, each
//! containerd imports (`ctr images import --no-unpack`) generated images of
//! many tiny layers, distinct per node, so that the node advertises that
//! many keys (every digest, and each image's tag); the daemons then start
//! as a DaemonSet's pods do on nodes that already hold images. Measured
//! from the first daemon's start: the time until every one is ready, and
//! until a sample of every node's digests is found from another node (the
//! admin API's `Locate`, a DHT lookup); then the lookup latency of another
//! sample from a third node, one at a time; then, after
//! `--content-rest-secs` of rest, over `--content-measure-secs`: each
//! daemon's CPU time per minute (`/proc/<pid>/stat`), its resident set at
//! the end, the routing messages (Kademlia requests and provider batches)
//! it sent and answered per minute, and the keys whose announcement round
//! finished per minute (its `/metrics`).
//!
//! Implementation notes: the per-node figures have one sample per node (so
//! min–max is the spread over nodes); the times, the latencies and the
//! misses have one sample per key count. `--repeats` does not apply. The
//! upstream registry serves nothing here: it names the mirrored registry,
//! so the images' tags are advertised. The measuring and the lookups are in
//! [`probe`].

mod probe;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use peerpull_testbed::{eventually, Archive, Containerd, Upstream};

use crate::cli::Args;
use crate::cluster::{peerpull_beside, Node};
use crate::report::{Row, Section};
use crate::scenario::secs;
use crate::Progress;

use self::probe::{Activity, Latency};

/// Nodes in the cluster.
pub(crate) const NODES: usize = 5;
/// Layers of a full generated image (a tag, a manifest, a config and these make its keys).
const LAYERS_PER_IMAGE: usize = 50;
/// Bytes in each layer's one file (gzip-compressed, a layer of a few hundred bytes).
const LAYER_BYTES: u64 = 256;
/// Sampled digests per node, for findability and again for latency.
const SAMPLE: usize = 20;
/// How long the daemons may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a ready daemon may take to report its keys as advertised.
const ADVERTISED_TIMEOUT: Duration = Duration::from_secs(60);

/// What one key count measured.
struct Measured {
    advertised: Vec<f64>,
    import: f64,
    ready: f64,
    findable: f64,
    latency: Latency,
    rest: Activity,
}

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let counts = &args.content_keys;
    let mut section = Section::new("content", format!("11. Routing at rest by keys held ({NODES} real nodes)"));
    section.note(format!(
        "Keys per node {counts:?}: each node's containerd imports (ctr images import --no-unpack) generated images of up to {LAYERS_PER_IMAGE} tiny layers each, distinct per node, before its peerpull run starts; keys = digests (layers, config, manifest) + one tag per image. One fresh cluster per key count, set up as the chart deploys it; --repeats does not apply. Times from the first daemon's start. Findable: {SAMPLE} random digests per node, each found at its holder through another node's admin API Locate (a DHT lookup), polled. Lookups: {SAMPLE} other random digests per node from a third node, one at a time, time to the first provider (the Locate call). At rest: after {} s of rest, over {} s; samples are the {NODES} nodes (median, min–max over nodes): CPU seconds per minute (utime + stime of the peerpull run), RSS at the end, routing messages sent and answered per minute (peerpull_routing_requests_total: Kademlia requests and provider batches, liveness probes aside), keys whose announcement round finished per minute (peerpull_routing_announcements_total).",
        args.content_rest_secs, args.content_measure_secs
    ));
    let base = counts.first().copied().unwrap_or(0);
    for &keys in counts {
        let m = measure(keys, args, progress).await?;
        let label = |what: &str| format!("{what}, {keys} keys per node");
        let vs =
            |row: Row, what: &str| if keys == base { row } else { row.vs(format!("{what}, {base} keys per node")) };
        let r = &m.rest;
        section.rows.extend([
            Row::new(label("keys advertised per node"), "keys", m.advertised),
            Row::new(label("generating and importing the images (all nodes)"), "s", vec![m.import]),
            vs(
                Row::new(label("all ready after the daemons start"), "s", vec![m.ready]),
                "all ready after the daemons start",
            ),
            vs(
                Row::new(label("sampled keys all findable after the daemons start"), "s", vec![m.findable]),
                "sampled keys all findable after the daemons start",
            ),
            vs(Row::new(label("lookup p50"), "ms", vec![m.latency.p50]), "lookup p50"),
            vs(Row::new(label("lookup p99"), "ms", vec![m.latency.p99]), "lookup p99"),
            Row::new(label("lookups that found nothing"), "keys", vec![m.latency.missed as f64]),
            vs(Row::new(label("CPU at rest"), "s/min", r.cpu.clone()), "CPU at rest"),
            vs(Row::new(label("RSS at rest"), "MiB", r.rss.clone()), "RSS at rest"),
            vs(
                Row::new(label("routing messages sent at rest"), "msg/min", r.sent.clone()),
                "routing messages sent at rest",
            ),
            vs(
                Row::new(label("routing messages answered at rest"), "msg/min", r.answered.clone()),
                "routing messages answered at rest",
            ),
            Row::new(label("of those sent: add_provider"), "msg/min", r.add_provider.clone()),
            Row::new(label("of those sent: provide_batch"), "msg/min", r.batches.clone()),
            vs(
                Row::new(label("announcements finished at rest"), "ann/min", r.announcements.clone()),
                "announcements finished at rest",
            ),
        ]);
    }
    Ok(section)
}

/// One fresh cluster holding `keys` keys per node, measured.
async fn measure(keys: usize, args: &Args, progress: &Progress) -> anyhow::Result<Measured> {
    let layers = plan(keys)?;
    let upstream = Upstream::start().await.context("starting the upstream registry")?;
    let mut containerds = Vec::with_capacity(NODES);
    for _ in 0..NODES {
        containerds.push(Containerd::start().await.context("starting containerd")?);
    }
    let started = Instant::now();
    let archives = (0..NODES)
        .map(|n| {
            let repository = format!("{}/bench/content-{keys}-n{n}", upstream.host());
            Archive::tiny(&format!("content/{keys}/{n}"), &repository, &layers, LAYER_BYTES)
        })
        .collect::<Result<Vec<_>, _>>()
        .context("generating images")?;
    let imports = containerds.iter().zip(&archives).map(|(c, a)| c.import(a));
    futures::future::try_join_all(imports).await.context("importing images into containerd")?;
    let import = secs(started.elapsed());
    progress.say(format!(
        "content: {keys} keys per node: {} images per node generated and imported in {import:.1} s; starting the daemons",
        layers.len()
    ));

    let t0 = Instant::now();
    let nodes = peerpull_beside(containerds, &upstream.url()).await?;
    for node in &nodes {
        node.peerpull.wait_ready(READY_TIMEOUT).await.context("waiting for a daemon to be ready")?;
    }
    let ready = secs(t0.elapsed());
    let advertised = advertised(&nodes, &archives).await?;
    let holders = probe::peer_ids(&nodes).await?;
    let digests: Vec<Vec<&str>> =
        archives.iter().map(|a| a.images().iter().flat_map(|i| i.digests()).collect()).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ keys as u64;
    let first: Vec<Vec<&str>> = digests.iter().map(|d| probe::sample(d, SAMPLE, &mut rng)).collect();
    let findable = probe::findable(&nodes, &holders, &first, t0, progress).await?;
    progress
        .say(format!("content: {keys} keys per node: ready after {ready:.1} s, sample findable after {findable:.1} s"));

    let second: Vec<Vec<&str>> = digests.iter().map(|d| probe::sample(d, SAMPLE, &mut rng)).collect();
    let latency = probe::lookups(&nodes, &holders, &second).await?;
    progress.say(format!(
        "content: {keys} keys per node: lookups p50 {:.2} ms, p99 {:.2} ms, {} of {} found nothing; resting {} s",
        latency.p50, latency.p99, latency.missed, latency.total, args.content_rest_secs
    ));
    tokio::time::sleep(Duration::from_secs(args.content_rest_secs)).await;
    progress.say(format!("content: {keys} keys per node: measuring for {} s", args.content_measure_secs));
    let rest = probe::at_rest(&nodes, Duration::from_secs(args.content_measure_secs)).await?;
    Ok(Measured { advertised, import, ready, findable, latency, rest })
}

/// Layers of each image so that an image's layers, config, manifest and
/// tag add up to `keys` over all images, at most [`LAYERS_PER_IMAGE`] each.
fn plan(keys: usize) -> anyhow::Result<Vec<usize>> {
    let per_image = LAYERS_PER_IMAGE + 3;
    let images = keys.div_ceil(per_image);
    if keys < 4 {
        bail!("--content-keys: at least 4 keys per node (one layer, a config, a manifest and a tag)");
    }
    let layers = keys - 3 * images;
    Ok((0..images).map(|i| layers / images + usize::from(i < layers % images)).collect())
}

/// Waits until each node advertises at least as many keys as its images
/// hold; returns how many each advertises.
async fn advertised(nodes: &[Node], archives: &[Archive]) -> anyhow::Result<Vec<f64>> {
    let mut counts = Vec::with_capacity(nodes.len());
    for (n, (node, archive)) in nodes.iter().zip(archives).enumerate() {
        let want = archive.keys() as u64;
        let what = format!("node {n} to advertise its {want} keys");
        let count = eventually(&what, ADVERTISED_TIMEOUT, || async {
            let status = node.peerpull.status().await.ok()?;
            let count = status.advertised_digests + status.advertised_tags;
            (count >= want).then_some(count)
        })
        .await
        .with_context(|| format!("node {n} advertises fewer keys than its images hold"))?;
        counts.push(count as f64);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_add_up_to_the_keys() -> anyhow::Result<()> {
        for keys in [4, 12, 53, 54, 500, 2000, 10_000] {
            let layers = plan(keys)?;
            assert_eq!(layers.iter().map(|l| l + 3).sum::<usize>(), keys, "{keys}: {layers:?}");
            assert!(layers.iter().all(|&l| (1..=LAYERS_PER_IMAGE).contains(&l)), "{keys}: {layers:?}");
        }
        assert_eq!(plan(12)?, vec![9]);
        assert!(plan(3).is_err());
        Ok(())
    }
}
