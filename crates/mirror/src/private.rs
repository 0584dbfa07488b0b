//! Who may read a private repository (`--private-images verify`).
//!
//! A repository is **private** when the upstream refuses it to this node
//! (anonymously, or with the node's own credentials): learnt from the
//! first request for it (the tag's `HEAD` the mirror sends anyway, or a
//! `HEAD` of the digest asked), asked again after an hour while the
//! upstream answers, and kept across restarts (`known`).
//!
//! - A client's request for a private repository ([`Private::admit`])
//!   needs the pull's credentials: without, a `401` with a Basic challenge,
//!   which containerd answers with the credentials of the pull (the pod's
//!   pull secret, through the kubelet). They are checked against the
//!   upstream for *that* repository: a `HEAD` of the tag (which the mirror
//!   needs anyway, to know where it points), or of the digest in that
//!   repository, so credentials for one repository cannot read another's
//!   blobs through its path. A digest that a manifest served to a verified
//!   pull of the repository names is not asked again for the same
//!   credentials within [`RECHECK_AFTER`]. The content then comes from this
//!   node or from peers, asked with an access proof (`wire::ACCESS`); the
//!   upstream sees one small request per pull, not the bytes. While the
//!   upstream cannot answer, a verification of the same credentials for
//!   the repository within `--private-grace` holds; nothing else does.
//! - A peer's request ([`Private::refuses_peer`]) for content whose every
//!   repository (containerd's `distribution.source` labels, else the path's)
//!   is private, or not known to be public, needs the access proof.
//!
//! Credentials are never kept or logged (`passes`: fingerprints only).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt as _;
use peerpull_oci::{Digest, ErrorCode, Mirrored, Registry, Scheme};
use peerpull_store::Store;
use peerpull_upstream::{Client, Credentials, Fetch, Outcome};

use crate::body::{self, Body};
use crate::metrics::{Check, Metrics};
use crate::request::{Target, Wanted};
use crate::tags::{Tags, Verdict};
use crate::{wire, Config, PrivateMode};

mod known;
mod passes;

use known::{Known, Repo, Status};
use passes::Passes;

/// How long a verification spares asking the upstream again while it answers.
pub(crate) const RECHECK_AFTER: Duration = Duration::from_secs(600);
/// The largest manifest read to learn the digests it names.
const MAX_MANIFEST: usize = 4 << 20;

/// What a client's request may do.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Be served as any request is (public content, or `public` mode).
    Open,
    /// Be served, to a pull verified for the repository; for a tag, where it points (or `Outage`).
    Verified(Option<Verdict>),
    /// This answer.
    Refused(Response<Body>),
}

/// What the gate knows, for `peerpull status` and the debug page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `public` or `verify` (`--private-images`).
    pub mode: &'static str,
    /// The private repositories known, as `(registry, repository)`.
    pub repositories: Vec<(String, String)>,
    /// The verifications within the grace, newest first.
    pub verifications: Vec<Verification>,
}

/// Credentials the upstream accepted for a private repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The fingerprint of the credentials (never the credentials).
    pub fingerprint: String,
    /// The registry host.
    pub registry: String,
    /// The repository.
    pub repository: String,
    /// How long ago the upstream accepted them.
    pub ago: Duration,
}

/// The private-repository gate of one mirror.
pub(crate) struct Private {
    config: Arc<Config>,
    client: Arc<Client>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    known: Known,
    passes: Passes,
}

impl Private {
    pub(crate) fn new(config: Arc<Config>, client: Arc<Client>, store: Arc<dyn Store>, metrics: Metrics) -> Self {
        let settings = &config.private_images;
        let known = Known::load(settings.state_file.clone().filter(|_| settings.mode == PrivateMode::Verify));
        let passes = Passes::new(settings.grace);
        Self { config, client, store, metrics, known, passes }
    }

    fn verify_mode(&self) -> bool {
        self.config.private_images.mode == PrivateMode::Verify
    }

