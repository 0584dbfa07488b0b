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
    ping, request_response,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionError, DialError, SwarmEvent,
    },
    Multiaddr,
};
use tokio::time::Instant;

use super::EventLoop;
use crate::{
    agent, batch,
    behaviour::{BehaviourEvent, KAD_PROTOCOL},
    metrics::{Direction, Origin, Request, Walk},
};

impl EventLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.on_ping(e),
            SwarmEvent::Behaviour(BehaviourEvent::Batch(e)) => self.on_batch(e),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                let remote = endpoint.get_remote_address().clone();
                if endpoint.is_dialer() {
                    self.bootstrap.learned(remote.clone(), peer_id);
                }
                self.peers.on_connected(peer_id, connection_id, remote, endpoint.is_dialer());
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, cause, .. } => {
                tracing::trace!(peer = %peer_id, ?cause, "connection closed");
                let awaited = self.peers.on_closed(peer_id, connection_id);
                // Closed by the other side, or broken: it may have exited. An idle
                // connection the other side closed looks the same, so only briefly.
                if !self.peers.is_connected(&peer_id) && matches!(cause, Some(ConnectionError::IO(_))) {
                    self.peers.went_away(peer_id, Instant::now() + self.config.unreachable_backoff);
                    self.check_holder(peer_id);
                }
                if awaited {
                    self.peer_resolved(peer_id, None);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                match error {
                    // Already being dialled: that dial reports.
                    DialError::DialPeerConditionFalse(_) => return,
                    // Our own connection limits: no sign of the peer's health.
                    DialError::Denied { .. } => {
                        if self.peers.stop_awaiting(&peer) {
                            self.peer_resolved(peer, None);
                        }
                        return;
                    }
                    _ => {}
                }
                tracing::debug!(%peer, %error, "dial failed");
                self.drop_records_of(peer);
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
        let (id, result, step, stats) = match event {
            kad::Event::OutboundQueryProgressed { id, result, step, stats } => (id, result, step, stats),
            kad::Event::InboundRequest { request } => return self.on_inbound(request),
            // A peer that took the place of one gone quiet is no newcomer: in a large
            // cluster, entries of full buckets are replaced all the time as idle
            // connections close, and following those re-announced keys without end.
            kad::Event::RoutingUpdated { peer, is_new_peer: true, old_peer: None, .. } => {
                return self.joined.push(peer)
            }
            _ => return,
        };
        if step.last {
            let (kind, walk) = match &result {
                QueryResult::GetProviders(_) => (Request::GetProviders, None),
                QueryResult::StartProviding(_) | QueryResult::RepublishProvider(_) => (Request::AddProvider, None),
                QueryResult::Bootstrap(_) => (Request::FindNode, Some(Walk::Bootstrap)),
                QueryResult::GetClosestPeers(_) if self.provides.owns(&id) => (Request::FindNode, Some(Walk::Region)),
                QueryResult::GetClosestPeers(_) => (Request::FindNode, Some(Walk::Closest)),
                _ => (Request::Other, None),
            };
            self.metrics.requests(Direction::Sent, kind, u64::from(stats.num_requests()));
            if let Some(walk) = walk {
                self.metrics.walk(walk);
            }
        }
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
                let (peers, timed_out) = match result {
                    Ok(ok) => (ok.peers, false),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, true),
                };
                let peers: Vec<_> = peers.into_iter().map(|p| p.peer_id).collect();
                if !self.announce_walked(&id, &peers, timed_out) {
                    self.on_walked(&id, peers);
                }
            }
            QueryResult::Bootstrap(_) if step.last => self.walking_until = None,
            _ => {}
        }
        if step.last {
            self.lookups.query_finished(&id);
        }
    }

    /// A request another node sent us. Provider records are stored here rather
    /// than by Kademlia, with the announcing node's mirror address as this node
    /// resolves it (the connection's IP wins), ahead of its other addresses.
    fn on_inbound(&mut self, request: kad::InboundRequest) {
        let kind = match request {
            kad::InboundRequest::FindNode { .. } => Request::FindNode,
            kad::InboundRequest::GetProvider { .. } => Request::GetProviders,
            kad::InboundRequest::AddProvider { record } => {
                if let Some(record) = record {
                    self.store_provider(record, Origin::AddProvider);
                }
                Request::AddProvider
            }
            _ => Request::Other,
        };
        self.metrics.requests(Direction::Answered, kind, 1);
    }

    /// A round's walk ended: its batches go out. False if it was not a round's walk.
    fn announce_walked(&mut self, id: &kad::QueryId, peers: &[libp2p::PeerId], timed_out: bool) -> bool {
        if !self.provides.owns(id) {
            return false;
        }
        let addresses: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        let behaviour = self.swarm.behaviour_mut();
        let (kad, batches) = (&mut behaviour.kad, &mut behaviour.batch);
        self.provides.on_walked(
            id,
            peers,
            timed_out,
            kad,
            |peer, request| batches.send_request(peer, request),
            &addresses,
        )
    }

    /// The batch protocol: records another node sends us, and the answers to ours.
    fn on_batch(&mut self, event: request_response::Event<batch::Request, batch::Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                self.metrics.requests(Direction::Answered, Request::Batch, 1);
                let expires = Some(std::time::Instant::now() + self.config.provider_ttl);
                let mut stored = 0u32;
                let store = self.swarm.behaviour_mut().kad.store_mut();
                for key in &request.removed {
                    kad::store::RecordStore::remove_provider(store, key, &peer);
                }
                for key in request.keys {
                    let record =
                        kad::ProviderRecord { key, provider: peer, expires, addresses: request.addresses.clone() };
                    if self.store_provider(record, Origin::Batch) {
                        stored += 1;
                    }
                }
                let _ = self.swarm.behaviour_mut().batch.send_response(channel, batch::Response { stored });
            }
            Event::Message { message: Message::Response { request_id, response }, .. } => {
                self.provides.on_batch_answered(&request_id, Some(response.stored));
            }
            Event::OutboundFailure { peer, request_id, error, .. } => {
                tracing::debug!(%peer, %error, "provide batch failed");
                self.provides.on_batch_answered(&request_id, None);
            }
            Event::InboundFailure { peer, error, .. } => tracing::debug!(%peer, %error, "inbound provide batch failed"),
            Event::ResponseSent { .. } => {}
        }
    }

    /// Stores another node's record; false if refused.
    fn store_provider(&mut self, mut record: kad::ProviderRecord, origin: Origin) -> bool {
        use kad::store::RecordStore as _;
        let announced = record.addresses.iter().find_map(agent::mirror_and_zone);
        record.addresses.retain(|a| agent::mirror_of(a).is_none());
        let (announced, zone) = (announced.map(|(m, _)| m), announced.map(|(_, z)| z).unwrap_or_default());
        if let Some(mirror) = self.peers.resolve_announced(record.provider, announced, &record.addresses) {
            record.addresses.insert(0, agent::mirror_multiaddr(mirror, zone));
        }
        let provider = record.provider;
        match self.swarm.behaviour_mut().kad.store_mut().add_provider(record) {
            Ok(()) => {
                self.metrics.stored(origin);
                true
            }
            Err(error) => {
                tracing::debug!(%provider, ?error, "provider record refused");
                self.metrics.records_refused.inc();
                false
            }
        }
    }

    /// A provider whose records we hold lost its last connection to us with
    /// an error: dial it, and drop its records if that fails (it exited, or
    /// cannot be reached), rather than hand lookups a dead holder until its
    /// records expire.
    fn check_holder(&mut self, peer: libp2p::PeerId) {
        if !self.swarm.behaviour_mut().kad.store_mut().holds_records_of(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
        if let Err(error) = self.swarm.dial(opts) {
            tracing::debug!(%peer, %error, "cannot dial a provider that went away");
            self.drop_records_of(peer);
        }
    }

    /// Drops every record `peer` has here: it is gone.
    fn drop_records_of(&mut self, peer: libp2p::PeerId) {
        let dropped = self.swarm.behaviour_mut().kad.store_mut().remove_peer(&peer);
        if dropped > 0 {
            tracing::debug!(%peer, dropped, "dropped the records of a provider that is gone");
            self.metrics.records_gone.inc_by(u64::try_from(dropped).unwrap_or(u64::MAX));
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
        let zone = agent::decode_zone(&info.agent_version);
        let (mirror, awaited) = self.peers.on_identified(
            peer_id,
            connection_id,
            announced.map(|a| (a, zone)),
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
            Ok(rtt) => {
                self.metrics.pings.inc();
                let mut rtts = self.rtts.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                if rtts.len() >= crate::router::MAX_RTTS && !rtts.contains_key(&event.peer) {
                    rtts.clear();
                }
                rtts.insert(event.peer, rtt);
            }
            Err(ping::Failure::Unsupported) => {}
            Err(error) => {
                tracing::debug!(peer = %event.peer, %error, "liveness probe failed; closing connection");
                self.peers.went_away(event.peer, Instant::now() + self.config.provider_ttl);
                self.swarm.close_connection(event.connection);
                self.drop_records_of(event.peer);
            }
        }
    }

    fn on_new_listen_addr(&mut self, address: Multiaddr) {
        tracing::info!(peer = %self.local, %address, "routing listening");
        let socket = match address.iter().next() {
            // `/memory/<port>`: the configured listen address stands for it.
            Some(Protocol::Memory(port)) => {
                u16::try_from(port).ok().map(|port| std::net::SocketAddr::new(self.config.listen.ip(), port))
            }
            _ => agent::socket_of(&address),
        };
        let Some(socket) = socket else { return };
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

/// Whether a peer's listen address is worth adding to the routing table (its
/// mirror address, among them, is not). In-process `/memory` addresses are;
/// only the memory transport can dial them.
fn dialable(addr: &Multiaddr, loopback_conn: bool) -> bool {
    if matches!(addr.iter().next(), Some(Protocol::Memory(_))) {
        return true;
    }
    agent::ip_of(addr).is_some_and(|ip| !ip.is_unspecified() && ip.is_loopback() == loopback_conn)
        && addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
        && agent::mirror_of(addr).is_none()
}
