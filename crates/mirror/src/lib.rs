//! The `/v2` mirror.
//!
//! An HTTP server (hyper) speaking the read side of the OCI distribution API.
//! A request is answered from a chain of sources tried in order: this
//! node's store, then peers found through the router (hedged, resumable,
//! verified); when none has the content, a fast 404 sends containerd to its
//! next host. The crate owns no containerd or DHT state, and nothing that is
//! not `/v2` serving: advertising, readiness and the metrics endpoint are
//! the node's (`peerpull-node`).
//!
//! The parts:
//! - [`mirror`]: [`Mirror`], a request through the chain, counted once;
//! - `request`: a request parsed into what it wants;
//! - [`source`]: the sources (`local`, `peer`) and their [`source::Kind`];
//! - `fetch`: hedged requests to peers within one attempts budget;
//! - `transfer`: a peer's body streamed, resumed and verified;
//! - [`peers`]: [`Peers`], what the mirror needs from routing;
//! - [`server`]: [`Server`], the accept loop with connection limits and
//!   graceful shutdown, for any handler;
//! - [`metrics`]: [`Metrics`], the Prometheus metrics of serving;
//! - [`body`]: response bodies and OCI error responses.

pub mod body;
mod config;
mod fetch;
pub mod metrics;
pub mod mirror;
pub mod peers;
mod request;
pub mod server;
pub mod source;
mod transfer;

pub use config::Config;
pub use metrics::Metrics;
pub use mirror::Mirror;
pub use peers::Peers;
#[cfg(any(test, feature = "test-util"))]
pub use peers::Static;
pub use server::{Limits, Server};
pub use transfer::TransferError;

/// The header a node puts on requests to peers. A node receiving it answers
/// from its own store only and never forwards, so requests cannot loop.
pub const LOOP_GUARD: &str = "x-peerpull-peer";
