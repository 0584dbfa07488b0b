//! The `/v2` mirror.
//!
//! An HTTP server (hyper) speaking the read side of the OCI distribution API.
//! A request is answered from a chain of sources tried in order: this
//! node's store, an upstream fetch already under way on this node, peers
//! found through the router (hedged, resumable, verified), and the upstream
//! registry, fetched once for the whole cluster. When none can answer, a
//! fast 404 sends containerd to its next host. The crate owns no containerd or DHT state, and nothing that is
//! not `/v2` serving: advertising, readiness and the metrics endpoint are
//! the node's (`peerpull-node`).
//!
//! The words, used alike in code, metrics, logs and docs:
//! - a **holder** of a blob is a node whose containerd has it (it announces
//!   it in the DHT);
//! - the **fetcher** of a blob is the one node the cluster chose (the
//!   closest to its key) to fetch it from the upstream while no node holds
//!   it; the nodes asking it to (pulling through) are its **followers**;
//! - the followers of one fetch form its **relay tree**: a follower may be
//!   sent to stream from another instead of from the fetcher;
//! - the **spool** is where a node keeps what it fetches or follows, on
//!   disk while it streams, read by every request for it.
//!
//! The parts, each depending only on those listed after it (checked by
//! `tests/layers.rs`):
//! - [`mirror`]: [`Mirror`], a request through the chain, counted once; the
//!   node's own requests in process ([`Mirror::resolve`], [`Mirror::probe`]);
//! - `source`: the chain of sources (`local`, `spooled`, `peer`,
//!   `upstream` with `follow`, a follower's side of a fetch);
//! - `request`: a request parsed into what it wants;
//! - `tags`: tags resolved against the upstream first;
//! - `upload`: what this node sends to peers, capped and paced;
//! - `spool`: what this node fetches from the upstream (or follows), on
//!   disk while it streams;
//! - `relay`: a fetch's followers placed in a tree;
//! - `multi`: a big blob from several holders at once, in chunks;
//! - `transfer`: a body streamed, resumed (from other holders) and verified;
//! - `fetch`: hedged requests to peers within one attempts budget;
//! - [`server`]: [`Server`], the accept loop with connection limits and
//!   graceful shutdown, for any handler;
//! - `recent`: the last requests answered and where each came from;
//! - [`metrics`]: [`Metrics`], the Prometheus metrics of serving, and the
//!   source [`Kind`]s they are labelled by;
//! - `private`: who may read a private repository: pulls verified against
//!   the upstream, peers' access proofs;
//! - `auth`: proof of membership between mirrors, allowed client addresses;
//! - [`wire`]: what one node's mirror asks another's, and how the answer
//!   reads: every `x-peerpull-*` header, the protocol version;
//! - `body`: response bodies and OCI error responses;
//! - [`peers`]: [`Peers`], what the mirror needs from routing.

mod auth;
mod body;
mod config;
mod fetch;
pub mod metrics;
pub mod mirror;
mod multi;
pub mod peers;
pub mod private;
mod recent;
mod relay;
mod request;
pub mod server;
mod source;
mod spool;
mod tags;
mod transfer;
mod upload;
pub mod wire;

pub use auth::RemoteAddr;
pub use body::{full, stream, text, Body, BodyError};
pub use config::{Config, Identity, Membership, PrivateImages, PrivateMode, TagResolution, UpstreamFallback};
pub use metrics::{Kind, Metrics, Stats};
pub use mirror::{Error, Mirror, Probed, Unanswered};
pub use peers::Peers;
#[cfg(any(test, feature = "test-util"))]
pub use peers::Static;
pub use recent::{Client, Pull, Served, CAPACITY as RECENT_CAPACITY};
pub use server::{Limits, Server};
pub use transfer::TransferError;
