//! Unit tests of announcement rounds, regions and the sweep (no network:
//! walks are answered by hand, batches go to a behaviour no swarm polls).

use libp2p::{
    request_response::{self, ProtocolSupport},
    PeerId,
};
use peerpull_oci::{Digest, KeyKind};

use super::*;

/// A digest key named by a short word.
fn k(name: &str) -> Key {
    Key::Digest(Digest::sha256_of(name.as_bytes()))
}

fn position(key: &Key) -> Position {
    region::position_of_key(&record_key(key))
}

/// Keys, their regions, and what went out, around one `Provides`.
struct Bench {
    p: Provides,
    kad: kad::Behaviour<Store>,
    batches: request_response::Behaviour<batch::Codec>,
    /// Every batch sent: to whom, and what.
    sent: Vec<(PeerId, batch::Request)>,
    ids: Vec<OutboundRequestId>,
}

impl Bench {
    fn new(k: usize, max_active: usize, store_keys: usize) -> Self {
        let local = PeerId::random();
        Self {
            p: Provides::new(local, k, max_active, Duration::from_secs(100), Metrics::new()),
            kad: kad::Behaviour::new(local, Store::new(local, store_keys, store_keys, 20)),
            batches: request_response::Behaviour::new(
                [(batch::PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
            sent: Vec::new(),
            ids: Vec::new(),
        }
    }

    fn advertise(&mut self, keys: Vec<Key>) -> oneshot::Receiver<Result<(), Error>> {
        let (tx, rx) = oneshot::channel();
        self.p.advertise(keys, tx, &mut self.kad);
        rx
    }

    /// Schedules and starts what is due; how many walks run.
    fn pump(&mut self) -> usize {
        self.p.schedule(Instant::now());
        self.p.pump(&mut self.kad, Instant::now());
        self.p.walking.len()
    }

    /// Answers every running walk with `found`; the batches sent.
    fn walked(&mut self, found: &[PeerId]) -> usize {
        let before = self.sent.len();
        let queries: Vec<QueryId> = self.p.walking.keys().copied().collect();
        for q in queries {
            let (batches, sent, ids) = (&mut self.batches, &mut self.sent, &mut self.ids);
            let send = |peer: &PeerId, r: batch::Request| {
                let id = batches.send_request(peer, r.clone());
                sent.push((*peer, r));
                ids.push(id);
                id
            };
            assert!(self.p.on_walked(&q, found, false, &mut self.kad, send, &[]));
        }
        self.sent.len() - before
    }

    /// Answers every batch sent so far and not yet answered.
    fn answer_all(&mut self, ok: bool) {
        for id in &self.ids {
            self.p.on_batch_answered(id, ok.then_some(1));
        }
    }

    /// Which of `keys` the batches since `from` carried.
    fn carried(&self, from: usize) -> HashSet<RecordKey> {
        self.sent[from..].iter().flat_map(|(_, r)| r.keys.iter().cloned()).collect()
    }

    fn count(&self, kind: KeyKind) -> i64 {
        self.p.metrics.advertised(kind).get()
    }
}

/// Peers whose positions share exactly `bits` leading bits with `target`, at least one of them no more.
fn peers_near(target: &Position, bits: u32, n: usize) -> Vec<PeerId> {
    let mut out = Vec::new();
    while out.len() < n {
        let peer = PeerId::random();
        let shared = region::common_prefix(target, &region::position_of_peer(peer));
        if shared == bits || (shared > bits && !out.is_empty()) {
            out.push(peer);
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn one_round_announces_every_key_and_replies_when_answered() {
    let mut b = Bench::new(20, 1, 100);
    let rx = b.advertise(vec![k("a"), k("b"), k("a")]);
    assert_eq!(b.pump(), 1, "both keys lie in the one region a small cluster has");
    let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    assert_eq!(b.walked(&peers), 3, "one batch per node");
    for (_, r) in &b.sent {
        assert_eq!(r.keys.len(), 2, "each batch carries both keys");
    }
    let mut rx = rx;
    assert!(rx.try_recv().is_err(), "not before the batches are answered");
    b.answer_all(true);
    assert!(rx.await.unwrap().is_ok());
    assert_eq!(b.p.advertised_count(), 2);
    assert_eq!(b.count(KeyKind::Digest), 2, "the gauge counts each key once");
    assert_eq!(b.count(KeyKind::Tag), 0);
    assert_eq!(b.p.metrics.counters().announcements, 2);

    // Re-advertising known keys replies at once.
    assert!(b.advertise(vec![k("a")]).await.unwrap().is_ok());
    // Our own records are in the local store, for lookups that reach us.
    let provided: HashSet<RecordKey> = b.kad.store_mut().provided().map(|r| r.key.clone()).collect();
    assert!(provided.contains(&record_key(&k("a"))) && provided.contains(&record_key(&k("b"))));
}

#[tokio::test(start_paused = true)]
async fn each_key_goes_to_its_k_closest_nodes_only() {
    let mut b = Bench::new(2, 8, 100);
    let keys: Vec<Key> = (0..10).map(|i| k(&i.to_string())).collect();
    let _rx = b.advertise(keys.clone());
    b.pump();
    let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
    b.walked(&peers);
    for key in &keys {
        let record = record_key(key);
        let pos = position(key);
        let mut by_distance = peers.clone();
        by_distance.sort_by_key(|p| region::distance(&pos, &region::position_of_peer(*p)));
        let got: HashSet<PeerId> = b.sent.iter().filter(|(_, r)| r.keys.contains(&record)).map(|(p, _)| *p).collect();
        assert_eq!(got, by_distance[..2].iter().copied().collect::<HashSet<_>>(), "{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_region_wider_than_the_walk_reaches_is_split() {
    let mut b = Bench::new(3, 1, 1000);
    let keys: Vec<Key> = (0..40).map(|i| k(&i.to_string())).collect();
    let mut rx = b.advertise(keys.clone());
    assert_eq!(b.pump(), 1);
    let target = b.p.walking.values().next().unwrap().target;
    let near = peers_near(&target, 2, 3);
    b.walked(&near);
    assert_eq!(b.p.depth(), 2, "the walk's nodes all lie in the target's quarter");
    let part = Region::of(&target, 2);
    let carried = b.carried(0);
    for key in &keys {
        let inside = Region::of(&position(key), 2) == part;
        assert_eq!(carried.contains(&record_key(key)), inside, "{key}: only the target's quarter goes out now");
    }
    let quarters: HashSet<Region> = keys.iter().map(|key| Region::of(&position(key), 2)).collect();
    assert_eq!(quarters.len(), 4, "the test keys fill every quarter");
    assert_eq!(b.p.queue.len(), 3, "the other quarters are walked on their own");
    b.answer_all(true);
    assert!(rx.try_recv().is_err(), "the other quarters' keys are not announced yet");

    // Each remaining quarter: one walk, its own keys.
    for _ in 0..3 {
        let from = b.sent.len();
        assert_eq!(b.pump(), 1);
        let target = b.p.walking.values().next().unwrap().target;
        b.walked(&peers_near(&target, 2, 3));
        let quarter = Region::of(&target, 2);
        assert!(b.carried(from).iter().all(|r| Region::of(&region::position_of_key(r), 2) == quarter));
        b.answer_all(true);
    }
    assert!(rx.await.unwrap().is_ok());
    assert_eq!(b.carried(0).len(), keys.len(), "every key went out once");
}

#[tokio::test(start_paused = true)]
async fn the_sweep_reannounces_regions_spread_over_the_interval_until_withdrawn() {
    let mut b = Bench::new(3, 8, 1000);
    let keys: Vec<Key> = (0..40).map(|i| k(&i.to_string())).collect();
    let _rx = b.advertise(keys.clone());
    b.pump();
    let target = b.p.walking.values().next().unwrap().target;
    b.walked(&peers_near(&target, 2, 3));
    while b.pump() > 0 {
        let target = b.p.walking.values().next().unwrap().target;
        b.walked(&peers_near(&target, 2, 3));
    }
    b.answer_all(true);
    assert_eq!(b.p.depth(), 2);

    // The first sweep starts one interval after the start; a quarter every 25 s.
    tokio::time::advance(Duration::from_secs(99)).await;
    assert_eq!(b.pump(), 0, "not due yet");
    let mut walked = Vec::new();
    for step in 0..4 {
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.pump(), 1, "one quarter at step {step}");
        let round = b.p.walking.values().next().unwrap();
        walked.push(round.region.prefix);
        let target = round.target;
        b.walked(&peers_near(&target, 2, 3));
        b.answer_all(true);
        tokio::time::advance(Duration::from_secs(24)).await;
        assert_eq!(b.pump(), 0, "nothing between quarters");
    }
    assert_eq!(walked, [0, 1, 2, 3], "in keyspace order");

    // A withdrawn key is in no further batch.
    let gone = keys[0].clone();
    b.p.withdraw(std::slice::from_ref(&gone), &mut b.kad);
    let from = b.sent.len();
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(25)).await;
        while b.pump() > 0 {
            let target = b.p.walking.values().next().unwrap().target;
            b.walked(&peers_near(&target, 2, 3));
            b.answer_all(true);
        }
    }
    let carried = b.carried(from);
    assert_eq!(carried.len(), keys.len() - 1, "the next sweep carries every other key");
    assert!(!carried.contains(&record_key(&gone)));
    assert_eq!(b.count(KeyKind::Digest), 39);
}

#[tokio::test(start_paused = true)]
async fn failed_rounds_are_retried_with_back_off() {
    let mut b = Bench::new(20, 8, 100);
    let _rx = b.advertise(vec![k("a")]);
    b.pump();
    let peers = [PeerId::random()];
    b.walked(&peers);
    b.answer_all(false);
    let just_before = FAILED_RETRY - Duration::from_millis(1);
    tokio::time::advance(just_before).await;
    assert_eq!(b.pump(), 0, "not before FAILED_RETRY");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(b.pump(), 1);
    let from = b.ids.len();
    b.walked(&peers);
    for id in &b.ids[from..] {
        b.p.on_batch_answered(id, None);
    }
    tokio::time::advance(FAILED_RETRY * 2 - Duration::from_millis(1)).await;
    assert_eq!(b.pump(), 0, "not before twice FAILED_RETRY");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(b.pump(), 1);
    b.walked(&peers);
    b.answer_all(true);

    b.p.reprovide_all();
    b.p.reprovide_all();
    assert_eq!(b.pump(), 1, "requeueing is idempotent");
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_key_is_removed_from_the_nodes_told_of_it_at_once() {
    let mut b = Bench::new(2, 8, 100);
    let keys: Vec<Key> = (0..10).map(|i| k(&i.to_string())).collect();
    let _rx = b.advertise(keys.clone());
    b.pump();
    let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
    b.walked(&peers);
    b.answer_all(true);
    let told = |b: &Bench, from: usize, record: &RecordKey, removed: bool| -> HashSet<PeerId> {
        b.sent[from..]
            .iter()
            .filter(|(_, r)| if removed { r.removed.contains(record) } else { r.keys.contains(record) })
            .map(|(p, _)| *p)
            .collect()
    };
    let gone = record_key(&keys[0]);
    let holders = told(&b, 0, &gone, false);
    assert_eq!(holders.len(), 2);

    b.p.withdraw(&keys[..1], &mut b.kad);
    assert_eq!(b.pump(), 1, "the withdrawal goes out at once, not at the next sweep");
    let from = b.sent.len();
    b.walked(&peers);
    assert_eq!(told(&b, from, &gone, true), holders, "the nodes that store it are told to remove it");
    assert!(told(&b, from, &gone, false).is_empty());
    b.answer_all(true);

    b.p.reprovide_all();
    b.pump();
    let from = b.sent.len();
    b.walked(&peers);
    assert!(told(&b, from, &gone, true).is_empty(), "told once");
}

#[tokio::test(start_paused = true)]
async fn withdrawing_a_queued_key_completes_its_call() {
    let mut b = Bench::new(20, 1, 100);
    let rx = b.advertise(vec![k("x")]);
    b.p.withdraw(&[k("x")], &mut b.kad);
    assert!(rx.await.unwrap().is_ok());
    assert_eq!(b.p.advertised_count(), 0);
    assert_eq!(b.pump(), 0, "nothing left to announce");
}

#[tokio::test(start_paused = true)]
async fn a_key_the_local_store_refuses_stays_advertised_and_is_stored_once_there_is_room() {
    let mut b = Bench::new(20, 8, 3);
    let keys: Vec<Key> = (0..5).map(|i| k(&i.to_string())).collect();
    let rx = b.advertise(keys.clone());
    b.pump();
    b.walked(&[PeerId::random()]);
    assert_eq!(b.carried(0).len(), 5, "others are told of every key");
    b.answer_all(true);
    assert!(matches!(rx.await.unwrap(), Err(Error::Store { .. })), "the caller hears of the refusal");
    assert_eq!(b.p.advertised_count(), 5, "refused keys stay advertised");
    assert_eq!(b.count(KeyKind::Digest), 5);

    b.p.withdraw(&keys[..2], &mut b.kad);
    assert_eq!(b.count(KeyKind::Digest), 3);
    b.p.reprovide_all();
    b.pump();
    b.walked(&[PeerId::random()]);
    let provided: HashSet<RecordKey> = b.kad.store_mut().provided().map(|r| r.key.clone()).collect();
    let expected: HashSet<RecordKey> = keys[2..].iter().map(record_key).collect();
    assert_eq!(provided, expected, "the refused keys' own records are stored at their next round");
}

#[tokio::test(start_paused = true)]
async fn joins_reannounce_a_region_at_most_once_per_gap() {
    let mut b = Bench::new(20, 8, 100);
    let _rx = b.advertise(vec![k("a"), k("b")]);
    b.pump();
    b.walked(&[PeerId::random()]);
    b.answer_all(true);
    assert_eq!(b.p.reprovide_where(Instant::now(), |_| true), 1, "one region holds both keys");
    assert_eq!(b.pump(), 0, "its last round started less than FOLLOW_GAP ago");
    tokio::time::advance(FOLLOW_GAP).await;
    assert_eq!(b.pump(), 1);
    b.walked(&[PeerId::random()]);
    b.answer_all(true);
    assert_eq!(b.p.reprovide_where(Instant::now(), |_| false), 0, "no change, no round");
}

#[test]
fn pages_walk_every_key_once_in_order() {
    let mut b = Bench::new(20, 8, 100);
    let mut keys: Vec<Key> = (0..25).map(|i| k(&i.to_string())).collect();
    keys.push(Key::Tag("docker.io/library/nginx:1".into()));
    let _rx = b.advertise(keys.clone());

    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = b.p.page(&after, 10);
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = last.to_string();
        seen.extend(page);
    }
    let mut expected: Vec<String> = keys.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(seen.iter().map(ToString::to_string).collect::<Vec<_>>(), expected);
    assert!(b.p.page("", 0).is_empty());
}

#[test]
fn failed_rounds_back_off_up_to_a_quarter_of_the_interval() {
    let interval = Duration::from_secs(100);
    let waits: Vec<u64> = (1..=6).map(|n| retry_after(n, interval).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 25, 25, 25]);
    assert_eq!(retry_after(u32::MAX, interval), Duration::from_secs(25));
    assert_eq!(retry_after(1, Duration::from_secs(8)), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_key_advertised_after_the_sweep_looked_is_reannounced_in_the_first_sweep() {
    let mut b = Bench::new(20, 8, 100);
    assert_eq!(b.pump(), 0, "nothing advertised yet");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.pump(), 0);
    let _rx = b.advertise(vec![k("late")]);
    assert_eq!(b.pump(), 1, "announced at once");
    b.walked(&[PeerId::random()]);
    b.answer_all(true);
    tokio::time::advance(Duration::from_secs(89)).await;
    assert_eq!(b.pump(), 0, "the first sweep starts one interval after the start");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.pump(), 1, "the first sweep visits it, not only the second");
}
