//! Scenario 7, load and soak: what one node holds up to, and a rollout
//! while peers die.
//!
//! (a) One node's containerd holds a big blob. First `--soak-stalled`
//! clients start downloading it and then read nothing; then
//! `--soak-clients` clients download it whole at once, each checking its
//! digest. The node's peak resident set is sampled throughout (the goal:
//! under 100 MiB), with the aggregate throughput and the failures.
//!
//! (b) `--soak-nodes` nodes pull a new image at once while, every
//! `--soak-kill-every-ms`, a random node's `peerpull run` is killed
//! (SIGKILL) and started again: every pull must succeed with the right
//! digest and every blob in the node's store (containerd then tries the
//! next host, the upstream, when its own mirror is down).
//!
//! Implementation notes: the nodes run as the chart deploys them (direct
//! content reads, pull-through); the upstream is a local registry,
//! unshaped. Counts (failures, kills) are reported as samples per repeat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::StreamExt as _;
use peerpull_testbed::{Containerd, ImageBuilder, Peerpull, Platform, Upstream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::cli::Args;
use crate::cluster::{peer_cluster, pid};
use crate::http::Client;
use crate::procfs::memory;
use crate::report::{Row, Section};
use crate::scenario::{secs, MIB};
use crate::Progress;

/// How often the node's memory is sampled under load.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How long stalled clients are held, with samples, before they go.
const STALL_FOR: Duration = Duration::from_secs(3);

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Vec<Section>> {
    Ok(vec![load(args, progress).await?, chaos(args, progress).await?])
}

/// (a): stalled and concurrent downloads from one node.
async fn load(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let upstream = Upstream::start().await?;
    progress.say(format!("soak: building and pushing a {} MiB blob", args.soak_blob_mib));
    let image = ImageBuilder::new("bench-soak").layers(&[args.soak_blob_mib << 20]).build()?;
    let reference = image.push(&upstream, "bench/soak:v1").await?;
    let mut nodes = peer_cluster(1, &upstream.url()).await?;
    let node = nodes.remove(0);
    node.containerd.cri_pull(&reference).await?;
    let blob = &image.platforms()[0].layers[0];
    let url = format!("{}/v2/bench/soak/blobs/{}?ns={}", node.peerpull.mirror_url(), blob.digest, upstream.host());
    let pid = pid(&node)?;
    let (mut idle, mut stalled_peak, mut loaded_peak, mut rate, mut failed) = (vec![], vec![], vec![], vec![], vec![]);
    for rep in 0..args.repeats {
        idle.push(memory(pid)?.0 as f64 / MIB);
        let held = stall(&url, args.soak_stalled).await?;
        let until = Instant::now() + STALL_FOR;
        let mut peak = 0;
        while Instant::now() < until {
            peak = peak.max(memory(pid)?.0);
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        drop(held);
        stalled_peak.push(peak as f64 / MIB);

        let client = Client::new();
        let started = Instant::now();
        let downloads = futures::stream::iter(0..args.soak_clients)
            .map(|_| client.digest(&url))
            .buffer_unordered(args.soak_clients.max(1))
            .collect::<Vec<_>>();
        let (results, peak) = sampled(pid, downloads).await?;
        let took = secs(started.elapsed());
        let ok = results
            .iter()
            .filter(|r| matches!(r, Ok((size, digest)) if *size == blob.size && *digest == blob.digest))
            .count();
        failed.push((results.len() - ok) as f64);
        loaded_peak.push(peak as f64 / MIB);
        rate.push((ok as u64 * blob.size) as f64 / took / 1e6);
        progress.say(format!(
            "soak: repeat {}/{}: {} stalled -> {:.1} MiB; {} downloads, {ok} verified, {:.1} MiB peak",
            rep + 1,
            args.repeats,
            args.soak_stalled,
            stalled_peak[rep],
            args.soak_clients,
            loaded_peak[rep]
        ));
    }
    let mut section = Section::new(
        "soak-load",
        format!(
            "7a. One node under load: {} stalled downloads, then {} concurrent downloads of a {} MiB blob",
            args.soak_stalled, args.soak_clients, args.soak_blob_mib
        ),
    );
    section.note("VmRSS of the node's peerpull run, sampled every 50 ms: idle before each repeat, peak while the stalled clients (each read the status line, then nothing) were held 3 s, and peak during the concurrent downloads. Each download's bytes are hashed and compared with the blob's digest.");
    let base = "idle RSS";
    section.rows.push(Row::new(base, "MiB", idle));
    section
        .rows
        .push(Row::new(format!("peak RSS, {} stalled downloads", args.soak_stalled), "MiB", stalled_peak).vs(base));
    section
        .rows
        .push(Row::new(format!("peak RSS, {} concurrent downloads", args.soak_clients), "MiB", loaded_peak).vs(base));
    section.rows.push(Row::new("aggregate throughput of verified downloads", "MB/s", rate));
    section.rows.push(Row::new("downloads failed or corrupt", "count", failed));
    Ok(section)
}

/// (b): a rollout while peers are killed and restarted.
async fn chaos(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let upstream = Upstream::start().await?;
    let mut nodes = peer_cluster(args.soak_nodes.max(2), &upstream.url()).await?;
    let (mut times, mut failed, mut kills, mut bytes, mut size) = (vec![], vec![], vec![], vec![], vec![]);
    for rep in 0..args.repeats {
        let name = format!("bench/chaos-{rep}:v1");
        let image = ImageBuilder::new(&name).layers(&[(args.soak_image_mib << 20) / 4; 4]).build()?;
        let reference = image.push(&upstream, &name).await?;
        let before = upstream.blob_bytes_served()?;
        let (containerds, peerpulls): (Vec<&Containerd>, Vec<&mut Peerpull>) =
            nodes.iter_mut().map(|n| (&n.containerd, &mut n.peerpull)).unzip();
        let done = AtomicBool::new(false);
        let started = Instant::now();
        let pulls = async {
            let pulled = futures::future::join_all(containerds.iter().map(|n| n.cri_pull(&reference))).await;
            done.store(true, Ordering::SeqCst);
            pulled
        };
        let every = Duration::from_millis(args.soak_kill_every_ms);
        let (pulled, killed) = tokio::join!(pulls, kill_randomly(peerpulls, every, &done, rep));
        times.push(secs(started.elapsed()));
        let killed = killed?;
        let mut bad = 0;
        for (node, result) in containerds.iter().zip(&pulled) {
            let verified = match result {
                Ok(p) if p.manifest_digest() == Some(image.digest()) => {
                    let mut all = true;
                    for blob in image.blobs_for(&Platform::host()) {
                        all &= node.has_content(&blob.digest).await.unwrap_or(false);
                    }
                    all
                }
                _ => false,
            };
            bad += usize::from(!verified);
        }
        failed.push(bad as f64);
        kills.push(killed as f64);
        bytes.push((upstream.blob_bytes_served()? - before) as f64 / MIB);
        size.push(image.pull_size(&Platform::host()) as f64 / MIB);
        progress.say(format!(
            "soak: chaos repeat {}/{}: {} pulls, {bad} failed, {killed} kills, {:.1} s",
            rep + 1,
            args.repeats,
            containerds.len(),
            times[rep]
        ));
        if bad > 0 {
            for result in pulled.iter().filter_map(|r| r.as_ref().err()) {
                progress.say(format!("soak: a pull failed: {result}"));
            }
        }
    }
    let mut section = Section::new(
        "soak-chaos",
        format!(
            "7b. Rollout of a {} MiB image to {} nodes at once while a random peerpull is killed every {} ms",
            args.soak_image_mib,
            nodes.len(),
            args.soak_kill_every_ms
        ),
    );
    section.note("Each kill is SIGKILL, then the node's peerpull is started again (same identity) while the pulls go on. A pull counts as failed unless CRI PullImage succeeded with the image's digest and the node's store holds every blob.");
    section.rows.push(Row::new("pulls failed or incomplete", "count", failed));
    section.rows.push(Row::new("peerpull kills during the rollout", "count", kills));
    section.rows.push(Row::new("time to all nodes", "s", times));
    section.rows.push(Row::new("image size", "MiB", size));
    section.rows.push(Row::new("upstream blob bytes", "MiB", bytes).vs("image size"));
    Ok(section)
}

/// Starts `n` downloads of `url` that read the status line and then nothing.
async fn stall(url: &str, n: usize) -> anyhow::Result<Vec<tokio::net::TcpStream>> {
    let rest = url.strip_prefix("http://").context("an http:// URL")?;
    let (authority, path) = rest.split_once('/').context("a URL with a path")?;
    let request = format!("GET /{path} HTTP/1.1\r\nhost: {authority}\r\n\r\n");
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = tokio::net::TcpStream::connect(authority).await.context("connecting a stalled client")?;
        stream.write_all(request.as_bytes()).await?;
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).await?;
        if &status != b"HTTP/1.1 200" {
            bail!("a stalled client got {:?}", String::from_utf8_lossy(&status));
        }
        held.push(stream);
    }
    Ok(held)
}

