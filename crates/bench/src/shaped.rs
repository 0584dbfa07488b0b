//! A bandwidth-limited path to an upstream registry: a network namespace of
//! our own, joined to this one by a veth pair, with a token-bucket filter
//! (`tc … tbf`) on the namespace's end so everything the registry sends out
//! is shaped.
//!
//! [`Link`] creates the namespace and is a guard: dropping it (also on an
//! error or a panic) deletes the namespace, which removes the veth pair and
//! its qdisc with it. Only addresses inside this private pair (10.x.y.1/30 on
//! our side, 10.x.y.2/30 in the namespace) are used.

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
        // The burst must hold at least a few full-size (GSO) packets and about 10 ms of traffic.
        let burst = (rate / 100).max(256 * 1024).to_string();
        let rate_bits = format!("{}bit", rate * 8);
        ip(&["netns", "add", ns])?;
        ip(&["link", "add", host_if, "type", "veth", "peer", "name", &ns_if])?;
        ip(&["link", "set", &ns_if, "netns", ns])?;
        ip(&["addr", "add", &host_cidr, "dev", host_if])?;
        ip(&["link", "set", host_if, "up"])?;
        ip(&["netns", "exec", ns, "ip", "addr", "add", &ns_cidr, "dev", &ns_if])?;
        ip(&["netns", "exec", ns, "ip", "link", "set", &ns_if, "up"])?;
        ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"])?;
        let tbf = ["root", "tbf", "rate", &rate_bits, "burst", &burst, "latency", "200ms"];
        let mut args = vec!["netns", "exec", ns, "tc", "qdisc", "add", "dev", &ns_if];
        args.extend(tbf);
        ip(&args)?;
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

/// Runs `ip args…`; fails with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().with_context(|| format!("running ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
