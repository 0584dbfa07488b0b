//! `peerpull run` processes over real containerd nodes: one node's mirror
//! serves what another node holds, byte for byte, and the upstream serves
//! none of those bytes while it is up; a miss is a quick 404; a peer killed
//! mid-blob does not break the transfer.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use peerpull_e2e::{Cluster, Setup};
use peerpull_testbed::{http, ImageBuilder};
use sha2::{Digest as _, Sha256};

const SEEN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serves_manifests_by_tag_and_digest_and_every_blob() {
    let cluster = Cluster::peers_only(2).await.unwrap();
    let image = ImageBuilder::new("e2e-mirror").layers(&[1 << 20, 70_000, 1]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/mirror:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();

    cluster.wait_located(1, &reference, &[0], SEEN).await.unwrap();
    let by_tag = cluster.mirror_url(1, "e2e/mirror", "manifests", "v1");
    let manifest = &image.platforms()[0].manifest;
    for url in [by_tag, cluster.mirror_url(1, "e2e/mirror", "manifests", &manifest.digest)] {
        let reply = http::get(&url).await.unwrap();
        assert_eq!(reply.status, 200, "{url}");
        assert_eq!(reply.header("docker-content-digest"), manifest.digest);
        assert_eq!(reply.header("content-type"), manifest.media_type);
        assert_eq!(reply.body.as_ref(), std::fs::read(&manifest.path).unwrap().as_slice());
    }
    for blob in image.blobs() {
        let url = cluster.mirror_url(1, "e2e/mirror", "blobs", &blob.digest);
        let reply = http::get(&url).await.unwrap();
        assert_eq!(reply.status, 200, "{}", blob.digest);
        assert_eq!(reply.header("content-length"), blob.size.to_string());
        assert!(reply.body.as_ref() == std::fs::read(&blob.path).unwrap().as_slice(), "{} bytes differ", blob.digest);
    }
    let peer_hits = cluster.nodes[1]
        .peerpull
        .metric(&format!(
            r#"peerpull_mirror_requests_total{{registry="{}",cache="hit",source="peer"}}"#,
            cluster.upstream.host()
        ))
        .await
        .unwrap();
    assert!(peer_hits >= image.blobs().len() as f64 + 2.0, "peer hits: {peer_hits}");

    // A miss: nobody holds it. The answer is a 404 with an OCI error body.
    let missing = cluster.mirror_url(1, "e2e/mirror", "blobs", &format!("sha256:{}", "e".repeat(64)));
    // Quick: a lookup that finds no provider ends before the lookup time-out
    // (500 ms). The fastest of three, so one slow moment cannot fail it.
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let reply = http::get(&missing).await.unwrap();
        fastest = fastest.min(started.elapsed());
        assert_eq!(reply.status, 404);
        assert!(String::from_utf8_lossy(&reply.body).contains("BLOB_UNKNOWN"));
    }
    println!("miss answered in {fastest:?}");
    assert!(fastest < Duration::from_millis(400), "a miss waited {fastest:?}, as long as a time-out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_pulling_what_a_peer_holds_costs_the_upstream_no_blob_bytes() {
    // The upstream is up and reachable all along, and the nodes may pull through from it.
    let cluster = Cluster::start(3).await.unwrap();
    let image = ImageBuilder::new("e2e-no-upstream-bytes").layers(&[3 << 20, 200_000, 10]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/zero:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    let served_to_the_first = cluster.upstream.blob_bytes_served().unwrap();
    let platform = &image.platforms()[0];
    let blob_bytes: u64 = platform.layers.iter().chain([&platform.config]).map(|b| b.size).sum();
    assert!(served_to_the_first >= blob_bytes, "the first node's pull went through the upstream's access log");

    for n in [1, 2] {
        cluster.wait_located(n, &reference, &[0], SEEN).await.unwrap();
        let pulled = cluster.nodes[n].containerd.cri_pull(&reference).await.unwrap();
        assert_eq!(pulled.manifest_digest(), Some(image.digest()), "node {n}");
        for blob in image.blobs() {
            assert!(cluster.nodes[n].containerd.has_content(&blob.digest).await.unwrap(), "node {n} lacks it");
        }
    }
    let served = cluster.upstream.blob_bytes_served().unwrap();
    assert_eq!(served, served_to_the_first, "the upstream served {} more blob bytes", served - served_to_the_first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_layer_comes_from_both_holders_at_once() {
    const SERVED: &str = "peerpull_mirror_bytes_served_total{source=\"local\"}";
    let cluster = Cluster::peers_only(3).await.unwrap();
    // Above --multi-source-min-bytes (32 MiB by default).
    let image = ImageBuilder::new("e2e-multi-source").layers(&[40 << 20]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/multi:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    cluster.nodes[2].containerd.cri_pull(&reference).await.unwrap();
    cluster.wait_located(1, &reference, &[0, 2], SEEN).await.unwrap();
    let mut before = Vec::new();
    for n in [0, 2] {
        before.push(cluster.nodes[n].peerpull.metric(SERVED).await.unwrap());
    }
    let pulled = cluster.nodes[1].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    let layer = &image.platforms()[0].layers[0];
    let mut sent = Vec::new();
    for (n, before) in [0, 2].into_iter().zip(before) {
        sent.push(cluster.nodes[n].peerpull.metric(SERVED).await.unwrap() - before);
    }
    assert!(sent.iter().all(|s| *s >= (4 << 20) as f64), "each holder sends at least a chunk: {sent:?}");
    assert!(sent.iter().sum::<f64>() >= layer.size as f64, "{sent:?} for a layer of {}", layer.size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_blob_and_the_transfer_completes_from_another_holder() {
    killed_mid_blob(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_during_a_multi_source_download_and_the_others_finish() {
    killed_mid_blob(true).await;
}

/// Node 1 downloads a 48 MiB layer nodes 0 and 2 hold, and one of them is
/// killed after the first MiB: the one sending it (one source at a time), or
/// node 0 (several sources at once). The download completes, verified.
async fn killed_mid_blob(multi_source: bool) {
    let extra = if multi_source { vec![] } else { vec!["--multi-source-min-bytes".to_owned(), "0".to_owned()] };
    let mut cluster =
        Cluster::start_with(3, Setup { upstream_fallback: false, extra, ..Setup::default() }).await.unwrap();
    let image = ImageBuilder::new("e2e-resume").layers(&[48 << 20]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/resume:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    cluster.nodes[2].containerd.cri_pull(&reference).await.unwrap();
    let layer = &image.platforms()[0].layers[0];
    // Both holders have announced the image before node 1 looks it up.
    cluster.wait_located(1, &reference, &[0, 2], SEEN).await.unwrap();
    let url = cluster.mirror_url(1, "e2e/resume", "blobs", &layer.digest);

    let (status, mut body) = http::open(&url).await.unwrap();
    assert_eq!(status, 200);
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut killed = None;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => frame.into_data().unwrap_or_default(),
            Err(e) => panic!("the transfer broke: {e}\n{}", cluster.nodes[1].peerpull.log()),
        };
        received += data.len() as u64;
        hasher.update(&data);
        if killed.is_none() && received >= 1 << 20 {
            // One source: kill whichever holder is sending this transfer now.
            let served = "peerpull_transfers_in_flight{source=\"local\"}";
            let mut serving = None;
            for n in [0, 2] {
                if cluster.nodes[n].peerpull.metric(served).await.unwrap() > 0.0 {
                    serving = Some(n);
                }
            }
            let n = if multi_source { 0 } else { serving.expect("one holder is serving") };
            cluster.nodes[n].peerpull.kill();
            killed = Some(n);
        }
    }
    assert!(killed.is_some());
    assert_eq!(received, layer.size);
    assert_eq!(format!("sha256:{}", hex::encode(hasher.finalize())), layer.digest);
    let failures = cluster.nodes[1].peerpull.metric("peerpull_peer_fetch_failures_total").await.unwrap();
    assert!(failures >= 1.0, "the broken transfer was not noticed:\n{}", cluster.nodes[1].peerpull.log());
}