/// Runs `work` while sampling `pid`'s resident set; returns its output and the peak.
async fn sampled<T>(pid: u32, work: impl std::future::Future<Output = T>) -> anyhow::Result<(T, u64)> {
    let done = AtomicBool::new(false);
    let work = async {
        let out = work.await;
        done.store(true, Ordering::SeqCst);
        out
    };
    let sample = async {
        let mut peak = 0;
        while !done.load(Ordering::SeqCst) {
            peak = peak.max(memory(pid)?.0);
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        Ok::<_, anyhow::Error>(peak)
    };
    let (out, peak) = tokio::join!(work, sample);
    Ok((out, peak?))
}

/// Until `done`: every `every`, kills one of `nodes` (chosen pseudo-randomly
/// from `seed`) and starts it again. Returns the kills.
async fn kill_randomly(
    mut nodes: Vec<&mut Peerpull>,
    every: Duration,
    done: &AtomicBool,
    seed: usize,
) -> anyhow::Result<usize> {
    let mut kills = 0;
    let mut state = (seed as u64).wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    while !done.load(Ordering::SeqCst) {
        tokio::time::sleep(every).await;
        if done.load(Ordering::SeqCst) {
            break;
        }
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let victim = (state >> 33) as usize % nodes.len();
        nodes[victim].kill();
        kills += 1;
        nodes[victim].restart().await.context("restarting a killed peerpull")?;
    }
    Ok(kills)
}
