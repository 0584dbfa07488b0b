//! The `/v2` handler: a request, its chain of sources, and one count.
//!
//! [`Mirror::handle`] parses a request, refuses what this node does not
//! serve (an unmirrored registry, a tag with `--resolve-tags false`), asks
//! each source in turn, and answers a 404 with an OCI error body when none
//! could, so containerd tries its next host at once. The request is counted
//! once, from which source answered.

use std::sync::Arc;

use http::{Request, Response};
use peerpull_store::Store;

use crate::body::{self, Body};
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::request::{self, Parsed, Target, Wanted};
use crate::source::{self, Kind, Source};
use crate::Config;

/// The `/v2` mirror; cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    sources: Vec<Box<dyn Source>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources: Vec<Kind> = self.inner.sources.iter().map(|s| s.kind()).collect();
        f.debug_struct("Mirror").field("config", &self.inner.config).field("sources", &sources).finish()
    }
}

impl Mirror {
    /// A mirror answering from `store`, then from the peers `peers` finds.
    pub fn new(config: Config, store: Arc<dyn Store>, peers: Arc<dyn Peers>, metrics: Metrics) -> Self {
        let config = Arc::new(config);
        let sources: Vec<Box<dyn Source>> = vec![
            Box::new(source::local::Local::new(store, metrics.clone())),
            Box::new(source::peer::Peer::new(config.clone(), peers, metrics.clone())),
        ];
        Self { inner: Arc::new(Inner { config, sources, metrics }) }
    }

    /// Answers a `/v2` request (any other path is a 404 with an OCI error body).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body> {
        let wanted = match request::parse(&request) {
            Parsed::Wanted(wanted) => wanted,
            Parsed::Answer(response) => return response,
        };
        let (response, source) = self.answer(&wanted).await;
        self.inner.metrics.request(wanted.registry(), source);
        response
    }

    /// The response and the source that gave it (`None`: a miss).
    async fn answer(&self, wanted: &Wanted) -> (Response<Body>, Option<Kind>) {
        let config = &self.inner.config;
        if !config.mirrored.includes(wanted.ns.as_deref().unwrap_or_default()) {
            let message = format!("registry {} is not mirrored here", wanted.registry());
            return (body::error(wanted.unknown(), message), None);
        }
        if matches!(wanted.target, Target::Tag(_)) && !config.resolve_tags {
            return (body::error(wanted.unknown(), "tags are not resolved by this mirror"), None);
        }
        for source in &self.inner.sources {
            if let Some(response) = source.answer(wanted).await {
                return (response, Some(source.kind()));
            }
        }
        (body::error(wanted.unknown(), "no node holds this content"), None)
    }
}
