//! The agent string's parsing, exposed for the fuzz targets (`fuzz/`) only,
//! behind the `fuzzing` feature.

use std::net::{IpAddr, SocketAddr};

use crate::agent;

/// The mirror address in a peer's agent version string.
pub fn decode(agent: &str) -> Option<SocketAddr> {
    agent::decode(agent)
}

/// The mirror address used for a peer that announced `announced` over a
/// connection from `remote`, on a node that runs on neither loopback nor
/// link-local addresses (a production node).
pub fn resolve(announced: SocketAddr, remote: Option<IpAddr>, dialed: bool) -> Option<SocketAddr> {
    agent::resolve(announced, remote, dialed, &[], agent::Own { loopback: false, link_local: false, in_process: false })
}
