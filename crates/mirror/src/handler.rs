//! Answers one request: health, metrics, and the `/v2` routes.
//!
//! A `/v2` request is served from this node's store when it holds the
//! content, otherwise from a peer found through the router, otherwise with a
//! fast 404 carrying an OCI error body so containerd tries its next host. A
//! request that carries the loop guard comes from a peer and is answered
//! from the local store only.

use std::sync::Arc;

use futures::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use peerpull_oci::{ByteRange, Descriptor, Digest, ErrorCode, RangeError, Reference, Route, TagOrDigest};
use peerpull_store::{Key, Store, StoreError};

use crate::body::{self, Body};
use crate::fetch::{self, Ask, Fetcher, Providers};
use crate::metrics::Metrics;
use crate::{Config, Health, Role, LOOP_GUARD};

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) fetcher: Fetcher,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Arc<prometheus_client::registry::Registry>,
    pub(crate) health: Health,
}

/// One `/v2` content request, parsed.
struct Wanted {
    /// What is asked for.
    target: Target,
    /// `manifests` or `blobs`.
    manifest: bool,
    /// `?ns=`, the registry the request is for.
    ns: Option<String>,
    head: bool,
    range: Option<String>,
    from_peer: bool,
    path_and_query: String,
}

enum Target {
    Tag(Reference),
    Digest(Digest),
}

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Answers `request` for the server in `role`.
pub(crate) async fn handle(state: Arc<State>, role: Role, request: Request<Incoming>) -> Response<Body> {
    match (role, request.uri().path()) {
        (_, "/livez") => return body::text(StatusCode::OK, "ok\n"),
        (_, "/readyz") => return readiness(&state).await,
        (Role::Metrics, "/metrics") => return metrics(&state),
        (Role::Metrics, _) => return body::text(StatusCode::NOT_FOUND, "not found\n"),
        (Role::Registry, _) => {}
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return body::error_with_status(ErrorCode::Unsupported, 405, "only GET and HEAD are served"),
    };
    let path_and_query = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let parsed = match peerpull_oci::Request::parse(&path_and_query) {
        Ok(parsed) => parsed,
        Err(e) => return body::error_with_status(e.code(), e.status(), e.to_string()),
    };
    let (target, manifest) = match parsed.route {
        Route::Base => return base(),
        Route::Blob { digest, .. } => (Target::Digest(digest), false),
        Route::Manifest { reference: TagOrDigest::Digest(digest), .. } => (Target::Digest(digest), true),
        Route::Manifest { name, reference: TagOrDigest::Tag(tag) } => {
            let Some(ns) = parsed.ns.as_deref() else {
                return body::error(ErrorCode::ManifestUnknown, "tags are resolved only for a registry named by ?ns=");
            };
            match Reference::new(ns, &name, Some(&tag), None) {
                Ok(reference) => (Target::Tag(reference), true),
                Err(e) => return body::error(ErrorCode::NameInvalid, e.to_string()),
            }
        }
    };
    let headers = request.headers();
    let wanted = Wanted {
        target,
        manifest,
        ns: parsed.ns,
        head,
        range: headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned),
        from_peer: headers.contains_key(LOOP_GUARD),
        path_and_query,
    };
    serve(&state, wanted).await
}

async fn serve(state: &State, wanted: Wanted) -> Response<Body> {
    let registry = wanted.ns.clone().unwrap_or_else(|| "unknown".to_owned());
    let unknown = if wanted.manifest { ErrorCode::ManifestUnknown } else { ErrorCode::BlobUnknown };
    if !state.config.mirrors(wanted.ns.as_deref().unwrap_or_default()) {
        state.metrics.request(&registry, false, "");
        return body::error(unknown, format!("registry {registry} is not mirrored here"));
    }
    if matches!(wanted.target, Target::Tag(_)) && !state.config.resolve_tags {
        state.metrics.request(&registry, false, "");
        return body::error(unknown, "tags are not resolved by this mirror");
    }
    match local(state, &wanted).await {
        Ok(descriptor) => {
            state.metrics.request(&registry, true, "local");
            return serve_local(state, &wanted, descriptor).await;
        }
        Err(StoreError::NotFound(_)) => {}
        Err(error) => tracing::warn!(%error, path = %wanted.path_and_query, "local store failed; trying peers"),
    }
    if !wanted.from_peer {
        if let Some(response) = serve_peer(state, &wanted).await {
            state.metrics.request(&registry, true, "peer");
            return response;
        }
    }
    state.metrics.request(&registry, false, "");
    body::error(unknown, "no node holds this content")
}

async fn local(state: &State, wanted: &Wanted) -> Result<Descriptor, StoreError> {
    match &wanted.target {
        Target::Tag(reference) => state.store.resolve(reference).await,
        Target::Digest(digest) => state.store.describe(digest).await,
    }
}

