//! The Kademlia record store: provider records only, with expiry sweeping.
//!
//! Wraps libp2p's `MemoryStore`. The differences: value records (`PUT_VALUE`)
//! are refused, since peerpull only uses provider records; expired provider
//! records held for other nodes are swept periodically (libp2p only drops an
//! expired record when that key is queried, so without the sweep a withdrawn
//! key's records would stay in memory, and count against the key limit,
//! forever); and each other peer may hold at most `max_per_peer` records
//! here, with at most [`MAX_ADDRESSES`] addresses each, so one peer cannot
//! fill the store and crowd out everyone else's records.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    time::Instant,
};

use libp2p::{
    kad::{
        store::{self, MemoryStore, MemoryStoreConfig, RecordStore},
        ProviderRecord, Record, RecordKey,
    },
    PeerId,
};

/// The most addresses kept with a provider record.
pub(crate) const MAX_ADDRESSES: usize = 8;

/// What [`Store::held`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// Records of other nodes.
    pub(crate) records: usize,
    /// Other nodes with at least one record.
    pub(crate) providers: usize,
    /// The most records of any one other node.
    pub(crate) max_per_peer: usize,
}

/// Provider records for us and for others.
pub(crate) struct Store {
    inner: MemoryStore,
    keys: HashSet<RecordKey>,
    local: PeerId,
    /// How many records each other peer has here.
    per_peer: HashMap<PeerId, usize>,
    max_per_peer: usize,
}

impl Store {
    pub(crate) fn new(local: PeerId, max_keys: usize, max_per_peer: usize, replication_factor: usize) -> Self {
        let config = MemoryStoreConfig {
            max_records: 0,
            max_value_bytes: 0,
            max_providers_per_key: replication_factor,
            max_provided_keys: max_keys,
        };
        let inner = MemoryStore::with_config(local, config);
        Self { inner, keys: HashSet::new(), local, per_peer: HashMap::new(), max_per_peer }
    }

    /// How many records `peer` has here.
    #[cfg(test)]
    pub(crate) fn records_of(&self, peer: &PeerId) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    /// Counts the providers of `key` that came (`+1`) and went (`-1`) between two lists.
    fn recount(&mut self, before: &[PeerId], after: &[PeerId]) {
        for gone in before.iter().filter(|p| !after.contains(p) && **p != self.local) {
            if let Some(n) = self.per_peer.get_mut(gone) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_peer.remove(gone);
                }
            }
        }
        for came in after.iter().filter(|p| !before.contains(p) && **p != self.local) {
            *self.per_peer.entry(*came).or_default() += 1;
        }
    }

    fn provider_ids(&self, key: &RecordKey) -> Vec<PeerId> {
        self.inner.providers(key).into_iter().map(|r| r.provider).collect()
    }

    /// Drops expired provider records. Returns how many were dropped.
    pub(crate) fn sweep(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        let inner = &mut self.inner;
        let per_peer = &mut self.per_peer;
        self.keys.retain(|key| {
            for record in inner.providers(key) {
                if record.is_expired(now) {
                    inner.remove_provider(key, &record.provider);
                    if let Some(n) = per_peer.get_mut(&record.provider) {
                        *n = n.saturating_sub(1);
                    }
                    dropped += 1;
                }
            }
            !inner.providers(key).is_empty()
        });
        per_peer.retain(|_, n| *n > 0);
        dropped
    }

    /// The records held for other nodes.
    pub(crate) fn held(&self) -> Held {
        Held {
            records: self.per_peer.values().sum(),
            providers: self.per_peer.len(),
            max_per_peer: self.per_peer.values().copied().max().unwrap_or(0),
        }
    }

    /// How many keys have at least one provider record.
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("keys", &self.keys.len()).finish()
    }
}

