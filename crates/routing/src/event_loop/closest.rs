//! Which node fetches a key from the upstream: the node closest to it.
//!
//! `Router::closest` must give every node the same answer, so that nodes
//! missing a blob at the same moment agree on one of them to fetch it. A
//! node's own routing table knows the region near a key only when the
//! cluster is small (a bucket holds 20 peers), so the answer comes from an
//! iterative Kademlia walk towards the key (`FIND_NODE`, the same walk every
//! node would do), merged with the local table, and cached for
//! [`CACHE_TTL`]. The walk is awaited at most [`WALK_WAIT`]; past that the
//! local table answers and the walk's result serves later calls.
//!
//! From the merged list, nearest first, the first peer closer than this
//! node that is live and a peerpull node is the answer (dialled first when
//! not connected); peers the caller excludes, or that cannot be reached,
//! are passed over alike on every node. `None` means this node is closest.
//! Asked for the peers beyond this node (`Ask::beyond`, for a node that
//! needs the next ones in the order, as preheating does), the same list
//! answers without the comparison with this node.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::kad::{KBucketKey, QueryId, RecordKey};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::DialError;
use libp2p::PeerId;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::peers::Status;
use super::EventLoop;
use crate::keys::record_key;
use crate::router::Ask;
use crate::Provider;

/// How long a walk's answer is reused for the same key.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// The longest a caller waits for a walk before the local table answers.
const WALK_WAIT: Duration = Duration::from_millis(1500);

/// A caller waiting: what it asked, the reply.
pub(super) type Wait = (Ask, oneshot::Sender<Option<Provider>>);

/// Walks, their answers, and callers waiting for either or for a peer.
#[derive(Debug, Default)]
pub(super) struct Closest {
    cache: HashMap<RecordKey, (Instant, Vec<PeerId>)>,
    walks: HashMap<RecordKey, Walk>,
    by_query: HashMap<QueryId, RecordKey>,
    /// Callers waiting for the chosen peer to connect and identify.
    pub(super) waiting: HashMap<PeerId, Vec<Wait>>,
}

#[derive(Debug)]
struct Walk {
    deadline: Instant,
    waiters: Vec<Wait>,
}

impl Closest {
    /// Whether a walk or a caller waits on a deadline.
    pub(super) fn is_waiting(&self) -> bool {
        !self.walks.is_empty() || !self.waiting.is_empty()
    }

    /// Forgets answers past their time.
    pub(super) fn gc(&mut self, now: Instant) {
        self.cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
    }
}

impl EventLoop {
    /// Answers `reply` with the node closest to `key`, passing over `except`: `None` for this one.
    pub(super) fn closest(&mut self, ask: Ask, reply: oneshot::Sender<Option<Provider>>) {
        let rkey = record_key(&ask.key);
        let now = Instant::now();
        if let Some((_, found)) = self.closest.cache.get(&rkey).filter(|(at, _)| now.duration_since(*at) < CACHE_TTL) {
            let found = found.clone();
            return self.choose(ask, &found, reply);
        }
        if self.routing_table_size() == 0 {
            return self.choose(ask, &[], reply);
        }
        if let Some(walk) = self.closest.walks.get_mut(&rkey) {
            walk.waiters.push((ask, reply));
            return;
        }
        let query = self.swarm.behaviour_mut().kad.get_closest_peers(rkey.to_vec());
        self.closest.by_query.insert(query, rkey.clone());
        self.closest.walks.insert(rkey, Walk { deadline: now + WALK_WAIT, waiters: vec![(ask, reply)] });
    }

    /// A walk towards a key ended with `peers` (its closest, as far as it got).
    /// Returns false when the query was not a closest walk.
    pub(super) fn on_walked(&mut self, query: &QueryId, peers: Vec<PeerId>) -> bool {
        let Some(rkey) = self.closest.by_query.remove(query) else { return false };
        self.closest.cache.insert(rkey.clone(), (Instant::now(), peers.clone()));
        if let Some(walk) = self.closest.walks.remove(&rkey) {
            for (ask, reply) in walk.waiters {
                self.choose(ask, &peers, reply);
            }
        }
        true
    }

    /// Answers the callers of walks past their wait from the local table.
    pub(super) fn expire_walks(&mut self, now: Instant) {
        let late: Vec<RecordKey> =
            self.closest.walks.iter().filter(|(_, w)| w.deadline <= now).map(|(k, _)| k.clone()).collect();
        for rkey in late {
            let Some(walk) = self.closest.walks.remove(&rkey) else { continue };
            tracing::debug!(
                waiters = walk.waiters.len(),
                "closest walk still running; answering from the routing table"
            );
            for (ask, reply) in walk.waiters {
                self.choose(ask, &[], reply);
            }
        }
    }

    /// The first usable peer closer to `key` than this node, among `found` and
    /// the local table, nearest first; `None` (this node) when there is none.
    fn choose(&mut self, ask: Ask, found: &[PeerId], reply: oneshot::Sender<Option<Provider>>) {
        let target = KBucketKey::new(record_key(&ask.key));
        let own = KBucketKey::from(self.local).distance(&target);
        let local: Vec<PeerId> =
            self.swarm.behaviour_mut().kad.get_closest_local_peers(&target).map(|p| *p.preimage()).collect();
        let mut candidates: Vec<(libp2p::kad::KBucketDistance, PeerId)> = found
            .iter()
            .chain(&local)
            .filter(|peer| **peer != self.local && !ask.except.contains(peer))
            .map(|peer| (KBucketKey::from(*peer).distance(&target), *peer))
            .filter(|(distance, _)| ask.beyond || *distance < own)
            .collect();
        candidates.sort();
        candidates.dedup();
        let now = Instant::now();
        for (_, peer) in candidates {
            match self.peers.status(peer, now) {
                Status::Ready(mirror) => {
                    let _ = reply.send(Some(Provider { peer, mirror, zone: self.peers.zone(&peer) }));
                    return;
                }
                // Unreachable, or not a peerpull node: every node passes over it alike.
                Status::Skip => continue,
                Status::Wait { dial } => {
                    if dial {
                        let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
                        if let Err(e) = self.swarm.dial(opts) {
                            if !matches!(e, DialError::DialPeerConditionFalse(_)) {
                                tracing::debug!(%peer, error = %e, "cannot dial the closest peer");
                                self.peers.on_dial_failed(peer, now + self.config.unreachable_backoff);
                                continue;
                            }
                        }
                    }
                    self.peers.await_peer(peer, now + self.config.dial_timeout);
                    self.closest.waiting.entry(peer).or_default().push((ask, reply));
                    return;
                }
            }
        }
        let _ = reply.send(None);
    }

    /// The peer a `closest` caller waited for is usable (`Some`) or not: then
    /// the next closest, as every node chooses.
    pub(super) fn closest_resolved(&mut self, peer: PeerId, mirror: Option<std::net::SocketAddr>) {
        for (ask, reply) in self.closest.waiting.remove(&peer).unwrap_or_default() {
            match mirror {
                Some(mirror) => {
                    let _ = reply.send(Some(Provider { peer, mirror, zone: self.peers.zone(&peer) }));
                }
                None if !reply.is_closed() => self.closest(ask, reply),
                None => {}
            }
        }
    }
}
