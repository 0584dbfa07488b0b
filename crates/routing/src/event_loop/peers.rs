//! What the event loop knows about other peers: connections, mirror
//! addresses, penalties, and who recently could not be reached.
//!
//! A peer's mirror address counts only while a connection to it is up and
//! Identify has run on it; when its last connection closes the address is
//! forgotten, so a dead peer is never returned from stale knowledge. A lookup
//! that finds a provider we are not connected to waits (bounded by the
//! dial deadline) for a dial plus Identify.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use libp2p::{swarm::ConnectionId, Multiaddr, PeerId};
use tokio::time::Instant;

use crate::agent;

/// Whether a provider can be returned now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Connected and identified: here is its mirror.
    Ready(SocketAddr),
    /// Not usable yet; `dial` says whether a dial must be started.
    Wait { dial: bool },
    /// Never return it (ourselves, recently unreachable, not a peerpull node).
    Skip,
}

#[derive(Debug)]
struct Conn {
    remote: Multiaddr,
    dialer: bool,
}

/// Peer knowledge owned by the event loop.
#[derive(Debug)]
pub(crate) struct Peers {
    local: PeerId,
    /// Where this node runs, which decides which peer addresses are acceptable.
    own: agent::Own,
    conns: HashMap<PeerId, HashMap<ConnectionId, Conn>>,
    mirrors: HashMap<PeerId, SocketAddr>,
    penalties: HashMap<PeerId, Instant>,
    unreachable: HashMap<PeerId, Instant>,
    /// Peers a lookup waits for, with the deadline for connection plus Identify.
    awaited: HashMap<PeerId, Instant>,
}

impl Peers {
    pub(crate) fn new(local: PeerId, own: agent::Own) -> Self {
        Self {
            local,
            own,
            conns: HashMap::new(),
            mirrors: HashMap::new(),
            penalties: HashMap::new(),
            unreachable: HashMap::new(),
            awaited: HashMap::new(),
        }
    }

