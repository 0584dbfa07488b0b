//! Unit tests of the lookup state machine (no network).

use std::time::Duration;

use super::*;
use crate::Zone;

fn provider(port: u16) -> Provider {
    Provider { peer: PeerId::random(), mirror: format!("127.0.0.1:{port}").parse().unwrap(), zone: Zone::NONE }
}

fn lookups() -> Lookups {
    Lookups::new(Duration::from_secs(5), Duration::from_secs(5), Duration::from_secs(1), Metrics::new())
}

fn key() -> RecordKey {
    RecordKey::new(&b"k")
}

fn query_id(l: &mut Lookups) -> QueryId {
    // QueryIds cannot be made outside libp2p; borrow one from a throwaway behaviour.
    let local = PeerId::random();
    let mut kad = libp2p::kad::Behaviour::new(local, libp2p::kad::store::MemoryStore::new(local));
    let q = kad.get_providers(key());
    l.set_query(&key(), q);
    q
}

#[tokio::test(start_paused = true)]
async fn streams_up_to_limit_then_stops_the_query() {
    let mut l = lookups();
    let (tx, mut rx) = mpsc::channel(2);
    assert!(matches!(l.subscribe(key(), 2, tx, Instant::now()), Start::Query));
    let q = query_id(&mut l);
    let (a, b, c) = (provider(1), provider(2), provider(3));
    for p in [a, b, c] {
        assert!(l.found(&key(), p.peer));
        assert!(!l.found(&key(), p.peer), "duplicates are ignored");
    }
    l.deliver(&key(), a, false);
    assert_eq!(rx.try_recv().unwrap(), a);
    assert!(l.settle(Instant::now()).is_empty(), "still wants one more");
    l.deliver(&key(), b, false);
    assert_eq!(l.settle(Instant::now()), vec![q]);
    assert_eq!(rx.recv().await, Some(b));
    assert_eq!(rx.recv().await, None, "stream ends at the limit");
    assert_eq!(l.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn identical_lookups_share_one_query() {
    let mut l = lookups();
    let (tx1, mut rx1) = mpsc::channel(4);
    let (tx2, mut rx2) = mpsc::channel(4);
    assert!(matches!(l.subscribe(key(), 4, tx1, Instant::now()), Start::Query));
    let q = query_id(&mut l);
    let a = provider(1);
    l.found(&key(), a.peer);
    l.deliver(&key(), a, false);
    // The second lookup joins and gets what was found so far.
    assert!(matches!(l.subscribe(key(), 4, tx2, Instant::now()), Start::Joined));
    assert_eq!(rx2.try_recv().unwrap(), a);
    assert_eq!(rx1.try_recv().unwrap(), a);
    l.query_finished(&q);
    assert!(l.settle(Instant::now()).is_empty(), "the query already ended by itself");
    assert_eq!(rx1.recv().await, None);
    assert_eq!(rx2.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn penalised_providers_come_last_and_waiting_delays_the_end() {
    let mut l = lookups();
    let (tx, mut rx) = mpsc::channel(4);
    l.subscribe(key(), 4, tx, Instant::now());
    let q = query_id(&mut l);
    let (bad, good, slow) = (provider(1), provider(2), provider(3));
    l.found(&key(), bad.peer);
    l.deliver(&key(), bad, true);
    l.found(&key(), slow.peer);
    l.wait(&key(), slow.peer);
    l.found(&key(), good.peer);
    l.deliver(&key(), good, false);
    l.query_finished(&q);
    assert!(l.settle(Instant::now()).is_empty());
    assert_eq!(l.in_flight(), 1, "still waiting for the slow provider");
    assert_eq!(l.waiting_for(&slow.peer), vec![key()]);
    l.give_up(&slow.peer);
    l.settle(Instant::now());
    assert_eq!(rx.recv().await, Some(good));
    assert_eq!(rx.recv().await, Some(bad));
    assert_eq!(rx.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn answers_are_cached_briefly_and_lookups_time_out() {
    let mut l = lookups();
    let (tx, _rx) = mpsc::channel(4);
    l.subscribe(key(), 4, tx, Instant::now());
    let q = query_id(&mut l);
    let a = provider(1);
    l.found(&key(), a.peer);
    l.deliver(&key(), a, false);
    l.query_finished(&q);
    l.settle(Instant::now());

    let (tx, _rx) = mpsc::channel(4);
    match l.subscribe(key(), 4, tx, Instant::now()) {
        Start::Cached(peers) => assert_eq!(peers, vec![a.peer]),
        other => panic!("expected a cache hit, got {other:?}"),
    }
    l.deliver(&key(), a, false);
    l.settle(Instant::now());

    tokio::time::advance(Duration::from_secs(6)).await;
    let (tx, mut rx) = mpsc::channel(4);
    assert!(matches!(l.subscribe(key(), 4, tx, Instant::now()), Start::Query), "cache expired");
    let q = query_id(&mut l);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(l.settle(Instant::now()), vec![q], "the lookup timed out");
    assert_eq!(rx.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_cancels_the_query() {
    let mut l = lookups();
    let (tx, rx) = mpsc::channel(4);
    l.subscribe(key(), 4, tx, Instant::now());
    let q = query_id(&mut l);
    drop(rx);
    assert_eq!(l.settle(Instant::now()), vec![q]);
}
