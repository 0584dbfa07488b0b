//! Announcing our keys: the advertised set, a throttled announcement queue,
//! and the re-announcement schedule.
//!
//! At most `max_active` Kademlia `ADD_PROVIDER` queries run at once, so
//! advertising (or re-announcing) a node's whole content store never starts
//! thousands of queries in one go. `advertise` replies when every key of its
//! batch has been announced once (or failed to be).
//!
//! Re-announcing is ours rather than Kademlia's publication job, which starts
//! a query for every key in the same instant. Each key is due again
//! `interval` after its last announcement finished, so announcements stay
//! spread out the way the first ones were. A failed announcement (its walk
//! timed out, so Kademlia sent the record to nobody) is retried after
//! `FAILED_RETRY` (until then nobody can find the key), twice as long after
//! each further failure in a row, at most a quarter of `interval`: walks time
//! out when the nodes are overloaded, and retrying at a fixed pace would add
//! to the load that made them fail.
//! Since `interval` is constant, the due list stays sorted by appending.
//! `withdraw` removes a key from the local store and the schedule; other nodes
//! forget it when their copy of our record expires.
//!
//! This is the one record of what the node advertises: callers hand it
//! every key they want advertised, and ask it (the counts in the metrics)
//! rather than keeping copies. A key the local provider store refuses (it
//! is full) stays advertised and is tried again on the retry schedule, so it
//! is announced once room frees up.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::Duration,
};

use libp2p::kad::{self, QueryId, RecordKey};
use peerpull_oci::Key;
use tokio::{sync::oneshot, time::Instant};

use crate::{keys::record_key, metrics::Metrics, store::Store, Error};

type Reply = oneshot::Sender<Result<(), Error>>;

/// The shortest time between a key's announcements when nodes join (see `reprovide_where`).
const FOLLOW_GAP: Duration = Duration::from_secs(10);
/// The wait before a failed announcement is tried again (doubled per further failure in a row).
const FAILED_RETRY: Duration = Duration::from_secs(5);

/// Our advertised keys and their announcements.
#[derive(Debug)]
pub(crate) struct Provides {
    advertised: HashMap<RecordKey, Key>,
    queue: VecDeque<Pending>,
    queued: HashSet<RecordKey>,
    /// When each key's last announcement started.
    started: HashMap<RecordKey, Instant>,
    /// Keys to re-announce for nodes that joined, and when (see `reprovide_where`).
    follow: HashMap<RecordKey, Instant>,
    /// Keys whose last announcements failed, and how many in a row.
    failures: HashMap<RecordKey, u32>,
    active: HashMap<QueryId, Active>,
    due: VecDeque<(Instant, RecordKey)>,
    batches: HashMap<u64, Batch>,
    next_batch: u64,
    max_active: usize,
    interval: Duration,
    metrics: Metrics,
}

#[derive(Debug)]
struct Pending {
    key: RecordKey,
    batch: Option<u64>,
}

#[derive(Debug)]
struct Active {
    key: RecordKey,
    batch: Option<u64>,
}

#[derive(Debug)]
struct Batch {
    remaining: usize,
    error: Option<Error>,
    reply: Reply,
}

impl Provides {
    pub(crate) fn new(max_active: usize, interval: Duration, metrics: Metrics) -> Self {
        Self {
            advertised: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            started: HashMap::new(),
            follow: HashMap::new(),
            failures: HashMap::new(),
            active: HashMap::new(),
            due: VecDeque::new(),
            batches: HashMap::new(),
            next_batch: 0,
            max_active: max_active.max(1),
            interval,
            metrics,
        }
    }

    /// Queues the first announcement of every key not yet advertised.
    pub(crate) fn advertise(&mut self, keys: Vec<Key>, reply: Reply) {
        let batch = self.next_batch;
        self.next_batch += 1;
        let mut remaining = 0;
        for key in keys {
            let kind = key.kind();
            let rkey = record_key(&key);
            if self.advertised.insert(rkey.clone(), key).is_none() {
                self.metrics.advertised(kind).inc();
                self.queued.insert(rkey.clone());
                self.queue.push_back(Pending { key: rkey, batch: Some(batch) });
                remaining += 1;
            }
        }
        if remaining == 0 {
            let _ = reply.send(Ok(()));
        } else {
            self.batches.insert(batch, Batch { remaining, error: None, reply });
        }
    }

    /// Up to `limit` advertised keys in the order of their text form, after `after`.
    pub(crate) fn page(&self, after: &str, limit: usize) -> Vec<Key> {
        let mut keys: Vec<(String, &Key)> =
            self.advertised.values().map(|k| (k.to_string(), k)).filter(|(text, _)| text.as_str() > after).collect();
        if keys.len() > limit {
            keys.select_nth_unstable(limit);
            keys.truncate(limit);
        }
        keys.sort_unstable();
        keys.into_iter().map(|(_, key)| key.clone()).collect()
    }

