//! The `/v2` mirror.
//!
//! An HTTP server (hyper) speaking the read side of the OCI distribution API.
//! It serves content from this node's store, fetches it from peers found
//! through the router (hedged, resumable, verified), and otherwise answers a
//! fast 404 so containerd goes to its next host. It also serves metrics and
//! health endpoints. It owns no containerd or DHT state of its own.
//!
//! The parts:
//! - [`advertise`]: [`Advertiser`], keeping the DHT in step with the store;
//! - [`server`]: [`Server`], the accept loop with connection limits and
//!   graceful shutdown;
//! - `handler`: one request, routed to the store, peers or a 404;
//! - `fetch`: hedged, resumable, verified transfers from peers;
//! - [`peers`]: [`Peers`], what the mirror needs from routing;
//! - [`metrics`]: [`Metrics`], the Prometheus metrics;
//! - [`health`]: [`Health`], what `/readyz` checks;
//! - [`body`]: response bodies and OCI error responses.

pub mod advertise;
pub mod body;
mod config;
mod fetch;
mod handler;
pub mod health;
pub mod metrics;
pub mod peers;
pub mod server;

pub use advertise::Advertiser;
pub use config::Config;
pub use fetch::TransferError;
pub use health::Health;
pub use metrics::Metrics;
pub use peers::{Peers, Static};
pub use server::Server;

/// The header a node puts on requests to peers. A node receiving it answers
/// from its own store only and never forwards, so requests cannot loop.
pub const LOOP_GUARD: &str = "x-peerpull-peer";

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The `/v2` API, plus `/readyz` and `/livez`.
    Registry,
    /// `/metrics`, `/readyz` and `/livez`.
    Metrics,
}
