//! A node under abuse, on real containerd with the settings the chart
//! deploys: clients that start big downloads and then read nothing do not
//! grow the daemon's memory past its bound, and the mirror keeps answering.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use peerpull_e2e::Cluster;
use peerpull_testbed::ImageBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The daemon's resident memory must stay under this (the chart's limit is 256 MiB).
const RSS_BOUND: u64 = 100 << 20;
const STALLED: usize = 200;

/// `VmRSS` of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_downloads_hold_no_more_than_the_memory_bound() {
    let cluster = Cluster::peers_only(1).await.unwrap();
    let image = ImageBuilder::new("e2e-stalled").layers(&[64 << 20]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/stalled:v1").await.unwrap();
    let node = &cluster.nodes[0];
    node.containerd.cri_pull(&reference).await.unwrap();
    let layer = &image.platforms()[0].layers[0];
    let mirror = node.peerpull.mirror_url().replace("http://", "");
    let pid = node.peerpull.pid().unwrap();
    let idle_rss = rss(pid);

    // Each client asks for the whole 64 MiB layer, reads the first bytes of
    // the answer, and then nothing more.
    let request = format!(
        "GET /v2/e2e/stalled/blobs/{}?ns={} HTTP/1.1\r\nhost: {mirror}\r\n\r\n",
        layer.digest,
        cluster.upstream.host()
    );
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut stream = TcpStream::connect(&mirror).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        stalled.push(stream);
    }
    // Let the daemon fill whatever it buffers, then measure it at its peak.
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "RSS idle {:.1} MiB, peak with {STALLED} stalled downloads {:.1} MiB",
        idle_rss as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < RSS_BOUND, "{peak} bytes resident with {STALLED} stalled downloads");

    // The mirror still answers.
    let reply = peerpull_testbed::http::get(&format!("{}/v2/", node.peerpull.mirror_url())).await.unwrap();
    assert_eq!(reply.status, 200);
    drop(stalled);
}
