//! Scenario 2, peer pull: node A pulls an image from the upstream; once
//! node B's mirror can see it at A, node B pulls it through CRI (from A);
//! a node without peerpull pulls the same image straight from the upstream
//! (the baseline). Each repeat uses a new image, so no node holds it before.
//! B and C take turns going first, and every measured step starts with the
//! disk's dirty pages written ([`settle`]), so no pull pays for the writes
//! of the one before it.
//!
//! Before the pulls, the image's blobs are also fetched over HTTP alone (all
//! at once, into nothing) through B's mirror and straight from the
//! upstream: the part of a pull that peerpull's path decides, without
//! containerd's writing and unpacking, which a CRI pull spends most of its
//! time on and which is the same on both nodes. So are the blobs of a second
//! new image, through A's mirror while no node holds them: the miss path,
//! where one node fetches each blob from the upstream into its spool and
//! each hop verifies the bytes.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use peerpull_testbed::{eventually, ImageBuilder, Platform, Upstream};

use crate::cli::Args;
use crate::cluster::{peer_cluster, plain_node};
use crate::http::Client;
use crate::report::{Row, Section};
use crate::scenario::{secs, settle, MIB};
use crate::Progress;

const DIRECT: &str = "node C: pull straight from upstream";
const PEER: &str = "node B: pull from peer A";
const HTTP_DIRECT: &str = "blobs over HTTP straight from upstream";
const HTTP_PEER: &str = "blobs over HTTP through B's mirror (from A)";
const HTTP_MISS: &str = "blobs over HTTP through A's mirror, no node holds them";

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let upstream = Upstream::start().await?;
    let nodes = peer_cluster(2, &upstream.url()).await?;
    let plain = plain_node(&upstream.url(), None).await?;
    let layers: Vec<u64> = args.peer_layers_mib.iter().map(|m| m << 20).collect();
    let client = Client::new();
    let (mut first, mut from_peer, mut direct, mut peer_bytes, mut direct_bytes, mut sizes) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut http_peer, mut http_direct, mut http_miss) = (vec![], vec![], vec![]);
    for rep in 0..args.repeats {
        let image = ImageBuilder::new(&format!("bench-peer-{rep}")).layers(&layers).build()?;
        let repo = format!("bench/peer{rep}");
        let reference = image.push(&upstream, &format!("{repo}:v1")).await?;
        sizes.push(image.pull_size(&Platform::host()) as f64 / MIB);

        let unheld = ImageBuilder::new(&format!("bench-unheld-{rep}")).layers(&layers).build()?;
        let unheld_repo = format!("bench/unheld{rep}");
        unheld.push(&upstream, &format!("{unheld_repo}:v1")).await?;
        let urls = blob_urls(&unheld, &nodes[0].peerpull.mirror_url(), &unheld_repo, Some(&upstream.host()));
        settle().await?;
        http_miss.push(fetch_all(&client, &urls).await?);

        settle().await?;
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

        let peer_urls = blob_urls(&image, &nodes[1].peerpull.mirror_url(), &repo, Some(&ns));
        let direct_urls = blob_urls(&image, &upstream.url(), &repo, None);
        let b_first = rep % 2 == 0;
        let blob_bytes: u64 = fetched(&image).map(|b| b.size).sum();
        for peer_turn in [b_first, !b_first] {
            settle().await?;
            let before = upstream.blob_bytes_served()?;
            if peer_turn {
                http_peer.push(fetch_all(&client, &peer_urls).await?);
            } else {
                http_direct.push(fetch_all(&client, &direct_urls).await?);
                logged(&upstream, before + blob_bytes).await?;
            }
        }

        for peer_turn in [b_first, !b_first] {
            settle().await?;
            let before = upstream.blob_bytes_served()?;
            let start = Instant::now();
            if peer_turn {
                nodes[1].containerd.cri_pull(&reference).await.context("node B pulling")?;
                from_peer.push(secs(start.elapsed()));
                peer_bytes.push((upstream.blob_bytes_served()? - before) as f64 / MIB);
            } else {
                plain.cri_pull(&reference).await.context("node C pulling")?;
                direct.push(secs(start.elapsed()));
                direct_bytes.push((logged(&upstream, before + blob_bytes).await? - before) as f64 / MIB);
            }
        }
        progress.say(format!(
            "peer: repeat {}/{}: B from peer {:.2}s, C from upstream {:.2}s; over HTTP {:.2}s and {:.2}s",
            rep + 1,
            args.repeats,
            from_peer[rep],
            direct[rep],
            http_peer[rep],
            http_direct[rep]
        ));
    }
    let mut section = Section::new(
        "peer",
        format!("2. Peer pull ({} layers, {} MiB)", layers.len(), args.peer_layers_mib.iter().sum::<u64>()),
    );
    section.note("CRI PullImage on each node; A pulls first (its mirror misses, containerd falls back to the upstream); B pulls only once its mirror finds A for the tag and every blob; C has no peerpull; B and C take turns going first; the disk's dirty pages are written before each measured step. A new image every repeat. The HTTP rows fetch the image's blobs all at once (before the pulls, taking turns too) and discard them; the miss row does the same with a second new image through A's mirror before A pulls.");
    section.rows.push(Row::new(DIRECT, "s", direct));
    section.rows.push(Row::new(PEER, "s", from_peer).vs(DIRECT));
    section.rows.push(Row::new("node A: first pull, mirror miss then upstream", "s", first).vs(DIRECT));
    section.rows.push(Row::new(HTTP_DIRECT, "s", http_direct));
    section.rows.push(Row::new(HTTP_PEER, "s", http_peer).vs(HTTP_DIRECT));
    section.rows.push(Row::new(HTTP_MISS, "s", http_miss).vs(HTTP_DIRECT));
    section.rows.push(Row::new("image size", "MiB", sizes));
    section.rows.push(Row::new("upstream blob bytes, C's pull", "MiB", direct_bytes).vs("image size"));
    section.rows.push(Row::new("upstream blob bytes, B's pull", "MiB", peer_bytes).vs("image size"));
    Ok(section)
}

