//! The mirror address a peer announces about itself.
//!
//! Each node tells its peers where its own `/v2` mirror listens by putting
//! `mirror=<ip>:<port>` in the Identify agent version string, e.g.
//! `peerpull/0.1.0 mirror=10.0.0.7:5000`. The receiving side trusts the
//! port only: the mirror is contacted at the IP of the peer's libp2p
//! connection ([`resolve`]), so a peer cannot send others' requests to an
//! address of its choosing (a metadata service, a kubelet port). A peer
//! connecting from loopback or link-local addresses is refused unless this
//! node itself runs on such addresses; nodes sharing one host on loopback
//! aliases (test clusters) keep their announced loopback address, since the
//! source of a loopback connection is always 127.0.0.1.
//!
//! The same address also travels with the node's provider records, as a
//! multiaddr ending in `/http` ([`mirror_multiaddr`]), so that a node that
//! finds a provider it is not connected to can use it at once. A node
//! storing a record replaces the announced address with the one resolved
//! here from the announcing connection, and a node reading one accepts it
//! only if [`acceptable`] (never loopback or link-local unless it runs on
//! such addresses itself); when connected to the provider, the connection's
//! own address is used instead.
//!
//! A node's zone (see `zone`) travels the same two ways: `zone=<name>` in the
//! agent string, and an `/http-path/zone=<name>` part after `/http` in the
//! record's mirror address (a node of an earlier version does not read such
//! an address, and dials the provider instead).

use std::net::{IpAddr, SocketAddr};

use std::borrow::Cow;

use libp2p::{multiaddr::Protocol, Multiaddr};

use crate::Zone;

/// The Identify protocol version every peerpull node speaks; peers with another are ignored.
pub(crate) const PROTOCOL_VERSION: &str = "/peerpull/1.0.0";

/// The agent version string announcing `mirror` (and `zone`, if any).
pub(crate) fn encode(mirror: SocketAddr, zone: Zone) -> String {
    match zone.is_none() {
        true => format!("peerpull/{} mirror={mirror}", env!("CARGO_PKG_VERSION")),
        false => format!("peerpull/{} mirror={mirror} zone={zone}", env!("CARGO_PKG_VERSION")),
    }
}

/// The zone in a peer's agent version (none when it names none, or a bad one).
pub(crate) fn decode_zone(agent: &str) -> Zone {
    agent.split_whitespace().find_map(|part| part.strip_prefix("zone=")?.parse().ok()).unwrap_or_default()
}

/// The mirror address in a peer's agent version, if it carries one.
pub(crate) fn decode(agent: &str) -> Option<SocketAddr> {
    agent.split_whitespace().find_map(|part| part.strip_prefix("mirror=")?.parse().ok())
}

/// The multiaddr form of a mirror address, `/ip4/10.0.0.7/tcp/5000/http`,
/// with `/http-path/zone=<name>` after it when the node has a zone: no
/// libp2p transport dials it, so it can sit among a peer's addresses.
pub(crate) fn mirror_multiaddr(mirror: SocketAddr, zone: Zone) -> Multiaddr {
    let addr = multiaddr_of(mirror).with(Protocol::Http);
    match zone.is_none() {
        true => addr,
        false => addr.with(Protocol::HttpPath(Cow::Owned(format!("zone={zone}")))),
    }
}

/// The mirror address in a multiaddr made by [`mirror_multiaddr`] (Kademlia
/// may have appended `/p2p/<peer id>`).
pub(crate) fn mirror_of(addr: &Multiaddr) -> Option<SocketAddr> {
    mirror_and_zone(addr).map(|(mirror, _)| mirror)
}

/// The mirror address and zone in a multiaddr made by [`mirror_multiaddr`].
pub(crate) fn mirror_and_zone(addr: &Multiaddr) -> Option<(SocketAddr, Zone)> {
    let mut parts = addr.iter().skip(2);
    if parts.next() != Some(Protocol::Http) {
        return None;
    }
    let mut zone = Zone::NONE;
    let mut next = parts.next();
    if let Some(Protocol::HttpPath(path)) = &next {
        zone = path.strip_prefix("zone=")?.parse().ok()?;
        next = parts.next();
    }
    match next {
        None | Some(Protocol::P2p(_)) if parts.next().is_none() => Some((socket_of(addr)?, zone)),
        _ => None,
    }
}

