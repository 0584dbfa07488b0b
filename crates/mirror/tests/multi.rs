//! A big blob from several holders at once: chunks spread over every
//! holder, a slow holder overtaken, a corrupt one never completing the
//! response and blamed alone, small blobs and ranges from one holder as
//! before.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use peerpull_mirror::Static;
use peerpull_store::Memory;
use support::{bytes, get, FakePeer, Misbehaviour, Node};

const CHUNK: usize = 4 << 20;
const DIGEST_PATH: &str = "/v2/team/app/blobs/";
const NS: &str = "?ns=registry.example:5000";

fn config() -> peerpull_mirror::Config {
    peerpull_mirror::Config { multi_source_min_bytes: 8 << 20, ..support::config() }
}

fn path(blob: &[u8]) -> String {
    format!("{DIGEST_PATH}{}{NS}", peerpull_oci::Digest::sha256_of(blob))
}

/// The `Range` headers `peer` was asked with (`-` for a whole-blob request).
fn ranges(peer: &FakePeer) -> Vec<String> {
    peer.asked().iter().map(|a| a.header("range").unwrap_or("-").to_owned()).collect()
}

/// Each chunk's range after the first, which the first holder's open answer gives.
fn chunk_ranges(len: usize) -> BTreeSet<String> {
    (1..len.div_ceil(CHUNK)).map(|c| format!("bytes={}-{}", c * CHUNK, ((c + 1) * CHUNK).min(len) - 1)).collect()
}

#[tokio::test]
async fn a_big_blob_is_spread_over_every_holder() {
    let blob = bytes(5 * CHUNK + 12_345, 21);
    let holders = [
        FakePeer::start(blob.clone(), Misbehaviour::Honest).await,
        FakePeer::start(blob.clone(), Misbehaviour::Honest).await,
        FakePeer::start(blob.clone(), Misbehaviour::Honest).await,
    ];
    let peers = Static::new(holders.iter().map(|h| h.provider).collect());
    let asker = Node::start(Memory::new(), peers, config()).await;
    let (response, body) = get(&asker.url(&path(&blob)), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice(), "the bytes differ");

    assert_eq!(ranges(&holders[0])[0], "-", "the first holder's answer is whole");
    let asked: BTreeSet<String> = holders.iter().flat_map(ranges).filter(|r| r != "-").collect();
    assert_eq!(asked, chunk_ranges(blob.len()), "every chunk after the first, each asked exactly as cut");
    for (n, holder) in holders.iter().enumerate().skip(1) {
        assert!(!ranges(holder).is_empty(), "holder {n} was asked nothing: {:?}", ranges(holder));
    }
}

#[tokio::test]
async fn a_slow_holder_is_overtaken_by_the_others() {
    let blob = bytes(5 * CHUNK, 22);
    let fast = FakePeer::start(blob.clone(), Misbehaviour::Honest).await;
    // 640 KiB/s: a chunk from it alone would take over 6 s.
    let slow = FakePeer::start(blob.clone(), Misbehaviour::Slow).await;
    let peers = Static::new(vec![fast.provider, slow.provider]);
    let asker = Node::start(Memory::new(), peers, config()).await;
    let started = Instant::now();
    let (response, body) = get(&asker.url(&path(&blob)), &[]).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice(), "the bytes differ");
    let slow_asked: Vec<String> = ranges(&slow);
    assert!(!slow_asked.is_empty(), "the slow holder was never asked");
    // Whatever the slow holder was asked, the fast one was asked too.
    let fast_asked: BTreeSet<String> = ranges(&fast).into_iter().collect();
    for range in &slow_asked {
        assert!(fast_asked.contains(range), "{range}: left to the slow holder ({fast_asked:?})");
    }
    assert!(took < Duration::from_secs(5), "took {took:?}: waited for the slow holder");
}

#[tokio::test]
async fn a_corrupt_holder_never_completes_the_response() {
    let blob = bytes(3 * CHUNK, 23);
    let good = FakePeer::start(blob.clone(), Misbehaviour::Honest).await;
    let corrupt = FakePeer::start(blob.clone(), Misbehaviour::Corrupt).await;
    let peers = Static::new(vec![good.provider, corrupt.provider]);
    let asker = Node::start(Memory::new(), peers.clone(), config()).await;
    let result = get(&asker.url(&path(&blob)), &[]).await;
    assert!(result.is_err(), "a corrupt chunk completed: {:?}", result.map(|(r, b)| (r.status(), b.len())));
    assert!(!ranges(&corrupt).is_empty(), "the corrupt holder was never asked");
    let metrics = asker.metrics().await;
    assert!(metrics.contains(r#"peerpull_peer_fetch_failures_total{reason="digest_mismatch"} 1"#), "{metrics}");

    // Each holder's whole copy is checked alone: only the corrupt one is blamed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while peers.penalized().is_empty() || ranges(&good).iter().filter(|r| *r == "-").count() < 2 {
        let (blamed, good_checked) = (peers.penalized(), ranges(&good));
        assert!(Instant::now() < deadline, "blamed {blamed:?}; the good holder asked {good_checked:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(peers.penalized(), vec![corrupt.provider.peer], "the corrupt holder, and only it");
}

#[tokio::test]
async fn small_blobs_and_ranges_come_from_one_holder() {
    let small = bytes(CHUNK, 24);
    let big = bytes(3 * CHUNK, 25);
    for (blob, range) in [(&small, None), (&big, Some("bytes=100-199"))] {
        let first = FakePeer::start(blob.clone(), Misbehaviour::Honest).await;
        let second = FakePeer::start(blob.clone(), Misbehaviour::Honest).await;
        let asker = Node::start(Memory::new(), Static::new(vec![first.provider, second.provider]), config()).await;
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        let (response, body) = get(&asker.url(&path(blob)), &headers).await.unwrap();
        assert!(response.status().is_success());
        let expected = if range.is_some() { &blob[100..200] } else { &blob[..] };
        assert!(body.as_ref() == expected, "the bytes differ");
        assert_eq!(ranges(&first), vec!["-"]);
        assert!(ranges(&second).is_empty(), "{:?}", ranges(&second));
    }
}
