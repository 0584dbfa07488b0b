//! Announcing our keys: by keyspace region, in batches, swept over the
//! re-announcement interval.
//!
//! Keys are grouped by [`Region`] (a prefix of their keyspace position).
//! Announcing a region is one *round*: one Kademlia walk towards a key in
//! the middle of the region (`FIND_NODE`, k closest), then for every key of
//! the region its k closest nodes among the walk's answer and this node's
//! routing table, and one batch message (`crate::batch`) per node carrying
//! every key that node should store. A node holding thousands of keys thus
//! costs the cluster a walk and a few dozen messages per region, not a walk
//! and k messages per key.
//!
//! How deep regions are follows the cluster: a walk's k closest nodes all
//! lie in one region around its target, and `region::depth_for` tells how
//! deep that region is. When a round's region is wider than that, only the
//! part around the walk's target is announced from its answer, the rest is
//! split off into regions of the new depth, each walked on its own, and
//! later rounds use the new depth. Each sweep ends at the deepest depth its
//! walks called for, so a shrinking cluster comes back to fewer regions.
//!
//! When: a key advertised for the first time is announced at once (its
//! region's round), which is what makes new content findable within a
//! second or so; `advertise` replies when every key of its call has been
//! announced once (or its round failed). Re-announcing *sweeps* the keyspace:
//! the regions are visited in keyspace order, spread evenly over
//! `interval`, so a quiet node's traffic is flat rather than a burst per
//! interval; the first sweep starts one interval after the router. A failed
//! round (every batch failed, or the walk found no one while it timed out)
//! is retried after `FAILED_RETRY`, twice as long per further failure in a
//! row, at most a quarter of `interval`. `reprovide_where` re-announces
//! the regions of keys whose closest nodes changed (nodes joined), at most
//! once per `FOLLOW_GAP` per region.
//!
//! This is the one record of what the node advertises. Our own provider
//! record of each key sits in the local provider store (lookups that reach
//! this node find it); a key that store refuses (full) stays advertised, is
//! still announced to others, and its local record is tried again at each of
//! its rounds. `withdraw` removes a key from the local store and the
//! schedule and (unless no batch ever carried it) queues its region's
//! round at once, whose batches tell the
//! key's closest nodes to remove our record (until that round succeeds the
//! key is kept to be told; a failed round is retried as any other). A node
//! that misses the removal forgets the record when it expires.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::Duration,
};

use libp2p::{
    kad::{self, store::RecordStore as _, KBucketKey, ProviderRecord, QueryId, RecordKey},
    request_response::OutboundRequestId,
    Multiaddr, PeerId,
};
use peerpull_oci::Key;
use tokio::{sync::oneshot, time::Instant};

use crate::{
    batch,
    keys::record_key,
    metrics::Metrics,
    region::{self, Position, Region},
    store::Store,
    Error,
};

type Reply = oneshot::Sender<Result<(), Error>>;

/// The shortest time between a region's announcements when nodes join (see `reprovide_where`).
const FOLLOW_GAP: Duration = Duration::from_secs(10);
/// The wait before a failed round is tried again (doubled per further failure in a row).
const FAILED_RETRY: Duration = Duration::from_secs(5);

/// Our advertised keys and their announcements.
#[derive(Debug)]
pub(crate) struct Provides {
    local: PeerId,
    /// Every advertised key, by keyspace position.
    advertised: BTreeMap<Position, Advertised>,
    /// Keys whose first announcement a caller of `advertise` waits for.
    waiting: HashMap<Position, u64>,
    waiters: HashMap<u64, Waiter>,
    next_waiter: u64,
    /// Keys our own provider store refused; tried again at their rounds.
    refused: HashSet<Position>,
    /// Keys no longer advertised whose removal the nodes storing them have not been told yet.
    withdrawn: BTreeMap<Position, RecordKey>,
    queue: VecDeque<Region>,
    queued: HashSet<Region>,
    /// Rounds whose walk runs.
    walking: HashMap<QueryId, Round>,
    /// Rounds whose batches are out, and which round each batch belongs to.
    sending: HashMap<u64, Round>,
    batches: HashMap<OutboundRequestId, u64>,
    next_round: u64,
    /// The region depth announcements use now.
    depth: u8,
    /// The deepest depth a walk called for in the current sweep.
    deepest: Option<u8>,
    sweep: Sweep,
    /// When each region's last round started (for `FOLLOW_GAP`).
    started: HashMap<Region, Instant>,
    /// Regions to announce again for nodes that joined, and when.
    follow: HashMap<Region, Instant>,
    /// Regions whose last rounds failed, how many in a row, and when to retry.
    failures: HashMap<Region, (u32, Instant)>,
    max_active: usize,
    k: usize,
    interval: Duration,
    metrics: Metrics,
}

