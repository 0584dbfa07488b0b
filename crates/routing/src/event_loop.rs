//! The one task that owns the `Swarm` and all routing state.
//!
//! `EventLoop::run` selects over: shutdown, commands from `Router` handles,
//! swarm events, finished DNS resolutions of bootstrap names, and a short
//! housekeeping tick (deadlines, bootstrap schedule, readiness, sweeping).
//! Nothing here blocks: DNS resolution runs as futures polled by the loop,
//! and every wait has a deadline checked on the tick.
//!
//! The state lives in small single-purpose parts: `peers` (connections,
//! mirror addresses, penalties), `lookups` (queries, subscribers, cache),
//! `provides` (advertised keys, throttled announcements) and `bootstrap`
//! (schedule and targets). Swarm events are dispatched in `swarm_events`.

use std::{net::SocketAddr, time::Duration};

use futures::{future::BoxFuture, stream::FuturesUnordered, StreamExt as _};
use libp2p::{
    multiaddr::Protocol,
    swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, ConnectionId, DialError},
    Multiaddr, PeerId, Swarm,
};
use peerpull_oci::Key;
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    agent,
    behaviour::{build_swarm, Behaviour},
    identity,
    keys::record_key,
    metrics::{How, Metrics},
    router::Command,
    Bootstrap, Config, Error, Peer, Provider, Transport,
};

mod bootstrap;
mod closest;
mod lookups;
mod peers;
mod provides;
mod swarm_events;

use bootstrap::{Bootstrapper, Resolved};
use closest::Closest;
use lookups::{Lookups, Start};
use peers::{Peers, Status};
use provides::Provides;

/// How often deadlines, the bootstrap schedule and readiness are checked
/// while something waits on a deadline (a lookup, a walk, a peer to answer)
/// or the node has no peer yet.
const TICK: Duration = Duration::from_millis(100);
/// How often they are checked otherwise: at rest only schedules counted in
/// seconds remain, and each tick wakes the swarm, which costs CPU.
const TICK_AT_REST: Duration = Duration::from_secs(1);
/// How often expired records, penalties and cache entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How often the routing table is counted once it holds a peer (a count
/// visits every bucket; while the table is empty, it is counted every tick).
const COUNT_TABLE_EVERY: Duration = Duration::from_secs(1);
/// How often keys are checked against the peers that joined meanwhile (it
/// costs a pass over every advertised key).
const FOLLOW_JOINS_EVERY: Duration = Duration::from_secs(1);
/// How long announcements wait for the first routing-table walk after the
/// first peer arrived, should that walk not finish.
const FIRST_WALK_GRACE: Duration = Duration::from_secs(10);

/// Owns the swarm; run it with [`EventLoop::run`] on its own task.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    config: Config,
    local: PeerId,
    ready: watch::Sender<bool>,
    /// Whether the routing table held a peer at the last tick.
    had_peers: bool,
    /// The routing table's size when it was last counted, and when to count again.
    table_size: usize,
    next_count: Instant,
    /// Set while the first Kademlia walk after the first peer arrived runs: until
    /// then the table knows a few peers only, and an announcement would land on
    /// those rather than on the nodes closest to the key, where lookups search.
    walking_until: Option<Instant>,
    listen_addrs: Vec<SocketAddr>,
    listen_waiters: Vec<oneshot::Sender<Vec<SocketAddr>>>,
    peers: Peers,
    lookups: Lookups,
    provides: Provides,
    bootstrap: Bootstrapper,
    resolving: FuturesUnordered<BoxFuture<'static, Resolved>>,
    next_sweep: Instant,
    metrics: Metrics,
    /// What the liveness probes measured, read by `Router::rtt`.
    rtts: crate::router::Rtts,
    /// `Router::closest`: walks towards keys, their answers, waiting callers.
    closest: Closest,
    /// The routing table's size when the last walk to fill a thin table started.
    thin_walk_at: Option<usize>,
    /// Peers new to the routing table not yet considered (see `records_follow_joins`).
    joined: Vec<PeerId>,
    next_follow: Instant,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").field("local", &self.local).field("listen", &self.listen_addrs).finish()
    }
}

