//! Keeps the DHT in step with the store.
//!
//! [`Advertiser::run`] lists everything the store holds (retrying with
//! backoff until containerd answers), hands what this node mirrors to the
//! router, marks the node's initial advertisement done for `/readyz`, and
//! then follows the store's changes: added keys are advertised, removed keys
//! withdrawn. The store's watch re-lists after reconnecting to containerd,
//! so changes made while it was away arrive here as ordinary changes.
//!
//! It keeps no record of its own of what is advertised: the router owns
//! that set (it skips keys it already advertises, ignores withdrawals of
//! keys it does not, retries keys it could not store, and counts them), so
//! there is nothing here to drift from it.

use std::sync::Arc;
use std::time::Duration;

use peerpull_oci::{Key, Mirrored};
use peerpull_routing::Router;
use peerpull_store::{Entry, Store};
use tokio_util::sync::CancellationToken;

use crate::Health;

/// The longest wait between attempts to list the store at start.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Advertises what the store holds.
#[derive(Debug)]
pub struct Advertiser {
    store: Arc<dyn Store>,
    router: Router,
    mirrored: Mirrored,
    health: Health,
}

impl Advertiser {
    /// An advertiser of `store`'s keys that belong to `mirrored` registries.
    pub fn new(store: Arc<dyn Store>, router: Router, mirrored: Mirrored, health: Health) -> Self {
        Self { store, router, mirrored, health }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut changes = self.store.watch(shutdown.clone());
        let mut backoff = Duration::from_millis(200);
        let entries = loop {
            match self.store.list().await {
                Ok(entries) => break entries,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "listing the store failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        let count = self.apply(entries, Vec::new()).await;
        self.health.set_advertised();
        tracing::info!(keys = count, "initial advertisement done");
        loop {
            let change = tokio::select! {
                () = shutdown.cancelled() => return,
                change = changes.recv() => match change {
                    Some(change) => change,
                    None => return,
                },
            };
            self.apply(change.added, change.removed).await;
        }
    }

    /// Advertises the wanted `added` entries and withdraws `removed` keys,
    /// along with added keys no longer wanted (their registries changed).
    /// Returns how many keys were handed to the router to advertise.
    async fn apply(&self, added: Vec<Entry>, mut removed: Vec<Key>) -> usize {
        let (wanted, unwanted): (Vec<Entry>, Vec<Entry>) = added.into_iter().partition(|e| self.wanted(e));
        removed.extend(unwanted.into_iter().map(|e| e.key));
        let keys: Vec<Key> = wanted.into_iter().map(|e| e.key).collect();
        let count = keys.len();
        if !keys.is_empty() {
            tracing::debug!(count, "advertising");
            if let Err(error) = self.router.advertise(keys).await {
                tracing::warn!(%error, "advertising failed; the router retries on its re-provide schedule");
            }
        }
        if !removed.is_empty() {
            tracing::debug!(count = removed.len(), "withdrawing");
            if let Err(error) = self.router.withdraw(removed).await {
                tracing::warn!(%error, "withdrawing failed");
            }
        }
        count
    }

    /// Digests of unknown origin are content-addressed and always advertised;
    /// everything else only for mirrored registries (a digest's registries may
    /// be containerd's source labels, which drop the port).
    fn wanted(&self, entry: &Entry) -> bool {
        let registries = entry.registries.iter().map(String::as_str);
        if entry.key.is_tag() {
            self.mirrored.includes_any(registries)
        } else {
            entry.registries.is_empty() || self.mirrored.includes_any_source(registries)
        }
    }
}
