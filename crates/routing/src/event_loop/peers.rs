//! What the event loop knows about other peers: connections, mirror
//! addresses, penalties, and who recently could not be reached.
//!
//! A connected peer's mirror address is the one Identify gave on the
//! connection (the connection's IP wins), and is forgotten when its last
//! connection closes. A provider we are not connected to is used at the
//! mirror address its provider record carries, without a connection, unless
//! it may have gone away: a dial to it or its liveness probe failed (until
//! its records would have expired), or the other side ended its last
//! connection (briefly: peers also close idle connections, and a process
//! that exits looks the same). Such a peer, and one whose record carries no
//! usable address, is dialled first, and a lookup waits (bounded by the dial
//! deadline) for the dial plus Identify; one that cannot be dialled is
//! skipped for a while.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use libp2p::{swarm::ConnectionId, Multiaddr, PeerId};
use tokio::time::Instant;

use crate::{agent, Zone};

/// The most peers whose zone is remembered.
const MAX_ZONES: usize = 100_000;

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
    /// The zone each peer announced last (in Identify or a provider record).
    zones: HashMap<PeerId, Zone>,
    penalties: HashMap<PeerId, Instant>,
    unreachable: HashMap<PeerId, Instant>,
    /// Peers a lookup waits for, with the deadline for connection plus Identify.
    awaited: HashMap<PeerId, Instant>,
    /// Mirror addresses read from provider records, with when to forget them.
    records: HashMap<PeerId, (SocketAddr, Instant)>,
    /// Peers that went away: not used from a record again before a dial
    /// succeeds, or until the time given (by then their records expired).
    gone: HashMap<PeerId, Instant>,
    /// How long a peer that went away is dialled before use (the provider record TTL).
    gone_for: std::time::Duration,
}

