//! Loopback addresses and ports for test services.

use std::net::{IpAddr, SocketAddr, TcpListener};

use crate::Error;

/// A TCP port that is free on `ip` right now (the kernel picks it).
///
/// The port is released before returning, so a service can bind it; tests on
/// one machine pick ports this way rather than hard-coding them.
pub fn free_port(ip: IpAddr) -> Result<u16, Error> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).map_err(Error::io(format!("binding {ip}:0")))?;
    let port = listener.local_addr().map_err(Error::io("reading a bound address"))?.port();
    Ok(port)
}

/// A /24 of loopback addresses no other cluster in this process uses, e.g.
/// `127.83.5.0/24`: a test gives node `n` the address `.(10 + n)` in it, so
/// every node can use the same ports, as nodes of a cluster do.
pub fn loopback_subnet() -> LoopbackSubnet {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let second = 20 + (std::process::id() % 200) as u8;
    LoopbackSubnet { second, third: (n % 250) as u8 + 1 }
}

/// See [`loopback_subnet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopbackSubnet {
    second: u8,
    third: u8,
}

impl LoopbackSubnet {
    /// The address of node `n` (0-based): `127.x.y.(11 + n)`.
    pub fn node(&self, n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(127, self.second, self.third, 11 + n))
    }
}
