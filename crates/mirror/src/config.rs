//! How the mirror behaves: what it mirrors and how long it waits.

use std::time::Duration;

use peerpull_oci::Registry;

/// The mirror's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Registries served; empty means every registry.
    pub mirrored: Vec<Registry>,
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
    /// How many peer responses one request may use, hedges and resumes included.
    pub max_peer_attempts: usize,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mirrored: Vec::new(),
            resolve_tags: true,
            lookup_limit: 8,
            lookup_timeout: Duration::from_millis(500),
            hedge_delay: Duration::from_millis(300),
            peer_timeout: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(5),
            max_peer_attempts: 6,
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl Config {
    /// Whether requests for the registry named `host` (as `?ns=` names it) are served.
    pub fn mirrors(&self, host: &str) -> bool {
        self.mirrored.is_empty() || self.mirrored.iter().any(|r| r.host() == host)
    }
}
