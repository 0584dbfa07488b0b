//! Announcing our keys: the advertised set and a throttled queue of first
//! announcements.
//!
//! `advertise` puts keys in a queue; at most `max_active` Kademlia
//! `ADD_PROVIDER` queries run at once, so advertising a node's whole content
//! store does not start thousands of queries in one go. The caller's reply is
//! sent when every key of its batch has been announced once (or failed to be).
//! Re-announcing is Kademlia's own provider publication job
//! (`reprovide_interval`), which covers every key still in the local store;
//! `withdraw` removes a key from the store, so it is no longer re-announced.

use std::collections::{HashMap, HashSet, VecDeque};

use libp2p::kad::{self, QueryId, RecordKey};
use tokio::sync::oneshot;

use crate::{keys::record_key, store::Store, Error};

type Reply = oneshot::Sender<Result<(), Error>>;

/// Our advertised keys and their pending first announcements.
#[derive(Debug)]
pub(crate) struct Provides {
    advertised: HashSet<RecordKey>,
    queue: VecDeque<Pending>,
    active: HashMap<QueryId, u64>,
    batches: HashMap<u64, Batch>,
    next_batch: u64,
    max_active: usize,
}

#[derive(Debug)]
struct Pending {
    key: RecordKey,
    name: String,
    batch: u64,
}

#[derive(Debug)]
struct Batch {
    remaining: usize,
    error: Option<Error>,
    reply: Reply,
}

impl Provides {
    pub(crate) fn new(max_active: usize) -> Self {
        Self {
            advertised: HashSet::new(),
            queue: VecDeque::new(),
            active: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            max_active: max_active.max(1),
        }
    }

    /// Queues the first announcement of every key not yet advertised.
    pub(crate) fn advertise(&mut self, keys: Vec<String>, reply: Reply) {
        let batch = self.next_batch;
        self.next_batch += 1;
        let mut remaining = 0;
        for name in keys {
            let key = record_key(&name);
            if self.advertised.insert(key.clone()) {
                self.queue.push_back(Pending { key, name, batch });
                remaining += 1;
            }
        }
        if remaining == 0 {
            let _ = reply.send(Ok(()));
        } else {
            self.batches.insert(batch, Batch { remaining, error: None, reply });
        }
    }

    /// Stops advertising `keys`.
    pub(crate) fn withdraw(&mut self, keys: &[String], kad: &mut kad::Behaviour<Store>) {
        for name in keys {
            let key = record_key(name);
            if !self.advertised.remove(&key) {
                continue;
            }
            kad.stop_providing(&key);
            let mut dropped = Vec::new();
            self.queue.retain(|p| {
                let keep = p.key != key;
                if !keep {
                    dropped.push(p.batch);
                }
                keep
            });
            for batch in dropped {
                self.done(batch, None);
            }
        }
    }

    /// Starts queued announcements while fewer than `max_active` run.
    pub(crate) fn pump(&mut self, kad: &mut kad::Behaviour<Store>) {
        while self.active.len() < self.max_active {
            let Some(p) = self.queue.pop_front() else { break };
            match kad.start_providing(p.key) {
                Ok(query) => {
                    self.active.insert(query, p.batch);
                }
                Err(e) => {
                    tracing::warn!(key = %p.name, error = %e, "provider store refused key");
                    self.advertised.remove(&record_key(&p.name));
                    let err = Error::Store { key: p.name, reason: e.to_string() };
                    self.done(p.batch, Some(err));
                }
            }
        }
    }

    /// A `StartProviding` query finished. Returns false if it was not ours.
    pub(crate) fn on_result(&mut self, query: &QueryId) -> bool {
        match self.active.remove(query) {
            Some(batch) => {
                self.done(batch, None);
                true
            }
            None => false,
        }
    }

    pub(crate) fn advertised_count(&self) -> usize {
        self.advertised.len()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use libp2p::PeerId;

    use super::*;

    fn kad() -> kad::Behaviour<Store> {
        let local = PeerId::random();
        kad::Behaviour::new(local, Store::new(local, 3, 20))
    }

    #[tokio::test]
    async fn throttles_and_replies_when_the_batch_is_done() {
        let mut kad = kad();
        let mut p = Provides::new(1);
        let (tx, mut rx) = oneshot::channel();
        p.advertise(vec!["a".into(), "b".into(), "a".into()], tx);
        p.pump(&mut kad);
        assert_eq!(p.active.len(), 1, "only one query at a time");
        let q = *p.active.keys().next().unwrap();
        assert!(p.on_result(&q));
        assert!(rx.try_recv().is_err(), "b is still pending");
        p.pump(&mut kad);
        let q = *p.active.keys().next().unwrap();
        p.on_result(&q);
        assert!(rx.await.unwrap().is_ok());
        assert_eq!(p.advertised_count(), 2);

        // Re-advertising known keys replies at once.
        let (tx, rx) = oneshot::channel();
        p.advertise(vec!["a".into()], tx);
        assert!(rx.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn withdrawing_a_queued_key_completes_its_batch() {
        let mut kad = kad();
        let mut p = Provides::new(1);
        let (tx, rx) = oneshot::channel();
        p.advertise(vec!["x".into()], tx);
        p.withdraw(&["x".into()], &mut kad);
        assert!(rx.await.unwrap().is_ok());
        assert_eq!(p.advertised_count(), 0);
    }

    #[tokio::test]
    async fn a_full_store_is_a_typed_error() {
        let mut kad = kad();
        let mut p = Provides::new(8);
        let (tx, rx) = oneshot::channel();
        p.advertise((0..5).map(|i| i.to_string()).collect(), tx);
        p.pump(&mut kad);
        let queries: Vec<_> = p.active.keys().copied().collect();
        for q in queries {
            p.on_result(&q);
        }
        assert!(matches!(rx.await.unwrap(), Err(Error::Store { .. })));
        assert_eq!(p.advertised_count(), 3);
    }
}
