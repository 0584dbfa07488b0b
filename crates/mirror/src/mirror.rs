//! The `/v2` handler: a request, its chain of sources, and one count.
//!
//! [`Mirror::handle`] parses a request, refuses what this node does not
//! serve (an unmirrored registry, a tag with `--resolve-tags false`), asks
//! each source in turn, and answers a 404 with an OCI error body when none
//! could, so containerd tries its next host at once. The request is counted
//! once, from which source answered. The node's own requests (`own`) take
//! the same chain in process, without HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response};
use peerpull_oci::ErrorCode;
use peerpull_store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Proofs, RemoteAddr};
use crate::body::{self, Body};
use crate::fetch::{self, Fetcher};
use crate::metrics::{Metrics, Stats};
use crate::peers::Peers;
use crate::recent::{Client, Pull, Recent, Served, Via};
use crate::request::{self, Parsed, Target, Wanted};
use crate::source::{self, Kind, Source};
use crate::spool::{self, Spool};
use crate::tags::{Tags, Verdict};
use crate::upload::{Slot, Uploads};
use crate::wire::{self, PROOF};
use crate::{Config, TagResolution};

mod own;

pub use own::{Probed, Unanswered};

/// The `/v2` mirror; cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    sources: Vec<Box<dyn Source>>,
    metrics: Metrics,
    spool: Option<Spool>,
    tags: Tags,
    proofs: Option<Proofs>,
    client: Arc<peerpull_upstream::Client>,
    recent: Recent,
    uploads: Uploads,
}

/// Why a mirror could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upstream client's settings are unusable.
    #[error(transparent)]
    Upstream(#[from] peerpull_upstream::Error),
    /// The spool directory could not be prepared.
    #[error("spool directory {}: {source}", dir.display())]
    Spool {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources: Vec<Kind> = self.inner.sources.iter().map(|s| s.kind()).collect();
        f.debug_struct("Mirror").field("config", &self.inner.config).field("sources", &sources).finish()
    }
}

