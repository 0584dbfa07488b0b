//! The cloneable `Router` handle and the stream a lookup returns.
//!
//! The handle holds no state of its own beyond what never changes (the local
//! peer id) and the readiness receiver: every operation is a `Command` sent
//! over a bounded channel to the `EventLoop`, with a `oneshot` for the reply
//! (or, for lookups, a bounded `mpsc` the loop streams providers into). Every
//! call is bounded by a timeout, so a wedged event loop shows up as
//! `Error::Timeout`, never as a hung caller.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use libp2p::PeerId;
use peerpull_oci::{Key, KeyKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{event_loop::EventLoop, metrics::Metrics, Config, Error, Zone};

/// The most providers one lookup streams; larger limits are clamped.
pub const MAX_LOOKUP_LIMIT: usize = 64;

/// How many commands may queue for the event loop before senders wait.
const COMMAND_BUFFER: usize = 256;

/// A peer that holds a key, with the address of that peer's own `/v2` mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Provider {
    /// The peer's libp2p identity (pass it to `Router::penalize`).
    pub peer: PeerId,
    /// Where the peer's mirror listens, as the peer announced it.
    pub mirror: SocketAddr,
    /// The peer's zone, as it announced it (none when it named none).
    pub zone: Zone,
}

/// A peer in the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its libp2p identity.
    pub peer: PeerId,
    /// Its mirror, when it is connected and identified as a peerpull node.
    pub mirror: Option<SocketAddr>,
    /// The zone it announced (none when it named none, or is not known yet).
    pub zone: Zone,
}

/// How many keys this node advertises, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Advertised {
    /// Digests (blobs and manifests).
    pub digests: u64,
    /// Tags.
    pub tags: u64,
}

/// Running totals the router keeps (the same as its metrics report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Kademlia requests and provider batches sent and answered, and
    /// liveness probes: the node's routing traffic.
    pub messages: u64,
    /// Of those, liveness probes.
    pub pings: u64,
    /// Peers with an open connection now (each is probed every `ping_interval`).
    pub connections: u64,
    /// Providers returned that were connected and identified already.
    pub connected: u64,
    /// Providers returned at the mirror address their record carries, with no connection.
    pub from_record: u64,
    /// Providers returned after a dial plus Identify.
    pub dialed: u64,
    /// Keys whose announcement round finished (succeeded or failed).
    pub announcements: u64,
    /// Of those, the keys whose round failed (no batch was stored).
    pub announcements_failed: u64,
    /// Routing-table walks (Kademlia bootstrap) finished: the first one ends
    /// the node's start-up, then one per `refresh_interval`.
    pub bootstraps: u64,
}

/// A handle to the router; cheap to clone, usable from any task.
#[derive(Debug, Clone)]
pub struct Router {
    commands: mpsc::Sender<Command>,
    local: PeerId,
    ready: watch::Receiver<bool>,
    command_timeout: Duration,
    advertise_timeout: Duration,
    metrics: Metrics,
    rtts: Rtts,
}

/// The round-trip time the liveness probes last measured to each peer
/// (at most [`MAX_RTTS`] peers), written by the event loop.
pub(crate) type Rtts = Arc<RwLock<HashMap<PeerId, Duration>>>;

/// The most peers whose round-trip time is kept.
pub(crate) const MAX_RTTS: usize = 100_000;

/// The providers of one key, in the order they become usable.
///
/// Ends when `limit` providers were yielded, when the DHT has no more, or at
/// the lookup timeout. Dropping it early cancels the query (if no identical
/// lookup still wants it).
#[derive(Debug)]
pub struct Lookup {
    rx: mpsc::Receiver<Provider>,
}

/// What a caller asks for.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    /// The key.
    pub(crate) key: Key,
    /// Peers passed over.
    pub(crate) except: Vec<PeerId>,
    /// Answer the closest other peer even when this node is closer.
    pub(crate) beyond: bool,
}

