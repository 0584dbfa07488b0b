//! `make demo`: a local cluster survives a registry outage.
//!
//! Starts three nodes, each a real containerd with `peerpull configure` and
//! `peerpull run` beside it on its own loopback address, and a real upstream
//! registry. It pushes a sample image, pulls it on node 1 through CRI (as
//! kubelet does), takes the upstream down, pulls it on nodes 2 and 3 from
//! their peers, and prints who served what. Then the upstream comes back
//! with a new image that all three nodes pull at the same moment, and the
//! upstream sends it once for the whole cluster. It exits non-zero when a
//! pulled digest differs or the upstream sent a blob more than once.
//! Everything is torn down on exit or Ctrl-C; with `KEEP=1` the cluster
//! keeps running and the commands to play with it are printed.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use peerpull_e2e::Cluster;
use peerpull_testbed::{Error, ImageBuilder, Platform};

const MIB: u64 = 1 << 20;
const SEEN: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let keep = std::env::var("KEEP").is_ok_and(|v| !v.is_empty() && v != "0");
    let outcome = tokio::select! {
        outcome = demo(keep) => outcome,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted: tearing the cluster down");
            return std::process::ExitCode::from(130);
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

struct Pull {
    node: usize,
    took: Duration,
}

/// What a node's mirror served, by where it came from (bytes).
const SOURCES: [&str; 4] = ["local", "spool", "peer", "upstream"];

async fn demo(keep: bool) -> Result<(), Error> {
    step("starting 3 nodes (containerd + peerpull each) and an upstream registry");
    let mut cluster = Cluster::start(3).await?;
    println!("  upstream registry   {}", cluster.upstream.url());
    for (n, node) in cluster.nodes.iter().enumerate() {
        println!(
            "  node {}              mirror {}  containerd {}",
            n + 1,
            node.peerpull.mirror_url(),
            node.containerd.socket().display()
        );
    }

    let image = ImageBuilder::new("peerpull-demo").layers(&[24 * MIB, 16 * MIB, 8 * MIB, MIB]).build()?;
    let size = image.pull_size(&Platform::host());
    let reference = image.push(&cluster.upstream, "demo/app:v1").await?;
    step(&format!("pushed {reference} ({}, {:.1} MiB)", short(image.digest()), size as f64 / MIB as f64));

    step("node 1 pulls it through CRI: no peer has it, so the cluster fetches it from the upstream");
    let mut pulls = vec![pull(&cluster, 0, &reference, image.digest()).await?];

    step("THE OUTAGE: the upstream registry goes down");
    cluster.upstream.stop();
    let direct = peerpull_testbed::http::get(&format!("{}/v2/", cluster.upstream.url())).await;
    println!(
        "  GET {}/v2/ -> {}",
        cluster.upstream.url(),
        if direct.is_err() { "connection refused" } else { "answered?!" }
    );
    for n in [1, 2] {
        cluster.wait_located(n, &reference, &[0], SEEN).await?;
    }
    println!("  node 1 advertised the image in the DHT; nodes 2 and 3 find every blob there:");
    let located = cluster.nodes[1].peerpull.cli(&["locate", &reference]).await?;
    println!("  $ peerpull locate {reference}    # on node 2");
    for line in String::from_utf8_lossy(&located.stdout).lines() {
        println!("    {line}");
    }

    for n in [1, 2] {
        step(&format!("node {} pulls {reference} during the outage", n + 1));
        pulls.push(pull(&cluster, n, &reference, image.digest()).await?);
    }

    let upstream_bytes = cluster.upstream.blob_bytes_served()? as f64;
    println!("{}", summary(&cluster, &pulls, size, upstream_bytes).await?);
    at_most_once(&cluster, &image)?;

    step("THE ROLLOUT: the upstream is back with a new image; all 3 nodes pull it at the same moment");
    cluster.upstream.restart().await?;
    let fresh = ImageBuilder::new("peerpull-demo-v2").layers(&[24 * MIB, 16 * MIB, 8 * MIB]).build()?;
    let fresh_size = fresh.pull_size(&Platform::host());
    let fresh_ref = fresh.push(&cluster.upstream, "demo/app:v2").await?;
    let before = cluster.upstream.blob_bytes_served()?;
    let started = Instant::now();
    let all = futures::future::join_all((0..3).map(|n| pull(&cluster, n, &fresh_ref, fresh.digest()))).await;
    for result in all {
        result?;
    }
    let sent = cluster.upstream.blob_bytes_served()? - before;
    println!(
        "\n== rollout: {:.1} MiB image on 3 nodes at once in {:.2?}",
        fresh_size as f64 / MIB as f64,
        started.elapsed()
    );
    println!(
        "  bytes from the upstream registry: {:.1} MiB = {:.2}x the image (without peerpull: 3x)",
        sent as f64 / MIB as f64,
        sent as f64 / fresh_size as f64
    );
    at_most_once(&cluster, &fresh)?;
    if keep {
        println!("{}", keep_instructions(&cluster, &reference)?);
        std::mem::forget(cluster);
    }
    Ok(())
}

/// Fails unless the upstream served each blob of `image` at most once for the whole cluster.
fn at_most_once(cluster: &Cluster, image: &peerpull_testbed::Image) -> Result<(), Error> {
    let downloads = cluster.upstream.blob_downloads()?;
    let most = image.blobs().iter().map(|b| downloads.get(&b.digest).copied().unwrap_or(0)).max().unwrap_or(0);
    println!("  the upstream served each blob of the image at most {most} time(s) for the whole cluster");
    if most > 1 {
        return Err(demo_failed(format!("the upstream served a blob of {} {most} times", short(image.digest()))));
    }
    Ok(())
}

fn demo_failed(what: String) -> Error {
    Error::Io { what, source: std::io::ErrorKind::Other.into() }
}

async fn pull(cluster: &Cluster, n: usize, reference: &str, digest: &str) -> Result<Pull, Error> {
    let started = Instant::now();
    let pulled = cluster.nodes[n].containerd.cri_pull(reference).await?;
    let took = started.elapsed();
    let got = pulled.manifest_digest().unwrap_or("none");
    if got != digest {
        return Err(demo_failed(format!("node {} pulled {got}, not the pushed {digest}", n + 1)));
    }
    println!("  node {} pulled {} in {:.2?} (matches the pushed digest)", n + 1, short(got), took);
    Ok(Pull { node: n, took })
}

async fn summary(cluster: &Cluster, pulls: &[Pull], size: u64, upstream: f64) -> Result<String, Error> {
    let mib = |b: f64| b / MIB as f64;
    let mut out = String::new();
    let _ = writeln!(out, "\n== summary: image of {:.1} MiB pulled on 3 nodes", mib(size as f64));
    let _ = writeln!(out, "  MiB each node's mirror served (to its containerd and to peers), by source:");
    let _ = writeln!(
        out,
        "  {:<6} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "node", "pull time", "held", "spool", "peers", "upstream"
    );
    let mut peers = 0.0;
    for pull in pulls {
        let peerpull = &cluster.nodes[pull.node].peerpull;
        let mut row = format!("  {:<6} {:>10.2?}", pull.node + 1, pull.took);
        for source in SOURCES {
            let served =
                peerpull.metric(&format!(r#"peerpull_mirror_bytes_served_total{{source="{source}"}}"#)).await?;
            if source == "peer" {
                peers += served;
            }
            let _ = write!(row, " {:>10.1}", mib(served));
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out, "  bytes from the upstream registry: {:.1} MiB (blobs, from its access log)", mib(upstream));
    let _ = writeln!(out, "  bytes from peers:                 {:.1} MiB", mib(peers));
    let _ = write!(out, "  every node holds the image (each pull above checked its digest)");
    Ok(out)
}

fn keep_instructions(cluster: &Cluster, reference: &str) -> Result<String, Error> {
    let mut pids = Vec::new();
    let mut dirs = vec![cluster.upstream.dir().display().to_string()];
    let mut out = String::from("\n== KEEP=1: the cluster keeps running (the upstream stays down)\n");
    for (n, node) in cluster.nodes.iter().enumerate() {
        pids.extend(node.peerpull.pid());
        pids.extend(node.containerd.pid());
        dirs.push(node.peerpull.data_dir().display().to_string());
        dirs.push(node.containerd.dir().display().to_string());
        let sock = node.containerd.socket().display();
        let _ = writeln!(out, "  node {}: ctr --address {sock} -n k8s.io images ls", n + 1);
        let hosts = node.containerd.config_path().display();
        let _ = writeln!(out, "          ctr --address {sock} -n k8s.io images pull --hosts-dir {hosts} {reference}");
        let _ = writeln!(out, "          curl -s {}/metrics | grep ^peerpull_", node.peerpull.metrics_url());
    }
    let _ = writeln!(out, "  a mirror by hand: curl -sI '{}'", cluster.mirror_url(2, "demo/app", "manifests", "v1"));
    let script = cluster.upstream.dir().parent().unwrap_or(cluster.upstream.dir()).join("peerpull-demo-teardown.sh");
    let body = format!(
        "#!/bin/sh\n# Stops the demo cluster and removes its files.\nkill {} 2>/dev/null\nsleep 2\nfor d in {}; do\n  grep -o \" $d[^ ]*\" /proc/self/mounts | sort -r | xargs -r -n1 umount -l\n  rm -rf \"$d\"\ndone\n",
        pids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
        dirs.join(" ")
    );
    std::fs::write(&script, body).map_err(|source| Error::Io { what: "writing the teardown script".into(), source })?;
    let _ = write!(out, "  tear it down: sh {}", script.display());
    Ok(out)
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}