impl EventLoop {
    pub(crate) fn new(
        config: Config,
        commands: mpsc::Receiver<Command>,
        metrics: Metrics,
        rtts: crate::router::Rtts,
    ) -> Result<Self, Error> {
        let keypair = identity::load_or_create(&config.data_dir)?;
        let local = keypair.public().to_peer_id();
        let mut swarm = build_swarm(keypair, &config)?;
        // Our provider records carry our mirror address (see `agent`).
        swarm.add_external_address(agent::mirror_multiaddr(config.mirror_addr, config.zone));
        let listen = match config.transport {
            Transport::Memory | Transport::Simulated(_) => {
                Multiaddr::empty().with(Protocol::Memory(u64::from(config.listen.port())))
            }
            _ => agent::multiaddr_of(config.listen),
        };
        swarm
            .listen_on(listen)
            .map_err(|e| Error::Listen { addr: config.listen.to_string(), reason: error_chain(&e) })?;
        let default_port = match config.listen.port() {
            0 => crate::config::DEFAULT_PORT,
            p => p,
        };
        let bootstrap = Bootstrapper::new(
            config.bootstrap.clone(),
            default_port,
            config.bootstrap_interval,
            config.bootstrap_backoff_max,
        );
        let (ready, _) = watch::channel(bootstrap.is_standalone());
        Ok(Self {
            swarm,
            commands,
            local,
            ready,
            had_peers: false,
            table_size: 0,
            next_count: Instant::now(),
            walking_until: None,
            listen_addrs: Vec::new(),
            listen_waiters: Vec::new(),
            peers: Peers::new(local, agent::Own::of(config.listen.ip(), config.transport), config.provider_ttl),
            lookups: Lookups::new(config.lookup_timeout, config.cache_ttl, config.negative_cache_ttl, metrics.clone()),
            provides: Provides::new(
                local,
                config.replication_factor,
                config.max_concurrent_provides,
                config.reprovide_interval,
                metrics.clone(),
            ),
            bootstrap,
            resolving: FuturesUnordered::new(),
            next_sweep: Instant::now() + SWEEP_EVERY,
            metrics,
            rtts,
            closest: Closest::default(),
            thin_walk_at: None,
            joined: Vec::new(),
            next_follow: Instant::now(),
            config,
        })
    }

    pub(crate) fn local_peer_id(&self) -> PeerId {
        self.local
    }

