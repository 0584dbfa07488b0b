//! The upstream registry, fetched once for the whole cluster: the last source.
//!
//! A digest no node holds is fetched from the upstream by one node only:
//! the node closest to the digest's key in the DHT ([`Peers::closest`](crate::Peers::closest)),
//! which every node finds alike (a Kademlia walk towards the key), so nodes
//! that miss at the same moment agree without a coordinator. Any other
//! node asks that one to pull through ([`PULL_THROUGH`](crate::wire::PULL_THROUGH))
//! and spools the bytes while they arrive ([`follow`]), so it can serve
//! them onward to other followers (`relay`: a tree, not a star). If the
//! fetcher cannot (it has no access to the upstream, or dies mid-blob),
//! the fetch continues from the next fetcher, or from the upstream,
//! at the byte reached, verified end to end by the spool. A client's range
//! is cut from the spooled whole, so it is verified too.
//!
//! This node's fetches go through the spool: one transfer per digest
//! however many ask (containerd, peers). Manifests by tag and `HEAD`
//! requests are small and go straight to the upstream; a tag's manifest is
//! checked against the digest the upstream names. When the upstream cannot
//! be reached, or refuses (a private image needs the kubelet's credentials),
//! this source passes and the client gets the mirror's fast 404, so
//! containerd tries its own `server` as it always did. A node whose spool
//! has no room for the blob (or cannot write it) streams it from the fetcher
//! without spooling it, verified, and serves no one onward.
//!
//! Implementation notes: the choice of fetcher needs no coordination but
//! relies on the walks of different nodes ending at the same peers; while
//! the cluster's membership changes, two nodes may briefly both fetch. A
//! fetcher that cannot pull through (down, `--upstream-fallback false`)
//! is passed over for the next closest, up to [`follow::MAX_FETCHERS`]; one
//! whose upstream refused answers a 404 marked so, and the asking node
//! answers a miss without asking the upstream again.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};
use peerpull_oci::{ByteRange, Digest, ErrorCode, Key, Registry};
use peerpull_upstream::{Fetch, Outcome};

use super::follow;
use super::spooled::respond;
use super::{Kind, Prepared, Source};
use crate::body::{self, Body};
use crate::fetch::{self, PeerClient};
use crate::metrics::Metrics;
use crate::recent::Via;
use crate::request::{Target, Wanted};
use crate::spool::{self, OpenError, Opened, Opener, Spool, SpoolError};
use crate::transfer::{Feed, Transfer};
use crate::wire::{self, PeerRequest};
use crate::Config;

/// The `Accept` list for manifests fetched by this node: every kind, so the
/// registry answers with the manifest as stored.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Content from the upstream registry.
pub(crate) struct Upstream {
    client: Arc<peerpull_upstream::Client>,
    spool: Spool,
    peer_client: PeerClient,
    config: Arc<Config>,
    metrics: Metrics,
    /// How long to wait for the upstream's answer and for each step of a fetch.
    wait: Duration,
}

impl Upstream {
    pub(crate) fn new(
        client: Arc<peerpull_upstream::Client>,
        spool: Spool,
        peer_client: PeerClient,
        config: Arc<Config>,
        metrics: Metrics,
    ) -> Self {
        let wait = config.upstream.response_timeout;
        Self { client, spool, peer_client, config, metrics, wait }
    }

    /// What to ask the upstream for `wanted`.
    fn fetch(wanted: &Wanted, method: Method) -> Fetch {
        let accept = match wanted.manifest {
            true => wanted.accept.clone().or(Some(HeaderValue::from_static(MANIFEST_ACCEPT))),
            false => None,
        };
        Fetch { method, repository: wanted.name.clone(), path: wanted.path.clone(), range: None, accept }
    }

