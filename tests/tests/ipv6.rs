//! An IPv6 cluster: nodes on `[::1]`, each with ports of its own, configured
//! by `peerpull configure` with IPv6 mirror URLs. During an outage of the
//! upstream, nodes pull what another holds from it, by tag and by digest.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use peerpull_e2e::{Cluster, Setup};
use peerpull_testbed::{ImageBuilder, Platform};

const SEEN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_cluster_pulls_from_peers_during_an_outage() {
    // Peers only: node 1 pulls from the upstream itself, so what the others get comes from peers.
    let mut cluster = Cluster::start_ipv6(3, Setup { upstream_fallback: false, ..Setup::default() }).await.unwrap();
    let image = ImageBuilder::new("e2e-ipv6").layers(&[1 << 20, 20_000]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/ipv6:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    for n in &cluster.nodes {
        let written =
            std::fs::read_to_string(n.containerd.config_path().join(cluster.upstream.host()).join("hosts.toml"));
        let written = written.unwrap();
        // containerd 1.x refuses a `]` in a table header; 2.x reads hosts only from headers.
        let url = n.peerpull.mirror_url();
        let form = if n.containerd.release().major_minor() >= (2, 0) {
            format!("[host.\"{}\"]", url.replace('[', "\\u005B").replace(']', "\\u005D"))
        } else {
            format!("'{url}'.capabilities")
        };
        assert!(written.contains(&form), "{written}");
    }

    cluster.upstream.stop();
    for n in [1, 2] {
        let located = cluster.wait_located(n, &reference, &[0], SEEN).await.unwrap();
        let holder = cluster.nodes[0].peerpull.mirror_url().replace("http://", "");
        assert!(located.blobs.iter().all(|b| b.providers.iter().any(|p| p.mirror_addr == holder)), "{located:?}");
    }
    let by_tag = cluster.nodes[1].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(by_tag.manifest_digest(), Some(image.digest()));
    let by_digest = format!("{}/e2e/ipv6@{}", cluster.upstream.host(), image.digest());
    let pulled = cluster.nodes[2].containerd.cri_pull(&by_digest).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    for n in [1, 2] {
        for blob in image.blobs_for(&Platform::host()) {
            assert!(cluster.nodes[n].containerd.has_content(&blob.digest).await.unwrap(), "node {n}: {}", blob.digest);
        }
        let hits = format!(
            r#"peerpull_mirror_requests_total{{registry="{}",cache="hit",source="peer"}}"#,
            cluster.upstream.host()
        );
        let peer_hits = cluster.nodes[n].peerpull.metric(&hits).await.unwrap();
        let blobs = image.blobs_for(&Platform::host()).len() as f64;
        assert!(peer_hits >= blobs, "node {n}: {peer_hits} requests served from a peer, for {blobs} blobs");
    }
}
