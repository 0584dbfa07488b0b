//! Bandwidth-limited paths: network namespaces of our own, each joined to
//! this one by a veth pair with a token-bucket filter (`tc … tbf`) on the
//! namespace's end, so everything sent from inside is shaped.
//!
//! [`Link`] is one namespace on a private pair (10.x.y.1/30 on our side,
//! 10.x.y.2/30 in the namespace), e.g. an upstream registry behind a slow
//! link. [`Lan`] is several namespaces whose pairs meet on a bridge of
//! ours (10.x.y.0/24), so they reach each other and us, each sending
//! through its own shaped link: nodes with uplinks of a given rate.
//!
//! Both are guards: dropping one (also on an error or a panic) deletes its
//! namespaces, which removes the veth pairs and their qdiscs with them, and
//! the bridge. Only addresses inside these private networks are used.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::{bail, Context as _};

/// A network namespace reached over a shaped veth pair.
#[derive(Debug)]
pub(crate) struct Link {
    ns: String,
    host_if: String,
    /// Our end's address.
    pub(crate) host_ip: IpAddr,
    /// The namespace end's address, where services inside listen.
    pub(crate) ns_ip: IpAddr,
}

impl Link {
    /// Creates the namespace and the pair, shaping namespace → host traffic
    /// to `rate` bytes per second.
    pub(crate) fn create(rate: u64) -> anyhow::Result<Self> {
        Self::create_nth(rate, 0)
    }

    /// The `n`th of several links of this process (up to 4), each with its
    /// own namespace and addresses.
    pub(crate) fn create_nth(rate: u64, n: u8) -> anyhow::Result<Self> {
        let id = std::process::id();
        let tag = id % 100_000;
        let (a, b) = (200 + (id % 50) as u8, ((id / 50) % 250) as u8);
        let b = b.wrapping_add(n.wrapping_mul(61)) % 250;
        let link = Self {
            ns: format!("ppbench{tag}n{n}"),
            host_if: format!("ppbh{tag}n{n}"),
            host_ip: IpAddr::V4(Ipv4Addr::new(10, a, b, 1)),
            ns_ip: IpAddr::V4(Ipv4Addr::new(10, a, b, 2)),
        };
        // Left over from a run of the same pid that was killed: start clean.
        link.cleanup();
        let ns_if = format!("ppbn{tag}n{n}");
        let (ns, host_if) = (link.ns.as_str(), link.host_if.as_str());
        let (host_cidr, ns_cidr) = (format!("{}/30", link.host_ip), format!("{}/30", link.ns_ip));
        ip(&["netns", "add", ns])?;
        ip(&["link", "add", host_if, "type", "veth", "peer", "name", &ns_if])?;
        ip(&["link", "set", &ns_if, "netns", ns])?;
        ip(&["addr", "add", &host_cidr, "dev", host_if])?;
        ip(&["link", "set", host_if, "up"])?;
        ip(&["netns", "exec", ns, "ip", "addr", "add", &ns_cidr, "dev", &ns_if])?;
        ip(&["netns", "exec", ns, "ip", "link", "set", &ns_if, "up"])?;
        ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"])?;
        shape(ns, &ns_if, rate)?;
        Ok(link)
    }

    /// The namespace's name, for `ip netns exec`.
    pub(crate) fn ns(&self) -> &str {
        &self.ns
    }

    fn cleanup(&self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Shapes what `dev` (inside `ns`) sends to `rate` bytes per second.
fn shape(ns: &str, dev: &str, rate: u64) -> anyhow::Result<()> {
    // The burst must hold at least a few full-size (GSO) packets and about 10 ms of traffic.
    let burst = (rate / 100).max(256 * 1024).to_string();
    let rate_bits = format!("{}bit", rate * 8);
    let tbf = ["root", "tbf", "rate", &rate_bits, "burst", &burst, "latency", "200ms"];
    let mut args = vec!["netns", "exec", ns, "tc", "qdisc", "add", "dev", dev];
    args.extend(tbf);
    ip(&args)
}

/// Namespaces on one bridge, each sending through its own shaped link.
#[derive(Debug)]
pub(crate) struct Lan {
    bridge: String,
    /// Each namespace's name and address, in order.
    pub(crate) members: Vec<(String, IpAddr)>,
}

impl Lan {
    /// `count` (at most 200) namespaces on a new bridge, each shaped to `rate` bytes per second.
    pub(crate) fn create(rate: u64, count: u8) -> anyhow::Result<Self> {
        let id = std::process::id();
        let tag = id % 100_000;
        let (a, b) = (150 + (id % 50) as u8, ((id / 50) % 250) as u8);
        let mut lan = Self { bridge: format!("ppbr{tag}"), members: Vec::new() };
        for n in 0..count {
            lan.members.push((format!("ppl{tag}n{n}"), IpAddr::V4(Ipv4Addr::new(10, a, b, n + 1))));
        }
        // Left over from a run of the same pid that was killed: start clean.
        lan.cleanup();
        let bridge = lan.bridge.as_str();
        ip(&["link", "add", bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("10.{a}.{b}.254/24"), "dev", bridge])?;
        ip(&["link", "set", bridge, "up"])?;
        for (n, (ns, addr)) in lan.members.iter().enumerate() {
            let (host_if, ns_if) = (format!("pplh{tag}n{n}"), format!("ppln{tag}n{n}"));
            ip(&["netns", "add", ns])?;
            ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if])?;
            ip(&["link", "set", &ns_if, "netns", ns])?;
            ip(&["link", "set", &host_if, "master", bridge])?;
            ip(&["link", "set", &host_if, "up"])?;
            ip(&["netns", "exec", ns, "ip", "addr", "add", &format!("{addr}/24"), "dev", &ns_if])?;
            ip(&["netns", "exec", ns, "ip", "link", "set", &ns_if, "up"])?;
            ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"])?;
            shape(ns, &ns_if, rate)?;
        }
        Ok(lan)
    }

    fn cleanup(&self) {
        for (ns, _) in &self.members {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Runs `ip args…`; fails with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().with_context(|| format!("running ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
