//! Scenario 1, serve throughput: one node's containerd holds a large blob;
//! it is read through that node's mirror (gRPC read path and direct
//! content-file read path), straight from the upstream registry, and as a
//! plain file read of containerd's content file (the limit of this machine).
//! Then many small manifest HEAD/GET requests on the mirror and on the
//! upstream: p50/p99 latency and requests per second.
//!
//! Implementation notes: the blob is read once before measuring, so every
//! path reads from the page cache; the figures compare serving code, not
//! disks.

use std::time::Instant;

use anyhow::{bail, Context as _};
use futures::StreamExt as _;
use peerpull_testbed::{loopback_subnet, Containerd, ImageBuilder, Peerpull, PeerpullOptions, Upstream};

use crate::cli::Args;
use crate::http::Client;
use crate::report::{Row, Section};
use crate::stats::percentile;
use crate::Progress;

const FILE: &str = "plain file read";
const UPSTREAM: &str = "upstream registry, direct";
const GRPC: &str = "mirror, gRPC read path";
const DIRECT: &str = "mirror, direct file read path";

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let upstream = Upstream::start().await?;
    progress.say(format!("serve: building and pushing a {} MiB blob", args.serve_blob_mib));
    let image = ImageBuilder::new("bench-serve").layers(&[args.serve_blob_mib << 20]).build()?;
    let reference = image.push(&upstream, "bench/serve:v1").await?;
    let node = Containerd::start().await?;
    node.trust_registry(&upstream)?;
    node.cri_pull(&reference).await?;
    let subnet = loopback_subnet();
    let grpc = Peerpull::start(&node, PeerpullOptions::on(subnet.node(0))).await?;
    let direct =
        Peerpull::start(&node, PeerpullOptions { direct_read: true, ..PeerpullOptions::on(subnet.node(1)) }).await?;

    let blob = &image.platforms()[0].layers[0];
    let content = node.content_path().join("blobs/sha256").join(blob.digest.trim_start_matches("sha256:"));
    let ns = upstream.host();
    let path = format!("/v2/bench/serve/blobs/{}", blob.digest);
    let urls = [
        (UPSTREAM, format!("{}{path}", upstream.url())),
        (GRPC, format!("{}{path}?ns={ns}", grpc.mirror_url())),
        (DIRECT, format!("{}{path}?ns={ns}", direct.mirror_url())),
    ];
    let client = Client::new();
    read_file(&content, blob.size).await?;
    let mut rates: Vec<(&str, Vec<f64>)> = vec![(FILE, vec![]), (UPSTREAM, vec![]), (GRPC, vec![]), (DIRECT, vec![])];
    for rep in 0..args.repeats {
        let start = Instant::now();
        read_file(&content, blob.size).await?;
        rates[0].1.push(blob.size as f64 / start.elapsed().as_secs_f64() / 1e6);
        for (i, (label, url)) in urls.iter().enumerate() {
            let start = Instant::now();
            let got = client.stream(url).await?;
            if got != blob.size {
                bail!("{label}: read {got} bytes of a {}-byte blob", blob.size);
            }
            rates[i + 1].1.push(got as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
        progress.say(format!("serve: blob repeat {}/{}", rep + 1, args.repeats));
    }

    let mut section =
        Section::new("serve", format!("1. Serve throughput ({} MiB blob) and manifest requests", args.serve_blob_mib));
    section.note("One node's containerd holds the blob; each path reads it whole, one repeat after the other, from the page cache (read once before measuring).");
    section.note(format!(
        "Manifest requests: {} per repeat, alternating HEAD and GET by tag, {} in flight, on keep-alive connections; the mirror is the default (gRPC) instance.",
        args.manifest_requests, args.manifest_concurrency
    ));
    for (label, samples) in rates {
        let mut row = Row::new(format!("blob: {label}"), "MB/s", samples);
        if label != FILE {
            row = row.vs(format!("blob: {FILE}"));
        }
        if label == GRPC || label == DIRECT {
            row = row.vs(format!("blob: {UPSTREAM}"));
        }
        section.rows.push(row);
    }

    let manifest = "/v2/bench/serve/manifests/v1";
    let targets = [
        ("upstream", format!("{}{manifest}", upstream.url())),
        ("mirror", format!("{}{manifest}?ns={ns}", grpc.mirror_url())),
    ];
    for (name, url) in targets {
        let (mut p50, mut p99, mut rps) = (vec![], vec![], vec![]);
        for _ in 0..args.repeats {
            let (latencies, rate) = requests(&client, &url, args.manifest_requests, args.manifest_concurrency).await?;
            p50.push(percentile(&latencies, 0.50));
            p99.push(percentile(&latencies, 0.99));
            rps.push(rate);
        }
        progress.say(format!("serve: manifest requests on the {name} done"));
        let rows = [
            (format!("manifest: {name} p50"), "ms", p50),
            (format!("manifest: {name} p99"), "ms", p99),
            (format!("manifest: {name} rate"), "req/s", rps),
        ];
        for (label, unit, samples) in rows {
            let base = label.replace("mirror", "upstream");
            let row = Row::new(label.clone(), unit, samples);
            section.rows.push(if name == "mirror" { row.vs(base) } else { row });
        }
    }
    drop((grpc, direct));
    Ok(section)
}

/// Reads `path` whole in 1 MiB chunks; fails unless it has `size` bytes.
async fn read_file(path: &std::path::Path, size: u64) -> anyhow::Result<()> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        use std::io::Read as _;
        let mut file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    })
    .await
    .context("joining a file read")??;
    if read != size {
        bail!("read {read} bytes of a {size}-byte content file");
    }
    Ok(())
}

/// Sends `count` requests to `url`, alternating HEAD and GET, `concurrency`
/// at a time; returns each one's latency (ms) and the requests per second.
async fn requests(client: &Client, url: &str, count: usize, concurrency: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let start = Instant::now();
    let results: Vec<anyhow::Result<f64>> = futures::stream::iter(0..count)
        .map(|i| async move {
            let method = if i % 2 == 0 { "HEAD" } else { "GET" };
            let (status, took) = client.timed(method, url).await?;
            if status != 200 {
                bail!("{method} {url} answered {status}");
            }
            Ok(took.as_secs_f64() * 1e3)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let latencies = results.into_iter().collect::<anyhow::Result<Vec<f64>>>()?;
    Ok((latencies, count as f64 / elapsed))
}
