//! How the mirror behaves: what it mirrors, how long it waits, and whether
//! (and how) it fetches from the upstream itself.
//!
//! [`Config::default`] and [`UpstreamFallback::new`] hold the defaults of the
//! matching `peerpull run` flags; the flags take them from here, and a test
//! in the `peerpull` crate checks that the Helm chart and the README say
//! the same.

use std::path::PathBuf;
use std::time::Duration;

use peerpull_oci::{Mirrored, Registry, Scheme};
use peerpull_routing::{Provider, Zone};

/// The mirror's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Registries served.
    pub mirrored: Mirrored,
    /// Whether manifests are served by tag (`--resolve-tags`).
    pub resolve_tags: bool,
    /// How many providers a lookup asks for.
    pub lookup_limit: usize,
    /// How long to wait for the first provider before answering 404 (the
    /// routing's `lookup_timeout`, much longer, bounds the whole DHT lookup).
    pub provider_wait: Duration,
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
    /// How this node reaches upstream registries (credentials, TLS, time-outs).
    pub upstream: peerpull_upstream::Config,
    /// Where a tag is resolved first (`--tag-resolution`).
    pub tag_resolution: TagResolution,
    /// How long the upstream may take to resolve a tag before this node's
    /// store and its peers answer instead (`--tag-timeout`).
    pub tag_timeout: Duration,
    /// Fetching from the upstream on a miss (`--upstream-fallback`); `None`
    /// answers a miss with a 404 so containerd goes to the upstream itself.
    pub upstream_fallback: Option<UpstreamFallback>,
    /// Networks allowed to use the mirror as a client, besides loopback
    /// (`--client-cidr` and this node's own addresses); `None`: anyone.
    pub clients: Option<Vec<ipnet::IpNet>>,
    /// Uploads to other nodes at once (`--max-peer-uploads`); past it a peer
    /// is told 429 and asks another holder. 0: no cap.
    pub max_peer_uploads: usize,
    /// Bytes per second sent to other nodes in all (`--max-upload-rate`); 0: no limit.
    pub max_upload_rate: u64,
    /// Blobs of at least this many bytes come from several holders at once,
    /// when several hold them (`--multi-source-min-bytes`); 0: always one.
    pub multi_source_min_bytes: u64,
    /// Followers the node fetching a blob from the upstream serves itself;
    /// later ones stream from a follower, which serves as many onward
    /// (`--relay-fanout`, see `relay`); 0: it serves every follower itself.
    pub relay_fanout: usize,
    /// Who may read a private repository's content (`--private-images`).
    pub private_images: PrivateImages,
    /// This node's zone (`--zone`): holders in it are asked first, and
    /// followers of a fetch from another zone stream from one of their own.
    pub zone: Zone,
}

/// Who may read a private repository's content: a repository the upstream
/// refuses to this node without a pull's own credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateImages {
    /// `public` or `verify`.
    pub mode: PrivateMode,
    /// In `verify`: how long a verification keeps a pull's credentials good
    /// while the upstream cannot verify them again (`--private-grace`).
    pub grace: Duration,
    /// In `verify`: where what the node learnt about repositories (private
    /// or not) is kept across restarts; `None`: in memory only.
    pub state_file: Option<PathBuf>,
}

/// What the mirror does with private repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateMode {
    /// Any pull gets any content a node holds (containerd, and peers, ask no more).
    Public,
    /// A private repository's content goes only to a pull whose credentials
    /// the upstream accepted for that repository, on this node and between nodes.
    Verify,
}

impl Default for PrivateImages {
    fn default() -> Self {
        Self { mode: PrivateMode::Public, grace: Duration::from_secs(24 * 3600), state_file: None }
    }
}

/// Who this node is to its peers: what the node's wiring finds out (its
/// peer id, the address its mirror is bound to, the key it derives), not
/// what an operator sets.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// This node as its peers reach it (peer id, mirror address), named when
    /// it follows a fetch so that others may stream from it; `None`: it is
    /// never sent to, nor itself sent to another follower.
    pub node: Option<Provider>,
    /// Proof of cluster membership on requests between mirrors; `None`
    /// trusts any request that claims to come from a peer.
    pub membership: Option<Membership>,
}

