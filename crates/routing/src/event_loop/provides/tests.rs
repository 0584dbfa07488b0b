//! Unit tests of announcement throttling and scheduling (no network).

use libp2p::{kad::store::RecordStore as _, PeerId};
use peerpull_oci::{Digest, KeyKind};

use super::*;

/// A digest key named by a short word.
fn k(name: &str) -> Key {
    Key::Digest(Digest::sha256_of(name.as_bytes()))
}

fn kad() -> kad::Behaviour<Store> {
    let local = PeerId::random();
    kad::Behaviour::new(local, Store::new(local, 3, 3, 20))
}

fn finish_all(p: &mut Provides, ok: bool) -> usize {
    let queries: Vec<_> = p.active.keys().copied().collect();
    for q in &queries {
        p.on_result(q, ok, Instant::now());
    }
    queries.len()
}

#[tokio::test(start_paused = true)]
async fn throttles_and_replies_when_the_batch_is_done() {
    let mut kad = kad();
    let mut p = Provides::new(1, Duration::from_secs(100), Metrics::new());
    let (tx, mut rx) = oneshot::channel();
    p.advertise(vec![k("a"), k("b"), k("a")], tx);
    p.pump(&mut kad, Instant::now());
    assert_eq!(p.active.len(), 1, "only one query at a time");
    finish_all(&mut p, true);
    assert!(rx.try_recv().is_err(), "b is still pending");
    p.pump(&mut kad, Instant::now());
    finish_all(&mut p, true);
    assert!(rx.await.unwrap().is_ok());
    assert_eq!(p.advertised_count(), 2);
    assert_eq!(p.count(KeyKind::Digest), 2, "the gauge counts each key once");
    assert_eq!(p.count(KeyKind::Tag), 0);

    // Re-advertising known keys replies at once.
    let (tx, rx) = oneshot::channel();
    p.advertise(vec![k("a")], tx);
    assert!(rx.await.unwrap().is_ok());
}

/// Lets `wait` pass, then schedules and starts what is due; how many announcements run.
async fn after(p: &mut Provides, kad: &mut kad::Behaviour<Store>, wait: Duration) -> usize {
    tokio::time::advance(wait).await;
    p.schedule(Instant::now());
    p.pump(kad, Instant::now());
    p.active.len()
}

#[tokio::test(start_paused = true)]
async fn keys_are_reannounced_on_schedule_until_withdrawn() {
    let mut kad = kad();
    let mut p = Provides::new(8, Duration::from_secs(100), Metrics::new());
    let (tx, _rx) = oneshot::channel();
    p.advertise(vec![k("a"), k("b")], tx);
    p.pump(&mut kad, Instant::now());
    assert_eq!(finish_all(&mut p, true), 2);

    assert_eq!(after(&mut p, &mut kad, Duration::from_secs(99)).await, 0, "not due yet");

    p.withdraw(&[k("b")], &mut kad);
    assert_eq!(after(&mut p, &mut kad, Duration::from_secs(1)).await, 1, "a is due again, b was withdrawn");
    // A failed announcement (nobody has the record) is retried within seconds.
    assert_eq!(finish_all(&mut p, false), 1);
    let just_before = FAILED_RETRY - Duration::from_millis(1);
    assert_eq!(after(&mut p, &mut kad, just_before).await, 0, "not before FAILED_RETRY");
    assert_eq!(after(&mut p, &mut kad, Duration::from_millis(1)).await, 1);
    // Failing again, it waits twice as long.
    assert_eq!(finish_all(&mut p, false), 1);
    let just_before = FAILED_RETRY * 2 - Duration::from_millis(1);
    assert_eq!(after(&mut p, &mut kad, just_before).await, 0, "not before twice FAILED_RETRY");
    assert_eq!(after(&mut p, &mut kad, Duration::from_millis(1)).await, 1);
    finish_all(&mut p, true);

    p.reprovide_all();
    p.reprovide_all();
    p.pump(&mut kad, Instant::now());
    assert_eq!(p.active.len(), 1, "requeueing is idempotent");
}

#[tokio::test(start_paused = true)]
async fn withdrawing_a_queued_key_completes_its_batch() {
    let mut kad = kad();
    let mut p = Provides::new(1, Duration::from_secs(100), Metrics::new());
    let (tx, rx) = oneshot::channel();
    p.advertise(vec![k("x")], tx);
    p.withdraw(&[k("x")], &mut kad);
    assert!(rx.await.unwrap().is_ok());
    assert_eq!(p.advertised_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_refused_key_stays_advertised_and_is_announced_once_there_is_room() {
    let mut kad = kad();
    let mut p = Provides::new(8, Duration::from_secs(100), Metrics::new());
    let (tx, rx) = oneshot::channel();
    p.advertise((0..5).map(|i| k(&i.to_string())).collect(), tx);
    p.pump(&mut kad, Instant::now());
    assert_eq!(finish_all(&mut p, true), 3, "the store holds 3 keys");
    assert!(matches!(rx.await.unwrap(), Err(Error::Store { .. })), "the caller hears of the refusal");
    assert_eq!(p.advertised_count(), 5, "refused keys stay advertised");
    assert_eq!(p.count(KeyKind::Digest), 5);

    // Room frees up: the refused keys are announced on their retry schedule.
    p.withdraw(&[k("0"), k("1")], &mut kad);
    assert_eq!(p.count(KeyKind::Digest), 3);
    tokio::time::advance(Duration::from_secs(24)).await;
    p.schedule(Instant::now());
    p.pump(&mut kad, Instant::now());
    assert_eq!(p.active.len(), 0, "not due yet");
    tokio::time::advance(Duration::from_secs(1)).await;
    p.schedule(Instant::now());
    p.pump(&mut kad, Instant::now());
    assert_eq!(finish_all(&mut p, true), 2, "both refused keys announced");
    let provided: HashSet<RecordKey> = kad.store_mut().provided().map(|r| r.key.clone()).collect();
    assert!(provided.contains(&record_key(&k("3"))) && provided.contains(&record_key(&k("4"))));
}

#[test]
fn pages_walk_every_key_once_in_order() {
    let mut p = Provides::new(8, Duration::from_secs(100), Metrics::new());
    let mut keys: Vec<Key> = (0..25).map(|i| k(&i.to_string())).collect();
    keys.push(Key::Tag("docker.io/library/nginx:1".into()));
    let (tx, _rx) = oneshot::channel();
    p.advertise(keys.clone(), tx);

    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = p.page(&after, 10);
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = last.to_string();
        seen.extend(page);
    }
    let mut expected: Vec<String> = keys.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(seen.iter().map(ToString::to_string).collect::<Vec<_>>(), expected);
    assert!(p.page("", 0).is_empty());
}

#[test]
fn failed_announcements_back_off_up_to_a_quarter_of_the_interval() {
    let interval = Duration::from_secs(100);
    let waits: Vec<u64> = (1..=6).map(|n| retry_after(n, interval).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 25, 25, 25]);
    assert_eq!(retry_after(u32::MAX, interval), Duration::from_secs(25));
    assert_eq!(retry_after(1, Duration::from_secs(8)), Duration::from_secs(2));
}
