//! The Identify agent string a peer announces its mirror in, and the
//! address used for it: never an address other than the connection's IP.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use peerpull_routing::fuzzing::{decode, resolve};

fuzz_target!(|input: (&str, [u8; 4], bool)| {
    let (agent, ip, dialed) = input;
    let remote = IpAddr::V4(Ipv4Addr::from(ip));
    if let Some(announced) = decode(agent) {
        if let Some(mirror) = resolve(announced, Some(remote), dialed) {
            // A production node contacts a peer at its connection's IP, whatever it announced.
            assert_eq!(mirror, std::net::SocketAddr::new(remote, announced.port()), "{agent:?} from {remote}");
            assert!(!remote.is_loopback() && !remote.is_unspecified(), "{agent:?} from {remote}: {mirror}");
        }
    }
});
