//! Readiness: ready means useful.
//!
//! A node is ready when containerd answers, its initial advertisement is
//! done, and the DHT has at least one peer (or the node stands alone).
//! [`Health::checks`] reports each of the three with its detail, and
//! whether the cluster is private (never a reason to be unready), for
//! `/readyz?verbose` and `peerpull doctor`; [`Health::check`] only whether
//! all passed, for probes.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use peerpull_routing::Router;
use peerpull_store::Store;

/// Shared readiness state; clone freely.
#[derive(Debug, Clone)]
pub struct Health {
    store: Arc<dyn Store>,
    router: Router,
    advertised: Arc<AtomicBool>,
    /// The pre-shared key's fingerprint, when the cluster is private.
    private: Option<String>,
}

/// One readiness check and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `containerd`, `advertisement` or `routing`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found: a reason when it failed, a detail when it passed.
    pub detail: String,
}

impl Health {
    /// Readiness of a node over `store` and `router`; `private` is the
    /// fingerprint of the cluster's pre-shared key, if it has one.
    pub fn new(store: Arc<dyn Store>, router: Router, private: Option<String>) -> Self {
        Self { store, router, advertised: Arc::new(AtomicBool::new(false)), private }
    }

    /// Records that the initial advertisement finished.
    pub fn set_advertised(&self) {
        self.advertised.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else the first check that failed.
    pub async fn check(&self) -> Result<(), Check> {
        match self.checks().await.into_iter().find(|c| !c.ok) {
            None => Ok(()),
            Some(failed) => Err(failed),
        }
    }

    /// Every check, in order.
    pub async fn checks(&self) -> Vec<Check> {
        let containerd = match self.store.ping().await {
            Ok(()) => Check::passed("containerd", "answers"),
            Err(_) => Check::failed("containerd", "containerd does not answer"),
        };
        let advertisement = if self.advertised.load(Ordering::Acquire) {
            Check::passed("advertisement", "initial advertisement done")
        } else {
            Check::failed("advertisement", "initial advertisement not done")
        };
        let ready = *self.router.ready().borrow();
        let peers = self.router.peer_count().await;
        let routing = match (ready, peers) {
            (true, Ok(n)) => Check::passed("routing", format!("{n} peers in the routing table")),
            (true, Err(_)) => Check::passed("routing", "ready"),
            (false, _) => Check::failed("routing", "no peer in the routing table"),
        };
        // Not a condition of readiness, but worth saying where operators look.
        let membership = match &self.private {
            Some(key) => Check::passed("membership", format!("private cluster, pre-shared key {key}")),
            None => {
                Check::passed("membership", "OPEN: no pre-shared key, any host that reaches the router port can join")
            }
        };
        vec![containerd, advertisement, routing, membership]
    }
}

impl Check {
    fn passed(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, ok: true, detail: detail.into() }
    }

    fn failed(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, ok: false, detail: detail.into() }
    }
}

/// A line of `/readyz?verbose`: `[+]routing ok: 3 peers in the routing table`
/// or `[-]containerd failed: containerd does not answer`.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ok {
            true => write!(f, "[+]{} ok: {}", self.name, self.detail),
            false => write!(f, "[-]{} failed: {}", self.name, self.detail),
        }
    }
}