#[derive(Debug)]
struct Advertised {
    key: Key,
    record: RecordKey,
}

#[derive(Debug)]
struct Waiter {
    remaining: usize,
    error: Option<Error>,
    reply: Reply,
}

/// One region's announcement.
#[derive(Debug)]
struct Round {
    id: u64,
    region: Region,
    target: Position,
    /// The keys its batches carry (set once the walk is done).
    keys: Vec<Position>,
    /// The withdrawn keys whose removal its batches carry.
    removed: Vec<Position>,
    /// Batches without an answer yet, and batches stored.
    outstanding: usize,
    reached: usize,
}

/// Where the re-announcement sweep is.
#[derive(Debug)]
struct Sweep {
    /// When the current sweep started (it lasts `interval`).
    start: Instant,
    /// The next region (at the current depth) it visits.
    cursor: u64,
}

impl Provides {
    pub(crate) fn new(local: PeerId, k: usize, max_active: usize, interval: Duration, metrics: Metrics) -> Self {
        Self {
            local,
            advertised: BTreeMap::new(),
            waiting: HashMap::new(),
            waiters: HashMap::new(),
            next_waiter: 0,
            refused: HashSet::new(),
            withdrawn: BTreeMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            walking: HashMap::new(),
            sending: HashMap::new(),
            batches: HashMap::new(),
            next_round: 0,
            depth: 0,
            deepest: None,
            sweep: Sweep { start: Instant::now() + interval, cursor: 0 },
            started: HashMap::new(),
            follow: HashMap::new(),
            failures: HashMap::new(),
            max_active: max_active.max(1),
            k: k.max(1),
            interval,
            metrics,
        }
    }

    /// Starts advertising every key not yet advertised: our own record goes
    /// into `kad`'s store and the key's region is queued for announcement.
    pub(crate) fn advertise(&mut self, keys: Vec<Key>, reply: Reply, kad: &mut kad::Behaviour<Store>) {
        let id = self.next_waiter;
        self.next_waiter += 1;
        let mut waiter = Waiter { remaining: 0, error: None, reply };
        for key in keys {
            let record = record_key(&key);
            let position = region::position_of_key(&record);
            if self.advertised.contains_key(&position) {
                continue;
            }
            self.withdrawn.remove(&position);
            self.metrics.advertised(key.kind()).inc();
            if let Err(source) = self.store_own(kad, &record) {
                tracing::warn!(%key, error = %source, "provider store refused key");
                self.refused.insert(position);
                waiter.error.get_or_insert(Error::Store { key: key.clone(), source });
            }
            self.advertised.insert(position, Advertised { key, record });
            self.waiting.insert(position, id);
            waiter.remaining += 1;
            self.enqueue(Region::of(&position, self.depth));
        }
        if waiter.remaining == 0 {
            let _ = waiter.reply.send(waiter.error.map_or(Ok(()), Err));
        } else {
            self.waiters.insert(id, waiter);
        }
    }

