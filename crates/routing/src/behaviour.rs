//! The libp2p behaviours the swarm runs, and how the swarm is built.
//!
//! - Kademlia (our own protocol name, so a node never joins a public DHT) in
//!   server mode unconditionally: with no AutoNAT, a node on loopback or a
//!   private network would otherwise stay a client and answer nobody.
//! - Identify, which carries each node's mirror address and listen addresses.
//! - Ping, the liveness probe that bounds how long a silently dead peer keeps
//!   its connection (and so keeps being returned).
//! - The batch protocol (`batch`): many provider records in one message.
//! - Connection limits: at most `MAX_CONNECTIONS_PER_PEER` connections with any
//!   one peer, `MAX_PENDING_INCOMING` inbound handshakes at a time and
//!   `Config::max_connections` in all (generous: a large cluster legitimately
//!   talks to many peers), so a flood of clients cannot exhaust the node.
//!
//! Transport: TCP + Noise + Yamux, with DNS for `/dns` multiaddrs; with a
//! pre-shared key, the private-network handshake runs first, so a node
//! without the key never gets as far as Noise. Simulations use libp2p's
//! memory transport under the same Noise + Yamux instead of TCP.

use std::num::NonZeroUsize;

use libp2p::{
    connection_limits::{self, ConnectionLimits},
    identify,
    identity::Keypair,
    kad::{self, Mode},
    noise, ping, request_response,
    swarm::NetworkBehaviour,
    tcp, yamux, StreamProtocol, Swarm, SwarmBuilder,
};

use libp2p::{
    core::{
        muxing::StreamMuxerBox,
        transport::{Boxed, MemoryTransport},
        upgrade::Version,
    },
    pnet::PnetConfig,
    PeerId, Transport,
};

use crate::{agent, batch, store::Store, Config, Error, Psk};

/// The Kademlia protocol name peerpull nodes speak.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/peerpull/kad/1.0.0");

/// At most this many connections with one peer; two is already a simultaneous dial.
const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// At most this many inbound connections may be in their handshake at once.
const MAX_PENDING_INCOMING: u32 = 128;
/// At most this many batch streams at once on one connection.
const MAX_BATCH_STREAMS: usize = 16;
/// The longest a batch may take to be answered.
const BATCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The protocols the swarm runs.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    limits: connection_limits::Behaviour,
    pub(crate) kad: kad::Behaviour<Store>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) batch: request_response::Behaviour<batch::Codec>,
}

