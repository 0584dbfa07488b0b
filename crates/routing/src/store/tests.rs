//! Unit tests of the compact provider store.

use super::*;

fn rec(key: &str, provider: PeerId, ttl: u64, now: Instant) -> ProviderRecord {
    ProviderRecord {
        key: RecordKey::new(&digest(key)),
        provider,
        expires: Some(now + Duration::from_secs(ttl)),
        addresses: vec![],
    }
}

/// A 32-byte record key named by a word.
fn digest(word: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(word.as_bytes()).to_vec()
}

fn key(word: &str) -> RecordKey {
    RecordKey::new(&digest(word))
}

#[test]
fn sweep_drops_only_expired_records() {
    let local = PeerId::random();
    let mut store = Store::new(local, 100, 100, 20);
    let now = Instant::now();
    let (fresh, stale) = (PeerId::random(), PeerId::random());
    store.add_provider(rec("k", fresh, 60, now)).unwrap();
    store.add_provider(rec("k", stale, 1, now)).unwrap();
    store.add_provider(ProviderRecord::new(key("mine"), local, vec![])).unwrap();
    assert_eq!(store.sweep(now + Duration::from_secs(2)), 1);
    assert_eq!(store.providers(&key("k")).len(), 1);
    assert_eq!(store.key_count(), 2);
    assert_eq!(store.sweep(now + Duration::from_secs(120)), 1);
    // Our own record never expires; only `stop_providing` removes it.
    assert_eq!(store.key_count(), 1);
    assert_eq!(store.provided().count(), 1);
    assert_eq!(store.held(), Held { records: 0, providers: 0, max_per_peer: 0 });
}

#[test]
fn a_renewed_record_outlives_its_first_expiry_and_the_rest_still_go() {
    let mut store = Store::new(PeerId::random(), 100, 100, 20);
    let now = Instant::now();
    let at = |secs| now + Duration::from_secs(secs);
    let (renewed, left) = (PeerId::random(), PeerId::random());
    store.add_provider(rec("a", renewed, 10, now)).unwrap();
    store.add_provider(rec("b", left, 100, now)).unwrap();
    assert_eq!(store.sweep(at(5)), 0);
    store.add_provider(rec("a", renewed, 200, at(5))).unwrap();
    assert_eq!(store.sweep(at(20)), 0);
    assert_eq!(store.providers(&key("a")).len(), 1);
    assert_eq!(store.sweep(at(150)), 1);
    assert!(store.providers(&key("b")).is_empty());
    // A record stored after a sweep that found nothing due is still swept.
    store.add_provider(rec("c", left, 10, at(150))).unwrap();
    assert_eq!(store.sweep(at(170)), 1);
    assert_eq!(store.sweep(at(250)), 1);
    assert_eq!(store.key_count(), 0);
}

#[test]
fn a_record_reads_back_as_it_was_stored() {
    let local = PeerId::random();
    let mut store = Store::new(local, 100, 100, 20);
    let now = Instant::now();
    let peer = PeerId::random();
    let addrs: Vec<Multiaddr> = vec!["/ip4/10.0.0.7/tcp/5000/http".parse().unwrap()];
    let mut r = rec("k", peer, 300, now);
    r.addresses = addrs.clone();
    store.add_provider(r).unwrap();
    let got = store.providers(&key("k"));
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].key.clone(), got[0].provider, got[0].addresses.clone()), (key("k"), peer, addrs));
    let expires = got[0].expires.unwrap();
    assert!(expires >= now + Duration::from_secs(300) && expires <= now + Duration::from_secs(302), "to the second");
    // A renewal moves the expiry; the provider is listed once.
    store.add_provider(rec("k", peer, 600, now)).unwrap();
    let got = store.providers(&key("k"));
    assert_eq!(got.len(), 1);
    assert!(got[0].expires.unwrap() >= now + Duration::from_secs(600));
    assert_eq!(got[0].addresses.len(), 1, "a record without addresses keeps the provider's");
    // Our own record comes back without addresses (Kademlia fills in ours) and never expires.
    store.add_provider(ProviderRecord::new(key("k"), local, vec![])).unwrap();
    let own = store.providers(&key("k")).into_iter().find(|r| r.provider == local).unwrap();
    assert!(own.expires.is_none() && own.addresses.is_empty());
    assert!(store.add_provider(ProviderRecord::new(RecordKey::new(&b"short"), peer, vec![])).is_err());
}

#[test]
fn value_records_are_refused() {
    let mut store = Store::new(PeerId::random(), 10, 10, 20);
    assert!(store.put(Record::new(RecordKey::new(&b"k"), vec![1])).is_err());
}