    pub(crate) fn status(&self, peer: PeerId, now: Instant) -> Status {
        if peer == self.local {
            return Status::Skip;
        }
        if self.is_connected(&peer) {
            return match self.mirrors.get(&peer) {
                Some(addr) => Status::Ready(*addr),
                None if self.unreachable.get(&peer).is_some_and(|t| *t > now) => Status::Skip,
                None => Status::Wait { dial: false },
            };
        }
        if self.unreachable.get(&peer).is_some_and(|t| *t > now) {
            return Status::Skip;
        }
        Status::Wait { dial: !self.awaited.contains_key(&peer) }
    }

    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.conns.contains_key(peer)
    }

    /// The mirror of a connected, identified peerpull peer.
    pub(crate) fn mirror(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.mirrors.get(peer).copied()
    }

    pub(crate) fn connected_count(&self) -> usize {
        self.conns.len()
    }

    /// Remembers that a lookup waits for `peer` until `deadline` (first caller's deadline wins).
    pub(crate) fn await_peer(&mut self, peer: PeerId, deadline: Instant) {
        self.awaited.entry(peer).or_insert(deadline);
    }

    pub(crate) fn on_connected(&mut self, peer: PeerId, conn: ConnectionId, remote: Multiaddr, dialer: bool) {
        self.conns.entry(peer).or_default().insert(conn, Conn { remote, dialer });
        self.unreachable.remove(&peer);
    }

    /// Returns true if someone awaited `peer` and it is now gone for good.
    pub(crate) fn on_closed(&mut self, peer: PeerId, conn: ConnectionId) -> bool {
        if let Some(conns) = self.conns.get_mut(&peer) {
            conns.remove(&conn);
            if conns.is_empty() {
                self.conns.remove(&peer);
                self.mirrors.remove(&peer);
                return self.awaited.remove(&peer).is_some();
            }
        }
        false
    }

    /// A dial to `peer` failed. Returns true if someone awaited it.
    pub(crate) fn on_dial_failed(&mut self, peer: PeerId, until: Instant) -> bool {
        if self.is_connected(&peer) {
            return false;
        }
        self.unreachable.insert(peer, until);
        self.awaited.remove(&peer).is_some()
    }

    /// Identify ran on `conn`. `announced` is the mirror address from the agent
    /// string (None: not a peerpull node). Returns the resolved mirror and
    /// whether someone awaited the peer.
    pub(crate) fn on_identified(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        announced: Option<SocketAddr>,
        listen_addrs: &[Multiaddr],
        skip_until: Instant,
    ) -> (Option<SocketAddr>, bool) {
        let (remote, dialer) = self.remote_of(peer, conn);
        let mirror = announced.and_then(|a| agent::resolve(a, remote, dialer, listen_addrs, self.own));
        match mirror {
            Some(m) => {
                self.mirrors.insert(peer, m);
            }
            None => {
                self.mirrors.remove(&peer);
                self.unreachable.insert(peer, skip_until);
            }
        }
        (mirror, self.awaited.remove(&peer).is_some())
    }

    /// The remote IP of a connection, and whether we dialed it.
    pub(crate) fn remote_of(&self, peer: PeerId, conn: ConnectionId) -> (Option<IpAddr>, bool) {
        self.conns.get(&peer).and_then(|c| c.get(&conn)).map_or((None, false), |c| (agent::ip_of(&c.remote), c.dialer))
    }

    /// Peers whose await deadline passed; they count as unreachable for a while.
    pub(crate) fn expire_awaited(&mut self, now: Instant, until: Instant) -> Vec<PeerId> {
        let expired: Vec<PeerId> = self.awaited.iter().filter(|(_, d)| **d <= now).map(|(p, _)| *p).collect();
        for peer in &expired {
            self.awaited.remove(peer);
            self.unreachable.insert(*peer, until);
        }
        expired
    }

    pub(crate) fn penalize(&mut self, peer: PeerId, until: Instant) {
        self.penalties.insert(peer, until);
    }

    pub(crate) fn is_penalised(&self, peer: &PeerId, now: Instant) -> bool {
        self.penalties.get(peer).is_some_and(|t| *t > now)
    }

    /// Forgets expired penalties and unreachability marks.
    pub(crate) fn gc(&mut self, now: Instant) {
        self.penalties.retain(|_, t| *t > now);
        self.unreachable.retain(|_, t| *t > now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn conn(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    #[tokio::test(start_paused = true)]
    async fn lifecycle_of_a_provider() {
        let local = PeerId::random();
        let peer = PeerId::random();
        let mut peers = Peers::new(local, agent::Own { loopback: true, link_local: false });
        let now = Instant::now();
        assert_eq!(peers.status(local, now), Status::Skip);
        assert_eq!(peers.status(peer, now), Status::Wait { dial: true });
        peers.await_peer(peer, now + Duration::from_secs(3));
        assert_eq!(peers.status(peer, now), Status::Wait { dial: false });

        peers.on_connected(peer, conn(1), "/ip4/127.0.0.5/tcp/4001".parse().unwrap(), true);
        assert_eq!(peers.status(peer, now), Status::Wait { dial: false });
        let announced = Some("0.0.0.0:5000".parse().unwrap());
        let (mirror, awaited) = peers.on_identified(peer, conn(1), announced, &[], now);
        assert!(awaited);
        let mirror = mirror.unwrap();
        assert_eq!(mirror.to_string(), "127.0.0.5:5000");
        assert_eq!(peers.status(peer, now), Status::Ready(mirror));

        // The connection goes away: the mirror is forgotten, a new dial is needed.
        assert!(!peers.on_closed(peer, conn(1)));
        assert_eq!(peers.status(peer, now), Status::Wait { dial: true });
        peers.await_peer(peer, now + Duration::from_secs(3));
        assert!(peers.on_dial_failed(peer, now + Duration::from_secs(10)));
        assert_eq!(peers.status(peer, now), Status::Skip);
        tokio::time::advance(Duration::from_secs(11)).await;
        peers.gc(Instant::now());
        assert_eq!(peers.status(peer, Instant::now()), Status::Wait { dial: true });
    }

    #[tokio::test(start_paused = true)]
    async fn awaited_peers_expire_and_penalties_wear_off() {
        let mut peers = Peers::new(PeerId::random(), agent::Own { loopback: true, link_local: false });
        let peer = PeerId::random();
        let now = Instant::now();
        peers.await_peer(peer, now + Duration::from_secs(3));
        assert!(peers.expire_awaited(now, now).is_empty());
        tokio::time::advance(Duration::from_secs(3)).await;
        let later = Instant::now();
        assert_eq!(peers.expire_awaited(later, later + Duration::from_secs(5)), vec![peer]);
        assert_eq!(peers.status(peer, later), Status::Skip);

        peers.penalize(peer, later + Duration::from_secs(60));
        assert!(peers.is_penalised(&peer, later));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!peers.is_penalised(&peer, Instant::now()));
    }

    #[test]
    fn a_non_peerpull_peer_is_skipped() {
        let mut peers = Peers::new(PeerId::random(), agent::Own { loopback: true, link_local: false });
        let peer = PeerId::random();
        let now = Instant::now();
        peers.on_connected(peer, conn(7), "/ip4/127.0.0.5/tcp/4001".parse().unwrap(), false);
        let (mirror, _) = peers.on_identified(peer, conn(7), None, &[], now + Duration::from_secs(5));
        assert_eq!(mirror, None);
        assert_eq!(peers.status(peer, now), Status::Skip);
    }
}