    pub(crate) fn ready_receiver(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Runs until `shutdown` is cancelled. Dropping the swarm at the end closes every connection.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let tick = tokio::time::sleep(TICK);
        tokio::pin!(tick);
        let mut commands_open = true;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every handle is gone; keep serving the DHT for others until shutdown.
                    None => commands_open = false,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(resolved) = self.resolving.next(), if !self.resolving.is_empty() => self.on_resolved(resolved),
                () = &mut tick => {
                    self.on_tick();
                    let period = if self.is_waiting() { TICK } else { TICK_AT_REST };
                    tick.as_mut().reset(Instant::now() + period);
                }
            }
            if self.walking_until.is_none() {
                self.provides.pump(&mut self.swarm.behaviour_mut().kad, Instant::now());
            }
            self.settle();
            let soon = Instant::now() + TICK;
            if tick.deadline() > soon && self.is_waiting() {
                tick.as_mut().reset(soon);
            }
        }
        tracing::debug!(peer = %self.local, "routing event loop stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Advertise { keys, reply } => {
                self.provides.advertise(keys, reply, &mut self.swarm.behaviour_mut().kad)
            }
            Command::Withdraw { keys, reply } => {
                self.provides.withdraw(&keys, &mut self.swarm.behaviour_mut().kad);
                let _ = reply.send(());
            }
            Command::Lookup { key, tx, limit } => self.start_lookup(&key, limit, tx),
            Command::Closest { ask, reply } => self.closest(ask, reply),
            Command::Penalize { peer, reply } => {
                self.peers.penalize(peer, Instant::now() + self.config.penalty);
                let _ = reply.send(());
            }
            Command::PeerCount { reply } => {
                let _ = reply.send(self.routing_table_size());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.table_peers());
            }
            Command::HeldProviders { key, reply } => {
                use libp2p::kad::store::RecordStore as _;
                let now = std::time::Instant::now();
                let records = self.swarm.behaviour_mut().kad.store_mut().providers(&record_key(&key));
                let held = records
                    .into_iter()
                    .filter(|r| r.provider != self.local && r.expires.is_none_or(|at| at > now))
                    .map(|r| r.provider)
                    .collect();
                let _ = reply.send(held);
            }
            Command::AdvertisedPage { after, limit, reply } => {
                let _ = reply.send(self.provides.page(&after, limit));
            }
            Command::ListenAddrs { reply } => {
                if self.listen_addrs.is_empty() {
                    self.listen_waiters.push(reply);
                } else {
                    let _ = reply.send(self.listen_addrs.clone());
                }
            }
        }
    }

    fn start_lookup(&mut self, key: &Key, limit: usize, tx: mpsc::Sender<Provider>) {
        let rkey = record_key(key);
        match self.lookups.subscribe(rkey.clone(), limit, tx, Instant::now()) {
            Start::Joined => {}
            Start::Cached(peers) => {
                for peer in peers {
                    self.resolve_provider(&rkey, peer);
                }
            }
            Start::Query => {
                let query = self.swarm.behaviour_mut().kad.get_providers(rkey.clone());
                self.lookups.set_query(&rkey, query);
            }
        }
    }

    /// Streams `peer` for `key` if it is usable now: connected and identified,
    /// or at the mirror address its provider record carries. Otherwise dials it
    /// and waits (bounded).
    fn resolve_provider(&mut self, key: &libp2p::kad::RecordKey, peer: PeerId) {
        let now = Instant::now();
        let status = self.peers.status(peer, now);
        tracing::debug!(%peer, ?status, connected = self.peers.is_connected(&peer), "provider found");
        match status {
            Status::Ready(mirror) => self.deliver(key, peer, mirror, How::Connected),
            Status::Wait { dial } => {
                if let Some(mirror) = self.record_mirror(peer, now) {
                    self.deliver(key, peer, mirror, How::Record);
                    return;
                }
                if dial && !self.peers.is_connected(&peer) {
                    // Addresses come from the routing table and from the provider record the
                    // running query just received (Kademlia hands those to the dial).
                    let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
                    match self.swarm.dial(opts) {
                        // Already being dialled (e.g. by a Kademlia query): wait for that dial.
                        Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "cannot dial provider");
                            self.peers.on_dial_failed(peer, now + self.config.unreachable_backoff);
                            return;
                        }
                    }
                }
                self.peers.await_peer(peer, now + self.config.dial_timeout);
                self.lookups.wait(key, peer);
            }
            Status::Skip => {}
        }
    }

    fn deliver(&mut self, key: &libp2p::kad::RecordKey, peer: PeerId, mirror: SocketAddr, how: How) {
        let penalised = self.peers.is_penalised(&peer, Instant::now());
        self.metrics.resolved(how);
        let zone = self.peers.zone(&peer);
        self.lookups.deliver(key, Provider { peer, mirror, zone }, penalised);
    }

    /// The mirror address a provider record of `peer` carries, for a peer we
    /// are not connected to. The running queries know the addresses each
    /// answer gave for `peer`; Kademlia hands them out when asked for a peer's
    /// addresses ahead of a dial, which reads them and changes nothing.
    fn record_mirror(&mut self, peer: PeerId, now: Instant) -> Option<SocketAddr> {
        use libp2p::{core::Endpoint, swarm::NetworkBehaviour as _};
        if self.peers.is_connected(&peer) {
            return None;
        }
        let addrs = self
            .swarm
            .behaviour_mut()
            .kad
            .handle_pending_outbound_connection(ConnectionId::new_unchecked(0), Some(peer), &[], Endpoint::Dialer)
            .unwrap_or_default();
        self.peers.learn_record(peer, &addrs, now + self.config.provider_ttl);
        self.peers.record_mirror(&peer, now)
    }

    /// A peer a lookup waited for became usable (`Some`) or will not (`None`).
    fn peer_resolved(&mut self, peer: PeerId, mirror: Option<SocketAddr>) {
        self.closest_resolved(peer, mirror);
        match mirror {
            Some(mirror) => {
                for key in self.lookups.waiting_for(&peer) {
                    self.deliver(&key, peer, mirror, How::Dialed);
                }
            }
            None => {
                tracing::debug!(%peer, "provider unusable");
                self.lookups.give_up(&peer);
            }
        }
    }

    /// Whether something waits on a deadline the tick checks, or the node
    /// still waits for its first peer.
    fn is_waiting(&self) -> bool {
        !self.had_peers
            || self.walking_until.is_some()
            || !self.joined.is_empty()
            || self.lookups.in_flight() > 0
            || self.peers.is_awaiting()
            || self.closest.is_waiting()
    }

    fn settle(&mut self) {
        for query in self.lookups.settle(Instant::now()) {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&query) {
                q.finish();
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for peer in self.peers.expire_awaited(now, now + self.config.unreachable_backoff) {
            tracing::debug!(%peer, "provider did not answer in time");
            self.peer_resolved(peer, None);
        }
        self.provides.schedule(now);
        if self.walking_until.is_none() && !self.joined.is_empty() && now >= self.next_follow {
            self.next_follow = now + FOLLOW_JOINS_EVERY;
            self.records_follow_joins(now);
        }
        self.expire_walks(now);
        if self.walking_until.is_some_and(|t| now >= t) {
            tracing::debug!(peer = %self.local, "first routing walk still running; announcing anyway");
            self.walking_until = None;
        }
        if !self.had_peers || now >= self.next_count {
            self.next_count = now + COUNT_TABLE_EVERY;
            self.table_size = self.routing_table_size();
            self.metrics.routing_peers.set(gauge(self.table_size));
        }
        let size = self.table_size;
        self.metrics.connected_peers.set(gauge(self.peers.connected_count()));
        if self.bootstrap.due(now, size > 0) {
            self.run_bootstrap();
        }
        let has_peers = size > 0;
        if has_peers != self.had_peers {
            self.had_peers = has_peers;
            if has_peers {
                // Announcements made while alone reached nobody. This holds for a
                // node without bootstrap peers too: the seed others join through.
                // They go out once a walk has filled the routing table.
                self.provides.reprovide_all();
                if self.swarm.behaviour_mut().kad.bootstrap().is_ok() {
                    self.walking_until = Some(now + FIRST_WALK_GRACE);
                }
            } else {
                self.bootstrap.reset(now);
            }
        }
        // A node whose bootstrap names resolve to itself alone (a one-node
        // cluster's headless Service) is as ready as one configured to stand alone.
        let ready = self.bootstrap.is_standalone() || has_peers || self.bootstrap.alone();
        if *self.ready.borrow() != ready {
            tracing::info!(peer = %self.local, ready, peers = size, "routing readiness changed");
            self.ready.send_replace(ready);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            let store = self.swarm.behaviour_mut().kad.store_mut();
            let dropped = store.sweep(std::time::Instant::now());
            let held = store.held();
            self.metrics.stored_records.set(gauge(held.records));
            self.metrics.stored_providers.set(gauge(held.providers));
            self.metrics.stored_max_per_peer.set(gauge(held.max_per_peer));
            self.peers.gc(now);
            self.lookups.gc(now);
            self.closest.gc(now);
            tracing::trace!(
                dropped,
                stored_keys = self.swarm.behaviour_mut().kad.store_mut().key_count(),
                advertised = self.provides.advertised_count(),
                region_depth = self.provides.depth(),
                connected = self.peers.connected_count(),
                lookups = self.lookups.in_flight(),
                "routing housekeeping"
            );
        }
    }

    /// Records follow the cluster as it grows: a key of ours whose closest nodes
    /// (as our routing table knows them) now include a peer that just joined is
    /// re-announced at once rather than at its next re-announcement, so lookups,
    /// which search the closest nodes, find it there. In a steady cluster a
    /// joining node is among the closest of about k/N of each node's keys; a
    /// key is re-announced this way at most every 10 s.
    fn records_follow_joins(&mut self, now: Instant) {
        let joined: Vec<PeerId> = std::mem::take(&mut self.joined);
        let k = self.config.replication_factor;
        let kad = &mut self.swarm.behaviour_mut().kad;
        let queued = self.provides.reprovide_where(now, |key| {
            let target = libp2p::kad::KBucketKey::new(key.clone());
            let changed = kad.get_closest_local_peers(&target).take(k).any(|p| joined.contains(p.preimage()));
            changed
        });
        if queued > 0 {
            tracing::debug!(joined = joined.len(), queued, "re-announcing keys whose closest nodes changed");
        }
    }

    fn run_bootstrap(&mut self) {
        // Counted afresh: whether to walk depends on whether the table changed.
        let table_size = self.routing_table_size();
        let targets = self.bootstrap.targets().to_vec();
        for target in targets {
            let peer = target.peer_id();
            match target {
                Bootstrap::Addr(addr) => {
                    let own = peer == Some(self.local) || agent::socket_of(&addr).is_some_and(|s| self.is_own_addr(s));
                    self.bootstrap.resolved(&addr.to_string(), own);
                    self.dial_bootstrap(addr, peer);
                }
                Bootstrap::Dns { name, port } => self.resolving.push(self.bootstrap.resolve(name, port)),
            }
        }
        // Fill a thin routing table now, unless it has not changed since the last
        // such walk (in a cluster of k nodes or fewer the table never fills: the
        // last walk found everyone). A full one is left to Kademlia's own refresh
        // (`refresh_interval`): a bootstrap walk costs every node about a hundred requests.
        let thin = table_size > 0 && table_size < self.config.replication_factor;
        if thin && self.thin_walk_at != Some(table_size) && self.swarm.behaviour_mut().kad.bootstrap().is_ok() {
            self.thin_walk_at = Some(table_size);
        }
    }

    fn on_resolved(&mut self, resolved: Resolved) {
        match resolved.addrs {
            Ok(addrs) => {
                let only_self = !addrs.is_empty() && addrs.iter().all(|a| self.is_own_addr(*a));
                self.bootstrap.resolved(&resolved.name, only_self);
                for addr in self.bootstrap.pick(addrs) {
                    self.dial_bootstrap(agent::multiaddr_of(addr), None);
                }
            }
            Err(error) => tracing::warn!(name = %resolved.name, %error, "cannot resolve bootstrap name"),
        }
    }

    fn dial_bootstrap(&mut self, addr: Multiaddr, peer: Option<PeerId>) {
        if peer == Some(self.local) || agent::socket_of(&addr).is_some_and(|s| self.is_own_addr(s)) {
            return;
        }
        let known = peer.or_else(|| self.bootstrap.peer_at(&addr));
        if known.is_some_and(|p| p == self.local || self.peers.is_connected(&p)) {
            return;
        }
        let opts = match peer {
            Some(p) => DialOpts::peer_id(p).addresses(vec![addr.clone()]).build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%addr, error = %e, "bootstrap dial refused");
        }
    }

    /// Whether `addr` is one of our own listen addresses (never dial ourselves).
    fn is_own_addr(&self, addr: SocketAddr) -> bool {
        self.listen_addrs.contains(&addr)
            || (addr.port() == self.config.listen.port()
                && (addr.ip() == self.config.listen.ip()
                    || (self.config.listen.ip().is_unspecified() && addr.ip().is_loopback())))
    }

    /// The routing table's peers with their mirrors, ordered by peer id.
    fn table_peers(&mut self) -> Vec<Peer> {
        let mut ids: Vec<PeerId> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            ids.extend(bucket.iter().map(|entry| *entry.node.key.preimage()));
        }
        ids.sort_unstable();
        ids.into_iter()
            .map(|peer| Peer { peer, mirror: self.peers.mirror(&peer), zone: self.peers.zone(&peer) })
            .collect()
    }

    fn routing_table_size(&mut self) -> usize {
        self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum()
    }
}

/// A count as a gauge value.
fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An error with its sources, `a: b: c`, leaving out empty messages (the
/// transport's wrappers print nothing of their own).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        if !text.is_empty() && !parts.last().is_some_and(|last: &String| last.ends_with(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}