    /// Opens the upstream's content of `fetch` from an offset, for the spool.
    fn opener(&self, registry: Registry, mut fetch: Fetch) -> Opener {
        let (client, metrics) = (self.client.clone(), self.metrics.clone());
        if fetch.accept.is_some() {
            fetch.accept = Some(HeaderValue::from_static(MANIFEST_ACCEPT));
        }
        Arc::new(move |offset| {
            let (client, metrics, registry) = (client.clone(), metrics.clone(), registry.clone());
            let fetch = Fetch { range: (offset > 0).then(|| format!("bytes={offset}-")), ..fetch.clone() };
            Box::pin(async move {
                let response = client.fetch(&registry, &fetch).await.map_err(|e| {
                    metrics.upstream(Outcome::from(&e));
                    OpenError::Upstream(e)
                })?;
                metrics.upstream(Outcome::Ok);
                let headers = response.headers();
                let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
                let media_type = text(CONTENT_TYPE).unwrap_or("application/octet-stream").to_owned();
                let size = match (offset, response.status()) {
                    (0, StatusCode::OK) => text(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()),
                    (_, StatusCode::PARTIAL_CONTENT) => text(CONTENT_RANGE)
                        .and_then(|v| ByteRange::parse_content_range(v).ok())
                        .filter(|(range, _)| range.start == offset)
                        .and_then(|(_, size)| size),
                    _ => None,
                };
                let Some(size) = size else { return Err(OpenError::NoLength(response.status())) };
                Ok(Opened {
                    meta: spool::Meta { size, media_type },
                    body: response.into_body(),
                    peer: None,
                    stall: None,
                })
            })
        })
    }

    /// This node fetches `digest` (or joins its fetch under way) and answers from the spool.
    async fn spooled(&self, wanted: &Wanted, digest: &Digest, registry: &Registry) -> Option<Response<Body>> {
        let entry = self.spool.start(digest, self.opener(registry.clone(), Self::fetch(wanted, Method::GET)));
        let meta = match entry.opened(self.config.upstream_fallback_timeout()).await {
            Ok(meta) => meta,
            Err(error) => {
                tracing::debug!(%digest, %error, "no upstream fetch; answering a miss");
                // Tell a node that asked us to pull through that asking the upstream again is pointless.
                let upstream_failed = matches!(&error, SpoolError::Failed(failed) if failed.upstream);
                return (wanted.by_follower() && upstream_failed).then(|| {
                    let mut response = body::error(ErrorCode::BlobUnknown, "the upstream could not serve it");
                    wire::mark_upstream_failed(response.headers_mut());
                    response
                });
            }
        };
        if let Some(sent) = super::placed(&entry, wanted, self.config.relay_shape(), &self.metrics) {
            return Some(sent);
        }
        Some(respond(entry, meta, wanted, self.wait, self.metrics.served(Kind::Upstream)))
    }

    /// Spools `digest` from the fetcher to fetch it (see
    /// [`follow`]), or from the upstream when none can, and answers from the spool.
    async fn followed(&self, wanted: &Wanted, digest: &Digest, registry: &Registry) -> Option<Response<Body>> {
        let upstream = self.opener(registry.clone(), Self::fetch(wanted, Method::GET));
        let key = Key::Digest(digest.clone());
        let opener = follow::opener(self.peer_client.clone(), wanted.path_and_query.clone(), key, upstream);
        // Each fetcher asked may take as long as the upstream, and so may this node's own fetch.
        let budget = self.config.upstream_fallback_timeout() * (follow::MAX_FETCHERS as u32 + 1);
        let entry = self.spool.start_within(digest, opener, budget);
        match entry.opened(budget).await {
            Ok(meta) => {
                let via = entry.streaming_from();
                let mut response = respond(entry, meta, wanted, self.wait, self.metrics.served(Kind::Upstream));
                if let Some(via) = via {
                    response.extensions_mut().insert(Via(via));
                }
                Some(response)
            }
            Err(SpoolError::Failed(failed)) if !failed.upstream => {
                tracing::debug!(%digest, reason = %failed.reason, "cannot spool here; streaming through from the fetcher");
                self.passed_through(wanted, digest).await
            }
            Err(error) => {
                tracing::debug!(%digest, %error, "no fetch from the fetcher nor the upstream; answering a miss");
                None
            }
        }
    }

