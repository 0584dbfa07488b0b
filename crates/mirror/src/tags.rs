//! Tags resolved against the upstream first: fresh while it answers, from
//! this node and its peers while it cannot.
//!
//! [`Tags::resolve`] asks the upstream where a tag points with a `HEAD` of
//! the manifest (containerd's `Accept` list; cheap, and not counted against
//! Docker Hub's pull limits), bounded by `--tag-timeout`. Its [`Verdict`]:
//! the tag's manifest descriptor; the tag does not exist (a 404 is an
//! answer, not an outage); we may not know (refused: containerd asks with
//! the kubelet's credentials); or the upstream cannot answer (unreachable,
//! slow, 5xx, 429), and then the mirror's chain answers from this node's
//! store and its peers. Verdicts are cached for [`CACHE_TTL`] and identical
//! look-ups in flight share one request, so a burst of nodes sends a
//! handful of `HEAD`s, not a burst. [`Tags::resolve_as`] asks the same
//! with a pull's own credentials (a private repository's), uncached.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt as _;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method};
use http_body_util::{BodyExt, Limited};
use peerpull_oci::{Descriptor, Digest, Registry};
use peerpull_upstream::{Client, Credentials, Error, Fetch};
use tokio::time::Instant;

use crate::body::DOCKER_CONTENT_DIGEST;
use peerpull_upstream::Outcome;

use crate::metrics::Metrics;

/// How long a tag's verdict is reused.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(5);
/// The largest manifest read when the upstream's `HEAD` does not name its digest.
const MAX_MANIFEST: usize = 4 << 20;
/// The `Accept` list when the client sent none: every manifest kind.
const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// What the upstream says about a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The tag points at this manifest.
    Found(Descriptor),
    /// There is no such tag.
    Absent,
    /// The upstream refuses us.
    Denied,
    /// The upstream cannot answer now.
    Outage,
}

/// A tag as asked: registry, repository, tag and `Accept` list.
type TagKey = (String, String, String, String);

/// The tag resolver of one mirror.
pub(crate) struct Tags {
    client: Arc<Client>,
    timeout: Duration,
    metrics: Metrics,
    cache: Mutex<HashMap<TagKey, (Instant, Verdict)>>,
    inflight: Mutex<HashMap<TagKey, Shared<BoxFuture<'static, Verdict>>>>,
}

impl Tags {
    pub(crate) fn new(client: Arc<Client>, timeout: Duration, metrics: Metrics) -> Self {
        Self { client, timeout, metrics, cache: Mutex::default(), inflight: Mutex::default() }
    }

    /// Where `tag` of `repository` points, as `registry` says (or cannot say).
    pub(crate) async fn resolve(
        &self,
        registry: &Registry,
        repository: &str,
        tag: &str,
        accept: Option<&HeaderValue>,
    ) -> Verdict {
        let accept = accept.and_then(|a| a.to_str().ok()).unwrap_or(ACCEPT_ALL).to_owned();
        let key = (registry.host().to_owned(), repository.to_owned(), tag.to_owned(), accept.clone());
        let now = Instant::now();
        {
            let mut cache = self.cache.lock();
            cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
            if let Some((_, verdict)) = cache.get(&key) {
                return verdict.clone();
            }
        }
        let ask = {
            let mut inflight = self.inflight.lock();
            inflight
                .entry(key.clone())
                .or_insert_with(|| {
                    let fetch = Fetch {
                        method: Method::HEAD,
                        repository: repository.to_owned(),
                        path: format!("/v2/{repository}/manifests/{tag}"),
                        range: None,
                        accept: HeaderValue::from_str(&accept).ok(),
                    };
                    let (client, metrics, registry) = (self.client.clone(), self.metrics.clone(), registry.clone());
                    let timeout = self.timeout;
                    async move {
                        match tokio::time::timeout(timeout, ask(&client, &registry, fetch, &metrics, None)).await {
                            Ok(verdict) => verdict,
                            Err(_) => {
                                tracing::info!(registry = %registry, ?timeout, "the upstream did not resolve a tag in time");
                                Verdict::Outage
                            }
                        }
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let verdict = ask.await;
        self.inflight.lock().remove(&key);
        self.cache.lock().insert(key, (Instant::now(), verdict.clone()));
        verdict
    }
}

impl Tags {
    /// Where `tag` of `repository` points, as `registry` says to a pull
    /// with `credentials`; not cached, nor shared with other look-ups.
    pub(crate) async fn resolve_as(
        &self,
        registry: &Registry,
        repository: &str,
        tag: &str,
        accept: Option<&HeaderValue>,
        credentials: &Credentials,
        fingerprint: &str,
    ) -> Verdict {
        let accept = accept.and_then(|a| a.to_str().ok()).unwrap_or(ACCEPT_ALL);
        let fetch = Fetch {
            method: Method::HEAD,
            repository: repository.to_owned(),
            path: format!("/v2/{repository}/manifests/{tag}"),
            range: None,
            accept: HeaderValue::from_str(accept).ok(),
        };
        let asked = ask(&self.client, registry, fetch, &self.metrics, Some((credentials, fingerprint)));
        tokio::time::timeout(self.timeout, asked).await.unwrap_or(Verdict::Outage)
    }
}

/// One look-up (with a pull's `credentials`, or the node's): a `HEAD`, and
/// a bounded `GET` when the `HEAD` does not name the digest and size.
async fn ask(
    client: &Client,
    registry: &Registry,
    fetch: Fetch,
    metrics: &Metrics,
    credentials: Option<(&Credentials, &str)>,
) -> Verdict {
    let sent = match credentials {
        Some((credentials, fingerprint)) => client.fetch_as(registry, &fetch, credentials, fingerprint).await,
        None => client.fetch(registry, &fetch).await,
    };
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            metrics.upstream(Outcome::from(&error));
            return judge(&error);
        }
    };
    metrics.upstream(Outcome::Ok);
    let headers = response.headers();
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let media_type = text(CONTENT_TYPE).map(str::to_owned);
    let digest = text(DOCKER_CONTENT_DIGEST).and_then(|v| v.parse::<Digest>().ok());
    let size = text(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if let (Some(digest), Some(size), Some(media_type)) = (digest, size, media_type.clone()) {
        return Verdict::Found(Descriptor::new(digest, size, &media_type));
    }
    // Some registries leave the digest out of a HEAD: read the manifest and hash it.
    let get = Fetch { method: Method::GET, ..fetch };
    let sent = match credentials {
        Some((credentials, fingerprint)) => client.fetch_as(registry, &get, credentials, fingerprint).await,
        None => client.fetch(registry, &get).await,
    };
    let response = match sent {
        Ok(response) => response,
        Err(error) => return judge(&error),
    };
    let media_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(media_type)
        .unwrap_or_default();
    match Limited::new(response.into_body(), MAX_MANIFEST).collect().await {
        Ok(body) => {
            let bytes = body.to_bytes();
            Verdict::Found(Descriptor::new(Digest::sha256_of(&bytes), bytes.len() as u64, &media_type))
        }
        Err(_) => Verdict::Outage,
    }
}

/// The verdict an upstream error gives.
fn judge(error: &Error) -> Verdict {
    match error {
        Error::NotFound { .. } => Verdict::Absent,
        Error::Denied { .. } => Verdict::Denied,
        _ => Verdict::Outage,
    }
}
