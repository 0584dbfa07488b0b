//! How the mirror behaves: what it mirrors and how long it waits.

use std::time::Duration;

use peerpull_oci::Mirrored;

/// The mirror's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Registries served.
    pub mirrored: Mirrored,
    /// Whether manifests are served by tag (`--resolve-tags`).
    pub resolve_tags: bool,
    /// How many providers a lookup asks for.
    pub lookup_limit: usize,
    /// How long to wait for the first provider before answering 404.
    pub lookup_timeout: Duration,
    /// After this long without response headers from a peer, also ask the next one.
    pub hedge_delay: Duration,
    /// Upper bound on connecting to a peer and receiving its response headers.
    pub peer_timeout: Duration,
    /// A peer that sends no body bytes for this long is abandoned and the
    /// transfer resumes from another provider.
    pub stall_timeout: Duration,
    /// How many requests to peers one client request may make, hedges and
    /// resumes included.
    pub max_peer_attempts: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mirrored: Mirrored::All,
            resolve_tags: true,
            lookup_limit: 8,
            lookup_timeout: Duration::from_millis(500),
            hedge_delay: Duration::from_millis(300),
            peer_timeout: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(5),
            max_peer_attempts: 6,
        }
    }
}
