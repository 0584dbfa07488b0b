//! The mirror fetching from the upstream on a miss: exact bytes, one upstream
//! transfer however many ask at once, a node that lets another fetch for it
//! and carries on by itself when that one fails, ranges, tags checked
//! against their digest, and the fast 404 when the upstream cannot answer.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use peerpull_mirror::Static;
use peerpull_oci::{media, Digest, ErrorBody, ErrorCode};
use peerpull_store::Memory;
use support::upstream::{blob_path, pulling, upstream_with_blob, Behaviour, FakeUpstream, REPO};
use support::{bytes, fake_peer, get, header, request, Misbehaviour, Node};

fn code(body: &[u8]) -> Option<ErrorCode> {
    ErrorBody::from_json(body).ok().and_then(|b| b.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_cost_one_upstream_transfer() {
    let slow = Behaviour { chunk_delay: Duration::from_millis(5), ..Behaviour::default() };
    let (upstream, blob, digest) = upstream_with_blob(3 << 20, slow).await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(Memory::new(), Static::default(), pulling(&upstream, &dir)).await;
    let url = node.url(&format!("{}{}", blob_path(&digest), upstream.ns()));
    let pulls = (0..8).map(|_| get(&url, &[]));
    for result in futures::future::join_all(pulls).await {
        let (response, body) = result.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "docker-content-digest"), digest.to_string());
        assert!(body.as_ref() == blob.as_slice(), "bytes differ");
    }
    assert_eq!(upstream.gets(&blob_path(&digest)), 1, "eight pulls, one upstream transfer");
    let metrics = node.metrics().await;
    assert!(metrics.contains(&format!("peerpull_upstream_bytes_total {}", blob.len())), "{metrics}");
    assert!(metrics.contains("peerpull_transfers_shared_total 7"), "{metrics}");

    // A range of what was fetched comes from the spool, not the upstream.
    let (response, body) = get(&url, &[("range", "bytes=100-199")]).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(body.as_ref(), &blob[100..200]);
    assert_eq!(upstream.gets(&blob_path(&digest)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_streams_from_the_node_the_cluster_chose_and_finishes_alone_when_it_fails() {
    let (upstream, blob, digest) = upstream_with_blob(2 << 20, Behaviour::default()).await;
    let path = format!("{}{}", blob_path(&digest), upstream.ns());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fetcher = Node::start(Memory::new(), Static::default(), pulling(&upstream, &dir_a)).await;
    let to_fetcher = Static::default().closest_is(fetcher.provider());
    let follower = Node::start(Memory::new(), to_fetcher, pulling(&upstream, &dir_b)).await;
    let (response, body) = get(&follower.url(&path), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice());
    let (response, body) = get(&fetcher.url(&path), &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), body.len()), (200, blob.len()));
    assert_eq!(upstream.gets(&blob_path(&digest)), 1, "the fetcher fetched for both");
    assert!(fetcher.metrics().await.contains(r#"source="spool"} "#), "the fetcher served from its spool");
    let (response, body) = get(&follower.url(&path), &[("range", "bytes=100-199")]).await.unwrap();
    assert_eq!((response.status().as_u16(), body.as_ref()), (206, &blob[100..200]), "a range, cut from the whole");

    // The fetcher dies after 700 kB: the follower fetches the rest itself.
    let (upstream, blob, digest) = upstream_with_blob(2 << 20, Behaviour::default()).await;
    let dying = fake_peer(blob.clone(), Misbehaviour::Truncate(700_001)).await;
    let to_fetcher = Static::default().closest_is(dying);
    let dir = tempfile::tempdir().unwrap();
    let follower = Node::start(Memory::new(), to_fetcher, pulling(&upstream, &dir)).await;
    let (response, body) = get(&follower.url(&format!("{}{}", blob_path(&digest), upstream.ns())), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice(), "the response continued from the follower's own fetch");
    assert_eq!(upstream.gets(&blob_path(&digest)), 1);

    // A fetcher that serves wrong bytes never completes the response.
    let (upstream, blob, digest) = upstream_with_blob(1 << 20, Behaviour::default()).await;
    let corrupt = fake_peer(blob, Misbehaviour::Corrupt).await;
    let to_fetcher = Static::default().closest_is(corrupt);
    let dir = tempfile::tempdir().unwrap();
    let follower = Node::start(Memory::new(), to_fetcher.clone(), pulling(&upstream, &dir)).await;
    let result = get(&follower.url(&format!("{}{}", blob_path(&digest), upstream.ns())), &[]).await;
    assert!(result.is_err(), "a corrupt transfer completed");
    assert_eq!(to_fetcher.penalized(), vec![corrupt.peer]);
    // Nor does a range of it (the corrupt node answers ranges).
    let result =
        get(&follower.url(&format!("{}{}", blob_path(&digest), upstream.ns())), &[("range", "bytes=10-19")]).await;
    if let Ok((response, body)) = result {
        let status = response.status();
        assert!(!status.is_success(), "a corrupt range was served: {status}, {} bytes", body.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_resolve_upstream_and_misses_stay_fast_404s() {
    let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"{}","layers":[]}}"#, media::OCI_MANIFEST).into_bytes();
    let manifest_digest = Digest::sha256_of(&manifest);
    let files = vec![
        (format!("/v2/{REPO}/manifests/v1"), manifest.clone(), media::OCI_MANIFEST),
        (format!("/v2/{REPO}/manifests/{manifest_digest}"), manifest.clone(), media::OCI_MANIFEST),
    ];
    let upstream = FakeUpstream::start(files, Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(Memory::new(), Static::default(), pulling(&upstream, &dir)).await;
    let tag = node.url(&format!("/v2/{REPO}/manifests/v1{}", upstream.ns()));
    let (response, body) = request("HEAD", &tag, &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), body.len()), (200, 0));
    assert_eq!(header(&response, "docker-content-digest"), manifest_digest.to_string());
    let (response, body) = get(&tag, &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), media::OCI_MANIFEST);
    assert_eq!(body.as_ref(), manifest.as_slice());

    let missing = node.url(&format!("/v2/{REPO}/blobs/sha256:{}{}", "d".repeat(64), upstream.ns()));
    let (response, body) = get(&missing, &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), code(&body)), (404, Some(ErrorCode::BlobUnknown)));

    // An upstream that is down, or refuses: a fast 404 so containerd tries its own way.
    for status in [503, 401] {
        let refusing = FakeUpstream::start(vec![], Behaviour { status: Some(status), ..Behaviour::default() }).await;
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(Memory::new(), Static::default(), pulling(&refusing, &dir)).await;
        let started = std::time::Instant::now();
        let url = node.url(&format!("/v2/{REPO}/blobs/sha256:{}{}", "e".repeat(64), refusing.ns()));
        let (response, body) = get(&url, &[]).await.unwrap();
        assert_eq!((response.status().as_u16(), code(&body)), (404, Some(ErrorCode::BlobUnknown)), "{status}");
        assert!(started.elapsed() < Duration::from_secs(2), "{status}: the miss took {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_upstream_refuses_the_chosen_node_the_others_do_not_ask_again() {
    let refusing = FakeUpstream::start(vec![], Behaviour { status: Some(401), ..Behaviour::default() }).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fetcher = Node::start(Memory::new(), Static::default(), pulling(&refusing, &dir_a)).await;
    let follower =
        Node::start(Memory::new(), Static::default().closest_is(fetcher.provider()), pulling(&refusing, &dir_b)).await;
    let url = follower.url(&format!("/v2/{REPO}/blobs/sha256:{}{}", "f".repeat(64), refusing.ns()));
    let (response, body) = get(&url, &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), code(&body)), (404, Some(ErrorCode::BlobUnknown)));
    assert_eq!(refusing.requests(), 1, "only the fetcher asked the upstream");
    let metrics = follower.metrics().await;
    assert!(metrics.contains(r#"cache="miss",source=""} 1"#), "{metrics}");
    assert!(fetcher.metrics().await.contains(r#"peerpull_upstream_requests_total{outcome="denied"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_upstream_bytes_never_complete_a_response() {
    let corrupt = Behaviour { corrupt: true, ..Behaviour::default() };
    let (upstream, _, digest) = upstream_with_blob(1 << 20, corrupt).await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(Memory::new(), Static::default(), pulling(&upstream, &dir)).await;
    let url = node.url(&format!("{}{}", blob_path(&digest), upstream.ns()));
    assert!(get(&url, &[]).await.is_err(), "a corrupt upstream transfer completed");
    assert!(node.metrics().await.contains("peerpull_spool_bytes 0"), "the failed entry gave its room back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_larger_than_the_spool_is_a_miss() {
    let (upstream, _, digest) = upstream_with_blob(1 << 20, Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = pulling(&upstream, &dir);
    if let Some(pull) = config.upstream_fallback.as_mut() {
        pull.spool_max_bytes = 512 * 1024;
    }
    let node = Node::start(Memory::new(), Static::default(), config).await;
    let url = node.url(&format!("{}{}", blob_path(&digest), upstream.ns()));
    let (response, body) = get(&url, &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), code(&body)), (404, Some(ErrorCode::BlobUnknown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_evicts_the_oldest_and_drops_what_containerd_took() {
    let (a, b) = (bytes(1 << 20, 1), bytes(1 << 20, 2));
    let (da, db) = (Digest::sha256_of(&a), Digest::sha256_of(&b));
    let files =
        vec![(blob_path(&da), a.clone(), media::OCI_LAYER_GZIP), (blob_path(&db), b.clone(), media::OCI_LAYER_GZIP)];
    let upstream = FakeUpstream::start(files, Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = pulling(&upstream, &dir);
    if let Some(pull) = config.upstream_fallback.as_mut() {
        pull.spool_max_bytes = (3 << 20) / 2;
    }
    let store = Memory::new();
    let node = Node::start(store.clone(), Static::default(), config).await;
    let url = |d: &Digest| node.url(&format!("{}{}", blob_path(d), upstream.ns()));
    assert!(get(&url(&da), &[]).await.unwrap().1.as_ref() == a.as_slice());
    assert!(get(&url(&db), &[]).await.unwrap().1.as_ref() == b.as_slice(), "a made room for b");
    assert!(node.metrics().await.contains(&format!("peerpull_spool_bytes {}", 1 << 20)));
    // b's entry can be evicted once its response let go of it (just after the client read its last byte).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !node.metrics().await.contains("peerpull_transfers_in_flight{source=\"upstream\"} 0\n") {
        assert!(std::time::Instant::now() < deadline, "b's response never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(get(&url(&da), &[]).await.unwrap().1.as_ref() == a.as_slice());
    assert_eq!(upstream.gets(&blob_path(&da)), 2, "a was evicted and fetched again");

    // containerd now holds a: the spool lets it go.
    store.insert(media::OCI_LAYER_GZIP, a);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !node.metrics().await.contains("peerpull_spool_bytes 0\n") {
        assert!(std::time::Instant::now() < deadline, "the spool kept what containerd holds");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn referrers_come_from_the_upstream_and_miss_clearly_in_an_outage() {
    let subject = Digest::sha256_of(b"a manifest");
    let path = format!("/v2/{REPO}/referrers/{subject}");
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let upstream =
        FakeUpstream::start(vec![(path.clone(), index.to_vec(), media::OCI_INDEX)], Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(Memory::new(), Static::default(), pulling(&upstream, &dir)).await;
    let asked = format!("{path}{}&artifactType=application%2Fvnd.example.sbom", upstream.ns());

    let (response, body) = get(&node.url(&asked), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body.as_ref(), index.as_slice(), "the upstream's index, as it sent it");
    assert_eq!(response.headers().get("content-type").unwrap(), media::OCI_INDEX);
    assert_eq!(upstream.gets(&path), 1);
    let filtered = format!("{path}?artifactType=application%2Fvnd.example.sbom");
    assert_eq!(upstream.gets(&filtered), 1, "the filter is passed on, and ?ns= is not");

    upstream.behave(Behaviour { status: Some(503), ..Behaviour::default() });
    let (response, body) = get(&node.url(&asked), &[]).await.unwrap();
    assert_eq!(response.status(), 404, "containerd moves on to its next host");
    let said = ErrorBody::from_json(&body).unwrap();
    assert!(said.message().unwrap_or_default().contains("upstream only"), "{said:?}");
}