    /// What a client's request for `wanted` in `registry` may do.
    pub(crate) async fn admit(&self, wanted: &Wanted, registry: &Registry, tags: &Tags) -> Admit {
        if !self.verify_mode() || wanted.by_peer() {
            return Admit::Open;
        }
        let repo: Repo = (registry.host().to_owned(), wanted.name.clone());
        if self.status(registry, &wanted.name, wanted, tags).await != Some(Status::Private) {
            // Public, or never learnt while the upstream is out of reach: the holders decide.
            return Admit::Open;
        }
        let Some(credentials) = wanted.authorization.as_ref().and_then(basic_credentials) else {
            self.metrics.private_check(Check::Challenged);
            return Admit::Refused(challenge(&wanted.name));
        };
        let fingerprint = self.passes.fingerprint(&credentials);
        let verified_ago = self.passes.verified_ago(&fingerprint, &repo);
        let (outcome, verdict) = match &wanted.target {
            Target::Tag(reference) => {
                let tag = reference.tag().unwrap_or_default();
                match tags
                    .resolve_as(registry, &wanted.name, tag, wanted.accept.as_ref(), &credentials, &fingerprint)
                    .await
                {
                    Verdict::Found(descriptor) => {
                        self.passes.name(&repo, [descriptor.digest.clone()]);
                        (Outcome::Ok, Some(Verdict::Found(descriptor)))
                    }
                    Verdict::Absent => (Outcome::NotFound, None),
                    Verdict::Denied => (Outcome::Denied, None),
                    Verdict::Outage => (Outcome::Unreachable, Some(Verdict::Outage)),
                }
            }
            Target::Digest(digest) | Target::Referrers(digest) => {
                let named = self.passes.names(&repo, digest);
                if named && verified_ago.is_some_and(|ago| ago < RECHECK_AFTER) {
                    self.metrics.private_check(Check::Cached);
                    return Admit::Verified(None);
                }
                let pull = Some((&credentials, fingerprint.as_str()));
                let outcome = self.head(registry, &wanted.name, digest, wanted.manifest, pull).await;
                if outcome == Outcome::Ok {
                    self.passes.name(&repo, [digest.clone()]);
                }
                // In an outage, only a digest a verified manifest named holds.
                (if named || outcome == Outcome::Ok { outcome } else { Outcome::Error }, None)
            }
        };
        match outcome {
            Outcome::Ok => {
                self.passes.verify(&fingerprint, &repo);
                self.metrics.private_check(Check::Verified);
                Admit::Verified(verdict)
            }
            Outcome::NotFound => {
                self.metrics.private_check(Check::Absent);
                let message = format!("{} has no such content for these credentials", wanted.name);
                Admit::Refused(body::error(wanted.unknown(), message))
            }
            Outcome::Denied => {
                self.metrics.private_check(Check::Denied);
                let message = format!("the upstream refuses these credentials for {}", wanted.name);
                Admit::Refused(body::error(ErrorCode::Denied, message))
            }
            _ if verified_ago.is_some() => {
                self.metrics.private_check(Check::Grace);
                Admit::Verified(verdict)
            }
            _ => {
                self.metrics.private_check(Check::Unverifiable);
                let grace = humantime(self.config.private_images.grace);
                let message = format!(
                    "{} is private and the upstream cannot verify these credentials now; \
                     they were not verified for it on this node within the last {grace} (--private-grace)",
                    wanted.name
                );
                Admit::Refused(body::error(ErrorCode::Denied, message))
            }
        }
    }

    /// The refusal of a peer's request for private content without an
    /// access proof (`access`), if it is refused.
    pub(crate) async fn refuses_peer(
        &self,
        wanted: &Wanted,
        registry: &Registry,
        access: bool,
        tags: &Tags,
    ) -> Option<Response<Body>> {
        if !self.verify_mode() || access {
            return None;
        }
        let mut repositories: Vec<(Registry, String)> = Vec::new();
        if let Target::Digest(digest) = &wanted.target {
            for (host, repository) in self.store.repositories(digest).await.unwrap_or_default() {
                if let Some(registry) = labelled(&self.config.mirrored, &host) {
                    repositories.push((registry, repository));
                }
            }
        }
        if repositories.is_empty() {
            repositories.push((registry.clone(), wanted.name.clone()));
        }
        for (registry, repository) in &repositories {
            if self.status(registry, repository, wanted, tags).await == Some(Status::Public) {
                return None;
            }
        }
        self.metrics.private_check(Check::PeerRefused);
        tracing::info!(path = %wanted.path_and_query, "refused a peer private content without an access proof");
        let mut refused = body::error(ErrorCode::Denied, "private content goes only to a verified pull");
        refused.headers_mut().insert(wire::PRIVATE, HeaderValue::from_static("1"));
        Some(refused)
    }