impl Mirror {
    /// A mirror answering from `store`, then from the peers `peers` finds,
    /// then (with [`Config::pull_through`]) from the upstream.
    pub fn new(config: Config, store: Arc<dyn Store>, peers: Arc<dyn Peers>, metrics: Metrics) -> Result<Self, Error> {
        let config = Arc::new(config);
        let uploads = Uploads::new(config.max_peer_uploads, config.max_upload_rate);
        metrics.name_registries(config.mirrored.registries().iter().map(|r| r.host()));
        let proofs = config.membership.as_ref().map(|m| Proofs::new(m.key, m.peer_id.clone()));
        let client = fetch::client(&config);
        let fetcher =
            Fetcher { client, config: config.clone(), metrics: metrics.clone(), peers, proofs: proofs.clone() };
        let mut sources: Vec<Box<dyn Source>> =
            vec![Box::new(source::local::Local::new(store.clone(), metrics.clone()))];
        let mut spool = None;
        let client = Arc::new(peerpull_upstream::Client::new(config.upstream.clone())?);
        let upstream = client.clone();
        let tags = Tags::new(client.clone(), config.tag_timeout, metrics.clone());
        if let Some(pull) = &config.pull_through {
            let wait = config.upstream.response_timeout;
            let dir = pull.spool_dir.clone();
            let limits = spool::Limits {
                max_bytes: pull.spool_max_bytes,
                ttl: pull.spool_ttl,
                stall: config.stall_timeout,
                open_timeout: config.pull_through_timeout(),
            };
            let made = Spool::new(dir.clone(), limits, store, fetcher.peers.clone(), metrics.clone())
                .map_err(|source| Error::Spool { dir, source })?;
            let in_flight = source::in_flight::InFlight::new(made.clone(), metrics.clone(), wait, config.relay_fanout);
            sources.push(Box::new(in_flight));
            sources.push(Box::new(source::peer::Peer::new(fetcher.clone())));
            sources.push(Box::new(source::upstream::Upstream::new(client, made.clone(), fetcher, wait)));
            spool = Some(made);
        } else {
            sources.push(Box::new(source::peer::Peer::new(fetcher)));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                sources,
                metrics,
                spool,
                tags,
                proofs,
                client: upstream,
                recent: Recent::default(),
                uploads,
            }),
        })
    }

    /// Keeps the spool tidy until `shutdown`: drops what containerd took or
    /// what timed out. Returns at once without pull-through.
    pub async fn maintain(&self, shutdown: CancellationToken) {
        if let Some(spool) = &self.inner.spool {
            spool.sweep(shutdown).await;
        } else {
            shutdown.cancelled().await;
        }
    }

    /// Answers a `/v2` request (any other path is a 404 with an OCI error body).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body> {
        if let Some(refused) = self.refuse(&request) {
            return refused;
        }
        let wanted = match request::parse(&request) {
            Parsed::Wanted(wanted) => wanted,
            Parsed::Answer(response) => return response,
        };
        let client = if wanted.by_peer() { Client::Peer } else { Client::Containerd };
        self.serve(&wanted, client).await
    }

    /// Answers `wanted` for `client`: an upload slot for a peer, the chain of
    /// sources, then the metrics and the recent pulls.
    async fn serve(&self, wanted: &Wanted, client: Client) -> Response<Body> {
        // An upload to a peer takes a place under the cap first (a node pulling through is never turned away).
        let slot = match (client, wanted.head) {
            (Client::Peer, false) => match self.inner.uploads.admit() {
                Some(slot) => Some(slot),
                None if wanted.by_follower() => Some(Slot::unlimited()),
                None => {
                    self.inner.metrics.upload_refused();
                    let mut busy = body::error(ErrorCode::TooManyRequests, "this node is uploading all it may");
                    busy.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
                    return busy;
                }
            },
            _ => None,
        };
        let (at, started) = (SystemTime::now(), Instant::now());
        let (mut response, source) = self.answer(wanted).await;
        if let Some(slot) = slot {
            response = self.inner.uploads.paced(response, slot);
        }
        let via = response.extensions().get::<Via>().map(|via| via.0);
        if let Some(source) = source {
            response.extensions_mut().insert(Served { source, via });
        }
        let metrics = &self.inner.metrics;
        if client != Client::Node {
            metrics.request(wanted.registry(), source);
        }
        let mut pull = Pull {
            at,
            client,
            registry: wanted.registry().to_owned(),
            repository: wanted.name.clone(),
            reference: wanted.reference(),
            manifest: wanted.manifest,
            head: wanted.head,
            status: response.status().as_u16(),
            size: content_length(&response),
            source,
            via,
            bytes: 0,
            duration: started.elapsed(),
        };
        // The node's own requests (the admin API, the test pull) are not pulls: not remembered.
        let recent = (client != Client::Node).then(|| self.inner.recent.clone());
        let uploaded = (client == Client::Peer).then(|| metrics.clone());
        match source {
            Some(kind) => body::observed(response, metrics.in_flight(kind), move |bytes| {
                if let Some(metrics) = uploaded {
                    metrics.peer_upload(bytes);
                }
                pull.bytes = bytes;
                pull.duration = started.elapsed();
                if let Some(recent) = recent {
                    recent.push(pull);
                }
            }),
            None => {
                if let Some(recent) = recent {
                    recent.push(pull);
                }
                response
            }
        }
    }

    /// Up to `limit` of the last requests answered, newest first (at most [`crate::recent::CAPACITY`]).
    pub fn recent(&self, limit: usize) -> Vec<Pull> {
        self.inner.recent.last(limit)
    }

    /// What the mirror is doing now: responses being sent by source, shared
    /// upstream fetches, spool use.
    pub fn stats(&self) -> Stats {
        self.inner.metrics.stats()
    }

    /// How each upstream registry asked so far is doing.
    pub fn upstream_health(&self) -> Vec<peerpull_upstream::Health> {
        self.inner.client.health()
    }

    /// The refusal for a request that may not be served: a peer's must prove
    /// membership (401), anyone else must be an allowed client (403).
    fn refuse<B>(&self, request: &Request<B>) -> Option<Response<Body>> {
        let headers = request.headers();
        if wire::claims_peer(headers) {
            let proofs = self.inner.proofs.as_ref()?;
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let refused = proofs.check(request.method(), path, headers.get(PROOF)).err()?;
            tracing::info!(%refused, remote = ?remote(request), "refused a peer request");
            return Some(body::error(ErrorCode::Unauthorized, refused.to_string()));
        }
        if auth::allowed(self.inner.config.clients.as_deref(), remote(request)) {
            return None;
        }
        tracing::debug!(remote = ?remote(request), "refused a client outside the allowed networks");
        Some(body::error(ErrorCode::Denied, "this mirror serves its own node's containerd only"))
    }

    /// The response and the source that gave it (`None`: a miss).
    async fn answer(&self, wanted: &Wanted) -> (Response<Body>, Option<Kind>) {
        let config = &self.inner.config;
        if !config.mirrored.includes(wanted.ns.as_deref().unwrap_or_default()) {
            let message = format!("registry {} is not mirrored here", wanted.registry());
            return (body::error(wanted.unknown(), message), None);
        }
        let Target::Tag(reference) = &wanted.target else { return self.chain(wanted, false).await };
        if !config.resolve_tags {
            return (body::error(wanted.unknown(), "tags are not resolved by this mirror"), None);
        }
        let metrics = &self.inner.metrics;
        // A peer's request for a tag is answered from what this node holds (loop guard).
        let upstream_first = config.tag_resolution == TagResolution::UpstreamFirst && !wanted.by_peer();
        let registry = wanted.ns.as_deref().and_then(|ns| config.upstream(ns));
        let (Some(registry), Some(tag), true) = (registry, reference.tag(), upstream_first) else {
            let (response, source) = self.chain(wanted, false).await;
            metrics.tag(source, false);
            return (response, source);
        };
        match self.inner.tags.resolve(&registry, &wanted.name, tag, wanted.accept.as_ref()).await {
            Verdict::Found(descriptor) => {
                metrics.tag(Some(Kind::Upstream), false);
                if wanted.head {
                    let prepared =
                        source::content_response(wanted, &descriptor.digest, descriptor.size, &descriptor.media_type);
                    let (source::Prepared::Content(response, _) | source::Prepared::Refused(response)) = prepared;
                    return (response, Some(Kind::Upstream));
                }
                // The manifest's bytes by digest, from whoever has them first.
                self.chain(&wanted.for_digest(descriptor.digest), false).await
            }
            Verdict::Absent => (body::error(ErrorCode::ManifestUnknown, "the upstream has no such tag"), None),
            Verdict::Denied => (body::error(ErrorCode::ManifestUnknown, "the upstream refused this node"), None),
            Verdict::Outage => {
                let (response, source) = self.chain(wanted, true).await;
                metrics.tag(source, true);
                (response, source)
            }
        }
    }

    /// The answer of the first source that has `wanted` (passing over the
    /// upstream when `outage`), or a miss.
    async fn chain(&self, wanted: &Wanted, outage: bool) -> (Response<Body>, Option<Kind>) {
        let sources = self.inner.sources.iter().filter(|s| !(outage && s.kind() == Kind::Upstream));
        for source in sources {
            if let Some(response) = source.answer(wanted).await {
                // A source may answer a miss itself (a node that pulled through for a peer, in vain).
                let hit = response.status() != http::StatusCode::NOT_FOUND;
                return (response, hit.then(|| source.kind()));
            }
        }
        (body::error(wanted.unknown(), "no node holds this content"), None)
    }
}

/// The `Content-Length` of `response`, when it has one.
fn content_length(response: &Response<Body>) -> Option<u64> {
    response.headers().get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The address `request` came from, when the server recorded it.
fn remote<B>(request: &Request<B>) -> Option<std::net::IpAddr> {
    request.extensions().get::<RemoteAddr>().map(|r| r.0.ip())
}
