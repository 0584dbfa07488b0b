//! The upstream fetched once for the whole cluster: nodes that all miss an
//! image at the same moment pull it through CRI, and the registry (its
//! access log) serves each blob once; when the node fetching a blob dies
//! mid-download, the others still finish, at the cost of one more copy at most;
//! and the nodes following one fetch serve each other, so no node uploads
//! more than two copies.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::future::join_all;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use peerpull_e2e::{start_nodes, Cluster, Setup};
use peerpull_testbed::{ImageBuilder, Throttle, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_pull_at_once_and_the_upstream_serves_each_blob_once() {
    let cluster = Cluster::start(4).await.unwrap();
    let image = ImageBuilder::new("e2e-at-once").layers(&[6 << 20, 3 << 20, 100_000]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/at-once:v1").await.unwrap();
    let pulls = cluster.nodes.iter().map(|node| node.containerd.cri_pull(&reference));
    for (n, pulled) in join_all(pulls).await.into_iter().enumerate() {
        assert_eq!(pulled.unwrap().manifest_digest(), Some(image.digest()), "node {n}");
    }
    let downloads = cluster.upstream.blob_downloads().unwrap();
    let platform = &image.platforms()[0];
    for blob in platform.layers.iter().chain([&platform.config]) {
        assert_eq!(downloads.get(&blob.digest), Some(&1), "{}: {downloads:?}", blob.digest);
    }
    for (n, node) in cluster.nodes.iter().enumerate() {
        for blob in image.blobs() {
            assert!(node.containerd.has_content(&blob.digest).await.unwrap(), "node {n} lacks {}", blob.digest);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_pull_at_once_and_no_node_uploads_more_than_two_copies() {
    let upstream = Upstream::start().await.unwrap();
    // 4 MiB/s per connection: the layer takes about 2 s to come down, so every
    // node asks while the fetch is under way, however its containerd spaces
    // its requests (a node asking after it ended gets the whole blob from a
    // holder, which the relay tree does not bound).
    let slow = Throttle::start(upstream.addr(), 4 << 20).await.unwrap();
    let nodes = start_nodes(5, &slow.url(), Setup::default()).await.unwrap();
    let image = ImageBuilder::new("e2e-relay").layers(&[8 << 20]).build().unwrap();
    image.push(&upstream, "e2e/relay:v1").await.unwrap();
    let reference = format!("{}/e2e/relay:v1", slow.host());
    let pulls = nodes.iter().map(|node| node.containerd.cri_pull(&reference));
    for (n, pulled) in join_all(pulls).await.into_iter().enumerate() {
        assert_eq!(pulled.unwrap().manifest_digest(), Some(image.digest()), "node {n}");
    }
    let downloads = upstream.blob_downloads().unwrap();
    let layer = &image.platforms()[0].layers[0];
    assert_eq!(downloads.get(&layer.digest), Some(&1), "{downloads:?}");
    // Every follower's copy came from some node; a response is counted when it ends.
    let followers = (nodes.len() - 1) as f64 * layer.size as f64;
    let uploads = peerpull_testbed::eventually("the followers' copies counted", Duration::from_secs(10), || async {
        let mut uploads = Vec::new();
        for node in &nodes {
            uploads.push(node.peerpull.metric("peerpull_peer_upload_bytes_total").await.ok()?);
        }
        (uploads.iter().sum::<f64>() >= followers).then_some(uploads)
    })
    .await
    .unwrap();
    // The manifest and config are small and come from any node that has them, to every other.
    let small: u64 = image.blobs().iter().map(|b| b.size).sum::<u64>() - layer.size;
    let most = 2.0 * layer.size as f64 + 4.0 * small as f64;
    let copies: Vec<f64> = uploads.iter().map(|u| u / layer.size as f64).collect();
    println!("copies of the layer each node uploaded: {copies:.2?}");
    // The node fetching the layer streams it to two followers; the others stream it from those.
    assert!(uploads.iter().all(|&u| u <= most), "a node uploaded more than two copies: {copies:.3?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_fetching_a_blob_dies_and_the_others_finish() {
    const LAYER: u64 = 24 << 20;
    let upstream = Upstream::start().await.unwrap();
    // 8 MiB/s per connection: the layer takes about 3 s to come down.
    let slow = Throttle::start(upstream.addr(), 8 << 20).await.unwrap();
    let nodes = start_nodes(4, &slow.url(), Setup::default()).await.unwrap();
    let image = ImageBuilder::new("e2e-fetcher-dies").layers(&[LAYER]).build().unwrap();
    image.push(&upstream, "e2e/dies:v1").await.unwrap();
    let reference = format!("{}/e2e/dies:v1", slow.host());
    let (containerds, mut peerpulls): (Vec<_>, Vec<_>) = nodes.into_iter().map(|n| (n.containerd, n.peerpull)).unzip();

    let pulls = join_all(containerds.iter().map(|node| node.cri_pull(&reference)));
    // The whole node dies (its containerd too, so it does not fetch the rest itself).
    let kill_the_fetcher = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            for (n, peerpull) in peerpulls.iter_mut().enumerate() {
                if peerpull.metric("peerpull_upstream_bytes_total").await.unwrap_or(0.0) >= (4 << 20) as f64 {
                    peerpull.kill();
                    let containerd = containerds[n].pid().and_then(|pid| i32::try_from(pid).ok()).unwrap();
                    kill(Pid::from_raw(containerd), Signal::SIGKILL).unwrap();
                    return n;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no node fetched the layer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (results, killed) = tokio::join!(pulls, kill_the_fetcher);
    for (n, result) in results.into_iter().enumerate().filter(|(n, _)| *n != killed) {
        let pulled = result.unwrap_or_else(|e| panic!("node {n}: {e}\n{}", peerpulls[n].log()));
        assert_eq!(pulled.manifest_digest(), Some(image.digest()), "node {n}");
    }
    let layer = &image.platforms()[0].layers[0];
    let served: u64 = upstream
        .access_log()
        .unwrap()
        .iter()
        .filter(|e| e.method == "GET" && e.path.ends_with(&layer.digest))
        .map(|e| e.bytes)
        .sum();
    let copies = served as f64 / layer.size as f64;
    println!("node {killed} fetched the layer and was killed; the upstream sent {copies:.2} copies of it");
    assert!(copies <= 2.0, "the upstream sent {copies:.2} copies");
}