    /// Up to `limit` advertised keys in the order of their text form, after `after`.
    pub(crate) fn page(&self, after: &str, limit: usize) -> Vec<Key> {
        let mut keys: Vec<(String, &Key)> = self
            .advertised
            .values()
            .map(|a| (a.key.to_string(), &a.key))
            .filter(|(text, _)| text.as_str() > after)
            .collect();
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
            let record = record_key(name);
            let position = region::position_of_key(&record);
            let Some(removed) = self.advertised.remove(&position) else { continue };
            self.metrics.advertised(removed.key.kind()).dec();
            self.refused.remove(&position);
            kad.stop_providing(&record);
            let in_flight = self.sending.values().any(|r| r.keys.contains(&position));
            let never_announced = self.waiting.contains_key(&position) && !in_flight;
            if let Some(waiter) = self.waiting.remove(&position) {
                self.done(waiter);
            }
            if !never_announced {
                self.withdrawn.insert(position, removed.record);
                self.enqueue(Region::of(&position, self.depth));
            }
        }
    }

    /// Queues the regions due: the sweep's, retries, and those following joins.
    pub(crate) fn schedule(&mut self, now: Instant) {
        self.advance_sweep(now);
        let due: Vec<Region> = self.follow.iter().filter(|(_, at)| **at <= now).map(|(r, _)| *r).collect();
        for region in due {
            self.follow.remove(&region);
            self.enqueue(region);
        }
        let retry: Vec<Region> = self.failures.iter().filter(|(_, (_, at))| *at <= now).map(|(r, _)| *r).collect();
        for region in retry {
            if let Some((_, at)) = self.failures.get_mut(&region) {
                // Retried once; a further failure sets the next time.
                *at = now + self.interval;
            }
            self.enqueue(region);
        }
    }

    /// Re-announces every key soon, e.g. after the node (re)joined the DHT.
    pub(crate) fn reprovide_all(&mut self) {
        let mut regions: Vec<Region> = self.advertised.keys().map(|p| Region::of(p, self.depth)).collect();
        regions.dedup();
        for region in regions {
            self.enqueue(region);
        }
    }

    /// Re-announces the region of every advertised key for which `closer`
    /// says the nodes closest to it changed: now, or `FOLLOW_GAP` after that
    /// region's last round started if that was more recent (while routing
    /// tables fill they change every second; this bounds the extra rounds).
    /// Returns how many regions were queued or scheduled.
    pub(crate) fn reprovide_where(&mut self, now: Instant, mut closer: impl FnMut(&RecordKey) -> bool) -> usize {
        let mut regions: Vec<Region> = Vec::new();
        for (position, a) in &self.advertised {
            let region = Region::of(position, self.depth);
            if regions.last() == Some(&region) || self.queued.contains(&region) || self.follow.contains_key(&region) {
                continue;
            }
            if closer(&a.record) {
                regions.push(region);
            }
        }
        let n = regions.len();
        for region in regions {
            match self.started.get(&region).map(|t| *t + FOLLOW_GAP).filter(|at| *at > now) {
                Some(at) => {
                    self.follow.insert(region, at);
                }
                None => self.enqueue(region),
            }
        }
        n
    }

    /// Starts the walks of queued rounds while fewer than `max_active` rounds run.
    pub(crate) fn pump(&mut self, kad: &mut kad::Behaviour<Store>, now: Instant) {
        while self.walking.len() + self.sending.len() < self.max_active {
            let Some(region) = self.queue.pop_front() else { break };
            self.queued.remove(&region);
            let mut keys = self.keys_in(region);
            if keys.is_empty() {
                keys = self.withdrawn_in(region);
            }
            let Some(target) = keys.get(keys.len() / 2).copied() else { continue };
            let Some(record) = self.record_of(&target) else { continue };
            let query = kad.get_closest_peers(record.to_vec());
            self.started.insert(region, now);
            let id = self.next_round;
            self.next_round += 1;
            let round = Round { id, region, target, keys: Vec::new(), removed: Vec::new(), outstanding: 0, reached: 0 };
            self.walking.insert(query, round);
        }
        self.metrics.announcements_queued.set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
    }

    /// Whether `query` is the walk of one of our rounds.
    pub(crate) fn owns(&self, query: &QueryId) -> bool {
        self.walking.contains_key(query)
    }

    /// A round's walk ended with `found` (its k closest nodes, or what it had
    /// when it timed out). Sends the round's batches through `send`. Returns
    /// false if the walk was not ours.
    pub(crate) fn on_walked(
        &mut self,
        query: &QueryId,
        found: &[PeerId],
        timed_out: bool,
        kad: &mut kad::Behaviour<Store>,
        mut send: impl FnMut(&PeerId, batch::Request) -> OutboundRequestId,
        addresses: &[Multiaddr],
    ) -> bool {
        let Some(mut round) = self.walking.remove(query) else { return false };
        let found: Vec<(Position, PeerId)> =
            found.iter().filter(|p| **p != self.local).map(|p| (region::position_of_peer(*p), *p)).collect();
        let positions: Vec<Position> = found.iter().map(|(pos, _)| *pos).collect();
        let depth = region::depth_for(&round.target, &positions, self.k);
        self.deepest = Some(self.deepest.map_or(depth, |d| d.max(depth)));
        if depth > round.region.depth {
            // Wider than the walk reaches: announce the part around the target
            // from its answer, walk the rest at the new depth.
            if depth > self.depth {
                self.set_depth(depth);
            }
            let part = Region::of(&round.target, depth);
            let mut rest: Vec<Region> = (self.keys_in(round.region).iter())
                .chain(&self.withdrawn_in(round.region))
                .map(|p| Region::of(p, depth))
                .filter(|r| *r != part)
                .collect();
            rest.sort_unstable();
            rest.dedup();
            for region in rest {
                self.enqueue(region);
            }
            round.region = part;
        }
        round.keys = self.keys_in(round.region);
        round.removed = self.withdrawn_in(round.region);
        let mut to: HashMap<PeerId, Vec<(bool, RecordKey)>> = HashMap::new();
        for (keep, position) in round.keys.iter().map(|p| (true, p)).chain(round.removed.iter().map(|p| (false, p))) {
            let Some(record) = self.record_of(position) else { continue };
            if keep && self.refused.contains(position) && self.store_own(kad, &record).is_ok() {
                self.refused.remove(position);
            }
            for peer in closest(position, &record, &found, kad, self.local, self.k) {
                to.entry(peer).or_default().push((keep, record.clone()));
            }
        }
        for (peer, keys) in to {
            for chunk in keys.chunks(batch::MAX_KEYS) {
                self.metrics.batch_sent(chunk.len());
                let (kept, removed): (Vec<_>, Vec<_>) = chunk.iter().cloned().partition(|(keep, _)| *keep);
                let request = batch::Request {
                    keys: kept.into_iter().map(|(_, k)| k).collect(),
                    removed: removed.into_iter().map(|(_, k)| k).collect(),
                    addresses: addresses.to_vec(),
                };
                self.batches.insert(send(&peer, request), round.id);
                round.outstanding += 1;
            }
        }
        if round.outstanding == 0 {
            // No one to tell: alone (fine), or a walk that found no one in time.
            let ok = !timed_out;
            self.finish(round, ok, Instant::now());
        } else {
            self.sending.insert(round.id, round);
        }
        true
    }

    /// A batch was answered (`Some(stored)`) or failed (`None`). Returns
    /// false if it was not ours.
    pub(crate) fn on_batch_answered(&mut self, request: &OutboundRequestId, stored: Option<u32>) -> bool {
        let Some(id) = self.batches.remove(request) else { return false };
        let Some(round) = self.sending.get_mut(&id) else { return true };
        round.outstanding = round.outstanding.saturating_sub(1);
        if stored.is_some() {
            round.reached += 1;
        }
        if round.outstanding == 0 {
            if let Some(round) = self.sending.remove(&id) {
                let ok = round.reached > 0;
                self.finish(round, ok, Instant::now());
            }
        }
        true
    }

    pub(crate) fn advertised_count(&self) -> usize {
        self.advertised.len()
    }

    /// The region depth announcements use now.
    pub(crate) fn depth(&self) -> u8 {
        self.depth
    }

    fn finish(&mut self, round: Round, ok: bool, now: Instant) {
        self.metrics.region_announced(ok, round.keys.len());
        if ok {
            self.failures.remove(&round.region);
            for position in &round.removed {
                self.withdrawn.remove(position);
            }
        } else {
            let failures = self.failures.get(&round.region).map_or(1, |(n, _)| n.saturating_add(1));
            let at = now + retry_after(failures, self.interval);
            self.failures.insert(round.region, (failures, at));
        }
        for position in &round.keys {
            if let Some(waiter) = self.waiting.remove(position) {
                self.done(waiter);
            }
        }
    }

    /// Visits the sweep's regions whose time has come.
    fn advance_sweep(&mut self, now: Instant) {
        loop {
            let count = Region::count(self.depth);
            if self.sweep.cursor >= count {
                let next = self.sweep.start + self.interval;
                if now < next {
                    return;
                }
                // A sweep missed whole (the loop stalled) is not made up for.
                let start = if now.duration_since(next) >= self.interval { now } else { next };
                self.sweep = Sweep { start, cursor: 0 };
                if let Some(depth) = self.deepest.take() {
                    self.set_depth(depth);
                }
                self.started.retain(|_, at| now.duration_since(*at) < self.interval);
                continue;
            }
            // Skip to the next region holding a key.
            let (low, _) = Region { depth: self.depth, prefix: cursor_prefix(self.sweep.cursor) }.bounds();
            let Some(position) = self.advertised.range(low..).next().map(|(p, _)| *p) else {
                // No key from here on: wait here (a key advertised meanwhile is
                // visited in its turn) until this sweep's time is up.
                if now < self.sweep.start + self.interval {
                    return;
                }
                self.sweep.cursor = count;
                continue;
            };
            let region = Region::of(&position, self.depth);
            let fraction = region.prefix as f64 / count as f64;
            if self.sweep.start + self.interval.mul_f64(fraction) > now {
                self.sweep.cursor = u64::from(region.prefix);
                return;
            }
            self.sweep.cursor = u64::from(region.prefix) + 1;
            self.enqueue(region);
        }
    }

    /// Moves to regions of `depth`, keeping the sweep's place in the keyspace.
    fn set_depth(&mut self, depth: u8) {
        let depth = depth.min(region::MAX_DEPTH);
        if depth == self.depth {
            return;
        }
        tracing::debug!(from = self.depth, to = depth, "announcement region depth changed");
        self.sweep.cursor = if depth > self.depth {
            self.sweep.cursor << (depth - self.depth)
        } else {
            self.sweep.cursor >> (self.depth - depth)
        };
        self.depth = depth;
        self.metrics.region_depth.set(i64::from(depth));
    }

    fn enqueue(&mut self, region: Region) {
        if self.queued.insert(region) {
            self.queue.push_back(region);
        }
    }

    /// The advertised keys in `region`, in keyspace order.
    fn keys_in(&self, region: Region) -> Vec<Position> {
        let (low, high) = region.bounds();
        self.advertised.range(low..=high).map(|(p, _)| *p).collect()
    }

    /// The withdrawn keys in `region` whose removal is still to be told.
    fn withdrawn_in(&self, region: Region) -> Vec<Position> {
        let (low, high) = region.bounds();
        self.withdrawn.range(low..=high).map(|(p, _)| *p).collect()
    }

    /// The record key of an advertised or withdrawn key.
    fn record_of(&self, position: &Position) -> Option<RecordKey> {
        self.advertised.get(position).map(|a| a.record.clone()).or_else(|| self.withdrawn.get(position).cloned())
    }

    fn store_own(&self, kad: &mut kad::Behaviour<Store>, record: &RecordKey) -> Result<(), kad::store::Error> {
        kad.store_mut().add_provider(ProviderRecord::new(record.clone(), self.local, Vec::new()))
    }

    fn done(&mut self, id: u64) {
        let Some(w) = self.waiters.get_mut(&id) else { return };
        w.remaining = w.remaining.saturating_sub(1);
        if w.remaining == 0 {
            if let Some(w) = self.waiters.remove(&id) {
                let _ = w.reply.send(w.error.map_or(Ok(()), Err));
            }
        }
    }
}

/// The `k` nodes closest to a key at `position` among the walk's answer and
/// the routing table, nearest first.
fn closest(
    position: &Position,
    record: &RecordKey,
    found: &[(Position, PeerId)],
    kad: &mut kad::Behaviour<Store>,
    local: PeerId,
    k: usize,
) -> Vec<PeerId> {
    let target = KBucketKey::new(record.clone());
    let mut candidates: Vec<(Position, PeerId)> = found.to_vec();
    for peer in kad.get_closest_local_peers(&target).take(k) {
        let peer = *peer.preimage();
        if peer != local && !candidates.iter().any(|(_, p)| *p == peer) {
            candidates.push((region::position_of_peer(peer), peer));
        }
    }
    candidates.sort_unstable_by_key(|(p, _)| region::distance(position, p));
    candidates.into_iter().take(k).map(|(_, peer)| peer).collect()
}

/// A sweep cursor as a region prefix (cursors stay below `Region::count`).
fn cursor_prefix(cursor: u64) -> u32 {
    u32::try_from(cursor).unwrap_or(u32::MAX)
}

/// The wait before announcing a region again after its `failures`-th failure in a row.
fn retry_after(failures: u32, interval: Duration) -> Duration {
    let doubled = FAILED_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(interval / 4)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
