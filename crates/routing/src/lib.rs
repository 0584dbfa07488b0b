//! Who holds what.
//!
//! A libp2p Kademlia router: advertise and withdraw provider records for
//! digests and tags, look up the peers that hold a key together with each
//! peer's own mirror address, bootstrap from static or DNS peers, and keep a
//! persisted node identity. A cloneable [`Router`] handle talks over bounded
//! channels to one [`EventLoop`] that owns the `Swarm`. This crate does not
//! serve or fetch content.
//!
//! The parts:
//! - [`config`]: [`Config`] and the [`Bootstrap`] peer syntax.
//! - [`identity`]: the ed25519 key in `data_dir/identity.key`.
//! - `router`: the [`Router`] handle, [`Provider`] and the [`Lookup`] stream.
//! - `event_loop`: the task that owns the swarm and all routing state
//!   (peers, lookups and their cache, announcements, bootstrap).
//! - `behaviour`: Kademlia + Identify + Ping, and how the swarm is built.
//! - `agent`: how a node announces its mirror address (Identify agent
//!   version, and a `/http` multiaddr in its provider records).
//! - `keys`, `store`: key hashing and the provider record store.
//! - `region`: keyspace positions and the regions announcements are grouped by.
//! - `batch`: the protocol that carries many provider records in one message.
//! - [`psk`]: [`Psk`], the pre-shared key that makes the DHT private.
//! - [`zone`]: [`Zone`], where a node runs, told to peers with its mirror.
//! - [`simulated`]: a simulated network (memory transport with latency)
//!   for many routers in one process under a paused clock.
//! - `metrics`: lookups, announcements, walks, traffic and stored records,
//!   kept current by the event loop ([`Router::register_metrics`],
//!   [`Router::counters`]).
//!
//! # Bounds
//!
//! - Announcing: keys are announced by keyspace region, in batches
//!   (`event_loop::provides`): a key advertised for the first time is
//!   announced at once (findable from other nodes within a second or so);
//!   every key is announced again once per `Config::reprovide_interval`
//!   (default 10 min), the regions swept in keyspace order spread evenly
//!   over it, at most `max_concurrent_provides` rounds at a time. A failed
//!   round is retried after 5 s, then after twice as long per further
//!   failure in a row, at most a quarter of `reprovide_interval`.
//! - Records live `Config::provider_ttl` (default 30 min: two missed rounds
//!   and more) unless removed sooner: a withdrawn key's records are removed
//!   from the nodes storing them at once (its region's next round, started
//!   at once, tells them), and the records of a provider known gone (its
//!   liveness probe or a dial to it failed, or its last connection ended
//!   with an error and a dial to it then failed) are dropped by every node
//!   that saw it go.
//! - Providers: a provider is returned at once when it is connected and
//!   identified (at the connection's IP), or when its provider record carries
//!   its mirror address (resolved from the announcing connection by the node
//!   that stored the record): a lookup needs no new connection. Otherwise
//!   (no usable address in the record, or the peer may have gone away) it
//!   is returned after a fresh dial plus Identify within `Config::dial_timeout`
//!   (default 3 s), and a failed dial makes lookups skip it for
//!   `Config::unreachable_backoff`.
//! - Dead peers: a node that saw a peer's connection end dials it before
//!   returning it for `unreachable_backoff` after that (so a process that
//!   exits is left out by the nodes that were talking to it, within
//!   milliseconds); one whose dial or liveness probe failed (after at most
//!   `ping_interval + ping_timeout`, 40 s, for a peer that vanished silently),
//!   until its records would have expired. Nodes that were not connected to
//!   a provider when it died may return it from its records until they
//!   expire (`provider_ttl`); the mirror then moves on to the next provider
//!   when the connection is refused, or after its hedge delay. A lookup
//!   already in flight may yield a provider that died during it.
//! - A lookup ends within `Config::lookup_timeout` (default 5 s).
//! - Where records land: announcements wait, after the first peer arrives, for
//!   the first Kademlia walk (at most 10 s), so they go to the nodes closest to
//!   each key rather than to the few peers known at that moment. When the
//!   cluster grows, a region holding a key whose closest nodes (as this
//!   node's routing table knows them) now include a node that just joined is
//!   announced again at once, so the newcomer holds the key and lookups,
//!   which search the closest nodes, keep finding it (at most one such round
//!   per region every 10 s, or filling routing tables would keep
//!   re-announcing everything). A node that takes the place of a
//!   routing-table entry gone quiet does not count as joining (in a large
//!   cluster that happens all the time as idle connections close).
//!
//! # How the costs grow (N nodes, K keys per node, k = 20)
//!
//! - A lookup is one Kademlia `GET_PROVIDERS` walk: O(log N) rounds of
//!   requests, 3 in flight, towards the nodes closest to the key; the first
//!   provider found is returned at once, with no new connection to it.
//!   Simulated with 50 and 200 nodes: the first provider after 4 one-way
//!   latencies at the median (a round trip to set up a connection, one for
//!   the request), 4 to 6 and 10 to 16 at the 99th percentile.
//! - Announcing: one round per keyspace region per `reprovide_interval`.
//!   Regions hold a few dozen nodes (about N / 20 regions), so a node's K
//!   keys fall in min(K, N / 20) regions; each round is a walk (at least
//!   k `FIND_NODE`) and one batch to each node that is among the k closest of
//!   one of its keys: at most min(N, K × k) batches in all per interval.
//!   Announcing key by key cost K × (log N + k) messages per interval;
//!   batching never costs more, and once K × k exceeds N it no longer grows
//!   with K at all (5 real nodes holding 2,000 keys each: one walk and 4
//!   batches per node per interval instead of 2,000 walks and 8,000
//!   `ADD_PROVIDER`; 1.6 messages sent per node per minute). Each node
//!   answers as many as it sends, on average. It does grow with N: a node
//!   reaches min(N, K × k) nodes and walks to min(K, N / 20) regions each
//!   interval. Simulated, at rest, messages sent and answered per node per
//!   minute: 34 with 50 nodes, 98 to 148 with 200 and 271 with 400 (100
//!   keys each), 25 and 96 with 50 and 200 (2,000 keys each). Growing only with log N would take batches that
//!   travel along the routing table and merge at each hop, so that a node
//!   talks to O(log N) others; records would then no longer arrive on their
//!   holder's own connection, which the address rule relies on.
//! - Connections and probes: a node holds connections to the peers it
//!   talked to within `idle_timeout` (30 s) and probes each every
//!   `ping_interval` (30 s); with rounds spread over a 10-minute interval
//!   that is the peers of the last few rounds, not everyone (simulated, on
//!   average 7 connections per node with 50 nodes, 57 to 75 with 200 and
//!   256 with 400; there, 140 to 195 and 574 probes per node per minute).
//! - Kademlia's routing-table refresh, every `refresh_interval` (30 min): a
//!   walk towards the node and one into each bucket, O(log N) requests. A
//!   table thinner than k is walked again every `bootstrap_interval` only
//!   while it changes (in a cluster of k nodes or fewer it never fills).
//! - CPU at rest: the event loop wakes once a second when nothing waits
//!   on a deadline (every 100 ms while a lookup, a walk or a dial does, or
//!   before the first peer; each wake polls the whole swarm), and walks the
//!   stored records for expiry only when one is due (they are renewed long
//!   before), so an idle node's CPU hardly grows with the records it
//!   stores. 5 real nodes: 0.05 CPU seconds a minute each with 2,000 keys
//!   and 0.18 with 10,000 (0.4 at 2,000 with a 100-ms tick and a record
//!   walk every 10 s).
//! - Memory: each node stores about K × k records from others (min(N, k) ×
//!   K when N is small). A stored key costs about 100 bytes with one or two
//!   providers and 8 bytes per further provider; a provider's addresses are
//!   kept once (`store`). An advertised key costs its text form, its
//!   32-byte record key and keyspace position (about 200 bytes).
//! - Measured figures: the README's routing section, the benchmark's
//!   content scenario (real daemons holding 12 to 10,000 keys) and the
//!   simulation (`sim/`, the router in virtual time; 50, 200 and 400
//!   nodes, as 1,000 do not fit this machine's memory and time yet).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), peerpull_routing::Error> {
//! use futures::StreamExt as _;
//! use peerpull_routing::{Config, Key, Router};
//!
//! let (router, event_loop) = Router::start(Config::default())?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(event_loop.run(shutdown.clone()));
//! let digest = peerpull_oci::Digest::sha256_of(b"a layer");
//! router.advertise(vec![Key::Digest(digest.clone())]).await?;
//! let mut providers = router.lookup(&Key::Digest(digest), 3).await?;
//! while let Some(p) = providers.next().await {
//!     println!("{} serves it at http://{}/v2/", p.peer, p.mirror);
//! }
//! # Ok(()) }
//! ```

mod agent;
mod batch;
mod behaviour;
pub mod config;
mod error;
mod event_loop;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod identity;
mod keys;
mod metrics;
pub mod psk;
mod region;
mod router;
pub mod simulated;
mod store;
pub mod zone;

pub use config::{Bootstrap, BootstrapParseError, Config, Transport};
pub use error::Error;
pub use event_loop::EventLoop;
pub use libp2p::{Multiaddr, PeerId};
pub use peerpull_oci::Key;
pub use psk::{KeyFormat, Psk, PskError};
pub use router::{Advertised, Counters, Lookup, Peer, Provider, Router, MAX_LOOKUP_LIMIT};
pub use zone::{Zone, ZoneError};