#[test]
fn a_full_key_keeps_its_providers_and_the_key_limit_holds() {
    let mut store = Store::new(PeerId::random(), 2, 100, 3);
    let now = Instant::now();
    let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
    for p in &peers {
        store.add_provider(rec("k", *p, 60, now)).unwrap();
    }
    let kept: Vec<PeerId> = store.providers(&key("k")).iter().map(|r| r.provider).collect();
    assert_eq!(kept, peers[..3], "the first three stay");
    store.add_provider(rec("j", peers[0], 60, now)).unwrap();
    assert!(matches!(store.add_provider(rec("i", peers[0], 60, now)), Err(store::Error::MaxProvidedKeys)));
}

#[test]
fn one_peer_cannot_crowd_out_the_others() {
    let local = PeerId::random();
    let mut store = Store::new(local, 1000, 100, 20);
    let (greedy, modest) = (PeerId::random(), PeerId::random());
    let with_addrs = |i: usize, p| {
        let addrs = (0..20).map(|n| format!("/ip4/10.0.0.{n}/tcp/1").parse().unwrap()).collect();
        ProviderRecord::new(key(&format!("k{i}")), p, addrs)
    };
    let accepted = (0..100_000).filter(|i| store.add_provider(with_addrs(*i, greedy)).is_ok()).count();
    assert_eq!(accepted, 100, "the greedy peer stops at its quota");
    assert_eq!(store.records_of(&greedy), 100);
    for i in 0..50 {
        store.add_provider(with_addrs(1_000_000 + i, modest)).unwrap();
    }
    assert_eq!(store.records_of(&modest), 50);
    assert_eq!(store.held(), Held { records: 150, providers: 2, max_per_peer: 100 });
    assert_eq!(store.providers(&key("k0")).len(), 1, "the greedy peer's first records stay");
    let kept = store.providers(&key("k1000000"));
    assert_eq!(kept[0].addresses.len(), MAX_ADDRESSES);
    // Withdrawn records give the quota back.
    store.remove_provider(&key("k0"), &greedy);
    assert_eq!(store.records_of(&greedy), 99);
    assert!(store.add_provider(with_addrs(100_001, greedy)).is_ok());
    // Our own records are not counted against any quota.
    for i in 0..200 {
        store.add_provider(ProviderRecord::new(key(&format!("own{i}")), local, vec![])).unwrap();
    }
    assert_eq!(store.provided().count(), 200);
}

#[test]
fn a_gone_provider_loses_every_record_at_once() {
    let local = PeerId::random();
    let mut store = Store::new(local, 1000, 1000, 20);
    let now = Instant::now();
    let (gone, stays) = (PeerId::random(), PeerId::random());
    for i in 0..10 {
        store.add_provider(rec(&format!("k{i}"), gone, 60, now)).unwrap();
        store.add_provider(rec(&format!("k{i}"), stays, 60, now)).unwrap();
    }
    store.add_provider(rec("only-gone", gone, 60, now)).unwrap();
    store.add_provider(ProviderRecord::new(key("mine"), local, vec![])).unwrap();
    assert_eq!(store.remove_peer(&gone), 11);
    assert_eq!(store.records_of(&gone), 0);
    assert_eq!(store.held(), Held { records: 10, providers: 1, max_per_peer: 10 });
    assert!(store.providers(&key("only-gone")).is_empty());
    assert_eq!(store.key_count(), 11, "ten shared keys and our own");
    assert_eq!(store.remove_peer(&local), 0, "our own records are not dropped this way");
    // Its slot is reused by the next newcomer.
    let newcomer = PeerId::random();
    store.add_provider(rec("k0", newcomer, 60, now)).unwrap();
    assert_eq!(store.providers.slots.len(), 3, "the local node, the one that stays, the newcomer in the freed slot");
}

/// What the module docs promise about memory, in type sizes: a stored key
/// is its 32-byte hash and an inline list of two 8-byte entries.
#[test]
fn a_stored_record_costs_tens_of_bytes() {
    assert_eq!(std::mem::size_of::<Entry>(), 8);
    let per_key = std::mem::size_of::<(KeyBytes, SmallVec<[Entry; 2]>)>();
    assert!(per_key <= 64, "{per_key} bytes per key before the hash table's own overhead");
    let libp2p_per_key = std::mem::size_of::<ProviderRecord>() * 20;
    assert!(libp2p_per_key > 2000, "libp2p's MemoryStore reserves {libp2p_per_key} bytes per key");
}
