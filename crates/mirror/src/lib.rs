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
//! The parts:
//! - [`mirror`]: [`Mirror`], a request through the chain, counted once;
//! - `request`: a request parsed into what it wants;
//! - [`source`]: the sources (`local`, `peer`) and their [`source::Kind`];
//! - `fetch`: hedged requests to peers within one attempts budget;
//! - `multi`: a big blob from several holders at once, in chunks;
//! - `transfer`: a body streamed, resumed (from peers, then this node's own
//!   fetch) and verified;
//! - `spool`: what this node fetches from the upstream (or from the node
//!   fetching it), on disk while it streams, read by every request for it;
//! - `relay`: the nodes following one upstream fetch placed in a tree;
//! - `tags`: tags resolved against the upstream first;
//! - [`peers`]: [`Peers`], what the mirror needs from routing;
//! - [`server`]: [`Server`], the accept loop with connection limits and
//!   graceful shutdown, for any handler;
//! - [`metrics`]: [`Metrics`], the Prometheus metrics of serving;
//! - [`recent`]: the last requests answered and where each came from;
//! - [`auth`]: proof of membership between mirrors, allowed client addresses;
//! - `upload`: what this node sends to peers, capped and paced;
//! - [`body`]: response bodies and OCI error responses;
//! - [`wire`]: what one node's mirror asks another's, and how the answer
//!   reads: every `x-peerpull-*` header, the protocol version.

pub mod auth;
pub mod body;
mod config;
mod fetch;
pub mod metrics;
pub mod mirror;
mod multi;
pub mod peers;
pub mod recent;
mod relay;
mod request;
pub mod server;
pub mod source;
mod spool;
mod tags;
mod transfer;
mod upload;
pub mod wire;

pub use config::{Config, Membership, PullThrough, TagResolution};
pub use metrics::{Metrics, Stats};
pub use mirror::{Error, Mirror};
pub use peers::Peers;
#[cfg(any(test, feature = "test-util"))]
pub use peers::Static;
pub use recent::{Client, Internal, Pull, Served};
pub use server::{Limits, Server};
pub use transfer::TransferError;
