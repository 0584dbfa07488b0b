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
