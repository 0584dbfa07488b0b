//! The admin API and its CLI on a cluster of real containerd nodes: after
//! one node pulls an image, another locates each of its blobs at that node;
//! `peerpull status` shows the peers and what each advertises; bad input and
//! a missing daemon get clear errors and their exit codes.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use peerpull_e2e::Cluster;
use peerpull_testbed::{ImageBuilder, Platform};

const SEEN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_names_the_holder_of_every_blob_and_status_the_peers() {
    let mut cluster = Cluster::peers_only(3).await.unwrap();
    let other = if Platform::host().architecture == "arm64" { "amd64" } else { "arm64" };
    let image = ImageBuilder::new("e2e-admin")
        .layers(&[300_000, 20_000])
        .platforms(&[Platform::host(), Platform::linux(other)])
        .build()
        .unwrap();
    let reference = image.push(&cluster.upstream, "e2e/admin:v1").await.unwrap();
    cluster.nodes[0].containerd.cri_pull(&reference).await.unwrap();
    let holder = cluster.nodes[0].peerpull.status().await.unwrap();

    // Node 1 finds the index, this platform's manifest, its config and its
    // layers, each with its size and node 0 (and its mirror) as a provider.
    let located = cluster.wait_located(1, &reference, &[0], SEEN).await.unwrap();
    assert_eq!(located.digest, image.digest());
    let expected: Vec<(&str, u64)> =
        image.blobs_for(&Platform::host()).iter().map(|b| (b.digest.as_str(), b.size)).collect();
    let found: Vec<(&str, u64)> = located.blobs.iter().map(|b| (b.digest.as_str(), b.size)).collect();
    assert_eq!(found, expected);
    let roles: Vec<&str> = located.blobs.iter().map(|b| b.role.as_str()).collect();
    assert_eq!(roles, ["index", "manifest", "config", "layer", "layer"]);
    for blob in &located.blobs {
        assert!(!blob.local, "node 1 never pulled {}", blob.digest);
        let mirrors: Vec<&str> = blob.providers.iter().map(|p| p.mirror_addr.as_str()).collect();
        let holder_mirror = cluster.nodes[0].peerpull.mirror_url().replace("http://", "");
        assert_eq!(mirrors, [holder_mirror.as_str()], "{}: only node 0 holds it", blob.digest);
    }

    // The CLI, as an operator runs it on node 1: a table naming node 0's
    // mirror on every blob's row, and the same answer as JSON.
    let out = cluster.nodes[1].peerpull.cli(&["locate", &reference]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    println!("$ peerpull locate {reference}\n{text}");
    assert!(text.contains(&format!("is {}", image.digest())), "{text}");
    for blob in &located.blobs {
        let row = text.lines().find(|l| l.starts_with(&blob.role) && l.contains(&blob.digest));
        let row = row.unwrap_or_else(|| panic!("no row for {}: {text}", blob.digest));
        assert!(row.contains(&format!("1: {}", blob.providers[0].mirror_addr)), "{row}");
    }
    let out = cluster.nodes[1].peerpull.cli(&["locate", &reference, "--output", "json"]).await.unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && json.contains(&holder.peer_id), "{json}");

    // Status: two peers with their mirrors; node 0 advertises the image (its
    // blobs and the tag), node 1 nothing.
    let status = cluster.nodes[1].peerpull.status().await.unwrap();
    assert!(status.ready, "{status:?}");
    assert_eq!(status.peers.len(), 2, "{status:?}");
    for n in [0, 2] {
        let mirror = cluster.nodes[n].peerpull.mirror_url().replace("http://", "");
        assert!(status.peers.iter().any(|p| p.mirror_addr == mirror), "node {n} missing: {status:?}");
    }
    assert_eq!((status.advertised_digests, status.advertised_tags), (0, 0));
    let held = cluster.nodes[0].peerpull.status().await.unwrap();
    assert!(held.advertised_digests >= expected.len() as u64, "{held:?}");
    assert_eq!(held.advertised_tags, 1, "{held:?}");
    assert!(held.private_cluster);
    let out = cluster.nodes[1].peerpull.cli(&["status"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    println!("$ peerpull status\n{text}");
    assert!(text.contains("PEER (2)") && text.contains(&holder.peer_id), "{text}");
    assert!(text.contains("advertised  0 digests, 0 tags") && text.contains("ready       yes"), "{text}");

    // A bad reference: 64, one line naming it.
    let out = cluster.nodes[1].peerpull.cli(&["locate", "Not A/Reference"]).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("Not A/Reference") && err.lines().count() == 1, "{err}");
    // A stopped daemon: 1, naming the socket.
    cluster.nodes[2].peerpull.stop();
    let socket = cluster.nodes[2].peerpull.admin_socket();
    let out = cluster.nodes[2].peerpull.cli(&["status"]).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("no peerpull daemon answers on {}", socket.display())), "{err}");
}