impl Peers {
    pub(crate) fn new(local: PeerId, own: agent::Own, gone_for: std::time::Duration) -> Self {
        Self {
            local,
            own,
            conns: HashMap::new(),
            mirrors: HashMap::new(),
            zones: HashMap::new(),
            penalties: HashMap::new(),
            unreachable: HashMap::new(),
            awaited: HashMap::new(),
            records: HashMap::new(),
            gone: HashMap::new(),
            gone_for,
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

    /// The mirror address of a provider we are not connected to, from its record:
    /// `None` if it went away recently, or no acceptable address is known.
    pub(crate) fn record_mirror(&self, peer: &PeerId, now: Instant) -> Option<SocketAddr> {
        if self.is_connected(peer) || self.gone.get(peer).is_some_and(|t| *t > now) {
            return None;
        }
        self.records.get(peer).filter(|(_, until)| *until > now).map(|(m, _)| *m)
    }

    /// Remembers the mirror address a provider record of `peer` carries, if acceptable.
    pub(crate) fn learn_record(&mut self, peer: PeerId, addrs: &[Multiaddr], until: Instant) {
        if peer == self.local {
            return;
        }
        let own = self.own;
        if let Some((m, zone)) =
            addrs.iter().filter_map(agent::mirror_and_zone).find(|(m, _)| agent::acceptable(*m, own))
        {
            self.records.insert(peer, (m, until));
            self.learn_zone(peer, zone);
        }
    }

    /// The zone `peer` announced last (none if it never named one).
    pub(crate) fn zone(&self, peer: &PeerId) -> Zone {
        self.zones.get(peer).copied().unwrap_or_default()
    }

    fn learn_zone(&mut self, peer: PeerId, zone: Zone) {
        if self.zones.len() >= MAX_ZONES && !self.zones.contains_key(&peer) {
            // Far past any cluster: start over rather than grow (zones are learnt again as peers are met).
            self.zones.clear();
        }
        self.zones.insert(peer, zone);
    }

    /// `peer` may have gone away: until `until` (or a connection), dial it
    /// before using it from a record.
    pub(crate) fn went_away(&mut self, peer: PeerId, until: Instant) {
        let at = self.gone.entry(peer).or_insert(until);
        *at = (*at).max(until);
    }

    /// The mirror of a connected `peer` that announced `announced` (e.g. in a
    /// provider record it sent): Identify's answer if it ran, else resolved
    /// against one of the peer's connections.
    pub(crate) fn resolve_announced(
        &self,
        peer: PeerId,
        announced: Option<SocketAddr>,
        listen_addrs: &[Multiaddr],
    ) -> Option<SocketAddr> {
        if let Some(m) = self.mirrors.get(&peer) {
            return Some(*m);
        }
        let conn = self.conns.get(&peer)?.values().next()?;
        agent::resolve(announced?, agent::ip_of(&conn.remote), conn.dialer, listen_addrs, self.own)
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

    /// Whether a lookup waits for some peer to answer.
    pub(crate) fn is_awaiting(&self) -> bool {
        !self.awaited.is_empty()
    }

    /// Remembers that a lookup waits for `peer` until `deadline` (first caller's deadline wins).
    pub(crate) fn await_peer(&mut self, peer: PeerId, deadline: Instant) {
        self.awaited.entry(peer).or_insert(deadline);
    }

    pub(crate) fn on_connected(&mut self, peer: PeerId, conn: ConnectionId, remote: Multiaddr, dialer: bool) {
        self.conns.entry(peer).or_default().insert(conn, Conn { remote, dialer });
        self.unreachable.remove(&peer);
        self.gone.remove(&peer);
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

    /// Nobody waits for `peer` any more. Returns true if someone did.
    pub(crate) fn stop_awaiting(&mut self, peer: &PeerId) -> bool {
        self.awaited.remove(peer).is_some()
    }

    /// A dial to `peer` failed. Returns true if someone awaited it.
    pub(crate) fn on_dial_failed(&mut self, peer: PeerId, until: Instant) -> bool {
        if self.is_connected(&peer) {
            return false;
        }
        self.unreachable.insert(peer, until);
        self.gone.insert(peer, until + self.gone_for);
        self.awaited.remove(&peer).is_some()
    }

    /// Identify ran on `conn`. `announced` is the mirror address from the agent
    /// string (None: not a peerpull node). Returns the resolved mirror and
    /// whether someone awaited the peer.
    pub(crate) fn on_identified(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        announced: Option<(SocketAddr, Zone)>,
        listen_addrs: &[Multiaddr],
        skip_until: Instant,
    ) -> (Option<SocketAddr>, bool) {
        if let Some((_, zone)) = announced {
            self.learn_zone(peer, zone);
        }
        let announced = announced.map(|(a, _)| a);
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
            self.gone.insert(*peer, until + self.gone_for);
        }
        expired
    }

    pub(crate) fn penalize(&mut self, peer: PeerId, until: Instant) {
        self.penalties.insert(peer, until);
    }

    pub(crate) fn is_penalised(&self, peer: &PeerId, now: Instant) -> bool {
        self.penalties.get(peer).is_some_and(|t| *t > now)
    }

    /// Forgets expired penalties, unreachability marks and record addresses.
    pub(crate) fn gc(&mut self, now: Instant) {
        self.penalties.retain(|_, t| *t > now);
        self.unreachable.retain(|_, t| *t > now);
        self.gone.retain(|_, t| *t > now);
        self.records.retain(|_, (_, t)| *t > now);
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
        let mut peers = Peers::new(
            local,
            agent::Own { loopback: true, link_local: false, in_process: false },
            Duration::from_secs(300),
        );
        let now = Instant::now();
        assert_eq!(peers.status(local, now), Status::Skip);
        assert_eq!(peers.status(peer, now), Status::Wait { dial: true });
        peers.await_peer(peer, now + Duration::from_secs(3));
        assert_eq!(peers.status(peer, now), Status::Wait { dial: false });

        peers.on_connected(peer, conn(1), "/ip4/127.0.0.5/tcp/4001".parse().unwrap(), true);
        assert_eq!(peers.status(peer, now), Status::Wait { dial: false });
        let zone: Zone = "zone-b".parse().unwrap();
        let announced = Some(("0.0.0.0:5000".parse().unwrap(), zone));
        let (mirror, awaited) = peers.on_identified(peer, conn(1), announced, &[], now);
        assert!(awaited);
        assert_eq!(peers.zone(&peer), zone, "the zone it announced");
        assert_eq!(peers.zone(&local), Zone::NONE);
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
        let mut peers = Peers::new(
            PeerId::random(),
            agent::Own { loopback: true, link_local: false, in_process: false },
            Duration::from_secs(300),
        );
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
        let mut peers = Peers::new(
            PeerId::random(),
            agent::Own { loopback: true, link_local: false, in_process: false },
            Duration::from_secs(300),
        );
        let peer = PeerId::random();
        let now = Instant::now();
        peers.on_connected(peer, conn(7), "/ip4/127.0.0.5/tcp/4001".parse().unwrap(), false);
        let (mirror, _) = peers.on_identified(peer, conn(7), None, &[], now + Duration::from_secs(5));
        assert_eq!(mirror, None);
        assert_eq!(peers.status(peer, now), Status::Skip);
    }
}