/// Whether a mirror address read from a provider record may be contacted from
/// a node running on `own` addresses.
pub(crate) fn acceptable(mirror: SocketAddr, own: Own) -> bool {
    let ip = mirror.ip();
    !(ip.is_unspecified() || ip.is_multicast() || mirror.port() == 0)
        && (!ip.is_loopback() || own.loopback)
        && (!is_link_local(ip) || own.link_local)
}

/// Where this node's own router runs, which decides which peer addresses are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Own {
    /// It listens on loopback (a test cluster on one host): loopback peers are fine.
    pub(crate) loopback: bool,
    /// It listens on a link-local address: link-local peers are fine.
    pub(crate) link_local: bool,
    /// Its connections carry no IP (the in-process memory transport): peers'
    /// announced addresses are used as they are.
    pub(crate) in_process: bool,
}

impl Own {
    pub(crate) fn of(listen: IpAddr, transport: crate::Transport) -> Self {
        Self { loopback: listen.is_loopback(), link_local: is_link_local(listen), in_process: transport.in_process() }
    }
}

/// The mirror address to use for a peer that announced `announced`, over a
/// connection from `remote`: the connection's IP with the announced port.
/// `None` when the peer cannot be used (no or an unacceptable address).
pub(crate) fn resolve(
    announced: SocketAddr,
    remote: Option<IpAddr>,
    dialed: bool,
    listen_addrs: &[Multiaddr],
    own: Own,
) -> Option<SocketAddr> {
    let Some(ip) = remote else {
        return own.in_process.then_some(announced).filter(|a| acceptable(*a, own));
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return None;
    }
    if ip.is_loopback() {
        // Only nodes sharing this host on loopback aliases: trust their loopback announcements.
        return own.loopback.then(|| loopback_alias(announced, ip, dialed, listen_addrs)).flatten();
    }
    if is_link_local(ip) && !own.link_local {
        return None;
    }
    Some(SocketAddr::new(ip, announced.port()))
}

/// On one host's loopback aliases: the announced loopback address, or for an
/// unspecified one, the IP we dialed, else a loopback listen address of the peer.
fn loopback_alias(
    announced: SocketAddr,
    remote: IpAddr,
    dialed: bool,
    listen_addrs: &[Multiaddr],
) -> Option<SocketAddr> {
    if announced.ip().is_loopback() {
        return Some(announced);
    }
    if !announced.ip().is_unspecified() {
        return None;
    }
    let listen: Vec<IpAddr> = listen_addrs.iter().filter_map(ip_of).filter(|ip| ip.is_loopback()).collect();
    let ip = if dialed || listen.contains(&remote) { remote } else { listen.first().copied().unwrap_or(remote) };
    Some(SocketAddr::new(ip, announced.port()))
}

