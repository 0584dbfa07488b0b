//! The parsers of what peers send (the agent string, provider batches),
//! exposed for the fuzz targets (`fuzz/`) only, behind the `fuzzing` feature.

use std::net::{IpAddr, SocketAddr};

use crate::{agent, batch};

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

/// A provider batch's keys (stored, removed) and addresses, if it decodes;
/// panics if what decodes does not encode back to the same bytes.
pub fn batch(bytes: &[u8]) -> Option<(usize, usize, usize)> {
    let request = batch::decode(bytes).ok()?;
    assert_eq!(batch::encode(&request), bytes, "a decoded batch encodes back to its bytes");
    Some((request.keys.len(), request.removed.len(), request.addresses.len()))
}
