//! Router configuration and bootstrap peer syntax.
//!
//! `Config::default()` holds production timings; tests shorten them. Its
//! `listen`, `mirror_addr` and `data_dir` are also the defaults of `peerpull
//! run`'s `--router-addr`, `--registry-addr` and `--data-dir`. The
//! bounds a caller can rely on follow from these numbers (see the crate docs):
//! a withdrawn key disappears from other nodes' answers within
//! `provider_ttl`, a dead peer within the dead-peer bound.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

/// The router's default libp2p TCP port (`--router-addr`).
pub const DEFAULT_PORT: u16 = 5001;

/// How the router is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where libp2p listens (TCP, `--router-addr`). Port 0 picks a free port; see `Router::listen_addrs`.
    pub listen: SocketAddr,
    /// This node's own `/v2` mirror endpoint (`--registry-addr`), announced to peers. An unspecified IP is
    /// replaced, on the receiving side, by the IP the receiver reaches us at.
    pub mirror_addr: SocketAddr,
    /// This node's zone (`--zone`), told to peers with its mirror address.
    pub zone: crate::Zone,
    /// Peers to join through. Empty means this node stands alone (and is ready at once).
    pub bootstrap: Vec<Bootstrap>,
    /// Where the node identity is kept (created if missing; `--data-dir`).
    pub data_dir: PathBuf,
    /// The cluster's pre-shared key: with it only nodes holding the same key
    /// can connect (`--psk-file`); without it, any host that reaches the port can join.
    pub psk: Option<crate::Psk>,
    /// How long other nodes keep our provider records. Withdrawn keys vanish from
    /// others' answers within this time.
    pub provider_ttl: Duration,
    /// How often our keys are re-announced; must be well below `provider_ttl`.
    pub reprovide_interval: Duration,
    /// Upper bound on one lookup: the stream ends by then.
    pub lookup_timeout: Duration,
    /// Upper bound on one Kademlia walk (an announcement round's, the fetcher
    /// choice's, a routing-table refresh); at least `lookup_timeout`.
    pub walk_timeout: Duration,
    /// Upper bound on dialling and identifying a provider before it is returned.
    pub dial_timeout: Duration,
    /// How long a complete lookup answer is reused for identical lookups.
    pub cache_ttl: Duration,
    /// How long an empty lookup answer is reused.
    pub negative_cache_ttl: Duration,
    /// How long a penalised peer is returned only after every other one.
    pub penalty: Duration,
    /// How long a peer we failed to dial is skipped without a new dial.
    pub unreachable_backoff: Duration,
    /// How often bootstrap re-runs once connected (heals a node cut off).
    pub bootstrap_interval: Duration,
    /// The longest wait between bootstrap attempts while no peer is connected.
    pub bootstrap_backoff_max: Duration,
    /// How often Kademlia refreshes the routing table (a walk towards this node
    /// and one into each bucket: about a hundred requests).
    pub refresh_interval: Duration,
    /// Liveness probe interval on every connection; a peer that misses a probe for
    /// `ping_timeout` is disconnected.
    pub ping_interval: Duration,
    /// See `ping_interval`.
    pub ping_timeout: Duration,
    /// Connections without traffic are closed after this long.
    pub idle_timeout: Duration,
    /// Upper bound on a command's round trip to the event loop.
    pub command_timeout: Duration,
    /// Upper bound on `Router::advertise` waiting for the first announcement of its keys.
    pub advertise_timeout: Duration,
    /// How many announcement queries run at once.
    pub max_concurrent_provides: usize,
    /// How many provider keys (ours and others') the local store holds at most.
    pub max_stored_keys: usize,
    /// At most this many of those records may come from any one other peer.
    pub max_keys_per_peer: usize,
    /// At most this many libp2p connections in all.
    pub max_connections: u32,
    /// The Kademlia replication factor (k).
    pub replication_factor: usize,
    /// How routers reach each other: TCP, or libp2p's in-process memory transport.
    pub transport: Transport,
}

/// How routers reach each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// TCP on `Config::listen` (with the private-network handshake when a key is set).
    #[default]
    Tcp,
    /// libp2p's in-process memory transport, for simulations of many routers in
    /// one process (no sockets, no file descriptors): the router listens on
    /// `/memory/<port of Config::listen>` and bootstraps through `/memory/…`
    /// multiaddrs. Connections carry no IP, so peers' mirror addresses are taken
    /// as they announce them: never use it outside one trusted process.
    Memory,
    /// The memory transport with a latency on every byte and a plaintext
    /// handshake, for simulations under tokio's paused clock (`sim/`); only
    /// in builds with the `simulation` feature.
    Simulated(crate::simulated::Latency),
}

