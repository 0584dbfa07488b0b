//! The mirror's view of the router: who holds a key, and who misbehaved.
//!
//! [`Peers`] is what the mirror needs from routing. [`peerpull_routing::Router`]
//! implements it; tests use `Static`, a fixed list (feature `test-util`).

use futures::stream::{self, BoxStream, StreamExt};
use peerpull_routing::{Key, PeerId, Provider, Router};

/// Finds providers of keys and takes reports of bad ones.
#[async_trait::async_trait]
pub trait Peers: Send + Sync + std::fmt::Debug + 'static {
    /// Up to `limit` providers of `key`, streamed as they are found.
    async fn lookup(&self, key: &Key, limit: usize) -> BoxStream<'static, Provider>;

    /// Reports that `peer` served bad content or failed a transfer.
    async fn penalize(&self, peer: PeerId);

    /// The node the cluster agrees should fetch `key` from the upstream,
    /// passing over the peers in `except`: `None` for this node (also when
    /// routing cannot tell).
    async fn closest(&self, key: &Key, except: &[PeerId]) -> Option<Provider>;

    /// The round-trip time last measured to `peer`, if any.
    fn rtt(&self, _peer: &PeerId) -> Option<std::time::Duration> {
        None
    }
}

#[async_trait::async_trait]
impl Peers for Router {
    async fn lookup(&self, key: &Key, limit: usize) -> BoxStream<'static, Provider> {
        match Router::lookup(self, key, limit).await {
            Ok(lookup) => lookup.boxed(),
            Err(error) => {
                tracing::warn!(%key, %error, "provider lookup failed");
                stream::empty().boxed()
            }
        }
    }

    async fn penalize(&self, peer: PeerId) {
        if let Err(error) = Router::penalize(self, peer).await {
            tracing::warn!(%peer, %error, "penalising a peer failed");
        }
    }

    async fn closest(&self, key: &Key, except: &[PeerId]) -> Option<Provider> {
        Router::closest(self, key, except).await.unwrap_or_else(|error| {
            tracing::warn!(%key, %error, "finding the closest node failed; fetching here");
            None
        })
    }

    fn rtt(&self, peer: &PeerId) -> Option<std::time::Duration> {
        Router::rtt(self, peer)
    }
}

/// A fixed set of providers, for tests.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone, Default)]
pub struct Static {
    /// Returned for every key, in this order.
    pub providers: Vec<Provider>,
    /// Delay before each provider is yielded.
    pub delay: std::time::Duration,
    /// What `closest` answers for every key (`None`: this node).
    pub closest: Option<Provider>,
    /// What `rtt` answers.
    pub rtts: std::collections::HashMap<PeerId, std::time::Duration>,
    penalized: std::sync::Arc<parking_lot::Mutex<Vec<PeerId>>>,
}

#[cfg(any(test, feature = "test-util"))]
impl Static {
    /// Providers returned for every key.
    pub fn new(providers: Vec<Provider>) -> Self {
        Self { providers, ..Self::default() }
    }

    /// The same, naming `provider` as the node to fetch every key from the upstream.
    pub fn closest_is(mut self, provider: Provider) -> Self {
        self.closest = Some(provider);
        self
    }

    /// The peers penalised so far.
    pub fn penalized(&self) -> Vec<PeerId> {
        self.penalized.lock().clone()
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait::async_trait]
impl Peers for Static {
    async fn lookup(&self, _key: &Key, limit: usize) -> BoxStream<'static, Provider> {
        let delay = self.delay;
        let providers: Vec<Provider> = self.providers.iter().take(limit).copied().collect();
        stream::iter(providers)
            .then(move |p| async move {
                tokio::time::sleep(delay).await;
                p
            })
            .boxed()
    }

    async fn penalize(&self, peer: PeerId) {
        self.penalized.lock().push(peer);
    }

    async fn closest(&self, _key: &Key, except: &[PeerId]) -> Option<Provider> {
        self.closest.filter(|p| !except.contains(&p.peer))
    }

    fn rtt(&self, peer: &PeerId) -> Option<std::time::Duration> {
        self.rtts.get(peer).copied()
    }
}
