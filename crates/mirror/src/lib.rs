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
//! - [`body`]: response bodies and OCI error responses.

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

pub use config::{Config, Membership, PullThrough, TagResolution};
pub use metrics::{Metrics, Stats};
pub use mirror::{Error, Mirror};
pub use peers::Peers;
#[cfg(any(test, feature = "test-util"))]
pub use peers::Static;
pub use recent::{Client, Internal, Pull, Served};
pub use server::{Limits, Server};
pub use transfer::TransferError;

/// The header a node puts on requests to peers. A node receiving it answers
/// from what it holds or is fetching and never asks other peers, so requests
/// cannot loop.
pub const LOOP_GUARD: &str = "x-peerpull-peer";

/// With [`LOOP_GUARD`]: the asking node chose this one to fetch the content
/// from the upstream for the cluster, and it may do so (never through
/// another peer). See `source::upstream`.
pub const PULL_THROUGH: &str = "x-peerpull-pull-through";

/// On the 404 a node answers a pull-through request with: the upstream
/// itself could not serve it (refused, out of reach, wrong bytes), so the
/// asking node answers a miss at once rather than asking the upstream again.
pub(crate) const UPSTREAM_FAILED: &str = "x-peerpull-upstream-failed";
