//! Unit tests of announcement throttling and scheduling (no network).

use libp2p::PeerId;

use super::*;

fn kad() -> kad::Behaviour<Store> {
    let local = PeerId::random();
    kad::Behaviour::new(local, Store::new(local, 3, 20))
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
    let mut p = Provides::new(1, Duration::from_secs(100));
    let (tx, mut rx) = oneshot::channel();
    p.advertise(vec!["a".into(), "b".into(), "a".into()], tx);
    p.pump(&mut kad);
    assert_eq!(p.active.len(), 1, "only one query at a time");
    finish_all(&mut p, true);
    assert!(rx.try_recv().is_err(), "b is still pending");
    p.pump(&mut kad);
    finish_all(&mut p, true);
    assert!(rx.await.unwrap().is_ok());
    assert_eq!(p.advertised_count(), 2);

    // Re-advertising known keys replies at once.
    let (tx, rx) = oneshot::channel();
    p.advertise(vec!["a".into()], tx);
    assert!(rx.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn keys_are_reannounced_on_schedule_until_withdrawn() {
    let mut kad = kad();
    let mut p = Provides::new(8, Duration::from_secs(100));
    let (tx, _rx) = oneshot::channel();
    p.advertise(vec!["a".into(), "b".into()], tx);
    p.pump(&mut kad);
    assert_eq!(finish_all(&mut p, true), 2);

    tokio::time::advance(Duration::from_secs(99)).await;
    p.schedule(Instant::now());
    p.pump(&mut kad);
    assert_eq!(p.active.len(), 0, "not due yet");

    tokio::time::advance(Duration::from_secs(1)).await;
    p.withdraw(&["b".into()], &mut kad);
    p.schedule(Instant::now());
    p.pump(&mut kad);
    assert_eq!(p.active.len(), 1, "a is due again, b was withdrawn");
    // A failed announcement is retried sooner.
    assert_eq!(finish_all(&mut p, false), 1);
    tokio::time::advance(Duration::from_secs(25)).await;
    p.schedule(Instant::now());
    p.pump(&mut kad);
    assert_eq!(p.active.len(), 1);
    finish_all(&mut p, true);

    p.reprovide_all();
    p.reprovide_all();
    p.pump(&mut kad);
    assert_eq!(p.active.len(), 1, "requeueing is idempotent");
}

#[tokio::test(start_paused = true)]
async fn withdrawing_a_queued_key_completes_its_batch() {
    let mut kad = kad();
    let mut p = Provides::new(1, Duration::from_secs(100));
    let (tx, rx) = oneshot::channel();
    p.advertise(vec!["x".into()], tx);
    p.withdraw(&["x".into()], &mut kad);
    assert!(rx.await.unwrap().is_ok());
    assert_eq!(p.advertised_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_store_is_a_typed_error() {
    let mut kad = kad();
    let mut p = Provides::new(8, Duration::from_secs(100));
    let (tx, rx) = oneshot::channel();
    p.advertise((0..5).map(|i| i.to_string()).collect(), tx);
    p.pump(&mut kad);
    finish_all(&mut p, true);
    assert!(matches!(rx.await.unwrap(), Err(Error::Store { .. })));
    assert_eq!(p.advertised_count(), 3);
}