/// The upstream's blob bytes served once its log shows at least `expected`:
/// it writes a request's line after the client has the last byte, and a
/// line late for one measurement must not count in the next.
async fn logged(upstream: &Upstream, expected: u64) -> anyhow::Result<u64> {
    Ok(eventually("the upstream's log to show the bytes it served", Duration::from_secs(10), || async {
        upstream.blob_bytes_served().ok().filter(|served| *served >= expected)
    })
    .await?)
}

/// The blobs a pull fetches by digest: the config and the layers (the
/// registry serves manifests only under `manifests/`).
fn fetched(image: &peerpull_testbed::Image) -> impl Iterator<Item = &peerpull_testbed::Blob> {
    let is_manifest = |media_type: &str| media_type.contains("manifest") || media_type.contains("index");
    image.blobs_for(&Platform::host()).into_iter().filter(move |b| !is_manifest(&b.media_type))
}

/// The URLs of `image`'s fetched blobs in `repo` at `base` (a mirror's, with `ns`, or the upstream's).
fn blob_urls(image: &peerpull_testbed::Image, base: &str, repo: &str, ns: Option<&str>) -> Vec<String> {
    let query = ns.map(|ns| format!("?ns={ns}")).unwrap_or_default();
    fetched(image).map(|b| format!("{base}/v2/{repo}/blobs/{}{query}", b.digest)).collect()
}

/// GETs every URL at once, reading each body as it comes; the seconds until the last ends.
async fn fetch_all(client: &Client, urls: &[String]) -> anyhow::Result<f64> {
    let start = Instant::now();
    futures::future::try_join_all(urls.iter().map(|url| client.stream(url))).await?;
    Ok(secs(start.elapsed()))
}
