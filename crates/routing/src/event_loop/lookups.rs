//! In-flight provider lookups, their subscribers, and the short answer cache.
//!
//! One Kademlia `GET_PROVIDERS` query runs per key at a time: a lookup for a
//! key already in flight joins it (and first receives what was already
//! found), so a burst of identical pulls costs one query. A finished query's
//! providers are cached for `cache_ttl` (`negative_ttl` when empty); a lookup
//! served from the cache still re-checks each provider's liveness, so the
//! cache never returns a peer that has since died.
//!
//! Implementation notes: this module holds no swarm. The event loop reports
//! what Kademlia found (`found`), which providers it could resolve to a live
//! mirror (`resolved`) and what it is still waiting for (`wait`); `settle`
//! then tells it which queries are done and can be stopped. Penalised
//! providers are held back and streamed last, after the query completed.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use libp2p::{
    kad::{QueryId, RecordKey},
    PeerId,
};
use tokio::{sync::mpsc, time::Instant};

use crate::{
    metrics::{Metrics, Outcome},
    Provider,
};

/// How a new lookup is served.
#[derive(Debug)]
pub(crate) enum Start {
    /// It joined a query already in flight.
    Joined,
    /// The cache knows the providers; each must be resolved again.
    Cached(Vec<PeerId>),
    /// A new query must be started and registered with `set_query`.
    Query,
}

/// All lookups in flight, and the cache of recent answers.
#[derive(Debug)]
pub(crate) struct Lookups {
    inflight: HashMap<RecordKey, Inflight>,
    by_query: HashMap<QueryId, RecordKey>,
    cache: HashMap<RecordKey, Cached>,
    timeout: Duration,
    cache_ttl: Duration,
    negative_ttl: Duration,
    metrics: Metrics,
}

#[derive(Debug)]
struct Inflight {
    started: Instant,
    /// When Kademlia first reported a provider.
    first_found: Option<Instant>,
    /// Whether a provider was streamed yet.
    answered: bool,
    query: Option<QueryId>,
    query_done: bool,
    from_cache: bool,
    deadline: Instant,
    found: Vec<PeerId>,
    seen: HashSet<PeerId>,
    waiting: HashSet<PeerId>,
    emitted: Vec<Provider>,
    deferred: Vec<Provider>,
    subs: Vec<Sub>,
}

#[derive(Debug)]
struct Sub {
    tx: mpsc::Sender<Provider>,
    limit: usize,
    sent: usize,
}

#[derive(Debug)]
struct Cached {
    providers: Vec<PeerId>,
    complete: bool,
    expires: Instant,
}

impl Lookups {
    pub(crate) fn new(timeout: Duration, cache_ttl: Duration, negative_ttl: Duration, metrics: Metrics) -> Self {
        Self {
            metrics,
            inflight: HashMap::new(),
            by_query: HashMap::new(),
            cache: HashMap::new(),
            timeout,
            cache_ttl,
            negative_ttl,
        }
    }

    /// Registers a lookup of `key` wanting `limit` providers on `tx`.
    pub(crate) fn subscribe(
        &mut self,
        key: RecordKey,
        limit: usize,
        tx: mpsc::Sender<Provider>,
        now: Instant,
    ) -> Start {
        let mut sub = Sub { tx, limit, sent: 0 };
        if let Some(inflight) = self.inflight.get_mut(&key) {
            for p in &inflight.emitted {
                if !sub.offer(*p) {
                    break;
                }
            }
            if sub.wants_more() {
                inflight.subs.push(sub);
            }
            return Start::Joined;
        }
        let cached = self
            .cache
            .get(&key)
            .filter(|c| c.expires > now && (c.complete || c.providers.len() >= limit))
            .map(|c| c.providers.clone());
        let mut inflight = Inflight {
            started: now,
            first_found: None,
            answered: false,
            query: None,
            query_done: cached.is_some(),
            from_cache: cached.is_some(),
            deadline: now + self.timeout,
            found: Vec::new(),
            seen: HashSet::new(),
            waiting: HashSet::new(),
            emitted: Vec::new(),
            deferred: Vec::new(),
            subs: vec![sub],
        };
        let start = match cached {
            Some(providers) => {
                inflight.seen.extend(providers.iter().copied());
                inflight.found.clone_from(&providers);
                Start::Cached(providers)
            }
            None => Start::Query,
        };
        self.inflight.insert(key, inflight);
        start
    }

    pub(crate) fn set_query(&mut self, key: &RecordKey, query: QueryId) {
        if let Some(inflight) = self.inflight.get_mut(key) {
            inflight.query = Some(query);
            self.by_query.insert(query, key.clone());
        }
    }

    /// The key a query looks up, if it is one of ours and still wanted.
    pub(crate) fn key_of(&self, query: &QueryId) -> Option<RecordKey> {
        self.by_query.get(query).cloned()
    }

