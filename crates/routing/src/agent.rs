//! The mirror address a peer announces about itself.
//!
//! Each node tells its peers where its own `/v2` mirror listens by putting
//! `mirror=<ip>:<port>` in the Identify agent version string, e.g.
//! `peerpull/0.1.0 mirror=10.0.0.7:5000`. A node that binds its mirror to an
//! unspecified IP (`0.0.0.0`, `::`) announces that; the receiving side then
//! fills in the IP it reaches the peer at ([`resolve`]). The address is never
//! assumed equal to ours.

use std::net::{IpAddr, SocketAddr};

use libp2p::{multiaddr::Protocol, Multiaddr};

/// The Identify protocol version every peerpull node speaks; peers with another are ignored.
pub(crate) const PROTOCOL_VERSION: &str = "/peerpull/1.0.0";

/// The agent version string announcing `mirror`.
pub(crate) fn encode(mirror: SocketAddr) -> String {
    format!("peerpull/{} mirror={mirror}", env!("CARGO_PKG_VERSION"))
}

/// The mirror address in a peer's agent version, if it carries one.
pub(crate) fn decode(agent: &str) -> Option<SocketAddr> {
    agent.split_whitespace().find_map(|part| part.strip_prefix("mirror=")?.parse().ok())
}

/// The mirror address to use for a peer that announced `announced`.
///
/// A specific IP is used as announced. For an unspecified IP we take, in
/// order: the IP of the connection if the peer also listens there, the IP we
/// dialed the peer at, a listen address of the peer's own with the same
/// loopback-ness as the connection, and finally the connection's remote IP.
pub(crate) fn resolve(
    announced: SocketAddr,
    remote: Option<IpAddr>,
    dialed: bool,
    listen_addrs: &[Multiaddr],
) -> Option<SocketAddr> {
    if !announced.ip().is_unspecified() {
        return Some(announced);
    }
    let listen: Vec<IpAddr> = listen_addrs.iter().filter_map(ip_of).filter(|ip| !ip.is_unspecified()).collect();
    let ip = match remote {
        Some(r) if dialed || listen.contains(&r) => r,
        Some(r) => listen.iter().copied().find(|ip| ip.is_loopback() == r.is_loopback()).unwrap_or(r),
        None => listen.first().copied()?,
    };
    Some(SocketAddr::new(ip, announced.port()))
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
        assert_eq!(decode(&encode(a)), Some(a));
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(decode(&encode(v6)), Some(v6));
        assert_eq!(decode("rust-libp2p/0.1"), None);
        assert_eq!(decode("peerpull/1 mirror=nonsense"), None);
    }

    #[test]
    fn specific_ip_is_kept() {
        let a: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        assert_eq!(resolve(a, Some("127.0.0.9".parse().unwrap()), true, &[]), Some(a));
    }

    #[test]
    fn unspecified_ip_takes_the_peers_address() {
        let a: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let listen: Vec<Multiaddr> =
            vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap(), "/ip4/10.1.2.3/tcp/1".parse().unwrap()];
        // We dialed it: the dialed IP reaches it.
        assert_eq!(resolve(a, Some("10.9.9.9".parse().unwrap()), true, &listen).unwrap().to_string(), "10.9.9.9:5000");
        // It dialed us from an IP it listens on.
        assert_eq!(resolve(a, Some("10.1.2.3".parse().unwrap()), false, &listen).unwrap().to_string(), "10.1.2.3:5000");
        // It dialed us from elsewhere: one of its own non-loopback listen IPs.
        assert_eq!(resolve(a, Some("10.7.7.7".parse().unwrap()), false, &listen).unwrap().to_string(), "10.1.2.3:5000");
        assert_eq!(resolve(a, None, false, &[]), None);
    }

    #[test]
    fn socket_conversions() {
        let s: SocketAddr = "127.0.0.2:4001".parse().unwrap();
        assert_eq!(socket_of(&multiaddr_of(s)), Some(s));
        assert_eq!(socket_of(&"/dns/x/tcp/1".parse().unwrap()), None);
    }
}