/// What the handle asks of the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Advertise { keys: Vec<Key>, reply: oneshot::Sender<Result<(), Error>> },
    Withdraw { keys: Vec<Key>, reply: oneshot::Sender<()> },
    Lookup { key: Key, tx: mpsc::Sender<Provider>, limit: usize },
    Penalize { peer: PeerId, reply: oneshot::Sender<()> },
    Closest { ask: Ask, reply: oneshot::Sender<Option<Provider>> },
    PeerCount { reply: oneshot::Sender<usize> },
    Peers { reply: oneshot::Sender<Vec<Peer>> },
    HeldProviders { key: Key, reply: oneshot::Sender<Vec<PeerId>> },
    AdvertisedPage { after: String, limit: usize, reply: oneshot::Sender<Vec<Key>> },
    ListenAddrs { reply: oneshot::Sender<Vec<SocketAddr>> },
}

impl Router {
    /// Loads (or creates) the node identity, builds the swarm and starts listening.
    ///
    /// Must be called inside a tokio runtime. Nothing happens on the network until
    /// `EventLoop::run` is polled; spawn it.
    pub fn start(config: Config) -> Result<(Router, EventLoop), Error> {
        let (tx, rx) = mpsc::channel(COMMAND_BUFFER);
        let command_timeout = config.command_timeout;
        let advertise_timeout = config.advertise_timeout;
        let metrics = Metrics::new();
        let rtts = Rtts::default();
        let event_loop = EventLoop::new(config, rx, metrics.clone(), rtts.clone())?;
        let router = Router {
            commands: tx,
            local: event_loop.local_peer_id(),
            ready: event_loop.ready_receiver(),
            command_timeout,
            advertise_timeout,
            metrics,
            rtts,
        };
        Ok((router, event_loop))
    }

    /// The round-trip time the liveness probe last measured to `peer`, if it ran.
    pub fn rtt(&self, peer: &PeerId) -> Option<Duration> {
        self.rtts.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(peer).copied()
    }

    /// This node's peer id (stable across restarts with the same `data_dir`).
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Registers the router's metrics in `registry`: `peerpull_routing_peers`
    /// and `peerpull_advertised_keys{kind}`, kept current by the event loop.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// The router's running totals: its traffic and how providers were resolved.
    pub fn counters(&self) -> Counters {
        self.metrics.counters()
    }

    /// Becomes `true` once the routing table holds a peer, or at once for a node
    /// configured without bootstrap peers. Goes back to `false` if the table empties.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// Announces this node as a provider of `keys` and keeps re-announcing them until
    /// withdrawn. Returns once each key's first announcement finished (or failed: the
    /// key stays advertised and is retried on the re-provide schedule). Keys already
    /// advertised are left as they are, so callers need not remember what they sent.
    pub async fn advertise(&self, keys: Vec<Key>) -> Result<(), Error> {
        let timeout = self.advertise_timeout;
        self.call("advertise", timeout, |reply| Command::Advertise { keys, reply }).await?
    }

    /// Stops announcing `keys`. Other nodes stop returning us for them once their
    /// copies of our records expire (`Config::provider_ttl`).
    /// Keys not advertised are ignored.
    pub async fn withdraw(&self, keys: Vec<Key>) -> Result<(), Error> {
        self.call("withdraw", self.command_timeout, |reply| Command::Withdraw { keys, reply }).await
    }

