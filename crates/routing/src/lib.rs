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
//! - `agent`: how a node announces its mirror address (Identify agent version).
//! - `keys`, `store`: key hashing and the provider record store.
//! - [`psk`]: [`Psk`], the pre-shared key that makes the DHT private.
//! - `metrics`: the routing-table and advertised-key gauges the event loop
//!   keeps current ([`Router::register_metrics`]).
//!
//! # Bounds
//!
//! - A withdrawn key stops being returned by other nodes within
//!   `Config::provider_ttl` (default 5 min): there is no "unprovide" message in
//!   Kademlia, so their copies of our record have to expire. While advertised, a
//!   key is re-announced `Config::reprovide_interval` (default 100 s) after its
//!   previous announcement finished, at most `max_concurrent_provides` at a time.
//! - Dead peers: a provider is returned only over a live connection that has
//!   identified it, or after a fresh dial plus Identify succeeds within
//!   `Config::dial_timeout` (default 3 s); a failed dial makes lookups skip it
//!   without dialling for `Config::unreachable_backoff`. So a peer whose process
//!   exits (the OS closes its sockets) is not returned by any lookup that starts
//!   after its connections closed (measured: milliseconds). A peer that vanishes
//!   silently (power loss, partition) loses its connection when the liveness
//!   probe fails, after at most `ping_interval + ping_timeout` (default 20 s); the
//!   bound is then 20 s + `dial_timeout` = 23 s. A lookup already in flight
//!   may still yield a provider that died during it.
//! - A lookup ends within `Config::lookup_timeout` (default 5 s).
//! - Where records land: announcements wait, after the first peer arrives, for
//!   the first Kademlia walk (at most 10 s), so they go to the nodes closest to
//!   each key rather than to the few peers known at that moment. When the
//!   cluster grows, newer nodes may become closer to a key than the ones holding
//!   its records, and a lookup may miss those records until the key's next
//!   re-announcement, within `reprovide_interval`.
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
mod router;
mod store;

pub use config::{Bootstrap, BootstrapParseError, Config};
pub use error::Error;
pub use event_loop::EventLoop;
pub use libp2p::{Multiaddr, PeerId};
pub use peerpull_oci::Key;
pub use psk::{Psk, PskError};
pub use router::{Advertised, Lookup, Peer, Provider, Router, MAX_LOOKUP_LIMIT};