/// What this node proves its membership with.
#[derive(Clone)]
pub struct Membership {
    /// The key every cluster node derives from the pre-shared key.
    pub key: [u8; 32],
    /// This node's peer id, named in its proofs.
    pub peer_id: String,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("peer_id", &self.peer_id).finish_non_exhaustive()
    }
}

/// Where a tag is resolved first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagResolution {
    /// Ask the upstream (a cheap `HEAD`); this node's store and its peers
    /// answer only when the upstream cannot (down, slow, 5xx, 429), so tags
    /// are fresh while it is up and still resolve in an outage.
    UpstreamFirst,
    /// This node's store, then peers, then the upstream: for a flaky or
    /// metered upstream; a tag that moved upstream may be served stale.
    PeersFirst,
}

/// How the mirror fetches from upstream registries on a miss.
#[derive(Debug, Clone)]
pub struct UpstreamFallback {
    /// Where fetches are spooled (emptied at start).
    pub spool_dir: PathBuf,
    /// The most bytes the spool holds (`--spool-max-bytes`).
    pub spool_max_bytes: u64,
    /// How long a completed fetch stays in the spool when containerd does not take it.
    pub spool_ttl: Duration,
}

impl Config {
    /// Whether the daemon fetches from the upstream on a miss unless told
    /// otherwise (`--upstream-fallback`, the chart's
    /// `peerpull.upstreamFallback`). [`Config::default`] leaves
    /// `upstream_fallback` unset all the same: fetching takes a spool directory,
    /// which only the daemon knows (under its `--data-dir`); it then uses
    /// [`UpstreamFallback::new`].
    pub const UPSTREAM_FALLBACK: bool = true;
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mirrored: Mirrored::All,
            resolve_tags: true,
            lookup_limit: 8,
            provider_wait: Duration::from_millis(500),
            hedge_delay: Duration::from_millis(300),
            peer_timeout: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(5),
            max_peer_attempts: 6,
            upstream: peerpull_upstream::Config::default(),
            tag_resolution: TagResolution::UpstreamFirst,
            tag_timeout: Duration::from_secs(2),
            upstream_fallback: None,
            clients: None,
            max_peer_uploads: 0,
            max_upload_rate: 0,
            multi_source_min_bytes: 32 << 20,
            relay_fanout: 2,
            private_images: PrivateImages::default(),
            zone: Zone::NONE,
        }
    }
}

impl UpstreamFallback {
    /// Pull-through with the default spool settings, spooling in `spool_dir`.
    pub fn new(spool_dir: PathBuf) -> Self {
        Self { spool_dir, spool_max_bytes: 4 << 30, spool_ttl: Duration::from_secs(600) }
    }
}

impl Config {
    /// The longest an upstream fetch may take to answer: a token exchange,
    /// redirects and the content's own answer, each bounded by the client's
    /// response time-out. A node streaming from the node that fetches for
    /// it waits this long too, so it never gives up before that one does.
    pub(crate) fn upstream_fallback_timeout(&self) -> Duration {
        match self.upstream_fallback {
            Some(_) => self.upstream.response_timeout * 2,
            None => self.peer_timeout,
        }
    }

    /// How this node places the followers of its fetches.
    pub(crate) fn relay_shape(&self) -> crate::relay::Shape {
        crate::relay::Shape { fanout: self.relay_fanout, zone: self.zone }
    }

    /// The upstream registry `?ns=` names: the mirrored registry of that host
    /// (with its scheme), or over HTTPS when every registry is mirrored.
    pub(crate) fn upstream(&self, ns: &str) -> Option<Registry> {
        match &self.mirrored {
            Mirrored::Only(registries) => registries.iter().find(|r| r.host() == ns).cloned(),
            Mirrored::All => Registry::new(Scheme::Https, ns).ok(),
        }
    }
}