/// 169.254.0.0/16 and fe80::/10.
fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The IP of a multiaddr that starts with `/ip4` or `/ip6`.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// The socket address of a `/ip4|ip6/…/tcp/…` multiaddr.
pub(crate) fn socket_of(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut it = addr.iter();
    let ip = match it.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    match it.next()? {
        Protocol::Tcp(port) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// The multiaddr of a TCP socket address.
pub(crate) fn multiaddr_of(addr: SocketAddr) -> Multiaddr {
    Multiaddr::from(addr.ip()).with(Protocol::Tcp(addr.port()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        assert_eq!(decode(&encode(a, Zone::NONE)), Some(a));
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        let zone: Zone = "us-east-1a".parse().unwrap();
        assert_eq!(decode(&encode(v6, zone)), Some(v6));
        assert_eq!(decode_zone(&encode(v6, zone)), zone);
        assert_eq!(decode_zone(&encode(v6, Zone::NONE)), Zone::NONE);
        assert_eq!(decode_zone("peerpull/1 mirror=10.0.0.1:5000 zone=a/b"), Zone::NONE, "a bad name is none");
        assert_eq!(decode("rust-libp2p/0.1"), None);
        assert_eq!(decode("peerpull/1 mirror=nonsense"), None);
    }

    const CLUSTER: Own = Own { loopback: false, link_local: false, in_process: false };
    const ONE_HOST: Own = Own { loopback: true, link_local: false, in_process: false };

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_peer_is_contacted_at_its_connections_ip_whatever_it_announces() {
        for announced in ["169.254.169.254:80", "10.0.0.99:10250", "127.0.0.1:5000", "0.0.0.0:5000"] {
            let announced: SocketAddr = announced.parse().unwrap();
            let got = resolve(announced, ip("10.0.0.5"), false, &[], CLUSTER);
            assert_eq!(got, Some(SocketAddr::new("10.0.0.5".parse().unwrap(), announced.port())), "{announced}");
        }
        let a: SocketAddr = "10.0.0.5:5000".parse().unwrap();
        assert_eq!(resolve(a, None, false, &[], CLUSTER), None);
        assert_eq!(resolve(a, ip("0.0.0.0"), false, &[], CLUSTER), None);
    }

    #[test]
    fn loopback_and_link_local_peers_only_where_this_node_runs_on_them() {
        let a: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        assert_eq!(resolve(a, ip("127.0.0.1"), false, &[], CLUSTER), None, "a local process is not a peer");
        assert_eq!(resolve(a, ip("169.254.1.1"), false, &[], CLUSTER), None);
        let own_link_local = Own { loopback: false, link_local: true, in_process: false };
        assert_eq!(resolve(a, ip("169.254.1.1"), false, &[], own_link_local).unwrap().to_string(), "169.254.1.1:5000");
        // A test cluster on loopback aliases: the announced alias, never a non-loopback address.
        assert_eq!(resolve(a, ip("127.0.0.1"), false, &[], ONE_HOST), Some(a));
        let elsewhere: SocketAddr = "10.0.0.99:5000".parse().unwrap();
        assert_eq!(resolve(elsewhere, ip("127.0.0.1"), false, &[], ONE_HOST), None);
    }

    #[test]
    fn an_unspecified_loopback_announcement_takes_the_peers_alias() {
        let a: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let listen: Vec<Multiaddr> =
            vec!["/ip4/127.0.0.3/tcp/1".parse().unwrap(), "/ip4/10.1.2.3/tcp/1".parse().unwrap()];
        // We dialed it: the dialed IP reaches it.
        assert_eq!(resolve(a, ip("127.0.0.4"), true, &listen, ONE_HOST).unwrap().to_string(), "127.0.0.4:5000");
        // It dialed us (from 127.0.0.1): its loopback listen address.
        assert_eq!(resolve(a, ip("127.0.0.1"), false, &listen, ONE_HOST).unwrap().to_string(), "127.0.0.3:5000");
    }

    #[test]
    fn mirror_addresses_in_records() {
        let m: SocketAddr = "10.0.0.7:5000".parse().unwrap();
        let addr = mirror_multiaddr(m, Zone::NONE);
        assert_eq!(addr.to_string(), "/ip4/10.0.0.7/tcp/5000/http");
        let zone: Zone = "eu-1b".parse().unwrap();
        let zoned = mirror_multiaddr(m, zone);
        assert_eq!(zoned.to_string(), "/ip4/10.0.0.7/tcp/5000/http/http-path/zone=eu-1b");
        assert_eq!(mirror_and_zone(&zoned), Some((m, zone)));
        assert_eq!(mirror_and_zone(&zoned.clone().with(Protocol::P2p(libp2p::PeerId::random()))), Some((m, zone)));
        let other = multiaddr_of(m).with(Protocol::Http).with(Protocol::HttpPath(Cow::Borrowed("x")));
        assert_eq!(mirror_of(&other), None, "another path is not ours");
        assert_eq!(mirror_of(&addr), Some(m));
        assert_eq!(mirror_of(&addr.clone().with(Protocol::P2p(libp2p::PeerId::random()))), Some(m));
        assert_eq!(mirror_of(&multiaddr_of(m)), None, "a libp2p address is not a mirror");
        assert!(acceptable(m, CLUSTER));
        for bad in ["0.0.0.0:5000", "10.0.0.7:0", "127.0.0.1:5000", "169.254.169.254:80", "[fe80::1]:5000"] {
            assert!(!acceptable(bad.parse().unwrap(), CLUSTER), "{bad}");
        }
        assert!(acceptable("127.0.0.3:5000".parse().unwrap(), ONE_HOST));
    }

    #[test]
    fn in_process_routers_take_announced_addresses() {
        let sim = Own { in_process: true, ..CLUSTER };
        let a: SocketAddr = "10.0.3.4:5000".parse().unwrap();
        assert_eq!(resolve(a, None, false, &[], sim), Some(a));
        assert_eq!(resolve(a, None, false, &[], CLUSTER), None);
        assert_eq!(resolve("0.0.0.0:5000".parse().unwrap(), None, false, &[], sim), None);
    }

    #[test]
    fn socket_conversions() {
        let s: SocketAddr = "127.0.0.2:4001".parse().unwrap();
        assert_eq!(socket_of(&multiaddr_of(s)), Some(s));
        assert_eq!(socket_of(&"/dns/x/tcp/1".parse().unwrap()), None);
    }
}