    /// Finds up to `limit` (at most `MAX_LOOKUP_LIMIT`) live peers holding `key`,
    /// streamed as they are found. Never yields this node; penalised peers come last.
    pub async fn lookup(&self, key: &Key, limit: usize) -> Result<Lookup, Error> {
        let limit = limit.min(MAX_LOOKUP_LIMIT);
        let (tx, rx) = mpsc::channel(limit.max(1));
        if limit == 0 {
            return Ok(Lookup { rx });
        }
        let cmd = Command::Lookup { key: key.clone(), tx, limit };
        match tokio::time::timeout(self.command_timeout, self.commands.send(cmd)).await {
            Ok(Ok(())) => Ok(Lookup { rx }),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout { op: "lookup" }),
        }
    }

    /// The node closest to `key` in the DHT's own sense (XOR distance of the
    /// hashed key and peer ids) among this node and the live peerpull peers in
    /// its routing table: `None` when it is this node. Every node computes the
    /// same answer from the same table, so nodes that all miss a key at once
    /// agree on one of them to fetch it. A closest peer not yet connected is
    /// dialled first (bounded by `Config::dial_timeout`); one that cannot be
    /// reached (or dies) is passed over for the next closest, as every other
    /// node passes over it. Peers in `except` are passed over too: nodes that
    /// saw the chosen one fail exclude it alike and agree on the next.
    pub async fn closest(&self, key: &Key, except: &[PeerId]) -> Result<Option<Provider>, Error> {
        let ask = Ask { key: key.clone(), except: except.to_vec(), beyond: false };
        self.call("closest", self.command_timeout, |reply| Command::Closest { ask, reply }).await
    }

    /// Like [`Router::closest`], but the closest live peerpull peer other
    /// than this node even when this node is closer: with `except` growing,
    /// the nodes after this one in the order every node agrees on. `None`
    /// when no other peer is left.
    pub async fn closest_other(&self, key: &Key, except: &[PeerId]) -> Result<Option<Provider>, Error> {
        let ask = Ask { key: key.clone(), except: except.to_vec(), beyond: true };
        self.call("closest", self.command_timeout, |reply| Command::Closest { ask, reply }).await
    }

    /// Marks `peer` as having misbehaved (e.g. served bytes that failed
    /// verification): for `Config::penalty` it is returned only after every other provider.
    pub async fn penalize(&self, peer: PeerId) -> Result<(), Error> {
        self.call("penalize", self.command_timeout, |reply| Command::Penalize { peer, reply }).await
    }

    /// How many peers the routing table holds.
    pub async fn peer_count(&self) -> Result<usize, Error> {
        self.call("peer_count", self.command_timeout, |reply| Command::PeerCount { reply }).await
    }

    /// The other nodes whose unexpired provider records for `key` this node
    /// stores for the DHT: what re-providing keeps alive.
    pub async fn held_providers(&self, key: &Key) -> Result<Vec<PeerId>, Error> {
        let key = key.clone();
        self.call("held_providers", self.command_timeout, |reply| Command::HeldProviders { key, reply }).await
    }

    /// The peers in the routing table, ordered by peer id.
    pub async fn peers(&self) -> Result<Vec<Peer>, Error> {
        self.call("peers", self.command_timeout, |reply| Command::Peers { reply }).await
    }

    /// How many keys this node advertises, by kind.
    pub fn advertised(&self) -> Advertised {
        let count = |kind| u64::try_from(self.metrics.advertised(kind).get()).unwrap_or(0);
        Advertised { digests: count(KeyKind::Digest), tags: count(KeyKind::Tag) }
    }

    /// Up to `limit` of the keys this node advertises, in the order of their
    /// text form, starting after `after` (`""`: from the first).
    pub async fn advertised_page(&self, after: &str, limit: usize) -> Result<Vec<Key>, Error> {
        let after = after.to_owned();
        self.call("advertised_page", self.command_timeout, |reply| Command::AdvertisedPage { after, limit, reply })
            .await
    }

    /// The addresses libp2p actually listens on (waits for the listener to come up).
    pub async fn listen_addrs(&self) -> Result<Vec<SocketAddr>, Error> {
        self.call("listen_addrs", self.command_timeout, |reply| Command::ListenAddrs { reply }).await
    }

    async fn call<T>(
        &self,
        op: &'static str,
        timeout: Duration,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        let round_trip = async {
            self.commands.send(make(reply)).await.map_err(|_| Error::Stopped)?;
            rx.await.map_err(|_| Error::Stopped)
        };
        tokio::time::timeout(timeout, round_trip).await.map_err(|_| Error::Timeout { op })?
    }
}

impl Stream for Lookup {
    type Item = Provider;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Provider>> {
        self.rx.poll_recv(cx)
    }
}
