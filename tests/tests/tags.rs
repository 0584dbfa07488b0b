//! Tags stay fresh while the upstream answers and still resolve during an
//! outage: a tag moved upstream while one node holds the old image; another
//! node pulling it through CRI (upstream up) gets the new image; with the
//! upstream down, a third node gets the tag from its peers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use peerpull_e2e::Cluster;
use peerpull_testbed::ImageBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_upstream_is_pulled_fresh_and_still_resolves_in_an_outage() {
    let mut cluster = Cluster::start(3).await.unwrap();
    let old = ImageBuilder::new("e2e-tag-old").layers(&[300_000]).build().unwrap();
    let new = ImageBuilder::new("e2e-tag-new").layers(&[300_000]).build().unwrap();
    let reference = old.push(&cluster.upstream, "e2e/moving:latest").await.unwrap();
    let pulled = cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(old.digest()));

    // The tag moves upstream; node 0 still holds (and advertises) the old image.
    new.push(&cluster.upstream, "e2e/moving:latest").await.unwrap();
    let pulled = cluster.nodes[1].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(new.digest()), "the upstream was up, yet the tag came stale");
    let fresh = cluster.nodes[1].peerpull.metric(r#"peerpull_tags_resolved_total{source="upstream"}"#).await.unwrap();
    assert!(fresh >= 1.0, "node 1 resolved the tag upstream");

    // The outage: node 2 resolves the tag from its peers (either image is theirs to give).
    cluster.upstream.stop();
    let tag = cluster.mirror_url(2, "e2e/moving", "manifests", "latest");
    cluster.wait_status(&tag, 200, Duration::from_secs(30)).await.unwrap();
    let pulled = cluster.nodes[2].containerd.cri_pull(&reference).await.unwrap();
    let got = pulled.manifest_digest().unwrap();
    assert!(got == new.digest() || got == old.digest(), "node 2 pulled {got}");
    let in_outage = cluster.nodes[2].peerpull.metric("peerpull_tags_resolved_in_outage_total").await.unwrap();
    assert!(in_outage >= 1.0, "node 2 answered the tag from its peers during the outage");
}