impl RecordStore for Store {
    type RecordsIter<'a> = std::iter::Empty<Cow<'a, Record>>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, _k: &RecordKey) -> Option<Cow<'_, Record>> {
        None
    }

    fn put(&mut self, _r: Record) -> store::Result<()> {
        Err(store::Error::MaxRecords)
    }

    fn remove(&mut self, _k: &RecordKey) {}

    fn records(&self) -> Self::RecordsIter<'_> {
        std::iter::empty()
    }

    fn add_provider(&mut self, mut record: ProviderRecord) -> store::Result<()> {
        let key = record.key.clone();
        let before = self.provider_ids(&key);
        let new = !before.contains(&record.provider);
        if new
            && record.provider != self.local
            && self.per_peer.get(&record.provider).copied().unwrap_or(0) >= self.max_per_peer
        {
            return Err(store::Error::MaxRecords);
        }
        record.addresses.truncate(MAX_ADDRESSES);
        self.inner.add_provider(record)?;
        let after = self.provider_ids(&key);
        self.recount(&before, &after);
        self.keys.insert(key);
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        let before = self.provider_ids(k);
        self.inner.remove_provider(k, p);
        let after = self.provider_ids(k);
        self.recount(&before, &after);
        if self.inner.providers(k).is_empty() {
            self.keys.remove(k);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sweep_drops_only_expired_records() {
        let local = PeerId::random();
        let mut store = Store::new(local, 100, 100, 20);
        let now = Instant::now();
        let key = RecordKey::new(&b"k");
        let fresh = PeerId::random();
        let stale = PeerId::random();
        let rec = |p, ttl| ProviderRecord {
            key: key.clone(),
            provider: p,
            expires: Some(now + Duration::from_secs(ttl)),
            addresses: vec![],
        };
        store.add_provider(rec(fresh, 60)).unwrap();
        store.add_provider(rec(stale, 1)).unwrap();
        store.add_provider(ProviderRecord::new(RecordKey::new(&b"mine"), local, vec![])).unwrap();
        assert_eq!(store.sweep(now + Duration::from_secs(2)), 1);
        assert_eq!(store.providers(&key).len(), 1);
        assert_eq!(store.key_count(), 2);
        assert_eq!(store.sweep(now + Duration::from_secs(120)), 1);
        // Our own record never expires; only `stop_providing` removes it.
        assert_eq!(store.key_count(), 1);
        assert_eq!(store.provided().count(), 1);
    }

    #[test]
    fn value_records_are_refused() {
        let mut store = Store::new(PeerId::random(), 10, 10, 20);
        assert!(store.put(Record::new(RecordKey::new(&b"k"), vec![1])).is_err());
    }

    #[test]
    fn one_peer_cannot_crowd_out_the_others() {
        let local = PeerId::random();
        let mut store = Store::new(local, 1000, 100, 20);
        let (greedy, modest) = (PeerId::random(), PeerId::random());
        let rec = |i: usize, p| {
            let addrs = (0..20).map(|n| format!("/ip4/10.0.0.{n}/tcp/1").parse().unwrap()).collect();
            ProviderRecord::new(RecordKey::new(&format!("k{i}")), p, addrs)
        };
        let accepted = (0..100_000).filter(|i| store.add_provider(rec(*i, greedy)).is_ok()).count();
        assert_eq!(accepted, 100, "the greedy peer stops at its quota");
        assert_eq!(store.records_of(&greedy), 100);
        for i in 0..50 {
            store.add_provider(rec(1_000_000 + i, modest)).unwrap();
        }
        assert_eq!(store.records_of(&modest), 50);
        assert_eq!(store.held(), Held { records: 150, providers: 2, max_per_peer: 100 });
        assert_eq!(store.providers(&RecordKey::new(&"k0")).len(), 1, "the greedy peer's first records stay");
        let kept = store.providers(&RecordKey::new(&"k1000000"));
        assert_eq!(kept[0].addresses.len(), MAX_ADDRESSES);
        // Withdrawn records give the quota back.
        store.remove_provider(&RecordKey::new(&"k0"), &greedy);
        assert_eq!(store.records_of(&greedy), 99);
        assert!(store.add_provider(rec(100_001, greedy)).is_ok());
        // Our own records are not counted against any quota.
        for i in 0..200 {
            store.add_provider(ProviderRecord::new(RecordKey::new(&format!("own{i}")), local, vec![])).unwrap();
        }
    }
}
