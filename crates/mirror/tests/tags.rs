//! Tags resolved against the upstream first: a tag that moved upstream is
//! served fresh although a peer holds the old image; the peer answers when
//! the upstream is down or hangs; a peer's answer for a tag must name its
//! digest and match it.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use peerpull_mirror::{Config, Static, TagResolution, UpstreamFallback};
use peerpull_oci::{media, Digest, Mirrored, Reference};
use peerpull_store::Memory;
use support::upstream::{Behaviour, FakeUpstream};
use support::{fake_peer, get, header, request, Misbehaviour, Node};

const REPO: &str = "team/app";

fn manifest(n: u8) -> Vec<u8> {
    format!(r#"{{"schemaVersion":2,"mediaType":"{}","annotations":{{"n":"{n}"}},"layers":[]}}"#, media::OCI_MANIFEST)
        .into_bytes()
}

/// An upstream whose `v1` points at `manifest(new)`, and a config resolving tags there first.
async fn upstream_with_tag(new: u8) -> FakeUpstream {
    let bytes = manifest(new);
    let digest = Digest::sha256_of(&bytes);
    let files = vec![
        (format!("/v2/{REPO}/manifests/v1"), bytes.clone(), media::OCI_MANIFEST),
        (format!("/v2/{REPO}/manifests/{digest}"), bytes, media::OCI_MANIFEST),
    ];
    FakeUpstream::start(files, Behaviour::default()).await
}

/// Resolving tags upstream first, pulling through (as deployed), spooling in `dir`.
fn config(upstream: &FakeUpstream, dir: &tempfile::TempDir) -> Config {
    Config {
        mirrored: Mirrored::Only(vec![upstream.registry()]),
        tag_resolution: TagResolution::UpstreamFirst,
        tag_timeout: Duration::from_millis(500),
        upstream_fallback: Some(UpstreamFallback::new(dir.path().join("spool"))),
        ..support::config()
    }
}

/// A node holding `manifest(old)` under `v1` of `upstream`'s registry.
async fn holder(upstream: &FakeUpstream, old: u8, dir: &tempfile::TempDir) -> Node {
    let store = Memory::new();
    let digest = store.insert(media::OCI_MANIFEST, manifest(old)).digest;
    store.tag(&format!("{}/{REPO}:v1", upstream.addr).parse::<Reference>().unwrap(), &digest);
    Node::start(store, Static::default(), config(upstream, dir)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_that_moved_upstream_is_fresh_and_the_peers_answer_in_an_outage() {
    let upstream = upstream_with_tag(2).await;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let old = holder(&upstream, 1, &dirs[0]).await;
    let tag = format!("/v2/{REPO}/manifests/v1{}", upstream.ns());
    let fresh = Digest::sha256_of(&manifest(2)).to_string();

    // The upstream is up: the tag is what it says, though a peer holds the old image.
    let node = Node::start(Memory::new(), Static::new(vec![old.provider()]), config(&upstream, &dirs[1])).await;
    let (response, body) = request("HEAD", &node.url(&tag), &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), body.len()), (200, 0));
    assert_eq!(header(&response, "docker-content-digest"), fresh);
    let (response, body) = get(&node.url(&tag), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(Digest::sha256_of(&body).to_string(), fresh);
    assert!(node.metrics().await.contains(r#"peerpull_tags_resolved_total{source="upstream"} 2"#));

    // The upstream is down: the peer's answer, counted as answered in an outage.
    upstream.behave(Behaviour { status: Some(503), ..Behaviour::default() });
    let other = Node::start(Memory::new(), Static::new(vec![old.provider()]), config(&upstream, &dirs[2])).await;
    let (response, body) = get(&other.url(&tag), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(Digest::sha256_of(&body), Digest::sha256_of(&manifest(1)));
    let metrics = other.metrics().await;
    assert!(metrics.contains(r#"peerpull_tags_resolved_total{source="peer"} 1"#), "{metrics}");
    assert!(metrics.contains("peerpull_tags_resolved_in_outage_total 1"), "{metrics}");

    // A 404 upstream is an answer: no such tag, whatever peers hold.
    upstream.behave(Behaviour { status: Some(404), ..Behaviour::default() });
    let third = Node::start(Memory::new(), Static::new(vec![old.provider()]), config(&upstream, &dirs[3])).await;
    assert_eq!(get(&third.url(&tag), &[]).await.unwrap().0.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_gives_way_to_peers_after_the_tag_timeout() {
    let upstream = upstream_with_tag(2).await;
    upstream.behave(Behaviour { hang: true, ..Behaviour::default() });
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = holder(&upstream, 1, &dir_a).await;
    let node = Node::start(Memory::new(), Static::new(vec![old.provider()]), config(&upstream, &dir_b)).await;
    let started = Instant::now();
    let (response, body) = get(&node.url(&format!("/v2/{REPO}/manifests/v1{}", upstream.ns())), &[]).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(Digest::sha256_of(&body), Digest::sha256_of(&manifest(1)));
    // The tag time-out (0.5 s) cut the wait, not the client's 15 s response time-out.
    assert!(took < Duration::from_secs(10), "the tag took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_answer_for_a_tag_must_name_and_match_its_digest() {
    let bytes = manifest(3);
    let path = format!("/v2/{REPO}/manifests/v1?ns=registry.example:5000");
    let peers_first = Config { tag_resolution: TagResolution::PeersFirst, ..support::config() };

    // No Docker-Content-Digest: nothing to check the bytes against, so no answer.
    let unnamed = fake_peer(bytes.clone(), Misbehaviour::Truncate(bytes.len())).await;
    let node = Node::start(Memory::new(), Static::new(vec![unnamed]), peers_first.clone()).await;
    assert_eq!(get(&node.url(&path), &[]).await.unwrap().0.status(), 404);
    assert!(node.metrics().await.contains(r#"peerpull_peer_fetch_failures_total{reason="no_digest"} 1"#));

    // A digest named, other bytes sent: the response never completes.
    let lying = fake_peer(bytes, Misbehaviour::WrongDigest).await;
    let peers = Static::new(vec![lying]);
    let node = Node::start(Memory::new(), peers.clone(), peers_first).await;
    assert!(get(&node.url(&path), &[]).await.is_err(), "a manifest that does not match its digest was served");
    assert_eq!(peers.penalized(), vec![lying.peer]);
}
