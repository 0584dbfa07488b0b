//! What `/readyz` checks: ready means useful.
//!
//! A node is ready when containerd answers, its initial advertisement is
//! done, and the DHT has at least one peer (or the node stands alone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use peerpull_store::Store;
use tokio::sync::watch;

/// Shared readiness state; clone freely.
#[derive(Debug, Clone)]
pub struct Health {
    advertised: Arc<AtomicBool>,
    routing: Option<watch::Receiver<bool>>,
}

impl Health {
    /// Readiness that follows `routing` (the router's readiness signal), if given.
    pub fn new(routing: Option<watch::Receiver<bool>>) -> Self {
        Self { advertised: Arc::new(AtomicBool::new(false)), routing }
    }

    /// Records that the initial advertisement finished.
    pub fn set_advertised(&self) {
        self.advertised.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else the reason.
    pub async fn check(&self, store: &dyn Store) -> Result<(), &'static str> {
        if store.ping().await.is_err() {
            return Err("containerd does not answer\n");
        }
        if !self.advertised.load(Ordering::Acquire) {
            return Err("initial advertisement not done\n");
        }
        if let Some(routing) = &self.routing {
            if !*routing.borrow() {
                return Err("no peer in the routing table\n");
            }
        }
        Ok(())
    }
}