impl Behaviour {
    pub(crate) fn new(key: &Keypair, config: &Config) -> Self {
        let local = key.public().to_peer_id();
        let k = NonZeroUsize::new(config.replication_factor).unwrap_or(kad::K_VALUE);
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_replication_factor(k)
            .set_query_timeout(config.walk_timeout.max(config.lookup_timeout))
            .set_provider_record_ttl(Some(config.provider_ttl))
            .set_periodic_bootstrap_interval(Some(config.refresh_interval))
            // Provider records are stored by the event loop, with the mirror address it resolved.
            .set_record_filtering(kad::StoreInserts::FilterBoth)
            // Re-announcing is ours (throttled, spread out); see `event_loop::provides`.
            .set_provider_publication_interval(None)
            .set_record_ttl(None)
            .set_publication_interval(None)
            .set_replication_interval(None);
        let store = Store::new(local, config.max_stored_keys, config.max_keys_per_peer, k.get());
        let mut kad = kad::Behaviour::with_config(local, store, kad_config);
        kad.set_mode(Some(Mode::Server));

        let identify = identify::Behaviour::new(
            identify::Config::new(agent::PROTOCOL_VERSION.to_owned(), key.public())
                .with_agent_version(agent::encode(config.mirror_addr, config.zone))
                .with_cache_size(1024),
        );
        let ping = ping::Behaviour::new(
            ping::Config::new().with_interval(config.ping_interval).with_timeout(config.ping_timeout),
        );
        let limits = connection_limits::Behaviour::new(
            ConnectionLimits::default()
                .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                .with_max_established(Some(config.max_connections)),
        );
        let batch = request_response::Behaviour::new(
            [(batch::PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(BATCH_TIMEOUT)
                .with_max_concurrent_streams(MAX_BATCH_STREAMS),
        );
        Self { limits, kad, identify, ping, batch }
    }
}

/// Builds the swarm for `keypair`. Must run inside a tokio runtime.
pub(crate) fn build_swarm(keypair: Keypair, config: &Config) -> Result<Swarm<Behaviour>, Error> {
    let idle = config.idle_timeout;
    let psk = config.psk.clone();
    if config.transport.in_process() {
        let kind = config.transport;
        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                if let crate::Transport::Simulated(latency) = kind {
                    return simulated(key, latency);
                }
                let transport = MemoryTransport::default().upgrade(Version::V1Lazy);
                Ok(transport.authenticate(noise::Config::new(key)?).multiplex(yamux::Config::default()).boxed())
            })
            .map_err(|e| Error::Transport(e.into()))?
            .with_behaviour(|key| Behaviour::new(key, config))
            .map_err(|e| Error::Transport(e.into()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        return Ok(swarm);
    }
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| transport(key, psk))
        .map_err(|e| Error::Transport(e.into()))?
        .with_dns()
        .map_err(|e| Error::Transport(format!("the system DNS configuration (/etc/resolv.conf): {e}").into()))?
        .with_behaviour(|key| Behaviour::new(key, config))
        .map_err(|e| Error::Transport(e.into()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// The simulated network: memory, latency, plaintext, Yamux (see `simulated`).
#[cfg(feature = "simulation")]
fn simulated(
    key: &Keypair,
    latency: crate::simulated::Latency,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
    let laggy = move |conn, _| {
        let seed = CONNECTIONS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        crate::simulated::Laggy::new(conn, latency, seed)
    };
    Ok(MemoryTransport::default()
        .map(laggy)
        .upgrade(Version::V1Lazy)
        .authenticate(libp2p::plaintext::Config::new(key))
        .multiplex(yamux::Config::default())
        .boxed())
}

#[cfg(not(feature = "simulation"))]
fn simulated(
    _key: &Keypair,
    _latency: crate::simulated::Latency,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    Err("the simulated transport needs a build with the `simulation` feature".into())
}

/// TCP, then (with a key) the private-network handshake, then Noise and Yamux.
fn transport(
    key: &Keypair,
    psk: Option<Psk>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    let noise = noise::Config::new(key)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(match psk {
        Some(psk) => {
            let pnet = PnetConfig::new(psk.pnet());
            tcp.and_then(move |socket, _| pnet.handshake(socket))
                .upgrade(Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .boxed()
        }
        None => tcp.upgrade(Version::V1Lazy).authenticate(noise).multiplex(yamux::Config::default()).boxed(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt as _;
    use libp2p::swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, dummy, ListenError, SwarmEvent};

    use super::*;

    /// A client with no limits of its own dials a node many times: the node keeps
    /// `MAX_CONNECTIONS_PER_PEER` of the connections and refuses the rest.
    #[tokio::test]
    async fn a_node_caps_the_connections_one_peer_opens() {
        let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
        let mut node = build_swarm(Keypair::generate_ed25519(), &config).unwrap();
        node.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = node.select_next_some().await {
                break address;
            }
        };
        let node_id = *node.local_peer_id();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match node.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => tx.send(true).unwrap(),
                    SwarmEvent::IncomingConnectionError { error: ListenError::Denied { .. }, .. } => {
                        tx.send(false).unwrap()
                    }
                    _ => {}
                }
            }
        });

        let mut client = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| dummy::Behaviour)
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let attempts = MAX_CONNECTIONS_PER_PEER + 4;
        for _ in 0..attempts {
            let opts =
                DialOpts::peer_id(node_id).addresses(vec![addr.clone()]).condition(PeerCondition::Always).build();
            client.dial(opts).unwrap();
        }
        tokio::spawn(async move {
            loop {
                client.select_next_some().await;
            }
        });
        let (mut kept, mut refused) = (0, 0);
        tokio::time::timeout(Duration::from_secs(20), async {
            while kept + refused < attempts {
                match rx.recv().await.unwrap() {
                    true => kept += 1,
                    false => refused += 1,
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(kept, MAX_CONNECTIONS_PER_PEER);
        assert_eq!(refused, attempts - MAX_CONNECTIONS_PER_PEER);
    }
}
