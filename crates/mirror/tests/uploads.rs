//! What a node sends to other nodes: past `max_peer_uploads` a peer is told
//! 429 and asks another holder at once; `max_upload_rate` paces what is sent.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use peerpull_mirror::wire::{PEER, PULL_THROUGH};
use peerpull_mirror::Static;
use peerpull_oci::{media, ErrorBody, ErrorCode};
use peerpull_store::Memory;
use support::{bytes, get, header, Node};

const NS: &str = "?ns=registry.example:5000";

/// A node holding `blob`, with `config`; gives the blob's path.
async fn holder(blob: &[u8], config: peerpull_mirror::Config) -> (Node, String) {
    let store = Memory::new();
    let digest = store.insert(media::OCI_LAYER_GZIP, blob.to_vec()).digest;
    (Node::start(store, Static::default(), config).await, format!("/v2/team/app/blobs/{digest}{NS}"))
}

/// Starts a GET as a peer would and returns once the headers are in, the body unread.
async fn open_as_peer(url: &str) -> hyper::body::Incoming {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::get(url).header(PEER, "1").body(Empty::new()).unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body()
}

#[tokio::test]
async fn a_busy_holder_answers_429_and_the_requester_asks_another_at_once() {
    // Bigger than socket buffers hold: the held upload cannot finish while nobody reads it.
    let blob = bytes(24 << 20, 11);
    let busy_config = peerpull_mirror::Config { max_peer_uploads: 1, ..support::config() };
    let (busy, path) = holder(&blob, busy_config).await;
    let (other, _) = holder(&blob, support::config()).await;

    // The one upload the busy holder may make is under way.
    let held = open_as_peer(&busy.url(&path)).await;
    let (response, body) = get(&busy.url(&path), &[(PEER, "1")]).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(ErrorBody::from_json(&body).unwrap().code(), Some(ErrorCode::TooManyRequests));
    // A node pulling through is never turned away, and this node's containerd is not a peer.
    assert_eq!(get(&busy.url(&path), &[(PEER, "1"), (PULL_THROUGH, "1")]).await.unwrap().0.status(), 200);
    assert_eq!(get(&busy.url(&path), &[]).await.unwrap().0.status(), 200);

    // A node asking the busy holder first goes to the other at once, not after its hedge delay.
    let patient = peerpull_mirror::Config {
        hedge_delay: Duration::from_secs(10),
        peer_timeout: Duration::from_secs(10),
        ..support::config()
    };
    let asker = Node::start(Memory::new(), Static::new(vec![busy.provider(), other.provider()]), patient).await;
    let started = Instant::now();
    let (response, body) = get(&asker.url(&path), &[]).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice(), "the bytes differ");
    assert!(took < Duration::from_secs(5), "took {took:?}: the busy holder was waited out, not passed over");
    let metrics = asker.metrics().await;
    assert!(metrics.contains(r#"peerpull_peer_fetch_failures_total{reason="busy"} 1"#), "{metrics}");
    assert!(busy.metrics().await.contains("peerpull_peer_uploads_refused_total 2"), "{}", busy.metrics().await);

    // The upload ends; the holder takes peers again.
    let received = held.collect().await.unwrap().to_bytes();
    assert_eq!(received.len(), blob.len());
    assert_eq!(get(&busy.url(&path), &[(PEER, "1")]).await.unwrap().0.status(), 200);
}

#[tokio::test]
async fn uploads_to_peers_are_paced_to_the_rate() {
    const RATE: u64 = 4 << 20;
    let blob = bytes(6 << 20, 12);
    let config = peerpull_mirror::Config { max_upload_rate: RATE, ..support::config() };
    let (paced, path) = holder(&blob, config).await;
    let started = Instant::now();
    let (response, body) = get(&paced.url(&path), &[(PEER, "1")]).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice(), "the bytes differ");
    // Less a tenth of a second's burst, the bytes need (6 - 0.4) / 4 s at the rate: never less.
    let least = Duration::from_secs_f64((blob.len() as f64 - RATE as f64 / 10.0) / RATE as f64);
    assert!(took >= least, "sent in {took:?}, faster than the rate allows ({least:?})");
    println!("6 MiB at 4 MiB/s: {took:?} (at least {least:?})");
}
