//! Scenario 2, peer pull: node A pulls an image from the upstream; once
//! node B's mirror can see it at A, node B pulls it through CRI (from A);
//! a node without peerpull pulls the same image straight from the upstream
//! (the baseline). Each repeat uses a new image, so no node holds it before.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use peerpull_testbed::{eventually, ImageBuilder, Platform, Upstream};

use crate::cli::Args;
use crate::cluster::{peer_cluster, plain_node};
use crate::http::Client;
use crate::report::{Row, Section};
use crate::scenario::{secs, MIB};
use crate::Progress;

const DIRECT: &str = "node C: pull straight from upstream";
const PEER: &str = "node B: pull from peer A";

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let upstream = Upstream::start().await?;
    let nodes = peer_cluster(2, &upstream.url()).await?;
    let plain = plain_node(&upstream.url(), None).await?;
    let layers: Vec<u64> = args.peer_layers_mib.iter().map(|m| m << 20).collect();
    let client = Client::new();
    let (mut first, mut from_peer, mut direct, mut peer_bytes, mut direct_bytes, mut sizes) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for rep in 0..args.repeats {
        let image = ImageBuilder::new(&format!("bench-peer-{rep}")).layers(&layers).build()?;
        let repo = format!("bench/peer{rep}");
        let reference = image.push(&upstream, &format!("{repo}:v1")).await?;
        sizes.push(image.pull_size(&Platform::host()) as f64 / MIB);

        let start = Instant::now();
        nodes[0].containerd.cri_pull(&reference).await.context("node A pulling")?;
        first.push(secs(start.elapsed()));

        // B's mirror finds A for the tag and for every blob before B pulls.
        let ns = upstream.host();
        let mut paths = vec![format!("/v2/{repo}/manifests/v1")];
        paths.extend(image.blobs().iter().map(|b| format!("/v2/{repo}/blobs/{}", b.digest)));
        for path in paths {
            let url = format!("{}{path}?ns={ns}", nodes[1].peerpull.mirror_url());
            eventually(&format!("node B's mirror to find {path} at A"), Duration::from_secs(60), || async {
                client.timed("HEAD", &url).await.ok().filter(|(s, _)| *s == 200).map(|_| ())
            })
            .await?;
        }

        let before = upstream.blob_bytes_served()?;
        let start = Instant::now();
        nodes[1].containerd.cri_pull(&reference).await.context("node B pulling")?;
        from_peer.push(secs(start.elapsed()));
        let after = upstream.blob_bytes_served()?;
        peer_bytes.push((after - before) as f64 / MIB);

        let start = Instant::now();
        plain.cri_pull(&reference).await.context("node C pulling")?;
        direct.push(secs(start.elapsed()));
        direct_bytes.push((upstream.blob_bytes_served()? - after) as f64 / MIB);
        progress.say(format!(
            "peer: repeat {}/{}: B from peer {:.2}s, C from upstream {:.2}s",
            rep + 1,
            args.repeats,
            from_peer[rep],
            direct[rep]
        ));
    }
    let mut section = Section::new(
        "peer",
        format!("2. Peer pull ({} layers, {} MiB)", layers.len(), args.peer_layers_mib.iter().sum::<u64>()),
    );
    section.note("CRI PullImage on each node; A pulls first (its mirror misses, containerd falls back to the upstream); B pulls only once its mirror finds A for the tag and every blob; C has no peerpull. A new image every repeat.");
    section.rows.push(Row::new(DIRECT, "s", direct));
    section.rows.push(Row::new(PEER, "s", from_peer).vs(DIRECT));
    section.rows.push(Row::new("node A: first pull, mirror miss then upstream", "s", first).vs(DIRECT));
    section.rows.push(Row::new("image size", "MiB", sizes));
    section.rows.push(Row::new("upstream blob bytes, C's pull", "MiB", direct_bytes).vs("image size"));
    section.rows.push(Row::new("upstream blob bytes, B's pull", "MiB", peer_bytes).vs("image size"));
    Ok(section)
}
