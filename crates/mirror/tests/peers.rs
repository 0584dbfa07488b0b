//! The mirror fetching from peers: served bytes, the loop guard, hedging
//! past a silent peer (well before the peer timeout), resuming a broken
//! transfer from another holder at the byte reached, and refusing a corrupt
//! one, whether asked for a range or answered without a length.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use peerpull_mirror::Static;
use peerpull_oci::{media, Digest, ErrorBody, ErrorCode, Reference};
use peerpull_store::Memory;
use support::{bytes, fake_peer, get, header, request, FakePeer, Misbehaviour, Node};

const NS: &str = "?ns=registry.example:5000";

/// A node holding one blob and a tagged manifest.
async fn holder(blob: &[u8]) -> (Node, String, String) {
    let store = Memory::new();
    let digest = store.insert(media::OCI_LAYER_GZIP, blob.to_vec()).digest.to_string();
    let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"{}","layers":[]}}"#, media::OCI_MANIFEST);
    let manifest_digest = store.insert(media::OCI_MANIFEST, manifest.into_bytes()).digest;
    store.tag(&"registry.example:5000/team/app:v1".parse::<Reference>().unwrap(), &manifest_digest);
    (Node::start(store, Static::default(), support::config()).await, digest, manifest_digest.to_string())
}

#[tokio::test]
async fn serves_a_peers_blob_and_manifest_with_exact_bytes() {
    let blob = bytes(3 << 20, 1);
    let (a, digest, manifest_digest) = holder(&blob).await;
    let b = Node::start(Memory::new(), Static::new(vec![a.provider()]), support::config()).await;

    let (response, body) = get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), blob.len().to_string());
    assert_eq!(body.as_ref(), blob.as_slice());

    let (response, body) = get(&b.url(&format!("/v2/team/app/manifests/v1{NS}")), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "docker-content-digest"), manifest_digest);
    assert_eq!(header(&response, "content-type"), media::OCI_MANIFEST);
    assert_eq!(peerpull_oci::Digest::sha256_of(&body).to_string(), manifest_digest);

    let (response, body) =
        get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[("range", "bytes=10-19")]).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(body.as_ref(), &blob[10..20]);
    // Cut from the whole blob, which is read and verified: open-ended, suffix.
    let tail = blob.len() - 100;
    for (range, from) in [(format!("bytes={tail}-"), tail), ("bytes=-100".to_owned(), tail)] {
        let (response, body) =
            get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[("range", &range)]).await.unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(header(&response, "content-range"), format!("bytes {from}-{}/{}", blob.len() - 1, blob.len()));
        assert_eq!(body.as_ref(), &blob[from..], "{range}");
    }

    let (response, body) = request("HEAD", &b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), body.len()), (200, 0));
    assert_eq!(header(&response, "content-length"), blob.len().to_string());

    let metrics = b.metrics().await;
    assert!(metrics.contains(r#"cache="hit",source="peer"} 6"#), "{metrics}");
}

#[tokio::test]
async fn loop_guard_answers_from_the_local_store_only() {
    let (a, digest, _) = holder(&bytes(1000, 2)).await;
    let b = Node::start(Memory::new(), Static::new(vec![a.provider()]), support::config()).await;
    let path = format!("/v2/team/app/blobs/{digest}{NS}");
    let (response, body) = get(&b.url(&path), &[(peerpull_mirror::wire::PEER, "1")]).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(ErrorBody::from_json(&body).unwrap().code(), Some(ErrorCode::BlobUnknown));
    assert_eq!(get(&a.url(&path), &[(peerpull_mirror::wire::PEER, "1")]).await.unwrap().0.status(), 200);
}

#[tokio::test]
async fn a_miss_with_no_provider_is_a_404() {
    let b = Node::start(Memory::new(), Static::default(), support::config()).await;
    let path = format!("/v2/team/app/blobs/sha256:{}{NS}", "c".repeat(64));
    let (response, body) = get(&b.url(&path), &[]).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(ErrorBody::from_json(&body).unwrap().code(), Some(ErrorCode::BlobUnknown));
}

#[tokio::test]
async fn hedges_past_a_silent_peer() {
    let blob = bytes(500_000, 3);
    let digest = Digest::sha256_of(&blob);
    let silent = FakePeer::start(blob.clone(), Misbehaviour::Silent).await;
    let holder = FakePeer::start(blob.clone(), Misbehaviour::Honest).await;
    // Failing over would wait out the peer timeout; the hedge asks the holder after the hedge delay.
    let config = peerpull_mirror::Config { peer_timeout: Duration::from_secs(10), ..support::config() };
    let peer_timeout = config.peer_timeout;
    let b = Node::start(Memory::new(), Static::new(vec![silent.provider, holder.provider]), config).await;
    let started = Instant::now();
    let (response, body) = get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice(), "hedged bytes differ");
    assert!(took < peer_timeout / 2, "took {took:?}: the silent peer was waited out, not hedged past");
    assert_eq!((silent.asked().len(), holder.asked().len()), (1, 1), "the silent peer, then the holder, once each");
}