    /// Streams `digest` from the fetcher to fetch it without
    /// spooling it here, verified; `None` (a miss) when that node cannot.
    async fn passed_through(&self, wanted: &Wanted, digest: &Digest) -> Option<Response<Body>> {
        let fetcher = self.peer_client.fetcher_of(&Key::Digest(digest.clone()), &[]).await?;
        // Asked for whole, to be verified; a client's range is cut from it.
        let request = PeerRequest::fetcher(&wanted.path_and_query, false, None);
        let opened = match self.peer_client.send(fetcher, &request).await {
            Ok(opened) => opened,
            Err((_, reason)) => {
                self.metrics.peer_failure(reason);
                tracing::debug!(peer = %fetcher.peer, %reason, "the fetcher cannot stream it either");
                return None;
            }
        };
        let headers = opened.response.headers();
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        // `PeerClient::send` lets through no whole answer without a length.
        let size = text(CONTENT_LENGTH)?.parse().ok()?;
        let media_type = text(CONTENT_TYPE).unwrap_or("application/octet-stream").to_owned();
        let (mut response, range) = match super::content_response(wanted, digest, size, &media_type) {
            Prepared::Content(response, range) => (response, range),
            Prepared::Refused(response) => return Some(response),
        };
        response.extensions_mut().insert(Via(fetcher));
        let served = self.metrics.served(Kind::Upstream);
        let feed = Feed { body: opened.response.into_body(), provider: Some(fetcher), size };
        let transfer = Transfer::new(self.peer_client.clone(), request, feed, Some(digest.clone()), served)
            .patient(self.peer_client.fetcher_stall())
            .only(range);
        *response.body_mut() = body::stream(transfer.stream());
        Some(response)
    }

    /// Asks the upstream directly (tags, `HEAD`), passing its answer on.
    async fn direct(&self, wanted: &Wanted, registry: &Registry) -> Option<Response<Body>> {
        let method = if wanted.head { Method::HEAD } else { Method::GET };
        let fetch = Fetch { range: wanted.range.clone(), ..Self::fetch(wanted, method.clone()) };
        let upstream = match self.client.fetch(registry, &fetch).await {
            Ok(response) => response,
            Err(error) => {
                self.metrics.upstream(Outcome::from(&error));
                tracing::debug!(%error, "the upstream cannot answer; answering a miss");
                return None;
            }
        };
        self.metrics.upstream(Outcome::Ok);
        let mut response = Response::new(body::empty());
        *response.status_mut() = upstream.status();
        fetch::forwarded_headers(upstream.headers(), response.headers_mut());
        if wanted.head {
            return Some(response);
        }
        let headers = response.headers();
        let value = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let size = value(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let expected = match &wanted.target {
            Target::Digest(digest) => Some(digest.clone()),
            Target::Tag(_) => value(body::DOCKER_CONTENT_DIGEST).and_then(|v| v.parse().ok()),
            // An index the upstream makes up: nothing to check it against.
            Target::Referrers(_) => None,
        };
        let served = self.metrics.served(Kind::Upstream);
        let stream = match size {
            Some(size) if upstream.status() == StatusCode::OK => {
                // Nothing resumes it: the request is never sent.
                let request = PeerRequest::holder(method, &wanted.path_and_query);
                let feed = Feed { body: upstream.into_body(), provider: None, size };
                body::stream(Transfer::new(self.peer_client.clone(), request, feed, expected, served).stream())
            }
            _ => body::stream(crate::transfer::passthrough(upstream.into_body(), self.config.stall_timeout)),
        };
        *response.body_mut() = stream;
        Some(response)
    }
}

#[async_trait::async_trait]
impl Source for Upstream {
    fn kind(&self) -> Kind {
        Kind::Upstream
    }

    async fn answer(&self, wanted: &Wanted) -> Option<Response<Body>> {
        if wanted.by_peer() && !wanted.by_follower() {
            return None;
        }
        let registry = self.config.upstream(wanted.ns.as_deref()?)?;
        match (&wanted.target, wanted.head) {
            // This node is the fetcher: it fetches for its follower.
            (Target::Digest(digest), false) if wanted.by_follower() => self.spooled(wanted, digest, &registry).await,
            (Target::Digest(digest), false) => self.followed(wanted, digest, &registry).await,
            _ => self.direct(wanted, &registry).await,
        }
    }
}
