//! Surviving a registry outage: nodes pull through CRI, like kubelet, what
//! another node holds while the upstream registry is down.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use peerpull_e2e::Cluster;
use peerpull_testbed::{ImageBuilder, Platform};

const SEEN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_pull_by_tag_and_digest_during_an_outage() {
    let mut cluster = Cluster::start(3).await.unwrap();
    let app = ImageBuilder::new("e2e-outage-app").layers(&[4 << 20, 1 << 20, 512]).build().unwrap();
    let tools = ImageBuilder::new("e2e-outage-tools").layers(&[2 << 20]).build().unwrap();
    let app_ref = app.push(&cluster.upstream, "e2e/app:v1").await.unwrap();
    let tools_ref = tools.push(&cluster.upstream, "e2e/tools:v2").await.unwrap();

    for reference in [&app_ref, &tools_ref] {
        cluster.nodes[0].containerd.cri_pull(reference).await.unwrap();
    }
    // The outage: from now on only peers can answer (the nodes pull through
    // from the upstream while it is up, so the wait comes after it is down).
    cluster.upstream.stop();
    for reference in [&app_ref, &tools_ref] {
        for n in [1, 2] {
            cluster.wait_located(n, reference, &[0], SEEN).await.unwrap();
        }
    }

    let app_by_digest = format!("{}/e2e/app@{}", cluster.upstream.host(), app.digest());
    for n in [1, 2] {
        let node = &cluster.nodes[n].containerd;
        let pulled = node.cri_pull(&app_ref).await.unwrap();
        assert_eq!(pulled.manifest_digest(), Some(app.digest()), "node {n}");
        assert_eq!(node.cri_pull(&app_by_digest).await.unwrap().manifest_digest(), Some(app.digest()));
        assert_eq!(node.cri_pull(&tools_ref).await.unwrap().manifest_digest(), Some(tools.digest()));
        for blob in app.blobs().into_iter().chain(tools.blobs()) {
            assert!(node.has_content(&blob.digest).await.unwrap(), "node {n} lacks {}", blob.digest);
        }
    }

    // The upstream returns; an image no node holds comes from it.
    cluster.upstream.restart().await.unwrap();
    let fresh = ImageBuilder::new("e2e-outage-fresh").layers(&[300_000]).build().unwrap();
    let fresh_ref = fresh.push(&cluster.upstream, "e2e/fresh:v1").await.unwrap();
    let pulled = cluster.nodes[1].containerd.cri_pull(&fresh_ref).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(fresh.digest()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_platform_of_a_multi_platform_index_during_an_outage() {
    let mut cluster = Cluster::peers_only(2).await.unwrap();
    let other = if Platform::host().architecture == "arm64" { "amd64" } else { "arm64" };
    let image = ImageBuilder::new("e2e-multi")
        .layers(&[1 << 20, 10_000])
        .platforms(&[Platform::host(), Platform::linux(other)])
        .build()
        .unwrap();
    let reference = image.push(&cluster.upstream, "e2e/multi:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    let host = image.platform(&Platform::host()).unwrap();
    let located = cluster.wait_located(1, &reference, &[0], SEEN).await.unwrap();
    let digests: Vec<&str> = located.blobs.iter().map(|b| b.digest.as_str()).collect();
    let expected: Vec<&str> = image.blobs_for(&Platform::host()).iter().map(|b| b.digest.as_str()).collect();
    assert_eq!(digests, expected, "the index, this platform's manifest, config and layers");

    cluster.upstream.stop();
    let pulled = cluster.nodes[1].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    assert_eq!(pulled.id, host.config.digest);
    for blob in image.blobs_for(&Platform::host()) {
        assert!(cluster.nodes[1].containerd.has_content(&blob.digest).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_the_only_holder_stops_and_comes_back() {
    let mut cluster = Cluster::peers_only(3).await.unwrap();
    let image = ImageBuilder::new("e2e-churn").layers(&[1 << 20]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/churn:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    cluster.wait_located(2, &reference, &[0], SEEN).await.unwrap();

    // The only holder stops: with the upstream up, a pull falls back to it.
    cluster.nodes[0].peerpull.kill();
    let pulled = cluster.nodes[1].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    let layer = &image.platforms()[0].layers[0].digest;
    assert_eq!(cluster.upstream.blob_downloads().unwrap().get(layer), Some(&2), "node 1 went upstream");

    // Node 1 now holds it too: stop it and the upstream; node 2's pull fails cleanly.
    cluster.nodes[1].peerpull.kill();
    cluster.upstream.stop();
    let failed = cluster.nodes[2].containerd.cri_pull(&reference).await;
    assert!(failed.is_err(), "nobody can serve it, yet the pull succeeded");
    assert!(!cluster.nodes[2].containerd.has_content(layer).await.unwrap());

    // The holder restarts and is found again.
    cluster.nodes[0].peerpull.restart().await.unwrap();
    cluster.wait_located(2, &reference, &[0], SEEN).await.unwrap();
    let pulled = cluster.nodes[2].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_image_stops_being_served() {
    let cluster = Cluster::peers_only(2).await.unwrap();
    let image = ImageBuilder::new("e2e-delete").layers(&[200_000]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/delete:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    let layer = &image.platforms()[0].layers[0].digest;
    let on_node0 = cluster.mirror_url(0, "e2e/delete", "blobs", layer);
    let via_node1 = cluster.mirror_url(1, "e2e/delete", "blobs", layer);
    cluster.wait_status(&via_node1, 200, SEEN).await.unwrap();

    cluster.nodes[0].containerd.cri_remove(&reference).await.unwrap();
    cluster.wait_status(&on_node0, 404, SEEN).await.unwrap();
    cluster.wait_status(&via_node1, 404, SEEN).await.unwrap();
    let tag = cluster.mirror_url(1, "e2e/delete", "manifests", "v1");
    cluster.wait_status(&tag, 404, SEEN).await.unwrap();
}
