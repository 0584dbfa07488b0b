//! The upstream registry, fetched once for the whole cluster: the last source.
//!
//! A digest no node holds is fetched from the upstream by one node only:
//! the node closest to the digest's key in the DHT ([`Peers::closest`](crate::Peers::closest)),
//! which every node finds alike (a Kademlia walk towards the key), so nodes
//! that miss at the same moment agree without a coordinator. Any other
//! node asks that one to pull through ([`PULL_THROUGH`](crate::PULL_THROUGH))
//! and streams the bytes from it while they arrive (from its spool, with
//! `Range` from any offset it already has). If the chosen node cannot
//! (it has no access to the upstream, or dies mid-blob), the node fetches
//! the blob itself and the client's response continues from its own fetch
//! at the byte reached, verified end to end. A client's range is cut here
//! from the whole content, as from any peer, so it is verified too.
//!
//! This node's own fetches go through the spool: one upstream transfer per
//! digest however many ask (containerd, peers). Manifests by tag and `HEAD`
//! requests are small and go straight to the upstream; a tag's manifest is
//! checked against the digest the upstream names. When the upstream cannot
//! be reached, or refuses (a private image needs the kubelet's credentials),
//! this source passes and the client gets the mirror's fast 404, so
//! containerd tries its own `server` as it always did.
//!
//! Implementation notes: the choice of fetcher needs no coordination but
//! relies on the walks of different nodes ending at the same peers; while
//! the cluster's membership changes, two nodes may briefly both fetch. A
//! chosen node that cannot pull through (down, `--upstream-fallback false`)
//! is passed over for the next closest, up to [`MAX_CHOSEN`]; one whose
//! upstream refused answers a 404 marked so, and the asking node answers a
//! miss without asking the upstream again. The fetcher serves every follower
//! itself (a star); followers do not serve onward.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};
use peerpull_oci::{ByteRange, Digest, ErrorCode, Key, Registry};
use peerpull_routing::Provider;
use peerpull_upstream::Fetch;

use super::in_flight::respond;
use super::{Kind, Prepared, Source};
use crate::body::{self, Body};
use crate::fetch::{self, Ask, Fetcher, Providers};
use peerpull_upstream::Outcome;

use crate::metrics::{Failure, Metrics};
use crate::recent::Via;
use crate::request::{Target, Wanted};
use crate::spool::{self, Opened, Opener, Spool, SpoolError};
use crate::transfer::{Fallback, Feed, Transfer};
use crate::UPSTREAM_FAILED;

/// The `Accept` list for manifests fetched by this node: every kind, so the
/// registry answers with the manifest as stored.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How many chosen nodes a miss asks to pull through before fetching here.
const MAX_CHOSEN: usize = 3;

/// How asking the chosen node to pull through went.
enum Through {
    /// It answers; the response streams from it.
    Streaming(Response<Body>),
    /// It could not get it from the upstream either: a miss.
    UpstreamFailed,
    /// It did not answer well (down, pull-through off, its own trouble).
    PeerFailed,
}

/// Content from the upstream registry.
pub(crate) struct Upstream {
    client: Arc<peerpull_upstream::Client>,
    spool: Spool,
    fetcher: Fetcher,
    metrics: Metrics,
    /// How long to wait for the upstream's answer and for each step of a fetch.
    wait: Duration,
}

