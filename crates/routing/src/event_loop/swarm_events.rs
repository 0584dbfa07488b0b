//! Dispatch of swarm events into the event loop's state.
//!
//! Kademlia progress feeds lookups and announcements; connection events and
//! Identify feed `peers` (who is alive, where their mirror is); a failed Ping
//! closes the connection, which is what bounds how long a silently dead peer
//! can still be returned.

use libp2p::{
    identify,
    kad::{self, GetProvidersOk, QueryResult},
    multiaddr::Protocol,
    ping,
    swarm::{DialError, SwarmEvent},
    Multiaddr,
};
use tokio::time::Instant;

use super::EventLoop;
use crate::{
    agent,
    behaviour::{BehaviourEvent, KAD_PROTOCOL},
};

impl EventLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.on_ping(e),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                let remote = endpoint.get_remote_address().clone();
                if endpoint.is_dialer() {
                    self.bootstrap.learned(remote.clone(), peer_id);
                }
                self.peers.on_connected(peer_id, connection_id, remote, endpoint.is_dialer());
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, cause, .. } => {
                tracing::trace!(peer = %peer_id, ?cause, "connection closed");
                if self.peers.on_closed(peer_id, connection_id) {
                    self.peer_resolved(peer_id, None);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                if matches!(error, DialError::DialPeerConditionFalse(_)) {
                    return;
                }
                tracing::debug!(%peer, %error, "dial failed");
                let until = Instant::now() + self.config.unreachable_backoff;
                if self.peers.on_dial_failed(peer, until) {
                    self.peer_resolved(peer, None);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => self.on_new_listen_addr(address),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if let Some(s) = agent::socket_of(&address) {
                    self.listen_addrs.retain(|a| *a != s);
                }
                self.swarm.remove_external_address(&address);
            }
            SwarmEvent::ListenerClosed { reason: Err(e), .. } | SwarmEvent::ListenerError { error: e, .. } => {
                tracing::error!(error = %e, "libp2p listener failed");
            }
            _ => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed { id, result, step, .. } = event else { return };
        match result {
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) => {
                if let Some(key) = self.lookups.key_of(&id) {
                    for peer in providers {
                        if self.lookups.found(&key, peer) {
                            self.resolve_provider(&key, peer);
                        }
                    }
                }
            }
            QueryResult::GetClosestPeers(result) if step.last => {
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                self.on_walked(&id, peers.into_iter().map(|p| p.peer_id).collect());
            }
            QueryResult::StartProviding(result) => {
                if let Err(e) = &result {
                    tracing::debug!(error = %e, "announcement reached fewer peers than hoped");
                }
                self.provides.on_result(&id, result.is_ok(), Instant::now());
            }
            QueryResult::RepublishProvider(Err(e)) => tracing::debug!(error = %e, "re-announcement failed"),
            QueryResult::Bootstrap(_) if step.last => self.walking_until = None,
            _ => {}
        }
        if step.last {
            self.lookups.query_finished(&id);
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, connection_id, info } = event else { return };
        let (remote, _) = self.peers.remote_of(peer_id, connection_id);
        let now = Instant::now();
        let announced =
            if info.protocol_version == agent::PROTOCOL_VERSION { agent::decode(&info.agent_version) } else { None };
        if announced.is_some() && info.protocols.contains(&KAD_PROTOCOL) {
            // Kademlia learns dialable addresses only for peers we dialed; inbound peers
            // tell us theirs through Identify. Keep those reachable the way this one is.
            let loopback = remote.is_some_and(|ip| ip.is_loopback());
            for addr in info.listen_addrs.iter().filter(|a| dialable(a, loopback)) {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
            }
        }
        let (mirror, awaited) = self.peers.on_identified(
            peer_id,
            connection_id,
            announced,
            &info.listen_addrs,
            now + self.config.unreachable_backoff,
        );
        tracing::trace!(peer = %peer_id, ?mirror, agent = %info.agent_version, "peer identified");
        if awaited {
            self.peer_resolved(peer_id, mirror);
        }
    }

    fn on_ping(&mut self, event: ping::Event) {
        match event.result {
            Ok(_) | Err(ping::Failure::Unsupported) => {}
            Err(error) => {
                tracing::debug!(peer = %event.peer, %error, "liveness probe failed; closing connection");
                self.swarm.close_connection(event.connection);
            }
        }
    }

    fn on_new_listen_addr(&mut self, address: Multiaddr) {
        tracing::info!(peer = %self.local, %address, "routing listening");
        let Some(socket) = agent::socket_of(&address) else { return };
        if !self.listen_addrs.contains(&socket) {
            self.listen_addrs.push(socket);
        }
        // Announce where we can be reached: loopback only when we listen on loopback
        // on purpose, since another machine dialling its own loopback reaches itself.
        if !socket.ip().is_loopback() || self.config.listen.ip().is_loopback() {
            self.swarm.add_external_address(address);
        }
        for waiter in self.listen_waiters.drain(..) {
            let _ = waiter.send(self.listen_addrs.clone());
        }
    }
}

/// Whether a peer's listen address is worth adding to the routing table.
fn dialable(addr: &Multiaddr, loopback_conn: bool) -> bool {
    agent::ip_of(addr).is_some_and(|ip| !ip.is_unspecified() && ip.is_loopback() == loopback_conn)
        && addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
}
