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

use http::{Request, Response};
use peerpull_oci::ErrorCode;
use peerpull_store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{Admission, Proofs};
use crate::body::{self, Body};
use crate::fetch::PeerClient;
use crate::metrics::{Metrics, Stats};
use crate::peers::Peers;
use crate::private::{Admit, Private};
use crate::recent::{self, Client, Pull, Recent};
use crate::request::{self, Parsed, Target, Wanted};
use crate::source::{self, Kind, Source};
use crate::spool::{self, Spool};
use crate::tags::{Tags, Verdict};
use crate::upload::Uploads;
use crate::{Config, Identity, TagResolution};

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
    admission: Admission,
    client: Arc<peerpull_upstream::Client>,
    recent: Recent,
    uploads: Uploads,
    private: Private,
    /// The registry a request without `?ns=` is for: the one mirrored here, if only one is.
    default_ns: Option<String>,
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
    /// A mirror of this node (`identity`) answering from `store`, then from
    /// the peers `peers` finds, then (with [`Config::upstream_fallback`]) from the upstream.
    pub fn new(
        config: Config,
        identity: Identity,
        store: Arc<dyn Store>,
        peers: Arc<dyn Peers>,
        metrics: Metrics,
    ) -> Result<Self, Error> {
        let config = Arc::new(config);
        let metrics = metrics.in_zone(config.zone);
        let uploads = Uploads::new(config.max_peer_uploads, config.max_upload_rate);
        metrics.name_registries(config.mirrored.registries().iter().map(|r| r.host()));
        let proofs = identity.membership.as_ref().map(|m| Proofs::new(m.key, m.peer_id.clone()));
        let peer_client =
            PeerClient::new(config.clone(), metrics.clone(), peers.clone(), proofs.clone(), identity.node);
        let mut sources: Vec<Box<dyn Source>> =
            vec![Box::new(source::local::Local::new(store.clone(), metrics.clone()))];
        let mut spool = None;
        let client = Arc::new(peerpull_upstream::Client::new(config.upstream.clone())?);
        let upstream = client.clone();
        let tags = Tags::new(client.clone(), config.tag_timeout, metrics.clone());
        let private = Private::new(config.clone(), client.clone(), store.clone(), metrics.clone());
        if let Some(pull) = &config.upstream_fallback {
            let wait = config.upstream.response_timeout;
            let dir = pull.spool_dir.clone();
            let limits = spool::Limits {
                max_bytes: pull.spool_max_bytes,
                ttl: pull.spool_ttl,
                stall: config.stall_timeout,
                open_timeout: config.upstream_fallback_timeout(),
            };
            let made = Spool::new(dir.clone(), limits, store, peers, metrics.clone())
                .map_err(|source| Error::Spool { dir, source })?;
            let spooled = source::spooled::Spooled::new(made.clone(), metrics.clone(), wait, config.relay_shape());
            sources.push(Box::new(spooled));
            sources.push(Box::new(source::peer::Peer::new(
                peer_client.clone(),
                metrics.clone(),
                config.multi_source_min_bytes,
                config.zone,
            )));
            let upstream_source =
                source::upstream::Upstream::new(client, made.clone(), peer_client, config.clone(), metrics.clone());
            sources.push(Box::new(upstream_source));
            spool = Some(made);
        } else {
            sources.push(Box::new(source::peer::Peer::new(
                peer_client,
                metrics.clone(),
                config.multi_source_min_bytes,
                config.zone,
            )));
        }
        let admission = Admission::new(proofs, config.clients.clone());
        let default_ns = match config.mirrored.registries() {
            [one] => Some(one.host().to_owned()),
            _ => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                sources,
                metrics,
                spool,
                tags,
                admission,
                client: upstream,
                recent: Recent::default(),
                uploads,
                private,
                default_ns,
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
        if let Some(refused) = self.inner.admission.refuse(&request) {
            return refused;
        }
        let mut wanted = match request::parse(&request, self.inner.default_ns.as_deref()) {
            Parsed::Wanted(wanted) => wanted,
            Parsed::Answer(response) => return response,
        };
        let client = if wanted.by_peer() { Client::Peer } else { Client::Containerd };
        if wanted.by_peer() {
            wanted.verified = self.inner.admission.peer_access(&request);
        }
        self.serve(&mut wanted, client).await
    }

    /// Answers `wanted` for `client`, in layers around the chain of sources:
    /// a place under the upload cap for a peer (`upload`), then the chain,
    /// its body paced, then counted and remembered (`recent`).
    async fn serve(&self, wanted: &mut Wanted, client: Client) -> Response<Body> {
        let inner = &self.inner;
        let slot = match inner.uploads.admit_for(client == Client::Peer && !wanted.head, wanted.by_follower()) {
            Ok(slot) => slot,
            Err(busy) => {
                inner.metrics.upload_refused();
                return busy.answer();
            }
        };
        let pull =
            Pull::arriving(client, wanted.registry(), &wanted.name, wanted.reference(), wanted.manifest, wanted.head);
        let started = Instant::now();
        let (response, source) = self.answer(wanted).await;
        let response = inner.uploads.paced(response, slot);
        if client != Client::Node {
            inner.metrics.request(wanted.registry(), source);
        }
        // The node's own requests (the admin API, the test pull) are not pulls: not remembered.
        let recent = (client != Client::Node).then_some(&inner.recent);
        recent::recorded(response, source, pull, started, &inner.metrics, recent)
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

    /// The private repositories known and the verifications within the grace (`--private-images verify`).
    pub fn private_images(&self) -> crate::private::Report {
        self.inner.private.report()
    }

    /// How each upstream registry asked so far is doing.
    pub fn upstream_health(&self) -> Vec<peerpull_upstream::Health> {
        self.inner.client.health()
    }

    /// The response and the source that gave it (`None`: a miss), once the
    /// request may read what it asks for (`private`).
    async fn answer(&self, wanted: &mut Wanted) -> (Response<Body>, Option<Kind>) {
        let inner = &self.inner;
        if !inner.config.mirrored.includes(wanted.ns.as_deref().unwrap_or_default()) {
            let message = match &wanted.ns {
                Some(ns) => format!("registry {ns} is not mirrored here"),
                None => "a request without ?ns= names no registry, and this node mirrors more than one".to_owned(),
            };
            return (body::error(wanted.unknown(), message), None);
        }
        let Some(registry) = wanted.ns.as_deref().and_then(|ns| inner.config.upstream(ns)) else {
            return self.answer_admitted(wanted, None).await;
        };
        if wanted.by_peer() {
            if let Some(refused) = inner.private.refuses_peer(wanted, &registry, wanted.verified, &inner.tags).await {
                return (refused, None);
            }
            return self.answer_admitted(wanted, None).await;
        }
        let resolved = match inner.private.admit(wanted, &registry, &inner.tags).await {
            Admit::Open => None,
            Admit::Verified(resolved) => {
                wanted.verified = true;
                resolved
            }
            Admit::Refused(response) => return (response, None),
        };
        let (response, source) = self.answer_admitted(wanted, resolved).await;
        (inner.private.named(wanted, &registry, response).await, source)
    }

    /// The response to a request that may read what it asks for; a verified
    /// pull of a private repository is never fetched from the upstream with
    /// the node's credentials, and its tag is `resolved` already.
    async fn answer_admitted(&self, wanted: &Wanted, resolved: Option<Verdict>) -> (Response<Body>, Option<Kind>) {
        let config = &self.inner.config;
        let Target::Tag(reference) = &wanted.target else { return self.chain(wanted, wanted.verified).await };
        if !config.resolve_tags {
            return (body::error(wanted.unknown(), "tags are not resolved by this mirror"), None);
        }
        let metrics = &self.inner.metrics;
        // A peer's request for a tag is answered from what this node holds (loop guard).
        let upstream_first = config.tag_resolution == TagResolution::UpstreamFirst && !wanted.by_peer();
        let registry = wanted.ns.as_deref().and_then(|ns| config.upstream(ns));
        let verdict = match (resolved, registry, reference.tag(), upstream_first) {
            (Some(verdict), ..) => verdict,
            (None, Some(registry), Some(tag), true) => {
                self.inner.tags.resolve(&registry, &wanted.name, tag, wanted.accept.as_ref()).await
            }
            _ => {
                let (response, source) = self.chain(wanted, wanted.verified).await;
                metrics.tag(source, false);
                return (response, source);
            }
        };
        match verdict {
            Verdict::Found(descriptor) => {
                metrics.tag(Some(Kind::Upstream), false);
                if wanted.head {
                    let prepared =
                        source::content_response(wanted, &descriptor.digest, descriptor.size, &descriptor.media_type);
                    let (source::Prepared::Content(response, _) | source::Prepared::Refused(response)) = prepared;
                    return (response, Some(Kind::Upstream));
                }
                // The manifest's bytes by digest, from whoever has them first.
                self.chain(&wanted.for_digest(descriptor.digest), wanted.verified).await
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
        let message = match wanted.target {
            Target::Referrers(_) => "referrers are answered by the upstream only, and it could not answer",
            _ => "no node holds this content",
        };
        (body::error(wanted.unknown(), message), None)
    }
}