    /// `response` to a verified pull's manifest request, with the digest it
    /// names and (a `GET`) the digests the manifest names remembered as the repository's.
    pub(crate) async fn named(&self, wanted: &Wanted, registry: &Registry, response: Response<Body>) -> Response<Body> {
        if !(wanted.verified && wanted.manifest && response.status() == StatusCode::OK) {
            return response;
        }
        let repo = (registry.host().to_owned(), wanted.name.clone());
        let header = response.headers().get(body::DOCKER_CONTENT_DIGEST).and_then(|v| v.to_str().ok());
        if let Some(digest) = header.and_then(|v| v.parse::<Digest>().ok()) {
            self.passes.name(&repo, [digest]);
        }
        if wanted.head {
            return response;
        }
        let (parts, mut content) = response.into_parts();
        let mut bytes = bytes::BytesMut::new();
        while let Some(frame) = content.frame().await {
            let data = match frame.map(http_body::Frame::into_data) {
                Ok(Ok(data)) => data,
                Ok(Err(_)) => continue,
                Err(error) => {
                    tracing::warn!(%error, path = %wanted.path, "reading a private manifest failed");
                    return body::error_with_status(ErrorCode::ManifestUnknown, 502, "reading the manifest failed");
                }
            };
            if bytes.len() + data.len() > MAX_MANIFEST {
                return body::error_with_status(ErrorCode::ManifestInvalid, 502, "the manifest is too large to check");
            }
            bytes.extend_from_slice(&data);
        }
        let bytes = bytes.freeze();
        let media_type = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Ok(children) = peerpull_oci::children(&bytes, media_type) {
            self.passes.name(&repo, children.into_iter().map(|c| c.digest));
        }
        Response::from_parts(parts, body::full(bytes))
    }

    /// The private repositories known, and the verifications within the grace.
    pub(crate) fn report(&self) -> Report {
        let verifications = self
            .passes
            .list()
            .into_iter()
            .map(|(fingerprint, (registry, repository), ago)| Verification { fingerprint, registry, repository, ago })
            .collect();
        let mode = if self.verify_mode() { "verify" } else { "public" };
        Report { mode, repositories: self.known.private(), verifications }
    }

    /// Whether `repository` of `registry` is private, learnt (with the
    /// node's own credentials, by a `HEAD` of what `wanted` asks for) when
    /// not known lately; `None` when never learnt and the upstream cannot say.
    async fn status(&self, registry: &Registry, repository: &str, wanted: &Wanted, tags: &Tags) -> Option<Status> {
        let repo: Repo = (registry.host().to_owned(), repository.to_owned());
        let known = self.known.get(&repo);
        if let Some((status, true)) = known {
            return Some(status);
        }
        let outcome = match &wanted.target {
            Target::Tag(reference) if repository == wanted.name => {
                let tag = reference.tag().unwrap_or_default();
                match tags.resolve(registry, repository, tag, wanted.accept.as_ref()).await {
                    Verdict::Found(_) => Outcome::Ok,
                    Verdict::Absent => Outcome::NotFound,
                    Verdict::Denied => Outcome::Denied,
                    Verdict::Outage => Outcome::Unreachable,
                }
            }
            Target::Tag(_) => Outcome::Error,
            Target::Digest(digest) | Target::Referrers(digest) => {
                self.head(registry, repository, digest, wanted.manifest, None).await
            }
        };
        let learnt = match outcome {
            Outcome::Ok | Outcome::NotFound => Status::Public,
            Outcome::Denied => Status::Private,
            _ => return known.map(|(status, _)| status),
        };
        self.known.learnt(&repo, learnt);
        Some(learnt)
    }

