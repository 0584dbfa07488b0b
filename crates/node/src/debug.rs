//! The debug page, `/debug` on the metrics port (`--debug-web true`): "is
//! it working?" answered for people, in a browser.
//!
//! It shows what the admin API knows (this node, its readiness and peers,
//! what it advertises, with a search over the keys) and the recent pulls
//! with the source of each blob. `/debug/pull?reference=…` is a test pull:
//! the image is located through this node's mirror chain and the first MiB
//! of each blob fetched through it, showing who served it and how fast.
//! Nothing is written anywhere: the test pull only reads through the mirror
//! (which may pull through from the upstream, as containerd's request
//! would). Every answer is one HTML document (`html`) with no script, sent
//! with a Content-Security-Policy that allows none.

use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use peerpull_admin::v1;
use peerpull_admin::Admin as _;
use peerpull_mirror::{full, text, Body, Mirror, Unanswered, RECENT_CAPACITY};
use peerpull_oci::{Digest, Reference};
use peerpull_routing::Router;
use tokio::time::Instant;

use crate::admin::{self, locate};

mod html;

/// The most a test pull reads of each blob.
const FIRST_MIB: u64 = 1 << 20;
/// How long the first MiB of one blob may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Keys read per page while searching the advertised set.
const SEARCH_PAGE: usize = 10_000;

/// The debug page's handler; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Debug {
    admin: admin::Service,
    mirror: Mirror,
    router: Router,
}

impl Debug {
    pub(crate) fn new(admin: admin::Service, mirror: Mirror, router: Router) -> Self {
        Self { admin, mirror, router }
    }

    /// Answers a request under `/debug`.
    pub(crate) async fn answer<B>(&self, request: &Request<B>) -> Response<Body> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "the debug page is read-only: GET only\n");
        }
        let query = request.uri().query();
        match request.uri().path() {
            "/debug" | "/debug/" => self.home(param(query, "q").unwrap_or_default()).await,
            "/debug/pull" => self.test_pull(param(query, "reference").unwrap_or_default().trim()).await,
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn home(&self, query: String) -> Response<Body> {
        let status = match self.admin.status(tonic::Request::new(v1::StatusRequest {})).await {
            Ok(status) => status.into_inner(),
            Err(error) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", error.message())),
        };
        let pulls: Vec<v1::Pull> = self.mirror.recent(RECENT_CAPACITY).iter().map(admin::pull_message).collect();
        let query = query.trim();
        let keys = if query.is_empty() { None } else { Some(self.search(query).await) };
        let search = keys.as_deref().map(|keys| (query, keys));
        page(html::home(&status, &pulls, search))
    }

    /// Up to [`html::SEARCH_LIMIT`] advertised keys containing `query`.
    async fn search(&self, query: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut after = String::new();
        while found.len() < html::SEARCH_LIMIT {
            let Ok(keys) = self.router.advertised_page(&after, SEARCH_PAGE).await else { break };
            let Some(last) = keys.last() else { break };
            after = last.to_string();
            let done = keys.len() < SEARCH_PAGE;
            found.extend(keys.iter().map(ToString::to_string).filter(|k| k.contains(query)));
            if done {
                break;
            }
        }
        found.truncate(html::SEARCH_LIMIT);
        found
    }

    async fn test_pull(&self, input: &str) -> Response<Body> {
        let reference = match locate::parse(input) {
            _ if input.is_empty() => Err("enter an image reference, e.g. docker.io/library/nginx:latest".to_owned()),
            Ok(locate::Target::Reference(reference)) => Ok(reference),
            Ok(locate::Target::Digest(_)) => {
                Err("a test pull needs an image reference: a digest alone names no repository to ask for".to_owned())
            }
            Err(error) => Err(error.to_string()),
        };
        let result = match reference {
            Ok(reference) => self.probe(&reference).await,
            Err(error) => Err(error),
        };
        page(html::test_pull(input, result))
    }

    /// Locates `reference` and fetches the first MiB of each of its blobs.
    async fn probe(&self, reference: &Reference) -> Result<(String, Vec<html::Probe>), String> {
        let located =
            self.admin.locate(tonic::Request::new(v1::LocateRequest { reference: reference.to_string(), limit: 0 }));
        let located = located.await.map_err(|status| status.message().to_owned())?.into_inner();
        let mut probes = Vec::new();
        // One blob at a time: each is timed on its own.
        for blob in located.blobs {
            let first = self.first_mib(reference, &blob).await;
            probes.push(html::Probe { blob, first });
        }
        Ok((located.digest, probes))
    }

    /// The first MiB of `blob`, through this node's mirror, as containerd would ask for it.
    async fn first_mib(&self, reference: &Reference, blob: &v1::Blob) -> Result<html::First, String> {
        let manifest = blob.role == "index" || blob.role == "manifest";
        let digest: Digest = blob.digest.parse().map_err(|e: peerpull_oci::DigestError| e.to_string())?;
        let started = Instant::now();
        let probe = self.mirror.probe(reference, &digest, manifest, FIRST_MIB);
        let probed = tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .map_err(|_| format!("no first MiB within {PROBE_TIMEOUT:?}"))?
            .map_err(|error| match error {
                Unanswered::Miss { status, .. } => format!("the mirror answered {status}"),
                other => other.to_string(),
            })?;
        let served = probed.served;
        Ok(html::First {
            source: served.map(|s| s.source.as_str().to_owned()).unwrap_or_default(),
            via: served.and_then(|s| s.via).map(|p| p.mirror.to_string()).unwrap_or_default(),
            bytes: probed.bytes,
            took: started.elapsed(),
        })
    }
}

/// An HTML answer that may run no script and load nothing.
fn page(html: String) -> Response<Body> {
    let mut response = Response::new(full(html));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of `name` in a form-encoded query.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name)
            .then(|| percent_encoding::percent_decode_str(&value.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::param;

    #[test]
    fn form_values_are_decoded() {
        let query = Some("q=nginx&reference=docker.io%2Flibrary%2Fnginx%3A1.27+x&empty");
        assert_eq!(param(query, "reference").as_deref(), Some("docker.io/library/nginx:1.27 x"));
        assert_eq!(param(query, "q").as_deref(), Some("nginx"));
        assert_eq!(param(query, "empty").as_deref(), Some(""));
        assert_eq!(param(query, "missing"), None);
        assert_eq!(param(None, "q"), None);
    }
}
