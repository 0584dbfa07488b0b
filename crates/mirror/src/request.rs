//! One `/v2` request, parsed into what it asks for.
//!
//! [`parse`] turns the method, path, query and headers of a request into a
//! [`Wanted`], or answers at once: `/v2/` itself, a method other than `GET`
//! and `HEAD` (405), and a malformed path or a tag without `?ns=` (4xx with
//! an OCI error body).

use http::{header, HeaderValue, Method, Request, Response};
use peerpull_oci::{media, ByteRange, Digest, ErrorCode, Key, Reference, Route, TagOrDigest};

use crate::auth::RemoteAddr;
use crate::body::{self, Body};
use crate::wire::Sender;

/// A content request: a manifest or blob, by tag or digest.
#[derive(Debug)]
pub(crate) struct Wanted {
    /// What is asked for.
    pub(crate) target: Target,
    /// `manifests` (true) or `blobs`.
    pub(crate) manifest: bool,
    /// `?ns=`, the registry the request is for.
    pub(crate) ns: Option<String>,
    /// A `HEAD` request.
    pub(crate) head: bool,
    /// The client's `Range` header.
    pub(crate) range: Option<String>,
    /// The client's `Accept` header (manifest media types).
    pub(crate) accept: Option<HeaderValue>,
    /// Who asks: a client, a peer (never passed on to other peers), or a
    /// follower asking this node as its fetcher.
    pub(crate) sender: Sender,
    /// The repository, e.g. `library/nginx`.
    pub(crate) name: String,
    /// `/v2/…` as the upstream serves it: without the query (but a referrers filter).
    pub(crate) path: String,
    /// `/v2/…?ns=…` as the client sent it, to ask peers the same.
    pub(crate) path_and_query: String,
    /// The client's `Authorization` header (a private repository's pull, `private`).
    pub(crate) authorization: Option<HeaderValue>,
    /// The pull may read a private repository: verified here, or (a peer's
    /// request) its sender proved it verified it.
    pub(crate) verified: bool,
}

/// A tag or a digest, or the referrers of a digest.
#[derive(Debug)]
pub(crate) enum Target {
    Tag(Reference),
    Digest(Digest),
    /// The manifests naming this digest as their subject: an index the
    /// upstream makes up on request, so only the upstream answers it.
    Referrers(Digest),
}

/// What parsing a request gave.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Content to find in the chain of sources.
    Wanted(Box<Wanted>),
    /// An answer that needs no source.
    Answer(Response<Body>),
}

impl Wanted {
    /// The key the DHT indexes the target under; `None` for a reference without a tag.
    pub(crate) fn key(&self) -> Option<Key> {
        match &self.target {
            Target::Tag(reference) => Key::tag(reference),
            Target::Digest(digest) => Some(Key::Digest(digest.clone())),
            Target::Referrers(_) => None,
        }
    }

    /// The tag or digest asked for, as text.
    pub(crate) fn reference(&self) -> String {
        match &self.target {
            Target::Tag(reference) => reference.tag().unwrap_or_default().to_owned(),
            Target::Digest(digest) | Target::Referrers(digest) => digest.to_string(),
        }
    }

    /// This node's own request for `target` in `reference`'s repository, as
    /// containerd would send it: a manifest (any kind) or a blob, whole or
    /// `range`.
    pub(crate) fn own(reference: &Reference, target: Target, manifest: bool, range: Option<ByteRange>) -> Wanted {
        let name = reference.repository().to_owned();
        let kind = if manifest { "manifests" } else { "blobs" };
        let at = match &target {
            Target::Tag(tagged) => tagged.tag().unwrap_or_default().to_owned(),
            Target::Digest(digest) | Target::Referrers(digest) => digest.to_string(),
        };
        let path = format!("/v2/{name}/{kind}/{at}");
        let ns = reference.registry().to_owned();
        Wanted {
            target,
            manifest,
            head: false,
            range: range.map(|r| r.header_value()),
            accept: manifest.then(|| HeaderValue::from_static(media::MANIFEST_ACCEPT)),
            sender: Sender::Client,
            name,
            path_and_query: format!("{path}?ns={ns}"),
            ns: Some(ns),
            path,
            authorization: None,
            verified: false,
        }
    }