#[tokio::test]
async fn resumes_from_another_holder_when_a_peer_dies_mid_blob() {
    let blob = bytes(2 << 20, 4);
    let digest = Digest::sha256_of(&blob);
    let last = blob.len() - 1;
    for (how, reached, reason) in
        [(Misbehaviour::Truncate(700_001), 700_001, "body"), (Misbehaviour::Stall(123_457), 123_457, "stall")]
    {
        let broken = FakePeer::start(blob.clone(), how).await;
        let holder = FakePeer::start(blob.clone(), Misbehaviour::Honest).await;
        let b =
            Node::start(Memory::new(), Static::new(vec![broken.provider, holder.provider]), support::config()).await;
        let result = get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await;
        let ranges: Vec<Option<String>> =
            holder.asked().iter().map(|asked| asked.header("range").map(str::to_owned)).collect();
        assert_eq!(ranges, vec![Some(format!("bytes={reached}-{last}"))], "the holder is asked once, for the rest");
        let (response, body) = result.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body.len(), blob.len());
        assert!(body.as_ref() == blob.as_slice(), "resumed bytes differ");
        let metrics = b.metrics().await;
        let failures: Vec<&str> =
            metrics.lines().filter(|line| line.starts_with("peerpull_peer_fetch_failures_total{")).collect();
        assert_eq!(failures, vec![format!(r#"peerpull_peer_fetch_failures_total{{reason="{reason}"}} 1"#)]);
    }
}

#[tokio::test]
async fn a_corrupt_peer_never_completes_a_response_and_is_penalised() {
    let blob = bytes(1 << 20, 5);
    let (_a, digest, _) = holder(&blob).await;
    let corrupt = fake_peer(blob.clone(), Misbehaviour::Corrupt).await;
    let peers = Static::new(vec![corrupt]);
    let b = Node::start(Memory::new(), peers.clone(), support::config()).await;
    let result = get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await;
    assert!(result.is_err(), "a corrupt transfer completed: {:?}", result.map(|(r, b)| (r.status(), b.len())));
    assert_eq!(peers.penalized(), vec![corrupt.peer]);
    let metrics = b.metrics().await;
    assert!(metrics.contains(r#"peerpull_peer_fetch_failures_total{reason="digest_mismatch"} 1"#), "{metrics}");
}

#[tokio::test]
async fn a_corrupt_peer_never_completes_a_range_request() {
    let blob = bytes(1 << 20, 10);
    let digest = Digest::sha256_of(&blob);
    let corrupt = FakePeer::start(blob.clone(), Misbehaviour::Corrupt).await;
    let peers = Static::new(vec![corrupt.provider]);
    let b = Node::start(Memory::new(), peers.clone(), support::config()).await;
    for range in ["bytes=10-19", "bytes=1000000-"] {
        let result = get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[("range", range)]).await;
        if let Ok((response, body)) = result {
            let status = response.status();
            assert!(
                !status.is_success(),
                "{range}: a corrupt peer's bytes were served: {status}, {} bytes",
                body.len()
            );
        }
    }
    assert_eq!(peers.penalized(), vec![corrupt.provider.peer; 2]);
    let metrics = b.metrics().await;
    assert!(metrics.contains(r#"peerpull_peer_fetch_failures_total{reason="digest_mismatch"} 2"#), "{metrics}");
}

#[tokio::test]
async fn a_peer_answer_without_a_length_is_refused() {
    let blob = bytes(100_000, 11);
    let digest = Digest::sha256_of(&blob);
    for how in [Misbehaviour::CorruptChunked, Misbehaviour::CorruptUntilClose] {
        let corrupt = FakePeer::start(blob.clone(), how).await;
        let b = Node::start(Memory::new(), Static::new(vec![corrupt.provider]), support::config()).await;
        let result = get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await;
        if let Ok((response, body)) = result {
            let status = response.status();
            assert!(!status.is_success(), "an unsized corrupt answer was served: {status}, {} bytes", body.len());
        }
        let metrics = b.metrics().await;
        assert!(metrics.contains(r#"peerpull_peer_fetch_failures_total{reason="no_length"} 1"#), "{metrics}");
    }
}

#[tokio::test]
async fn a_peer_that_dies_with_no_other_holder_aborts_the_response() {
    let blob = bytes(1 << 20, 6);
    let (_a, digest, _) = holder(&blob).await;
    let broken = fake_peer(blob.clone(), Misbehaviour::Truncate(1000)).await;
    let b = Node::start(Memory::new(), Static::new(vec![broken]), support::config()).await;
    let result = get(&b.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await;
    assert!(result.is_err(), "a truncated transfer completed");
}

#[tokio::test]
async fn hedges_and_resumes_share_one_attempts_budget() {
    let blob = bytes(1 << 20, 7);
    let (a, digest, _) = holder(&blob).await;
    let path = format!("/v2/team/app/blobs/{digest}{NS}");
    let first = fake_peer(blob.clone(), Misbehaviour::Truncate(100_000)).await;
    let second = fake_peer(blob.clone(), Misbehaviour::Truncate(200_000)).await;
    let peers = Static::new(vec![first, second, a.provider()]);

    // Three requests are needed: the first peer, a resume at the second, a resume at the good one.
    let config = peerpull_mirror::Config { max_peer_attempts: 2, ..support::config() };
    let b = Node::start(Memory::new(), peers.clone(), config).await;
    assert!(get(&b.url(&path), &[]).await.is_err(), "a third request was made beyond a budget of 2");

    let config = peerpull_mirror::Config { max_peer_attempts: 3, ..support::config() };
    let b = Node::start(Memory::new(), peers, config).await;
    let (response, body) = get(&b.url(&path), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice(), "resumed bytes differ");
}

fn member(key: u8) -> Option<peerpull_mirror::Membership> {
    Some(peerpull_mirror::Membership { key: [key; 32], peer_id: format!("node-{key}") })
}

#[tokio::test]
async fn requests_between_mirrors_prove_membership() {
    let blob = bytes(100_000, 8);
    let store = Memory::new();
    let digest = store.insert(media::OCI_LAYER_GZIP, blob.clone()).digest.to_string();
    let a = Node::start_as(store, Static::default(), support::config(), member(1)).await;
    let path = format!("/v2/team/app/blobs/{digest}{NS}");

    // A member's request carries a proof and is served.
    let b = Node::start_as(Memory::new(), Static::new(vec![a.provider()]), support::config(), member(1)).await;
    let (response, body) = get(&b.url(&path), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice());

    // A request that claims to be a peer's without proof, or with another key's, is refused.
    let (response, body) = get(&a.url(&path), &[(peerpull_mirror::wire::PEER, "1")]).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(ErrorBody::from_json(&body).unwrap().code(), Some(ErrorCode::Unauthorized));
    let outsider = Node::start_as(Memory::new(), Static::new(vec![a.provider()]), support::config(), member(2)).await;
    assert_eq!(get(&outsider.url(&path), &[]).await.unwrap().0.status(), 404);
    assert!(outsider.metrics().await.contains(r#"peerpull_peer_fetch_failures_total{reason="status"} 1"#));
}

#[tokio::test]
async fn only_allowed_clients_use_the_mirror() {
    use peerpull_mirror::RemoteAddr;
    let store = Memory::new();
    let digest = store.insert(media::OCI_LAYER_GZIP, bytes(1000, 9)).digest;
    let mut registry = prometheus_client::registry::Registry::default();
    let config = peerpull_mirror::Config { clients: Some(vec!["10.0.0.0/8".parse().unwrap()]), ..support::config() };
    let metrics = peerpull_mirror::Metrics::new(&mut registry);
    let mirror = peerpull_mirror::Mirror::new(
        config,
        peerpull_mirror::Identity::default(),
        std::sync::Arc::new(store),
        std::sync::Arc::new(Static::default()),
        metrics,
    )
    .unwrap();
    let ask = |from: &str| {
        let mut request = http::Request::get(format!("/v2/team/app/blobs/{digest}{NS}")).body(()).unwrap();
        request.extensions_mut().insert(RemoteAddr(from.parse().unwrap()));
        request
    };
    assert_eq!(mirror.handle(ask("127.0.0.1:40000")).await.status(), 200, "loopback: this node");
    assert_eq!(mirror.handle(ask("10.1.2.3:40000")).await.status(), 200, "an allowed network");
    let refused = mirror.handle(ask("192.0.2.7:40000")).await;
    assert_eq!(refused.status(), 403);
    let body = http_body_util::BodyExt::collect(refused.into_body()).await.unwrap().to_bytes();
    assert_eq!(ErrorBody::from_json(&body).unwrap().code(), Some(ErrorCode::Denied));
}
