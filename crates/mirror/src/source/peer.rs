//! Other nodes' mirrors, found through the DHT: the source after the local store.
//!
//! Looks up the providers of the wanted key, opens the first good answer
//! (hedged, within the request's attempts budget) and streams it: a whole
//! body through [`crate::transfer`], resumed and verified; a partial or
//! unsized one as it comes. A request from a peer (loop guard) is never
//! passed on to other peers.

use http::{header, Method, Response};
use peerpull_oci::Digest;

use super::{Kind, Source};
use crate::body::{self, Body};
use crate::fetch::{self, Ask, Fetcher, Providers};
use crate::recent::Via;
use crate::request::{Target, Wanted};
use crate::transfer::{Feed, Transfer};

/// Content from the peers that hold it.
pub(crate) struct Peer {
    fetcher: Fetcher,
}

impl Peer {
    pub(crate) fn new(fetcher: Fetcher) -> Self {
        Self { fetcher }
    }
}

#[async_trait::async_trait]
impl Source for Peer {
    fn kind(&self) -> Kind {
        Kind::Peer
    }

    async fn answer(&self, wanted: &Wanted) -> Option<Response<Body>> {
        if wanted.from_peer {
            return None;
        }
        let key = wanted.key()?;
        let config = &self.fetcher.config;
        let started = tokio::time::Instant::now();
        let lookup = self.fetcher.peers.lookup(&key, config.lookup_limit).await;
        let mut providers = Providers::new(lookup, config.lookup_timeout, config.max_peer_attempts);
        let method = if wanted.head { Method::HEAD } else { Method::GET };
        let ask = Ask {
            method,
            path_and_query: wanted.path_and_query.clone(),
            range: wanted.range.clone(),
            pull_through: false,
            needs_digest: matches!(wanted.target, Target::Tag(_)),
        };
        let opened = self.fetcher.open(&mut providers, &ask).await?;
        self.fetcher.metrics.resolved_in(started.elapsed().as_secs_f64());
        tracing::debug!(%key, peer = %opened.provider.peer, mirror = %opened.provider.mirror, "serving from a peer");

        let mut response = Response::new(body::empty());
        *response.status_mut() = opened.response.status();
        fetch::forwarded_headers(opened.response.headers(), response.headers_mut());
        response.extensions_mut().insert(Via(opened.provider));
        if wanted.head {
            return Some(response);
        }
        let headers = response.headers();
        let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let size = value(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let whole = opened.response.status() == http::StatusCode::OK;
        let expected: Option<Digest> = match &wanted.target {
            Target::Digest(digest) => Some(digest.clone()),
            Target::Tag(_) => value(body::DOCKER_CONTENT_DIGEST).and_then(|v| v.parse().ok()),
        };
        let stream = match size {
            Some(size) if whole => {
                let verify = expected.filter(|_| wanted.range.is_none());
                let served = self.fetcher.metrics.served(Kind::Peer);
                let feed = Feed::Body(opened.response.into_body());
                let provider = Some(opened.provider);
                let fetcher = self.fetcher.clone();
                body::stream(Transfer::new(fetcher, providers, ask, feed, provider, size, verify, served).stream())
            }
            // Partial or unsized answers pass through as they come, aborted on a stall.
            _ => body::stream(fetch::passthrough(opened.response.into_body(), config.stall_timeout)),
        };
        *response.body_mut() = stream;
        Some(response)
    }
}