    /// Kademlia found `peer` for `key`. Returns true if it is new and must be resolved.
    pub(crate) fn found(&mut self, key: &RecordKey, peer: PeerId) -> bool {
        let Some(i) = self.inflight.get_mut(key) else { return false };
        if !i.seen.insert(peer) {
            return false;
        }
        i.first_found.get_or_insert_with(Instant::now);
        i.found.push(peer);
        true
    }

    /// The lookup of `key` waits for `peer` to become usable.
    pub(crate) fn wait(&mut self, key: &RecordKey, peer: PeerId) {
        if let Some(i) = self.inflight.get_mut(key) {
            i.waiting.insert(peer);
        }
    }

    /// `provider` is usable for `key`: stream it (or hold it back, if penalised).
    pub(crate) fn deliver(&mut self, key: &RecordKey, provider: Provider, penalised: bool) {
        if let Some(i) = self.inflight.get_mut(key) {
            i.waiting.remove(&provider.peer);
            if penalised {
                i.deferred.push(provider);
            } else {
                if !i.answered {
                    i.answered = true;
                    self.metrics.lookup_seconds.observe(i.started.elapsed().as_secs_f64());
                }
                i.emitted.push(provider);
                i.subs.retain_mut(|s| s.offer(provider) && s.wants_more());
            }
        }
    }

    /// The keys whose lookups wait for `peer`.
    pub(crate) fn waiting_for(&self, peer: &PeerId) -> Vec<RecordKey> {
        self.inflight.iter().filter(|(_, i)| i.waiting.contains(peer)).map(|(k, _)| k.clone()).collect()
    }

    /// `peer` could not be resolved: nobody waits for it any more.
    pub(crate) fn give_up(&mut self, peer: &PeerId) {
        for i in self.inflight.values_mut() {
            i.waiting.remove(peer);
        }
    }

    /// Kademlia reported the last step of `query`.
    pub(crate) fn query_finished(&mut self, query: &QueryId) {
        if let Some(key) = self.by_query.remove(query) {
            if let Some(i) = self.inflight.get_mut(&key) {
                i.query_done = true;
            }
        }
    }

    /// Ends every lookup that is done; returns the Kademlia queries to stop.
    pub(crate) fn settle(&mut self, now: Instant) -> Vec<QueryId> {
        let done: Vec<RecordKey> = self
            .inflight
            .iter_mut()
            .filter_map(|(k, i)| {
                i.subs.retain(Sub::wants_more);
                let finished = (i.query_done && i.waiting.is_empty()) || now >= i.deadline;
                (finished || i.subs.is_empty()).then(|| k.clone())
            })
            .collect();
        let mut stop = Vec::new();
        for key in done {
            let Some(mut i) = self.inflight.remove(&key) else { continue };
            let complete = i.query_done && i.waiting.is_empty();
            let outcome = if i.answered || !i.deferred.is_empty() {
                if !i.answered {
                    self.metrics.lookup_seconds.observe(now.duration_since(i.started).as_secs_f64());
                }
                Outcome::Found
            } else if complete {
                Outcome::None
            } else if now >= i.deadline {
                Outcome::Timeout
            } else {
                Outcome::Cancelled
            };
            self.metrics.lookup(outcome);
            tracing::debug!(
                took = ?now.duration_since(i.started),
                first_found = ?i.first_found.map(|t| t.duration_since(i.started)),
                ?outcome,
                found = i.found.len(),
                emitted = i.emitted.len(),
                complete,
                timed_out = now >= i.deadline,
                cached = i.from_cache,
                "lookup done"
            );
            for p in std::mem::take(&mut i.deferred) {
                i.subs.retain_mut(|s| s.offer(p) && s.wants_more());
            }
            if let Some(q) = i.query {
                if self.by_query.remove(&q).is_some() {
                    stop.push(q);
                }
            }
            if !i.from_cache && (complete || !i.found.is_empty()) {
                let ttl = if i.found.is_empty() { self.negative_ttl } else { self.cache_ttl };
                self.cache.insert(key, Cached { providers: i.found, complete, expires: now + ttl });
            }
        }
        stop
    }

    /// Forgets expired cache entries.
    pub(crate) fn gc(&mut self, now: Instant) {
        self.cache.retain(|_, c| c.expires > now);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.inflight.len()
    }
}

impl Sub {
    /// Sends `p` if this subscriber still wants providers; false once it cannot take more.
    fn offer(&mut self, p: Provider) -> bool {
        if self.sent < self.limit && self.tx.try_send(p).is_ok() {
            self.sent += 1;
        }
        !self.tx.is_closed()
    }

    fn wants_more(&self) -> bool {
        self.sent < self.limit && !self.tx.is_closed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
