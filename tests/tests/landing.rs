//! A layer a node has finished downloading is findable by its peers while the
//! rest of its image is still coming, where containerd says when each blob
//! lands (`/content/create`, containerd 2.1 and later); with older containerd
//! it is findable once the image is there.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use peerpull_e2e::{start_nodes, Setup};
use peerpull_testbed::{ImageBuilder, Throttle, Upstream};
use tokio::time::Instant;

/// How long the layer may take to become findable, however containerd reports it.
const FINDABLE_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_is_findable_while_the_rest_of_its_image_comes() {
    let upstream = Upstream::start().await.unwrap();
    // 2 MiB/s per connection: the large layer takes about 6 s, the small one a moment.
    let slow = Throttle::start(upstream.addr(), 2 << 20).await.unwrap();
    let nodes = start_nodes(2, &slow.url(), Setup::default()).await.unwrap();
    let (puller, asker) = (&nodes[0], &nodes[1]);
    let image = ImageBuilder::new("e2e-landing").layers(&[100_000, 12 << 20]).build().unwrap();
    image.push(&upstream, "e2e/landing:v1").await.unwrap();
    let reference = format!("{}/e2e/landing:v1", slow.host());
    let small = image.platforms()[0].layers[0].digest.clone();
    let release = puller.containerd.release();
    let says_so = release.major_minor() >= (2, 1);

    let puller_addr = puller.peerpull.mirror_url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let started = Instant::now();
    let pull = async {
        let pulled = puller.containerd.cri_pull(&reference).await;
        (pulled, started.elapsed())
    };
    // The other node asks the cluster where the small layer is, until the puller is named.
    let find = async {
        let deadline = started + FINDABLE_WITHIN;
        loop {
            let located = asker.peerpull.locate(&small).await.unwrap();
            let named = located.blobs.iter().flat_map(|b| &b.providers).any(|p| p.mirror_addr == puller_addr);
            if named {
                return started.elapsed();
            }
            assert!(Instant::now() < deadline, "the small layer was not findable within {FINDABLE_WITHIN:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let ((pulled, pull_took), found_after) = tokio::join!(pull, find);
    assert_eq!(pulled.unwrap().manifest_digest(), Some(image.digest()));
    println!(
        "{release}: the small layer was findable from the other node {:.2} s after the pull started; the pull took {:.2} s",
        found_after.as_secs_f64(),
        pull_took.as_secs_f64()
    );
    if says_so {
        assert!(
            found_after < pull_took,
            "{release} says when a blob lands, yet the layer was findable only after the pull"
        );
    }
}
