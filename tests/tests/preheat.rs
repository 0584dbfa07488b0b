//! Preheating: a listed image is held by `--preheat-replicas` nodes before
//! anyone asks for it, fetched once from the upstream for the cluster, kept
//! against kubelet's image garbage collection, and pullable by every node
//! during an outage.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use peerpull_e2e::{start_nodes, Node, Setup};
use peerpull_testbed::{eventually, ImageBuilder, Upstream};

/// How long the responsible nodes may take to hold a listed image: a cycle
/// after the first peer, another for the cluster to settle, and the pull.
const HELD_WITHIN: Duration = Duration::from_secs(120);

/// The nodes whose containerd holds `reference` (by CRI image status).
async fn holding(nodes: &[Node], reference: &str) -> BTreeSet<usize> {
    let mut held = BTreeSet::new();
    for (n, node) in nodes.iter().enumerate() {
        if node.containerd.cri_image_status(reference).await.unwrap().is_some() {
            held.insert(n);
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_image_is_held_by_two_nodes_and_survives_an_outage_and_image_gc() {
    let mut upstream = Upstream::start().await.unwrap();
    let image = ImageBuilder::new("e2e-preheat").layers(&[3 << 20, 200_000]).build().unwrap();
    let reference = image.push(&upstream, "e2e/preheat:v1").await.unwrap();
    let setup = Setup {
        extra: vec!["--preheat".into(), reference.clone(), "--preheat-replicas".into(), "2".into()],
        ..Setup::default()
    };
    let started = tokio::time::Instant::now();
    let nodes = start_nodes(4, &upstream.url(), setup).await.unwrap();

    // Exactly the two nodes every node names as responsible hold it.
    let ids: Vec<String> =
        futures::future::join_all(nodes.iter().map(|n| async { n.peerpull.status().await.unwrap().peer_id })).await;
    let settled = eventually("every node to name the same two holders, and those to hold it", HELD_WITHIN, || async {
        let mut named = BTreeSet::new();
        for node in &nodes {
            let status = node.peerpull.status().await.ok()?;
            let entry = status.preheat.into_iter().find(|p| p.reference == reference)?;
            named.insert(entry.responsible);
        }
        let [responsible] = <[Vec<String>; 1]>::try_from(named.into_iter().collect::<Vec<_>>()).ok()?;
        let expected: BTreeSet<usize> = (0..nodes.len()).filter(|n| responsible.contains(&ids[*n])).collect();
        let held = holding(&nodes, &reference).await;
        (expected.len() == 2 && held == expected).then_some(held)
    })
    .await;
    let held = match settled {
        Ok(held) => held,
        Err(e) => {
            let held = holding(&nodes, &reference).await;
            let mut seen = String::new();
            for (n, node) in nodes.iter().enumerate() {
                let entry = node.peerpull.status().await.ok().and_then(|s| s.preheat.into_iter().next());
                seen.push_str(&format!("node {n} {}: {entry:?}\n", ids[n]));
            }
            panic!("{e}: held by {held:?}\n{seen}");
        }
    };
    let took = started.elapsed();
    println!("preheated on nodes {held:?} {:.1} s after the nodes started", took.as_secs_f64());

    // The upstream sent each blob once; the other nodes fetched nothing.
    let sent: u64 = upstream.access_log().unwrap().iter().filter(|e| e.method == "GET").map(|e| e.bytes).sum();
    let size: u64 = image.blobs().iter().map(|b| b.size).sum();
    println!("the upstream sent {sent} bytes for an image of {size} bytes on 2 nodes");
    let downloads = upstream.blob_downloads().unwrap();
    for blob in image.blobs() {
        assert!(downloads.get(&blob.digest).copied().unwrap_or(0) <= 1, "{}: {downloads:?}", blob.digest);
    }
    for n in (0..nodes.len()).filter(|n| !held.contains(n)) {
        for blob in image.blobs() {
            assert!(!nodes[n].containerd.has_content(&blob.digest).await.unwrap(), "node {n} has {}", blob.digest);
        }
        let status = nodes[n].peerpull.status().await.unwrap();
        let entry = status.preheat.iter().find(|p| p.reference == reference).unwrap();
        assert!(!entry.mine, "node {n} says it is responsible");
    }

    // kubelet's image garbage collection removes what CRI does not report pinned
    // (containerd 1.7 and later report the label peerpull sets).
    let holder = *held.iter().next().unwrap();
    eventually("the holder to pin the image, just after its pull", Duration::from_secs(30), || async {
        pinned(&nodes[holder], &reference).await.then_some(())
    })
    .await
    .unwrap();
    let release = nodes[holder].containerd.release().clone();
    let removed = nodes[holder].containerd.cri_collect_unpinned().await.unwrap();
    let kept = nodes[holder].containerd.cri_image_status(&reference).await.unwrap().is_some();
    println!("{release}: image GC removed {removed:?}; the preheated image kept: {kept}");
    if release.major_minor() >= (1, 7) {
        assert!(kept, "{release}: image GC removed the preheated image");
    } else {
        // containerd 1.6's CRI reports no image pinned: the image comes back at the next check.
        eventually("the collected image to be preheated again", HELD_WITHIN, || async {
            nodes[holder].containerd.cri_image_status(&reference).await.ok()?.map(|_| ())
        })
        .await
        .unwrap();
    }

    // The outage: a node that never pulled the image gets it from the holders,
    // once their announcements are out (the tag resolves from them: a
    // holder's announcement follows its pull by about a second).
    upstream.stop();
    let other = (0..nodes.len()).find(|n| !held.contains(n)).unwrap();
    eventually(
        "the other node to resolve the tag and find every blob in the outage",
        Duration::from_secs(30),
        || async {
            let located = nodes[other].peerpull.locate(&reference).await.ok()?;
            (located.digest == image.digest() && located.blobs.iter().all(|b| !b.providers.is_empty())).then_some(())
        },
    )
    .await
    .unwrap();
    let pulled = match nodes[other].containerd.cri_pull(&reference).await {
        Ok(pulled) => pulled,
        Err(e) => {
            panic!("node {other} during the outage: {e}\n{}", nodes[other].peerpull.log())
        }
    };
    assert_eq!(pulled.manifest_digest(), Some(image.digest()), "node {other} during the outage");
}

/// Whether `node`'s containerd has `reference` pinned (the label CRI reads).
async fn pinned(node: &Node, reference: &str) -> bool {
    let record = node.containerd.image(reference).await.unwrap();
    record.is_some_and(|r| r.labels.get("io.cri-containerd.pinned").map(String::as_str) == Some("pinned"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_a_stopped_holder_and_an_unlisted_image_are_followed() {
    let upstream = Upstream::start().await.unwrap();
    let v1 = ImageBuilder::new("e2e-preheat-moves-1").layers(&[300_000]).build().unwrap();
    let reference = v1.push(&upstream, "e2e/moves:stable").await.unwrap();
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(list.path(), format!("# preheated\n{reference}\nnot a reference!\n")).unwrap();
    let setup = Setup {
        extra: vec![
            "--preheat-file".into(),
            list.path().display().to_string(),
            "--preheat-replicas".into(),
            "1".into(),
            "--preheat-interval".into(),
            "1s".into(),
        ],
        ..Setup::default()
    };
    let mut nodes = start_nodes(3, &upstream.url(), setup).await.unwrap();
    // Pinned just after the pull ends.
    let first = eventually("one node to hold the image listed in the file, pinned", HELD_WITHIN, || async {
        let held = holding(&nodes, &reference).await;
        let first = *held.iter().next()?;
        (held.len() == 1 && pinned(&nodes[first], &reference).await).then_some(first)
    })
    .await
    .unwrap();

    // The tag moves upstream: the holder follows it.
    let v2 = ImageBuilder::new("e2e-preheat-moves-2").layers(&[300_000]).build().unwrap();
    v2.push(&upstream, "e2e/moves:stable").await.unwrap();
    let moved = tokio::time::Instant::now();
    eventually("the holder to hold the tag's new digest", HELD_WITHIN, || async {
        let status = nodes[first].containerd.cri_image_status(&reference).await.ok()??;
        (status.manifest_digest() == Some(v2.digest())).then_some(())
    })
    .await
    .unwrap();
    println!("the moved tag was preheated at its new digest {:.1} s after the push", moved.elapsed().as_secs_f64());

    // The holder stops: another node becomes responsible and holds the image.
    nodes[first].peerpull.stop();
    let stopped = tokio::time::Instant::now();
    let second = eventually("another node to take the image over", HELD_WITHIN, || async {
        let mut held = None;
        for (n, node) in nodes.iter().enumerate().filter(|(n, _)| *n != first) {
            // CRI lists a pulled image before it records its digest: wait for both.
            let status = node.containerd.cri_image_status(&reference).await.ok()?;
            if status.is_some_and(|s| s.manifest_digest().is_some()) {
                held = Some(n);
            }
        }
        held
    })
    .await
    .unwrap();
    let status = nodes[second].containerd.cri_image_status(&reference).await.unwrap().unwrap();
    assert_eq!(status.manifest_digest(), Some(v2.digest()), "node {second} took over the tag's old digest");
    println!("node {second} took the image over {:.1} s after node {first} stopped", stopped.elapsed().as_secs_f64());

    // Off the list: unpinned, and still held (image GC decides when it goes).
    std::fs::write(list.path(), "# nothing\n").unwrap();
    eventually("the unlisted image to be unpinned", HELD_WITHIN, || async {
        (!pinned(&nodes[second], &reference).await).then_some(())
    })
    .await
    .unwrap();
    assert!(nodes[second].containerd.cri_image_status(&reference).await.unwrap().is_some());
}
