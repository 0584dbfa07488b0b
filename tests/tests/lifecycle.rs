//! Stopping a node the way Kubernetes does: on SIGTERM `peerpull run` stops
//! taking connections, lets the transfers under way finish, and exits 0.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http_body_util::BodyExt;
use peerpull_e2e::Cluster;
use peerpull_testbed::{eventually, http, ImageBuilder};
use sha2::{Digest as _, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_transfer_under_way_finish_then_exits_0() {
    const LAYER: u64 = 48 << 20;
    let mut cluster = Cluster::start(2).await.unwrap();
    let image = ImageBuilder::new("e2e-sigterm").layers(&[LAYER]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/sigterm:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    let layer = &image.platforms()[0].layers[0];
    let url = cluster.mirror_url(0, "e2e/sigterm", "blobs", &layer.digest);

    let (status, mut body) = http::open(&url).await.unwrap();
    assert_eq!(status, 200);
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    cluster.nodes[0].peerpull.terminate();

    // The rest is read at a bounded pace (about 2 s for the layer), so the
    // transfer is still under way while the node shuts down.
    let reading = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        hasher.update(&first);
        let mut received = first.len() as u64;
        while let Some(frame) = body.frame().await {
            let data = frame.map_err(|e| format!("the transfer broke after {received} bytes: {e}"))?;
            let data = data.into_data().unwrap_or_default();
            received += data.len() as u64;
            hasher.update(&data);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok::<_, String>((received, format!("sha256:{}", hex::encode(hasher.finalize()))))
    });

    // Meanwhile the node takes no new connections.
    let mirror = cluster.nodes[0].peerpull.mirror_url();
    let refused = eventually("the mirror to refuse new connections", Duration::from_secs(10), || async {
        http::get(&format!("{mirror}/v2/")).await.is_err().then_some(())
    })
    .await;
    let during_shutdown = !reading.is_finished();
    let (received, digest) = reading.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    refused.unwrap();
    assert!(during_shutdown, "the transfer ended before the shutdown was seen; make the layer bigger");
    assert_eq!(received, layer.size);
    assert_eq!(digest, layer.digest);
    let status = cluster.nodes[0].peerpull.exited(Duration::from_secs(30)).await.unwrap();
    assert_eq!(status.code(), Some(0), "{}", cluster.nodes[0].peerpull.log());
    assert!(cluster.nodes[0].peerpull.log().contains("shutting down"));
}