impl Upstream {
    pub(crate) fn new(client: Arc<peerpull_upstream::Client>, spool: Spool, fetcher: Fetcher, wait: Duration) -> Self {
        let metrics = fetcher.metrics.clone();
        Self { client, spool, fetcher, metrics, wait }
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
                    e.to_string()
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
                let Some(size) = size else {
                    return Err(format!("the upstream answered {} without the length asked for", response.status()));
                };
                Ok(Opened { meta: spool::Meta { size, media_type }, body: response.into_body() })
            })
        })
    }

    /// This node fetches `digest` (or joins its fetch under way) and answers from the spool.
    async fn spooled(&self, wanted: &Wanted, digest: &Digest, registry: &Registry) -> Option<Response<Body>> {
        let entry = self.spool.start(digest, self.opener(registry.clone(), Self::fetch(wanted, Method::GET)));
        let meta = match entry.opened(self.fetcher.config.pull_through_timeout()).await {
            Ok(meta) => meta,
            Err(error) => {
                tracing::debug!(%digest, %error, "no upstream fetch; answering a miss");
                // Tell a node that asked us to pull through that asking the upstream again is pointless.
                let upstream_failed = matches!(&error, SpoolError::Failed(failed) if failed.upstream);
                return (wanted.pull_through && upstream_failed).then(|| {
                    let mut response = body::error(ErrorCode::BlobUnknown, "the upstream could not serve it");
                    response.headers_mut().insert(UPSTREAM_FAILED, HeaderValue::from_static("1"));
                    response
                });
            }
        };
        Some(respond(entry, meta, wanted, self.wait, self.metrics.served(Kind::Upstream)))
    }

    /// Streams `digest` from `peer`, the node chosen to fetch it, falling back to
    /// this node's own fetch if the peer fails mid-blob.
    async fn through(&self, peer: Provider, wanted: &Wanted, digest: &Digest, registry: &Registry) -> Through {
        let ask = Ask {
            method: Method::GET,
            path_and_query: wanted.path_and_query.clone(),
            // Asked for whole, to be verified; a client's range is cut from it (see `source::peer`).
            range: None,
            pull_through: true,
            needs_digest: false,
        };
        let opened = match self.fetcher.send(peer, ask.clone(), None).await {
            Ok(opened) => opened,
            Err((_, Failure::UpstreamFailed)) => {
                tracing::debug!(peer = %peer.peer, %digest, "the upstream could not serve the chosen node; answering a miss");
                return Through::UpstreamFailed;
            }
            Err((_, reason)) => {
                self.metrics.peer_failure(reason);
                tracing::debug!(peer = %peer.peer, mirror = %peer.mirror, %reason, "the chosen node cannot pull through; fetching here");
                return Through::PeerFailed;
            }
        };
        tracing::debug!(%digest, peer = %peer.peer, "streaming from the node that fetches it");
        let headers = opened.response.headers();
        let value = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        // `Fetcher::send` lets through no whole answer without a length.
        let Some(size) = value(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()) else { return Through::PeerFailed };
        let media_type = value(CONTENT_TYPE).unwrap_or("application/octet-stream");
        let (mut response, range) = match super::content_response(wanted, digest, size, media_type) {
            Prepared::Content(response, range) => (response, range),
            Prepared::Refused(response) => return Through::Streaming(response),
        };
        response.extensions_mut().insert(Via(peer));
        let served = self.metrics.served(Kind::Upstream);
        let feed = Feed::Body(opened.response.into_body());
        let transfer = Transfer::new(
            self.fetcher.clone(),
            Providers::none(),
            ask,
            feed,
            Some(peer),
            size,
            Some(digest.clone()),
            served,
        )
        .or_else(self.fallback(wanted, digest, registry, size, peer))
        .patient(self.fetcher.config.stall_timeout + self.fetcher.config.pull_through_timeout())
        .only(range);
        *response.body_mut() = body::stream(transfer.stream());
        Through::Streaming(response)
    }

    /// Continues a transfer of `digest` (`size` bytes) after `failed`, the node
    /// chosen to fetch it, failed: from the node the cluster chooses now (every
    /// node passes over the failed one alike, so they again agree on one), or
    /// from this node's own fetch.
    fn fallback(&self, wanted: &Wanted, digest: &Digest, registry: &Registry, size: u64, failed: Provider) -> Fallback {
        let (spool, wait, digest, fetcher) = (self.spool.clone(), self.wait, digest.clone(), self.fetcher.clone());
        let opener = self.opener(registry.clone(), Self::fetch(wanted, Method::GET));
        let path_and_query = wanted.path_and_query.clone();
        Box::new(move |offset| {
            Box::pin(async move {
                let next = fetcher.peers.closest(&Key::Digest(digest.clone()), &[failed.peer]).await;
                if let Some(peer) = next {
                    let ask = Ask {
                        method: Method::GET,
                        path_and_query,
                        range: None,
                        pull_through: true,
                        needs_digest: false,
                    };
                    match fetcher.send(peer, ask, Some((offset, size - 1))).await {
                        Ok(opened) => {
                            tracing::info!(peer = %peer.peer, offset, "continuing from the node the cluster chose next");
                            return Some(Feed::Body(opened.response.into_body()));
                        }
                        Err((_, reason)) => fetcher.metrics.peer_failure(reason),
                    }
                }
                let entry = spool.start(&digest, opener);
                let meta = entry.opened(wait).await.ok().filter(|meta| meta.size == size)?;
                Some(Feed::Spool(spool::read(entry, offset, meta.size, wait).boxed()))
            })
        })
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
        };
        let served = self.metrics.served(Kind::Upstream);
        let stream = match size {
            Some(size) if upstream.status() == StatusCode::OK => {
                let ask = Ask {
                    method,
                    path_and_query: wanted.path_and_query.clone(),
                    range: None,
                    pull_through: false,
                    needs_digest: false,
                };
                let feed = Feed::Body(upstream.into_body());
                body::stream(
                    Transfer::new(self.fetcher.clone(), Providers::none(), ask, feed, None, size, expected, served)
                        .stream(),
                )
            }
            _ => body::stream(fetch::passthrough(upstream.into_body(), self.fetcher.config.stall_timeout)),
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
        if wanted.from_peer && !wanted.pull_through {
            return None;
        }
        let registry = self.fetcher.config.upstream(wanted.ns.as_deref()?)?;
        match (&wanted.target, wanted.head) {
            (Target::Digest(digest), false) => {
                // Ask the node the cluster chose; if it cannot pull through, the one
                // chosen next (every node passes over the failed one alike), or this one.
                let key = Key::Digest(digest.clone());
                let mut failed = Vec::new();
                while !wanted.from_peer && failed.len() < MAX_CHOSEN {
                    let Some(peer) = self.fetcher.peers.closest(&key, &failed).await else { break };
                    match self.through(peer, wanted, digest, &registry).await {
                        Through::Streaming(response) => return Some(response),
                        Through::UpstreamFailed => return None,
                        Through::PeerFailed => failed.push(peer.peer),
                    }
                }
                self.spooled(wanted, digest, &registry).await
            }
            _ => self.direct(wanted, &registry).await,
        }
    }
}
