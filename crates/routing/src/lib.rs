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
//! - `event_loop`: the task that owns the swarm and all routing state.
//! - `behaviour`: Kademlia + Identify + Ping, and how the swarm is built.
//! - `agent`: how a node announces its mirror address (Identify agent version).
//! - `keys`, `store`: key hashing and the provider record store.
//!
//! # Bounds
//!
//! - A withdrawn key stops being returned by other nodes within
//!   `Config::provider_ttl` (default 5 min); our records are re-announced every
//!   `Config::reprovide_interval` (default 100 s) while advertised.
//! - A dead peer is never returned unless a live connection to it exists or a
//!   fresh dial and identify succeed within `Config::dial_timeout` (3 s). A peer
//!   whose process exits is dropped as soon as its TCP connection closes; one that
//!   vanishes silently (power loss, partition) is disconnected after at most
//!   `ping_interval + ping_timeout` (20 s). After a failed dial it is skipped
//!   without dialling for `Config::unreachable_backoff`.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), peerpull_routing::Error> {
//! use futures::StreamExt as _;
//! use peerpull_routing::{Config, Router};
//!
//! let (router, event_loop) = Router::start(Config::default())?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(event_loop.run(shutdown.clone()));
//! router.advertise(vec!["sha256:0123".into()]).await?;
//! let mut providers = router.lookup("sha256:4567", 3).await?;
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
pub mod identity;
mod keys;
mod router;
mod store;

pub use config::{Bootstrap, BootstrapParseError, Config};
pub use error::Error;
pub use event_loop::EventLoop;
pub use libp2p::{Multiaddr, PeerId};
pub use router::{Lookup, Provider, Router, MAX_LOOKUP_LIMIT};