async fn serve_local(state: &State, wanted: &Wanted, descriptor: Descriptor) -> Response<Body> {
    let size = descriptor.size;
    let range = match wanted.range.as_deref().map(|value| ByteRange::parse(value, size)) {
        None => None,
        Some(Ok(range)) => Some(range),
        Some(Err(RangeError::Unsatisfiable { .. } | RangeError::Multiple)) => {
            let mut response =
                body::error_with_status(ErrorCode::SizeInvalid, 416, format!("range not satisfiable for {size} bytes"));
            insert(&mut response, header::CONTENT_RANGE, &peerpull_oci::unsatisfiable_content_range(size));
            return response;
        }
        // A malformed Range header is ignored, as HTTP allows: the whole content is served.
        Some(Err(_)) => None,
    };
    let media_type = if wanted.manifest { descriptor.media_type.as_str() } else { "application/octet-stream" };
    let mut response = Response::new(body::empty());
    insert(&mut response, header::CONTENT_TYPE, media_type);
    insert(&mut response, header::HeaderName::from_static(DOCKER_CONTENT_DIGEST), descriptor.digest.as_str());
    insert(&mut response, header::ACCEPT_RANGES, "bytes");
    let length = match range {
        Some(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            insert(&mut response, header::CONTENT_RANGE, &range.content_range(size));
            range.len()
        }
        None => size,
    };
    insert(&mut response, header::CONTENT_LENGTH, &length.to_string());
    if wanted.head {
        return response;
    }
    match state.store.open(&descriptor.digest, range).await {
        Ok(stream) => {
            let metrics = state.metrics.clone();
            let counted = stream.inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    metrics.served("local", chunk.len() as u64);
                }
            });
            *response.body_mut() = body::stream(counted);
            response
        }
        Err(error) => {
            tracing::warn!(digest = %descriptor.digest, %error, "opening local content failed");
            body::error_with_status(ErrorCode::BlobUnknown, 500, "reading local content failed")
        }
    }
}

async fn serve_peer(state: &State, wanted: &Wanted) -> Option<Response<Body>> {
    let key = match &wanted.target {
        Target::Tag(reference) => Key::tag(reference)?.to_string(),
        Target::Digest(digest) => digest.to_string(),
    };
    let started = tokio::time::Instant::now();
    let lookup = state.fetcher.peers.lookup(&key, state.config.lookup_limit).await;
    let mut providers = Providers::new(lookup, state.config.lookup_timeout);
    let method = if wanted.head { Method::HEAD } else { Method::GET };
    let ask = Ask { method, path_and_query: wanted.path_and_query.clone(), range: wanted.range.clone() };
    let opened = state.fetcher.open(&mut providers, &ask).await?;
    state.metrics.resolve_duration.observe(started.elapsed().as_secs_f64());
    tracing::debug!(%key, peer = %opened.provider.peer, mirror = %opened.provider.mirror, "serving from a peer");

    let mut response = Response::new(body::empty());
    *response.status_mut() = opened.response.status();
    fetch::forwarded_headers(opened.response.headers(), response.headers_mut());
    if wanted.head {
        return Some(response);
    }
    let size = header_value(&response, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let whole = opened.response.status() == StatusCode::OK;
    let expected = match &wanted.target {
        Target::Digest(digest) => Some(digest.clone()),
        Target::Tag(_) => header_value(&response, DOCKER_CONTENT_DIGEST).and_then(|v| v.parse().ok()),
    };
    let body = match size {
        Some(size) if whole => {
            let verify = expected.filter(|_| wanted.range.is_none());
            body::stream(fetch::transfer(state.fetcher.clone(), providers, ask, opened, size, verify))
        }
        // Partial or unsized answers pass through as they come, aborted on a stall.
        _ => body::stream(fetch::passthrough(opened, state.fetcher.config.stall_timeout)),
    };
    *response.body_mut() = body;
    Some(response)
}

fn base() -> Response<Body> {
    let mut response = Response::new(body::full("{}"));
    insert(&mut response, header::CONTENT_TYPE, "application/json");
    insert(&mut response, header::HeaderName::from_static("docker-distribution-api-version"), "registry/2.0");
    response
}

async fn readiness(state: &State) -> Response<Body> {
    match state.health.check(state.store.as_ref()).await {
        Ok(()) => body::text(StatusCode::OK, "ok\n"),
        Err(reason) => body::text(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

fn metrics(state: &State) -> Response<Body> {
    let mut response = Response::new(body::full(crate::metrics::encode(&state.registry)));
    insert(&mut response, header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    response
}

fn insert(response: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn header_value(response: &Response<Body>, name: impl header::AsHeaderName) -> Option<&str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}
