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
//! - [`simulated`]: a simulated network (memory transport with latency)
//!   for many routers in one process under a paused clock.
//! - `metrics`: lookups, announcements, walks, traffic and stored records,
//!   kept current by the event loop ([`Router::register_metrics`],
//!   [`Router::counters`]).
//!
//! # Bounds
//!
//! - A withdrawn key stops being returned by other nodes within
//!   `Config::provider_ttl` (default 5 min): there is no "unprovide" message in
//!   Kademlia, so their copies of our record have to expire. While advertised, a
//!   key is re-announced `Config::reprovide_interval` (default 100 s) after its
//!   previous announcement finished, at most `max_concurrent_provides` at a time.
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
//!   `ping_interval + ping_timeout`, 20 s, for a peer that vanished silently),
//!   until its records expire. Other nodes may return a dead provider from its
//!   records until they expire (`provider_ttl`); the mirror then moves on to
//!   the next provider when the connection is refused, or after its hedge
//!   delay. A lookup already in flight may yield a provider that died during it.
//! - A lookup ends within `Config::lookup_timeout` (default 5 s).
//! - Where records land: announcements wait, after the first peer arrives, for
//!   the first Kademlia walk (at most 10 s), so they go to the nodes closest to
//!   each key rather than to the few peers known at that moment. When the
//!   cluster grows, a key whose closest nodes (as this node's routing table
//!   knows them) now include a node that just joined is re-announced at once,
//!   so the newcomer holds it and lookups, which search the closest nodes,
//!   keep finding it (at most one such announcement per key every 10 s, or
//!   filling routing tables would keep re-announcing everything). A node that
//!   takes the place of a routing-table entry gone quiet does not count as
//!   joining (in a large cluster that happens all the time as idle connections
//!   close). A failed announcement is retried after 5 s, then after twice as
//!   long per further failure in a row, at most a quarter of
//!   `reprovide_interval`.
//!
//! # How the costs grow with the cluster (N nodes)
//!
//! - A lookup is one Kademlia `GET_PROVIDERS` walk: O(log N) rounds of
//!   requests, 3 in flight, towards the nodes closest to the key; the first
//!   provider found is returned at once, with no new connection to it.
//! - An announcement is a walk plus k (20) `ADD_PROVIDER` messages, once per
//!   key every `reprovide_interval` (100 s): a quiet node's Kademlia traffic is
//!   about its number of keys × (log N + k) requests per 100 s, plus the
//!   requests it answers for others (the same on average). Liveness probes
//!   cost one round trip per open connection every `ping_interval`; a node
//!   holds connections to the peers it talked to within `idle_timeout`: the
//!   k closest nodes of each of its keys and the peers on its walks, so the
//!   count is bounded by its keys and walks rather than by N, but in a small
//!   cluster it is nearly everyone.
//! - Kademlia's routing-table refresh, every `refresh_interval` (5 min): a
//!   walk towards the node and one into each bucket, about a hundred
//!   requests, O(log N) of them.
//! - Records held: each node stores about k/N of every node's keys.
//! - Measured figures (a 120-router TCP cluster, and 50 to 200 routers on
//!   the in-process memory transport): the README's Performance section and
//!   `crates/bench`, scenario 9.
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

pub use config::{Bootstrap, BootstrapParseError, Config, Transport};
pub use error::Error;
pub use event_loop::EventLoop;
pub use libp2p::{Multiaddr, PeerId};
pub use peerpull_oci::Key;
pub use psk::{Psk, PskError};
pub use router::{Advertised, Counters, Lookup, Peer, Provider, Router, MAX_LOOKUP_LIMIT};