impl Transport {
    /// Whether routers reach each other inside this process (no IPs).
    pub(crate) fn in_process(self) -> bool {
        matches!(self, Transport::Memory | Transport::Simulated(_))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT),
            mirror_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5000),
            zone: crate::Zone::NONE,
            bootstrap: Vec::new(),
            data_dir: PathBuf::from("/var/lib/peerpull"),
            psk: None,
            // Chosen from the simulation (sim/, 200 routers, 100 keys each):
            // re-announcing every 100 s with connections idle for 120 s kept
            // every node connected to every other and probing them all (1,206
            // probes and 524 messages per router per minute); every 10 min
            // with 30 s, 234 and 74. Records outlive two missed rounds.
            provider_ttl: Duration::from_secs(1800),
            reprovide_interval: Duration::from_secs(600),
            lookup_timeout: Duration::from_secs(5),
            walk_timeout: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(3),
            cache_ttl: Duration::from_secs(5),
            negative_cache_ttl: Duration::from_secs(1),
            penalty: Duration::from_secs(300),
            unreachable_backoff: Duration::from_secs(10),
            bootstrap_interval: Duration::from_secs(30),
            bootstrap_backoff_max: Duration::from_secs(30),
            // Kademlia's refresh walks towards every bucket: about 200
            // messages per node each time in the simulation (100 routers),
            // as much as all its region rounds cost in 5 minutes. Region
            // rounds walk the keyspace a node holds keys in every
            // `reprovide_interval`, and nodes that join connect to the nodes
            // near them, so the full refresh is needed far less often.
            refresh_interval: Duration::from_secs(1800),
            // Every connection is probed (both ends, from its start); with
            // connections idle for 30 s most live for one round. Simulated,
            // 200 routers: every 10 s, 6.3 probes per connection per minute,
            // 241 per router, more than twice the other messages; every
            // 30 s, 2.5. A peer that vanished without closing its
            // connections is noticed within 40 s instead of 20 (a process
            // that exits, at once).
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(10),
            advertise_timeout: Duration::from_secs(120),
            max_concurrent_provides: 32,
            max_stored_keys: 262_144,
            max_keys_per_peer: 32_768,
            max_connections: 4096,
            replication_factor: 20,
            transport: Transport::Tcp,
        }
    }
}

/// A peer to join the DHT through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// A multiaddr, with or without a trailing `/p2p/<peer id>`.
    Addr(Multiaddr),
    /// A name resolved (all A/AAAA records) on every bootstrap round, e.g. a Kubernetes
    /// headless Service; each address is dialled without knowing its peer id.
    /// `port: None` means our own listen port (or `DEFAULT_PORT` if that is 0).
    Dns {
        /// The DNS name.
        name: String,
        /// The router port on every resolved address.
        port: Option<u16>,
    },
}

/// A bootstrap peer string that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad bootstrap peer {input:?}: expected a multiaddr, HOST:PORT or dns:NAME[:PORT]")]
pub struct BootstrapParseError {
    /// What was given.
    pub input: String,
}

impl Bootstrap {
    /// Parses `/ip4/…/tcp/…[/p2p/…]`, `/dns/…/tcp/…`, `HOST:PORT`, `[V6]:PORT` or `dns:NAME[:PORT]`.
    pub fn parse(s: &str) -> Result<Self, BootstrapParseError> {
        let bad = || BootstrapParseError { input: s.to_owned() };
        let s = s.trim();
        if s.starts_with('/') {
            return s.parse::<Multiaddr>().map(Bootstrap::Addr).map_err(|_| bad());
        }
        if let Some(rest) = s.strip_prefix("dns:") {
            let (name, port) = match rest.rsplit_once(':') {
                Some((name, port)) => (name, Some(port.parse::<u16>().map_err(|_| bad())?)),
                None => (rest, None),
            };
            if name.is_empty() || name.contains(['/', ' ']) {
                return Err(bad());
            }
            return Ok(Bootstrap::Dns { name: name.to_owned(), port });
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Bootstrap::Addr(crate::agent::multiaddr_of(addr)));
        }
        // HOST:PORT with a name: resolved like `dns:` (all addresses, unknown peer ids).
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if host.is_empty() || host.contains(['/', ' ', ':', '[']) {
            return Err(bad());
        }
        Ok(Bootstrap::Dns { name: host.to_owned(), port: Some(port) })
    }

    /// The peer id named in the multiaddr, if any.
    pub fn peer_id(&self) -> Option<PeerId> {
        match self {
            Bootstrap::Addr(addr) => addr.iter().find_map(|p| match p {
                Protocol::P2p(id) => Some(id),
                _ => None,
            }),
            Bootstrap::Dns { .. } => None,
        }
    }
}

impl FromStr for Bootstrap {
    type Err = BootstrapParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bootstrap::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let id = PeerId::random();
        let with_id = Bootstrap::parse(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{id}")).unwrap();
        assert_eq!(with_id.peer_id(), Some(id));
        assert_eq!(
            Bootstrap::parse("127.0.0.2:4001").unwrap(),
            Bootstrap::Addr("/ip4/127.0.0.2/tcp/4001".parse().unwrap())
        );
        assert_eq!(Bootstrap::parse("[::1]:4001").unwrap(), Bootstrap::Addr("/ip6/::1/tcp/4001".parse().unwrap()));
        assert_eq!(
            Bootstrap::parse("dns:peerpull.kube-system.svc:5001").unwrap(),
            Bootstrap::Dns { name: "peerpull.kube-system.svc".into(), port: Some(5001) }
        );
        assert_eq!(Bootstrap::parse("dns:peers").unwrap(), Bootstrap::Dns { name: "peers".into(), port: None });
        assert_eq!(
            Bootstrap::parse("node-1:5001").unwrap(),
            Bootstrap::Dns { name: "node-1".into(), port: Some(5001) }
        );
        assert!(Bootstrap::parse("/dns/peers/tcp/5001").is_ok());
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "dns:", "dns:x:notaport", "host", "host:99999", "/not/a/multiaddr", "dns:a b"] {
            assert!(Bootstrap::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn defaults_keep_reprovide_well_inside_ttl() {
        let c = Config::default();
        assert!(c.reprovide_interval * 2 < c.provider_ttl);
    }
}
