//! The Kademlia record store: provider records only, with expiry sweeping.
//!
//! Wraps libp2p's `MemoryStore`. Two differences: value records (`PUT_VALUE`)
//! are refused, since peerpull only uses provider records; and expired
//! provider records held for other nodes are swept periodically. libp2p only
//! drops an expired record when that key is queried, so without the sweep a
//! withdrawn key's records would stay in memory, and count against the key
//! limit, forever.

use std::{borrow::Cow, collections::HashSet, time::Instant};

use libp2p::{
    kad::{
        store::{self, MemoryStore, MemoryStoreConfig, RecordStore},
        ProviderRecord, Record, RecordKey,
    },
    PeerId,
};

/// Provider records for us and for others.
pub(crate) struct Store {
    inner: MemoryStore,
    keys: HashSet<RecordKey>,
}

impl Store {
    pub(crate) fn new(local: PeerId, max_keys: usize, replication_factor: usize) -> Self {
        let config = MemoryStoreConfig {
            max_records: 0,
            max_value_bytes: 0,
            max_providers_per_key: replication_factor,
            max_provided_keys: max_keys,
        };
        Self { inner: MemoryStore::with_config(local, config), keys: HashSet::new() }
    }

    /// Drops expired provider records. Returns how many were dropped.
    pub(crate) fn sweep(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        let inner = &mut self.inner;
        self.keys.retain(|key| {
            for record in inner.providers(key) {
                if record.is_expired(now) {
                    inner.remove_provider(key, &record.provider);
                    dropped += 1;
                }
            }
            !inner.providers(key).is_empty()
        });
        dropped
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

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        let key = record.key.clone();
        self.inner.add_provider(record)?;
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
        self.inner.remove_provider(k, p);
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
        let mut store = Store::new(local, 100, 20);
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
        let mut store = Store::new(PeerId::random(), 10, 20);
        assert!(store.put(Record::new(RecordKey::new(&b"k"), vec![1])).is_err());
    }
}