    /// Stops advertising `keys`.
    pub(crate) fn withdraw(&mut self, keys: &[Key], kad: &mut kad::Behaviour<Store>) {
        for name in keys {
            let key = record_key(name);
            let Some(removed) = self.advertised.remove(&key) else { continue };
            self.started.remove(&key);
            self.follow.remove(&key);
            self.failures.remove(&key);
            self.metrics.advertised(removed.kind()).dec();
            kad.stop_providing(&key);
            if self.queued.remove(&key) {
                let mut dropped = Vec::new();
                self.queue.retain(|p| {
                    let keep = p.key != key;
                    if !keep {
                        dropped.extend(p.batch);
                    }
                    keep
                });
                for batch in dropped {
                    self.done(batch, None);
                }
            }
        }
    }

    /// Queues every advertised key whose re-announcement is due.
    pub(crate) fn schedule(&mut self, now: Instant) {
        if self.follow.values().any(|at| *at <= now) {
            let due: Vec<RecordKey> =
                self.follow.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
            for key in due {
                self.follow.remove(&key);
                self.requeue(key);
            }
        }
        while self.due.front().is_some_and(|(t, _)| *t <= now) {
            let Some((_, key)) = self.due.pop_front() else { break };
            self.requeue(key);
        }
    }

    /// Re-announces every key soon, e.g. after the node (re)joined the DHT.
    pub(crate) fn reprovide_all(&mut self) {
        let keys: Vec<RecordKey> = self.advertised.keys().cloned().collect();
        for key in keys {
            self.requeue(key);
        }
    }

    /// Re-announces every advertised key for which `closer` says the nodes
    /// closest to it changed: now, or `FOLLOW_GAP` after its last announcement
    /// started if that was more recent (while routing tables fill they change
    /// every second; this bounds the extra announcements). Returns how many
    /// keys were queued or scheduled.
    pub(crate) fn reprovide_where(&mut self, now: Instant, mut closer: impl FnMut(&RecordKey) -> bool) -> usize {
        let keys: Vec<RecordKey> = self
            .advertised
            .keys()
            .filter(|k| !self.queued.contains(*k) && !self.follow.contains_key(*k) && closer(k))
            .cloned()
            .collect();
        let n = keys.len();
        for key in keys {
            match self.started.get(&key).map(|t| *t + FOLLOW_GAP).filter(|at| *at > now) {
                Some(at) => {
                    self.follow.insert(key, at);
                }
                None => self.requeue(key),
            }
        }
        n
    }

    fn requeue(&mut self, key: RecordKey) {
        if self.advertised.contains_key(&key) && self.queued.insert(key.clone()) {
            self.queue.push_back(Pending { key, batch: None });
        }
    }

    /// Starts queued announcements while fewer than `max_active` run.
    pub(crate) fn pump(&mut self, kad: &mut kad::Behaviour<Store>, now: Instant) {
        while self.active.len() < self.max_active {
            let Some(p) = self.queue.pop_front() else { break };
            self.queued.remove(&p.key);
            match kad.start_providing(p.key.clone()) {
                Ok(query) => {
                    self.started.insert(p.key.clone(), now);
                    self.active.insert(query, Active { key: p.key, batch: p.batch });
                }
                Err(source) => {
                    let Some(key) = self.advertised.get(&p.key).cloned() else { continue };
                    tracing::warn!(%key, error = %source, retry_in = ?self.interval / 4, "provider store refused key");
                    self.due_after(p.key, self.interval / 4, now);
                    if let Some(batch) = p.batch {
                        self.done(batch, Some(Error::Store { key, source }));
                    }
                }
            }
        }
    }

    /// A `StartProviding` query finished. Returns false if it was not ours.
    pub(crate) fn on_result(&mut self, query: &QueryId, ok: bool, now: Instant) -> bool {
        let Some(active) = self.active.remove(query) else { return false };
        if self.advertised.contains_key(&active.key) {
            let next = if ok {
                self.failures.remove(&active.key);
                self.interval
            } else {
                let failures = self.failures.entry(active.key.clone()).or_insert(0);
                *failures = failures.saturating_add(1);
                retry_after(*failures, self.interval)
            };
            self.due_after(active.key, next, now);
        }
        if let Some(batch) = active.batch {
            self.done(batch, None);
        }
        true
    }

    pub(crate) fn advertised_count(&self) -> usize {
        self.advertised.len()
    }

    /// Schedules `key`'s next announcement `after` from `now`.
    fn due_after(&mut self, key: RecordKey, after: Duration, now: Instant) {
        // Keep `due` sorted: a shorter retry goes in order, not at the back.
        let at = now + after;
        let pos = self.due.partition_point(|(t, _)| *t <= at);
        self.due.insert(pos, (at, key));
    }

    /// How many keys of `kind` are advertised (as the metrics count them).
    #[cfg(test)]
    fn count(&self, kind: peerpull_oci::KeyKind) -> i64 {
        self.metrics.advertised(kind).get()
    }

    fn done(&mut self, batch: u64, error: Option<Error>) {
        let Some(b) = self.batches.get_mut(&batch) else { return };
        b.remaining = b.remaining.saturating_sub(1);
        if b.error.is_none() {
            b.error = error;
        }
        if b.remaining == 0 {
            if let Some(b) = self.batches.remove(&batch) {
                let _ = b.reply.send(b.error.map_or(Ok(()), Err));
            }
        }
    }
}

/// The wait before announcing a key again after its `failures`-th failure in a row.
fn retry_after(failures: u32, interval: Duration) -> Duration {
    let doubled = FAILED_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(interval / 4)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
