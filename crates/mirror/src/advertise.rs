//! Keeps the DHT in step with the store.
//!
//! [`Advertiser::run`] lists everything the store holds (retrying with
//! backoff until containerd answers), advertises it, marks the node's initial
//! advertisement done for `/readyz`, and then follows the store's changes:
//! added keys are advertised, removed keys withdrawn. The store's watch
//! re-lists after reconnecting to containerd, so changes made while it was
//! away arrive here as ordinary changes; the router re-provides everything
//! periodically on its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use peerpull_oci::Registry;
use peerpull_routing::Router;
use peerpull_store::{Entry, Key, Store};
use tokio_util::sync::CancellationToken;

use crate::{Health, Metrics};

/// The longest wait between attempts to list the store at start.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Advertises what the store holds.
#[derive(Debug)]
pub struct Advertiser {
    store: Arc<dyn Store>,
    router: Router,
    mirrored: Vec<Registry>,
    metrics: Metrics,
    health: Health,
    advertised: HashSet<Key>,
}

impl Advertiser {
    /// An advertiser of `store`'s keys that belong to `mirrored` registries (all when empty).
    pub fn new(
        store: Arc<dyn Store>,
        router: Router,
        mirrored: Vec<Registry>,
        metrics: Metrics,
        health: Health,
    ) -> Self {
        Self { store, router, mirrored, metrics, health, advertised: HashSet::new() }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
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
        self.add(entries).await;
        self.health.set_advertised();
        tracing::info!(keys = self.advertised.len(), "initial advertisement done");
        loop {
            let change = tokio::select! {
                () = shutdown.cancelled() => return,
                change = changes.recv() => match change {
                    Some(change) => change,
                    None => return,
                },
            };
            self.add(change.added).await;
            self.remove(change.removed).await;
        }
    }

    async fn add(&mut self, entries: Vec<Entry>) {
        // The store's watch opens with everything present, and a re-pointed tag
        // comes again as added: keys already announced need no new announcement.
        let keys: Vec<Key> = entries
            .into_iter()
            .filter(|e| self.wanted(e) && !self.advertised.contains(&e.key))
            .map(|e| e.key)
            .collect();
        if keys.is_empty() {
            return;
        }
        let names: Vec<String> = keys.iter().map(Key::to_string).collect();
        tracing::debug!(count = names.len(), "advertising");
        if let Err(error) = self.router.advertise(names).await {
            tracing::warn!(%error, "advertising failed; the router retries at its next re-provide");
        }
        self.advertised.extend(keys);
        self.count();
    }

    async fn remove(&mut self, keys: Vec<Key>) {
        let keys: Vec<Key> = keys.into_iter().filter(|k| self.advertised.remove(k)).collect();
        if keys.is_empty() {
            return;
        }
        let names: Vec<String> = keys.iter().map(Key::to_string).collect();
        tracing::debug!(count = names.len(), "withdrawing");
        if let Err(error) = self.router.withdraw(names).await {
            tracing::warn!(%error, "withdrawing failed");
        }
        self.count();
    }

    /// Digests of unknown origin are content-addressed and always advertised;
    /// everything else only for mirrored registries.
    fn wanted(&self, entry: &Entry) -> bool {
        self.mirrored.is_empty()
            || entry.registries.is_empty() && !entry.key.is_tag()
            || self.mirrored.iter().any(|r| entry.registries.contains(r.host()))
    }

    fn count(&self) {
        let tags = self.advertised.iter().filter(|k| k.is_tag()).count();
        self.metrics.set_advertised("tag", tags as i64);
        self.metrics.set_advertised("digest", (self.advertised.len() - tags) as i64);
    }
}
