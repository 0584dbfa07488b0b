//! The Kademlia record store: provider records only, kept compact.
//!
//! libp2p's `MemoryStore` keeps, for every key, room for k (20) full
//! `ProviderRecord`s inline (key, peer id, expiry and addresses each): about
//! 3 KiB per key however few providers it has, which made a node storing
//! ten thousand keys for others spend 30 MiB on them. Here a key costs its
//! 32-byte hash and a short list of 8-byte entries (provider, expiry), and a
//! provider's addresses are kept once per provider rather than once per
//! record: every record a provider announces carries the same addresses
//! (the latest win). About 100 bytes per stored key with one or two
//! providers, 8 more per further provider, and a few hundred per provider
//! (`tests::a_stored_record_costs_tens_of_bytes` spells the sizes out).
//!
//! Otherwise it behaves as `MemoryStore` does for provider records: at most
//! k providers per key (a key already full keeps its providers, which blunts
//! floods of fake records), at most `max_keys` keys in all; value records
//! (`PUT_VALUE`) are refused, since peerpull only uses provider records.
//! On top: expired records held for other nodes are swept periodically
//! (libp2p only drops an expired record when that key is queried), each
//! other peer may hold at most `max_per_peer` records here, with at most
//! [`MAX_ADDRESSES`] addresses, so one peer cannot crowd out the others, and
//! [`Store::remove_peer`] drops every record of a provider at once. Record
//! keys are SHA-256 hashes (`keys`); a record with a key of another length
//! is refused. Expiry is kept to the second.

use std::{
    borrow::Cow,
    collections::{hash_map::Entry as MapEntry, HashMap, HashSet},
    time::{Duration, Instant},
};

use libp2p::{
    kad::{
        store::{self, RecordStore},
        ProviderRecord, Record, RecordKey,
    },
    Multiaddr, PeerId,
};
use smallvec::SmallVec;

/// The most addresses kept with a provider.
pub(crate) const MAX_ADDRESSES: usize = 8;

/// A record key: the 32 bytes of a SHA-256 hash.
type KeyBytes = [u8; 32];

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
    keys: HashMap<KeyBytes, SmallVec<[Entry; 2]>>,
    /// Our own keys (the local node's records never expire).
    own: HashSet<KeyBytes>,
    providers: Providers,
    local: PeerId,
    local_slot: u32,
    /// Expiry times are seconds after this.
    base: Instant,
    /// No record expires before this (a lower bound, in `base` seconds), so
    /// a sweep before it has nothing to do and is skipped.
    next_expiry: u32,
    max_keys: usize,
    max_per_peer: usize,
    max_providers_per_key: usize,
}

/// One provider of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The provider's slot in [`Providers`].
    slot: u32,
    /// Seconds after `Store::base`; `NEVER` for our own records.
    expires: u32,
}

const NEVER: u32 = u32::MAX;

/// Every provider with a record here: its id, addresses and record count,
/// in slots the entries refer to.
#[derive(Debug, Default)]
struct Providers {
    slots: Vec<Option<Provider>>,
    free: Vec<u32>,
    by_id: HashMap<PeerId, u32>,
}

#[derive(Debug)]
struct Provider {
    id: PeerId,
    addresses: Vec<Multiaddr>,
    records: usize,
}

impl Providers {
    /// The slot of `id`, made if new.
    fn slot(&mut self, id: PeerId) -> u32 {
        if let Some(slot) = self.by_id.get(&id) {
            return *slot;
        }
        let provider = Provider { id, addresses: Vec::new(), records: 0 };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(provider);
                slot
            }
            None => {
                self.slots.push(Some(provider));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    fn get(&self, slot: u32) -> Option<&Provider> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Provider> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Counts a record gone; frees the slot when it was the provider's last (never `keep`'s).
    fn release(&mut self, slot: u32, keep: u32) {
        let Some(p) = self.get_mut(slot) else { return };
        p.records = p.records.saturating_sub(1);
        if p.records == 0 && slot != keep {
            let id = p.id;
            self.slots[slot as usize] = None;
            self.by_id.remove(&id);
            self.free.push(slot);
        }
    }
}

impl Store {
    pub(crate) fn new(local: PeerId, max_keys: usize, max_per_peer: usize, replication_factor: usize) -> Self {
        let mut providers = Providers::default();
        let local_slot = providers.slot(local);
        Self {
            keys: HashMap::new(),
            own: HashSet::new(),
            providers,
            local,
            local_slot,
            base: Instant::now(),
            next_expiry: NEVER,
            max_keys,
            max_per_peer,
            max_providers_per_key: replication_factor.max(1),
        }
    }

    /// How many records `peer` has here.
    #[cfg(test)]
    pub(crate) fn records_of(&self, peer: &PeerId) -> usize {
        self.providers.by_id.get(peer).and_then(|s| self.providers.get(*s)).map_or(0, |p| p.records)
    }

    /// Drops expired provider records. Returns how many were dropped.
    ///
    /// It walks every record only when one may have expired: records are
    /// renewed long before they expire, so most sweeps find nothing due.
    pub(crate) fn sweep(&mut self, now: Instant) -> usize {
        let now = self.secs(now);
        if now < self.next_expiry {
            return 0;
        }
        let mut next = NEVER;
        let dropped = self.retain(|e| {
            let kept = e.expires > now;
            if kept {
                next = next.min(e.expires);
            }
            kept
        });
        self.next_expiry = next;
        dropped
    }

