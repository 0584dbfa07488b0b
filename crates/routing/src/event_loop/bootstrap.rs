//! When to (re-)join the DHT, and the addresses to join through.
//!
//! While no peer is in the routing table, bootstrap retries with exponential
//! backoff (1 s doubling up to `backoff_max`); once connected it re-runs every
//! `interval`, so a node whose peers all went away (or that was cut off and
//! healed) finds its way back. DNS names are resolved afresh on every round
//! (all A/AAAA records, through tokio's resolver) since a headless Service's
//! members change as pods come and go.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use futures::{future::BoxFuture, FutureExt as _};
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use crate::Bootstrap;

/// The first retry delay while unconnected.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// How long one DNS resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many addresses from one name are dialled per round.
pub(crate) const MAX_DIALS_PER_NAME: usize = 16;

/// The outcome of resolving one bootstrap name.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) name: String,
    pub(crate) addrs: Result<Vec<SocketAddr>, String>,
}

/// Bootstrap schedule and targets.
#[derive(Debug)]
pub(crate) struct Bootstrapper {
    targets: Vec<Bootstrap>,
    default_port: u16,
    interval: Duration,
    backoff_max: Duration,
    backoff: Duration,
    next: Instant,
    /// Which peer answered at a dialled address, so connected ones are not dialled again.
    seen_at: HashMap<Multiaddr, PeerId>,
    /// Rotates which addresses of a large name get dialled.
    round: usize,
    /// Per DNS name: whether its last resolution found only this node.
    only_self: HashMap<String, bool>,
}

impl Bootstrapper {
    pub(crate) fn new(targets: Vec<Bootstrap>, default_port: u16, interval: Duration, backoff_max: Duration) -> Self {
        Self {
            targets,
            default_port,
            interval,
            backoff_max: backoff_max.max(BACKOFF_MIN),
            backoff: BACKOFF_MIN,
            next: Instant::now(),
            seen_at: HashMap::new(),
            round: 0,
            only_self: HashMap::new(),
        }
    }

    pub(crate) fn is_standalone(&self) -> bool {
        self.targets.is_empty()
    }

    /// Records whether resolving `name` (or the address `name`) found only this node's own addresses.
    pub(crate) fn resolved(&mut self, name: &str, only_self: bool) {
        self.only_self.insert(name.to_owned(), only_self);
    }

    /// Whether every target is this node itself: a DNS name that last
    /// resolved to this node alone, or one of its own addresses. The node is
    /// the whole cluster for now.
    pub(crate) fn alone(&self) -> bool {
        !self.targets.is_empty()
            && self.targets.iter().all(|t| match t {
                Bootstrap::Dns { name, .. } => self.only_self.get(name).copied().unwrap_or(false),
                Bootstrap::Addr(addr) => self.only_self.get(&addr.to_string()).copied().unwrap_or(false),
            })
    }

    /// Whether a round is due now; if so, schedules the next one.
    pub(crate) fn due(&mut self, now: Instant, connected: bool) -> bool {
        if self.targets.is_empty() || now < self.next {
            return false;
        }
        if connected {
            self.backoff = BACKOFF_MIN;
            self.next = now + self.interval;
        } else {
            self.next = now + self.backoff;
            self.backoff = (self.backoff * 2).min(self.backoff_max);
        }
        self.round = self.round.wrapping_add(1);
        true
    }

    /// A peer we were not connected to showed up: try again soon rather than after a full interval.
    pub(crate) fn reset(&mut self, now: Instant) {
        self.backoff = BACKOFF_MIN;
        self.next = self.next.min(now + BACKOFF_MIN);
    }

    pub(crate) fn targets(&self) -> &[Bootstrap] {
        &self.targets
    }

    /// A resolution future for a DNS target.
    pub(crate) fn resolve(&self, name: String, port: Option<u16>) -> BoxFuture<'static, Resolved> {
        let port = port.unwrap_or(self.default_port);
        async move {
            let addrs =
                match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), port))).await {
                    Ok(Ok(addrs)) => Ok(addrs.collect()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                };
            Resolved { name, addrs }
        }
        .boxed()
    }

    /// Up to `MAX_DIALS_PER_NAME` of `addrs`, rotating each round.
    pub(crate) fn pick(&self, mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
        addrs.sort();
        addrs.dedup();
        if addrs.len() <= MAX_DIALS_PER_NAME {
            return addrs;
        }
        let start = (self.round * MAX_DIALS_PER_NAME) % addrs.len();
        addrs.iter().cycle().skip(start).take(MAX_DIALS_PER_NAME).copied().collect()
    }

    pub(crate) fn learned(&mut self, addr: Multiaddr, peer: PeerId) {
        self.seen_at.insert(addr, peer);
    }

    pub(crate) fn peer_at(&self, addr: &Multiaddr) -> Option<PeerId> {
        self.seen_at.get(addr).copied()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backs_off_while_alone_then_settles_to_the_interval() {
        let mut b = Bootstrapper::new(
            vec![Bootstrap::parse("127.0.0.1:1").unwrap()],
            1,
            Duration::from_secs(30),
            Duration::from_secs(8),
        );
        let t0 = Instant::now();
        assert!(b.due(t0, false));
        assert!(!b.due(t0, false));
        let mut waits = Vec::new();
        for _ in 0..5 {
            let wait = b.next - Instant::now();
            waits.push(wait.as_secs());
            tokio::time::advance(wait).await;
            assert!(b.due(Instant::now(), false));
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 8]);
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(b.due(Instant::now(), true));
        assert_eq!(b.next - Instant::now(), Duration::from_secs(30));
        b.reset(Instant::now());
        assert_eq!(b.next - Instant::now(), Duration::from_secs(1));
    }

    #[test]
    fn standalone_never_runs() {
        let mut b = Bootstrapper::new(vec![], 1, Duration::from_secs(1), Duration::from_secs(1));
        assert!(b.is_standalone());
        assert!(!b.due(Instant::now(), false));
    }

    #[test]
    fn large_names_are_dialled_in_rotating_slices() {
        let b = Bootstrapper::new(vec![], 1, Duration::from_secs(1), Duration::from_secs(1));
        let addrs: Vec<SocketAddr> = (1..=40).map(|i| format!("10.0.0.{i}:5001").parse().unwrap()).collect();
        let picked = b.pick(addrs.clone());
        assert_eq!(picked.len(), MAX_DIALS_PER_NAME);
        assert_eq!(b.pick(addrs[..3].to_vec()).len(), 3);
    }

    #[tokio::test]
    async fn resolves_localhost() {
        let b = Bootstrapper::new(vec![], 4001, Duration::from_secs(1), Duration::from_secs(1));
        let r = b.resolve("localhost".into(), None).await;
        let addrs = r.addrs.unwrap();
        assert!(addrs.iter().any(|a| a.ip().is_loopback() && a.port() == 4001), "{addrs:?}");
    }
}