    /// The same request for the manifest `digest` (a tag's target).
    pub(crate) fn for_digest(&self, digest: Digest) -> Wanted {
        let path = format!("/v2/{}/manifests/{digest}", self.name);
        let query = self.path_and_query.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
        Wanted {
            target: Target::Digest(digest),
            manifest: true,
            ns: self.ns.clone(),
            head: self.head,
            range: self.range.clone(),
            accept: self.accept.clone(),
            sender: self.sender.clone(),
            name: self.name.clone(),
            path_and_query: format!("{path}{query}"),
            path,
            authorization: self.authorization.clone(),
            verified: self.verified,
        }
    }

    /// Sent by a peer (the loop guard): never passed on to other peers.
    pub(crate) fn by_peer(&self) -> bool {
        self.sender.is_peer()
    }

    /// Sent by a follower: this node is its fetcher, and may fetch from the upstream for it.
    pub(crate) fn by_follower(&self) -> bool {
        matches!(self.sender, Sender::Follower { .. })
    }

    /// The registry `?ns=` names, as the metrics label it.
    pub(crate) fn registry(&self) -> &str {
        self.ns.as_deref().unwrap_or("unknown")
    }

    /// The OCI error code for "not here": `MANIFEST_UNKNOWN` or `BLOB_UNKNOWN`.
    pub(crate) fn unknown(&self) -> ErrorCode {
        if self.manifest {
            ErrorCode::ManifestUnknown
        } else {
            ErrorCode::BlobUnknown
        }
    }
}

/// Parses `request` into what it wants, or the answer it gets at once. A
/// request without `?ns=` is for `default_ns` when there is one (the one
/// registry mirrored here), so the mirror can be used as a registry directly.
pub(crate) fn parse<B>(request: &Request<B>, default_ns: Option<&str>) -> Parsed {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            return Parsed::Answer(body::error_with_status(ErrorCode::Unsupported, 405, "only GET and HEAD are served"))
        }
    };
    let mut path_and_query = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let mut parsed = match peerpull_oci::Request::parse(&path_and_query) {
        Ok(parsed) => parsed,
        Err(e) => return Parsed::Answer(body::error_with_status(e.code(), e.status(), e.to_string())),
    };
    if let (None, Some(ns)) = (&parsed.ns, default_ns) {
        parsed.ns = Some(ns.to_owned());
        // Peers are asked with the registry named.
        path_and_query = parsed.to_path_and_query();
    }
    let (target, manifest, name) = match parsed.route {
        Route::Base => return Parsed::Answer(base()),
        Route::Blob { name, digest } => (Target::Digest(digest), false, name),
        Route::Referrers { name, digest } => (Target::Referrers(digest), true, name),
        Route::Manifest { name, reference: TagOrDigest::Digest(digest) } => (Target::Digest(digest), true, name),
        Route::Manifest { name, reference: TagOrDigest::Tag(tag) } => {
            let Some(ns) = parsed.ns.as_deref() else {
                let message = "a request without ?ns= names no registry, and this node mirrors more than one";
                return Parsed::Answer(body::error(ErrorCode::ManifestUnknown, message));
            };
            match Reference::new(ns, &name, Some(&tag), None) {
                Ok(reference) => (Target::Tag(reference), true, name),
                Err(e) => return Parsed::Answer(body::error(ErrorCode::NameInvalid, e.to_string())),
            }
        }
    };
    let headers = request.headers();
    let remote = request.extensions().get::<RemoteAddr>().map(|r| r.0.ip());
    let path = upstream_path(request.uri(), &target);
    Parsed::Wanted(Box::new(Wanted {
        target,
        manifest,
        ns: parsed.ns,
        head,
        range: headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned),
        accept: headers.get(header::ACCEPT).cloned(),
        sender: Sender::of(headers, remote),
        name,
        path,
        path_and_query,
        authorization: headers.get(header::AUTHORIZATION).cloned(),
        verified: false,
    }))
}

/// The path to ask the upstream: the request's, with a referrers request's
/// `artifactType` filter.
fn upstream_path(uri: &http::Uri, target: &Target) -> String {
    let path = uri.path();
    let filter = uri.query().and_then(|q| q.split('&').find(|pair| pair.starts_with("artifactType=")));
    match (target, filter) {
        (Target::Referrers(_), Some(filter)) => format!("{path}?{filter}"),
        _ => path.to_owned(),
    }
}

/// `/v2/`: the API version check.
fn base() -> Response<Body> {
    let mut response = Response::new(body::full("{}"));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    response
}