    /// Drops every record of `peer` (it is gone). Returns how many were dropped.
    pub(crate) fn remove_peer(&mut self, peer: &PeerId) -> usize {
        match self.providers.by_id.get(peer) {
            Some(slot) if *slot != self.local_slot => {
                let slot = *slot;
                self.retain(|e| e.slot != slot)
            }
            _ => 0,
        }
    }

    /// Whether `peer` (not us) has records here.
    pub(crate) fn holds_records_of(&self, peer: &PeerId) -> bool {
        self.providers.by_id.get(peer).is_some_and(|s| *s != self.local_slot)
    }

    /// Keeps the entries `keep` says yes to; how many went.
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) -> usize {
        let mut dropped = 0;
        let providers = &mut self.providers;
        let local = self.local_slot;
        self.keys.retain(|_, entries| {
            entries.retain(|e| {
                let kept = keep(e);
                if !kept {
                    providers.release(e.slot, local);
                    dropped += 1;
                }
                kept
            });
            !entries.is_empty()
        });
        dropped
    }

    /// The records held for other nodes.
    pub(crate) fn held(&self) -> Held {
        let others = self.providers.slots.iter().flatten().filter(|p| p.id != self.local);
        let (mut records, mut providers, mut max_per_peer) = (0, 0, 0);
        for p in others {
            records += p.records;
            providers += 1;
            max_per_peer = max_per_peer.max(p.records);
        }
        Held { records, providers, max_per_peer }
    }

    /// How many keys have at least one provider record.
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Keeps a provider's latest addresses (our own are filled in by Kademlia on demand).
    fn set_addresses(&mut self, slot: u32, mut addresses: Vec<Multiaddr>) {
        if slot == self.local_slot || addresses.is_empty() {
            return;
        }
        addresses.truncate(MAX_ADDRESSES);
        if let Some(p) = self.providers.get_mut(slot) {
            p.addresses = addresses;
        }
    }

    /// Seconds after `base`, rounded up, for an expiry.
    fn secs(&self, at: Instant) -> u32 {
        let after = at.saturating_duration_since(self.base);
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(NEVER - 1).min(NEVER - 1)
    }

    fn record(&self, key: &KeyBytes, e: &Entry) -> Option<ProviderRecord> {
        let p = self.providers.get(e.slot)?;
        let expires = (e.expires != NEVER).then(|| self.base + Duration::from_secs(u64::from(e.expires)));
        Some(ProviderRecord { key: RecordKey::new(key), provider: p.id, expires, addresses: p.addresses.clone() })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("keys", &self.keys.len()).field("own", &self.own.len()).finish()
    }
}

impl RecordStore for Store {
    type RecordsIter<'a> = std::iter::Empty<Cow<'a, Record>>;
    type ProvidedIter<'a> = Box<dyn Iterator<Item = Cow<'a, ProviderRecord>> + 'a>;

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
        let key: KeyBytes = record.key.as_ref().try_into().map_err(|_| store::Error::ValueTooLarge)?;
        let own = record.provider == self.local;
        let expires = match record.expires {
            _ if own => NEVER,
            Some(at) => self.secs(at),
            None => NEVER - 1,
        };
        // Renewing a record only moves its expiry later, so the bound holds.
        self.next_expiry = self.next_expiry.min(expires);
        let known = self.providers.by_id.get(&record.provider).copied();
        let entries = self.keys.get(&key);
        if let (Some(slot), Some(entries)) = (known, entries) {
            if entries.iter().any(|e| e.slot == slot) {
                if let Some(e) = self.keys.get_mut(&key).and_then(|es| es.iter_mut().find(|e| e.slot == slot)) {
                    e.expires = expires;
                }
                self.set_addresses(slot, record.addresses);
                return Ok(());
            }
        }
        if entries.is_none() && self.keys.len() >= self.max_keys {
            return Err(store::Error::MaxProvidedKeys);
        }
        if !own && known.and_then(|s| self.providers.get(s)).is_some_and(|p| p.records >= self.max_per_peer) {
            return Err(store::Error::MaxRecords);
        }
        if entries.is_some_and(|es| es.len() >= self.max_providers_per_key) {
            // Full: the providers it has stay.
            return Ok(());
        }
        let slot = self.providers.slot(record.provider);
        if let Some(p) = self.providers.get_mut(slot) {
            p.records += 1;
        }
        self.set_addresses(slot, record.addresses);
        match self.keys.entry(key) {
            MapEntry::Occupied(mut e) => e.get_mut().push(Entry { slot, expires }),
            MapEntry::Vacant(e) => {
                e.insert(SmallVec::from_elem(Entry { slot, expires }, 1));
            }
        }
        if own {
            self.own.insert(key);
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let Ok(bytes) = <KeyBytes>::try_from(key.as_ref()) else { return Vec::new() };
        self.keys.get(&bytes).map_or_else(Vec::new, |es| es.iter().filter_map(|e| self.record(&bytes, e)).collect())
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        Box::new(self.own.iter().map(|k| Cow::Owned(ProviderRecord::new(RecordKey::new(k), self.local, Vec::new()))))
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        let Ok(key) = <KeyBytes>::try_from(k.as_ref()) else { return };
        let Some(slot) = self.providers.by_id.get(p).copied() else { return };
        let MapEntry::Occupied(mut entries) = self.keys.entry(key) else { return };
        let before = entries.get().len();
        entries.get_mut().retain(|e| e.slot != slot);
        if entries.get().len() < before {
            self.providers.release(slot, self.local_slot);
        }
        if entries.get().is_empty() {
            entries.remove();
        }
        if slot == self.local_slot {
            self.own.remove(&key);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
