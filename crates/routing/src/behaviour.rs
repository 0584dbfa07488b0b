//! The libp2p behaviours the swarm runs, and how the swarm is built.
//!
//! - Kademlia (our own protocol name, so a node never joins a public DHT) in
//!   server mode unconditionally: with no AutoNAT, a node on loopback or a
//!   private network would otherwise stay a client and answer nobody.
//! - Identify, which carries each node's mirror address and listen addresses.
//! - Ping, the liveness probe that bounds how long a silently dead peer keeps
//!   its connection (and so keeps being returned).
//!
//! Transport: TCP + Noise + Yamux, with DNS for `/dns` multiaddrs.

use std::num::NonZeroUsize;

use libp2p::{
    identify,
    identity::Keypair,
    kad::{self, Mode},
    noise, ping,
    swarm::NetworkBehaviour,
    tcp, yamux, StreamProtocol, Swarm, SwarmBuilder,
};

use crate::{agent, store::Store, Config, Error};

/// The Kademlia protocol name peerpull nodes speak.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/peerpull/kad/1.0.0");

/// The protocols the swarm runs.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) kad: kad::Behaviour<Store>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
}

impl Behaviour {
    fn new(key: &Keypair, config: &Config) -> Self {
        let local = key.public().to_peer_id();
        let k = NonZeroUsize::new(config.replication_factor).unwrap_or(kad::K_VALUE);
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_replication_factor(k)
            .set_query_timeout(config.lookup_timeout.max(std::time::Duration::from_secs(30)))
            .set_provider_record_ttl(Some(config.provider_ttl))
            // Re-announcing is ours (throttled, spread out); see `event_loop::provides`.
            .set_provider_publication_interval(None)
            .set_record_ttl(None)
            .set_publication_interval(None)
            .set_replication_interval(None);
        let store = Store::new(local, config.max_stored_keys, k.get());
        let mut kad = kad::Behaviour::with_config(local, store, kad_config);
        kad.set_mode(Some(Mode::Server));

        let identify = identify::Behaviour::new(
            identify::Config::new(agent::PROTOCOL_VERSION.to_owned(), key.public())
                .with_agent_version(agent::encode(config.mirror_addr))
                .with_cache_size(1024),
        );
        let ping = ping::Behaviour::new(
            ping::Config::new().with_interval(config.ping_interval).with_timeout(config.ping_timeout),
        );
        Self { kad, identify, ping }
    }
}

/// Builds the swarm for `keypair`. Must run inside a tokio runtime.
pub(crate) fn build_swarm(keypair: Keypair, config: &Config) -> Result<Swarm<Behaviour>, Error> {
    let idle = config.idle_timeout;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_dns()
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_behaviour(|key| Behaviour::new(key, config))
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
