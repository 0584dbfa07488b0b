//! Only the cluster's own nodes: a node with another pre-shared key, holding
//! another image under the same tag, joins through the ordinary bootstrap
//! address and is never heard: during an outage the cluster's nodes pull the
//! cluster's image, and a tag only the foreign node holds is not served.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use peerpull_e2e::Cluster;
use peerpull_testbed::peerpull::configure;
use peerpull_testbed::{loopback_subnet, new_psk, Containerd, ImageBuilder, Peerpull, PeerpullOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_key_is_never_heard() {
    let mut cluster = Cluster::start(2).await.unwrap();
    let upstream = cluster.upstream.url();

    // The foreign node: its own containerd and key, bootstrapping to node 1's router.
    let mut options = PeerpullOptions::on(loopback_subnet().node(0));
    options.psk = Some(new_psk());
    options.bootstrap = vec![cluster.nodes[0].peerpull.options().router_addr().to_string()];
    options.mirrored = vec![upstream.clone()];
    let foreign = Containerd::start().await.unwrap();
    configure(&foreign, &options.mirror_url(), &[upstream]).await.unwrap();
    let foreign_peerpull = Peerpull::start(&foreign, options).await.unwrap();

    let theirs = ImageBuilder::new("e2e-foreign-theirs").layers(&[200_000]).build().unwrap();
    let only_theirs = ImageBuilder::new("e2e-foreign-only").layers(&[100_000]).build().unwrap();
    let ours = ImageBuilder::new("e2e-foreign-ours").layers(&[200_000]).build().unwrap();
    let contested = theirs.push(&cluster.upstream, "e2e/contested:v1").await.unwrap();
    assert_eq!(foreign.cri_pull(&contested).await.unwrap().manifest_digest(), Some(theirs.digest()));
    let theirs_alone = only_theirs.push(&cluster.upstream, "e2e/only-theirs:v1").await.unwrap();
    foreign.cri_pull(&theirs_alone).await.unwrap();
    // The tag moves to the cluster's image, which node 1 pulls.
    ours.push(&cluster.upstream, "e2e/contested:v1").await.unwrap();
    assert_eq!(cluster.nodes[0].containerd.cri_pull(&contested).await.unwrap().manifest_digest(), Some(ours.digest()));

    cluster.upstream.stop();
    let tag = cluster.mirror_url(1, "e2e/contested", "manifests", "v1");
    cluster.wait_status(&tag, 200, Duration::from_secs(30)).await.unwrap();
    for _ in 0..3 {
        let pulled = cluster.nodes[1].containerd.cri_pull(&contested).await.unwrap();
        assert_eq!(pulled.manifest_digest(), Some(ours.digest()), "the foreign node's image was served");
        cluster.nodes[1].containerd.cri_remove(&contested).await.unwrap();
    }
    assert!(
        cluster.nodes[1].containerd.cri_pull(&theirs_alone).await.is_err(),
        "a tag only the foreign node holds was served"
    );
    for node in &cluster.nodes {
        assert_eq!(node.peerpull.metric("peerpull_routing_peers").await.unwrap(), 1.0, "the foreign node joined");
    }
    assert_eq!(foreign_peerpull.metric("peerpull_routing_peers").await.unwrap(), 0.0);
}