    /// A `HEAD` of `digest` in `repository`, with a pull's `credentials` or the node's.
    async fn head(
        &self,
        registry: &Registry,
        repository: &str,
        digest: &Digest,
        manifest: bool,
        credentials: Option<(&Credentials, &str)>,
    ) -> Outcome {
        let kind = if manifest { "manifests" } else { "blobs" };
        let fetch = Fetch {
            method: Method::HEAD,
            repository: repository.to_owned(),
            path: format!("/v2/{repository}/{kind}/{digest}"),
            range: None,
            accept: manifest.then(|| HeaderValue::from_static(peerpull_oci::media::MANIFEST_ACCEPT)),
        };
        let sent = async {
            match credentials {
                Some((credentials, fingerprint)) => {
                    self.client.fetch_as(registry, &fetch, credentials, fingerprint).await
                }
                None => self.client.fetch(registry, &fetch).await,
            }
        };
        let outcome = match tokio::time::timeout(self.config.tag_timeout, sent).await {
            Ok(Ok(_)) => Outcome::Ok,
            Ok(Err(error)) => Outcome::from(&error),
            Err(_) => Outcome::Unreachable,
        };
        self.metrics.upstream(outcome);
        outcome
    }
}

/// The credentials of an `Authorization: Basic` header.
fn basic_credentials(value: &HeaderValue) -> Option<Credentials> {
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (username, password) =
        String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some(Credentials::Basic { username, password })
}

/// The `401` asking a pull of private `repository` for its credentials.
fn challenge(repository: &str) -> Response<Body> {
    let message = format!("{repository} is private: this mirror serves it to a pull with credentials for it");
    let mut response = body::error(ErrorCode::Unauthorized, message);
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"peerpull\""));
    response
}

/// The mirrored registry a `distribution.source` label's host (no port) names.
fn labelled(mirrored: &Mirrored, host: &str) -> Option<Registry> {
    match mirrored {
        Mirrored::Only(registries) => registries
            .iter()
            .find(|r| r.host() == host || r.host().rsplit_once(':').is_some_and(|(name, _)| name == host))
            .cloned(),
        Mirrored::All => Registry::new(Scheme::Https, host).ok(),
    }
}

/// `24h`, `90m`, `45s`.
fn humantime(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_and_anything_else_is_none() {
        let value = HeaderValue::from_static("Basic dGVhbS1hOnMzY3I6dA==");
        assert_eq!(
            basic_credentials(&value),
            Some(Credentials::Basic { username: "team-a".into(), password: "s3cr:t".into() })
        );
        for bad in ["Bearer abc", "Basic !!!", "Basic bm9jb2xvbg==", ""] {
            assert_eq!(basic_credentials(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[test]
    fn a_label_host_names_a_mirrored_registry_at_any_port() {
        let registry = Registry::new(Scheme::Http, "127.0.0.1:5000").unwrap_or_else(|e| panic!("{e}"));
        let only = Mirrored::Only(vec![registry.clone()]);
        assert_eq!(labelled(&only, "127.0.0.1"), Some(registry.clone()));
        assert_eq!(labelled(&only, "127.0.0.1:5000"), Some(registry));
        assert_eq!(labelled(&only, "127.0.0.2"), None);
        assert_eq!(labelled(&Mirrored::All, "ghcr.io").map(|r| r.host().to_owned()), Some("ghcr.io".into()));
    }

    #[test]
    fn a_challenge_is_a_401_containerd_answers_with_basic_credentials() {
        let response = challenge("team/app");
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers().get(WWW_AUTHENTICATE).map(|v| v.as_bytes()),
            Some(&b"Basic realm=\"peerpull\""[..])
        );
        assert_eq!(humantime(Duration::from_secs(86_400)), "24h");
        assert_eq!(humantime(Duration::from_secs(90)), "90s");
    }
}
