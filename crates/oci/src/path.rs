//! The `/v2` request grammar: which API route a request path names.
//!
//! A mirror serves three routes of the OCI distribution spec:
//! `/v2/` (the API check), `/v2/<name>/manifests/<reference>` and
//! `/v2/<name>/blobs/<digest>`. A name may hold `/`, so the route is read
//! from the right: the last segment is the reference, the one before it the
//! kind, and everything before that the name. containerd adds `?ns=<registry>`
//! when it talks to a mirror; that is the registry the image comes from.
//!
//! Nothing in the path is percent-decoded. The name grammar has no `%`, `\`,
//! NUL, `.`-only or empty components, so `%2F`, `..` and friends are refused
//! rather than interpreted, and a parsed name can be used as a key as is.
//! Only the `ns` query value is decoded, because Go's URL encoding (which
//! containerd uses) writes `localhost:5000` as `localhost%3A5000`.
//!
//! Errors and statuses: bad names are `NAME_INVALID` (400), bad digests
//! `DIGEST_INVALID` (400), and a bad tag is `MANIFEST_UNKNOWN` (404): the
//! spec gives a manifest request no other failure. Routes of the spec that a mirror does not
//! serve (tags list, uploads, catalog) are `UNSUPPORTED`, and
//! paths that are no route at all are `NAME_UNKNOWN`; both answer 404, not
//! the 405 the registry pairs with `UNSUPPORTED`, because a 404 is what makes
//! containerd move on to its next host.

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::digest::{Digest, DigestError};
use crate::error::{ErrorBody, ErrorCode};
use crate::name::{validate_name, validate_tag, NameError, TagError};
use crate::reference::{Reference, ReferenceError, TagOrDigest};
use crate::registry::{Registry, Scheme};

/// A parsed `/v2` request target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// The API route.
    pub route: Route,
    /// The registry named by `?ns=`, canonical (`docker.io` for its aliases).
    pub ns: Option<String>,
}

/// The routes a mirror serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/v2/` or `/v2`: the API version check.
    Base,
    /// `/v2/<name>/manifests/<tag or digest>`.
    Manifest { name: String, reference: TagOrDigest },
    /// `/v2/<name>/blobs/<digest>`.
    Blob { name: String, digest: Digest },
    /// `/v2/<name>/referrers/<digest>`: the manifests that name `digest` as their subject.
    Referrers { name: String, digest: Digest },
}

/// Why a request path is not a route a mirror serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is not a distribution API route.
    #[error("no such route: {path:?}")]
    NotFound { path: String },
    /// A distribution API route a mirror does not serve.
    #[error("route not supported by this mirror: {path:?}")]
    Unsupported { path: String },
    /// The repository name breaks the grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The manifest tag breaks the grammar.
    #[error(transparent)]
    Tag(#[from] TagError),
    /// The digest is not a supported digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// `?ns=` does not name a registry host, or appears twice.
    #[error("invalid ns parameter {ns:?}: expected one registry host such as docker.io")]
    Namespace { ns: String },
}

/// What `?ns=` values are encoded with; Go's `QueryEscape` leaves the same set alone.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_').remove(b'~');

impl Request {
    /// Parses a request's path and query, e.g. `/v2/library/nginx/manifests/latest?ns=docker.io`.
    pub fn parse(path_and_query: &str) -> Result<Self, PathError> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let route = Route::parse(path)?;
        let ns = match query {
            Some(query) => parse_ns(query)?,
            None => None,
        };
        Ok(Self { route, ns })
    }

    /// The image a manifest request is for: `ns` (or `default_registry` without one),
    /// the name, and the tag or digest. `None` for other routes.
    pub fn image(&self, default_registry: &str) -> Option<Result<Reference, ReferenceError>> {
        let Route::Manifest { name, reference } = &self.route else { return None };
        let registry = self.ns.as_deref().unwrap_or(default_registry);
        Some(match reference {
            TagOrDigest::Tag(tag) => Reference::new(registry, name, Some(tag), None),
            TagOrDigest::Digest(digest) => Reference::new(registry, name, None, Some(digest.clone())),
        })
    }

    /// The path and query this request is written as; parses back to the same value.
    pub fn to_path_and_query(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{}?ns={}", self.route, utf8_percent_encode(ns, QUERY_VALUE)),
            None => self.route.to_string(),
        }
    }
}

/// Shorthand for [`Request::parse`].
pub fn parse_path(path_and_query: &str) -> Result<Request, PathError> {
    Request::parse(path_and_query)
}

impl Route {
    /// Parses a path without its query.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        let not_found = || PathError::NotFound { path: path.to_owned() };
        let unsupported = || PathError::Unsupported { path: path.to_owned() };
        let rest = match path.strip_prefix("/v2") {
            Some("" | "/") => return Ok(Route::Base),
            Some(rest) => rest.strip_prefix('/').ok_or_else(not_found)?,
            None => return Err(not_found()),
        };
        if rest == "_catalog" {
            return Err(unsupported());
        }
        let mut parts = rest.rsplitn(3, '/');
        let (Some(last), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(not_found());
        };
        match (kind, last) {
            ("manifests", reference) => {
                validate_name(name)?;
                Ok(Route::Manifest { name: name.to_owned(), reference: parse_reference(reference)? })
            }
            ("blobs", "uploads") | ("tags", "list") => Err(unsupported()),
            ("referrers", digest) => {
                validate_name(name)?;
                Ok(Route::Referrers { name: name.to_owned(), digest: digest.parse()? })
            }
            ("uploads", _) if name.ends_with("/blobs") => Err(unsupported()),
            ("blobs", digest) => {
                validate_name(name)?;
                Ok(Route::Blob { name: name.to_owned(), digest: digest.parse()? })
            }
            _ => Err(not_found()),
        }
    }

    /// The repository name, for routes that have one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base => None,
            Route::Manifest { name, .. } | Route::Blob { name, .. } | Route::Referrers { name, .. } => Some(name),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Base => f.write_str("/v2/"),
            Route::Manifest { name, reference } => write!(f, "/v2/{name}/manifests/{reference}"),
            Route::Blob { name, digest } => write!(f, "/v2/{name}/blobs/{digest}"),
            Route::Referrers { name, digest } => write!(f, "/v2/{name}/referrers/{digest}"),
        }
    }
}

impl PathError {
    /// The OCI error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            PathError::NotFound { .. } => ErrorCode::NameUnknown,
            PathError::Unsupported { .. } => ErrorCode::Unsupported,
            PathError::Name(_) | PathError::Namespace { .. } => ErrorCode::NameInvalid,
            PathError::Tag(_) => ErrorCode::ManifestUnknown,
            PathError::Digest(_) => ErrorCode::DigestInvalid,
        }
    }

    /// The HTTP status to answer with: 404 for routes we do not serve, otherwise the code's.
    pub fn status(&self) -> u16 {
        match self {
            PathError::NotFound { .. } | PathError::Unsupported { .. } => 404,
            other => other.code().status(),
        }
    }

    /// The OCI error body to answer with.
    pub fn body(&self) -> ErrorBody {
        let code = self.code();
        ErrorBody::new(code, code.message(), Some(serde_json::Value::String(self.to_string())))
    }
}

/// A tag, or a digest when the segment holds a `:` (which tags cannot).
fn parse_reference(reference: &str) -> Result<TagOrDigest, PathError> {
    if reference.contains(':') {
        Ok(TagOrDigest::Digest(reference.parse()?))
    } else {
        validate_tag(reference)?;
        Ok(TagOrDigest::Tag(reference.to_owned()))
    }
}

/// The one `ns` value of a query, decoded and canonicalised; other keys are ignored.
fn parse_ns(query: &str) -> Result<Option<String>, PathError> {
    let mut found = None;
    for pair in query.split('&') {
        let Some(raw) = pair.strip_prefix("ns=") else { continue };
        let invalid = || PathError::Namespace { ns: raw.to_owned() };
        if found.is_some() {
            return Err(invalid());
        }
        let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| invalid())?;
        let registry = Registry::new(Scheme::Https, &decoded).map_err(|_| invalid())?;
        found = Some(registry.host().to_owned());
    }
    Ok(found)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn route(p: &str) -> Route {
        Request::parse(p).unwrap_or_else(|e| panic!("{p}: {e}")).route
    }

    fn err(p: &str) -> PathError {
        Request::parse(p).expect_err(p)
    }

    #[test]
    fn base() {
        for p in ["/v2", "/v2/", "/v2/?ns=docker.io", "/v2?x=1"] {
            assert_eq!(route(p), Route::Base, "{p}");
        }
    }

    #[test]
    fn manifests_by_tag_and_digest() {
        let r = Request::parse("/v2/library/nginx/manifests/latest?ns=docker.io").unwrap();
        assert_eq!(
            r.route,
            Route::Manifest { name: "library/nginx".into(), reference: TagOrDigest::Tag("latest".into()) }
        );
        assert_eq!(r.ns.as_deref(), Some("docker.io"));
        let r = route(&format!("/v2/a/b/c/manifests/{D}"));
        assert_eq!(r, Route::Manifest { name: "a/b/c".into(), reference: TagOrDigest::Digest(D.parse().unwrap()) });
        assert_eq!(r.name(), Some("a/b/c"));
    }

    #[test]
    fn blobs() {
        let r = route(&format!("/v2/x/blobs/{D}"));
        assert_eq!(r, Route::Blob { name: "x".into(), digest: D.parse().unwrap() });
        assert_eq!(r.to_string(), format!("/v2/x/blobs/{D}"));
    }

    #[test]
    fn names_may_contain_route_words() {
        let r = route("/v2/blobs/manifests/manifests/v1");
        assert_eq!(r, Route::Manifest { name: "blobs/manifests".into(), reference: TagOrDigest::Tag("v1".into()) });
        let r = route(&format!("/v2/a/manifests/blobs/{D}"));
        assert_eq!(r.name(), Some("a/manifests"));
    }

    #[test]
    fn ns_is_decoded_and_canonical() {
        let ns = |q: &str| Request::parse(&format!("/v2/?{q}")).unwrap().ns;
        assert_eq!(ns("ns=localhost%3A5000"), Some("localhost:5000".into()));
        assert_eq!(ns("ns=index.docker.io"), Some("docker.io".into()));
        assert_eq!(ns("a=b&ns=ghcr.io&c"), Some("ghcr.io".into()));
        assert_eq!(ns("nsx=ghcr.io"), None);
        for bad in ["ns=", "ns=a/b", "ns=a%2Fb", "ns=%FF", "ns=ghcr.io&ns=quay.io", "ns=x:99999", "ns=a%00"] {
            assert!(matches!(err(&format!("/v2/?{bad}")), PathError::Namespace { .. }), "{bad}");
        }
    }

    #[test]
    fn rejects_escapes_and_bad_names() {
        let t = "/manifests/latest";
        for name in ["a/../b", "..", ".", "a/./b", "a//b", "a%2Fb", "a%2fb", "%2e%2e", "a\\b", "a\0b", "Abc", "a b"] {
            let e = err(&format!("/v2/{name}{t}"));
            assert!(matches!(e, PathError::Name(_)), "{name:?} gave {e:?}");
            assert_eq!((e.code(), e.status()), (ErrorCode::NameInvalid, 400));
        }
        let long = format!("/v2/{}{t}", "a".repeat(256));
        assert_eq!(err(&long), PathError::Name(NameError::TooLong { len: 256 }));
        assert!(matches!(err("/v2//manifests/latest"), PathError::Name(NameError::Empty)));
    }

    #[test]
    fn rejects_bad_references() {
        let e = err(&format!("/v2/a/manifests/{}", "t".repeat(129)));
        assert_eq!(e, PathError::Tag(TagError::TooLong { len: 129 }));
        assert_eq!((e.code(), e.status()), (ErrorCode::ManifestUnknown, 404), "the spec's only manifest failure");
        for bad in ["latest%2F..", ".x", ""] {
            assert!(matches!(err(&format!("/v2/a/manifests/{bad}")), PathError::Tag(_)), "{bad:?}");
        }
        for bad in ["sha256:abc", "md5:abc", &D.to_uppercase(), "sha256%3Aabc", "", "x"] {
            let e = err(&format!("/v2/a/blobs/{bad}"));
            assert!(matches!(e, PathError::Digest(_)), "{bad:?} gave {e:?}");
            assert_eq!((e.code(), e.status()), (ErrorCode::DigestInvalid, 400));
        }
        assert!(matches!(err("/v2/a/manifests/sha256:abc"), PathError::Digest(_)));
        assert!(matches!(err("/v2/a/manifests/latest/"), PathError::NotFound { .. }));
    }

    #[test]
    fn routes_we_do_not_serve() {
        for p in [
            "/v2/_catalog",
            "/v2/a/tags/list",
            "/v2/a/blobs/uploads/",
            "/v2/a/b/blobs/uploads/uuid-1",
            "/v2/a/blobs/uploads",
        ] {
            let e = err(p);
            assert!(matches!(e, PathError::Unsupported { .. }), "{p} gave {e:?}");
            assert_eq!((e.code(), e.status()), (ErrorCode::Unsupported, 404));
        }
        assert_eq!(
            route(&format!("/v2/a/b/referrers/{D}")),
            Route::Referrers { name: "a/b".into(), digest: D.parse().unwrap() }
        );
        assert!(matches!(err("/v2/a/referrers/latest"), PathError::Digest(_)), "referrers name a digest");
        for p in ["", "/", "/v1/", "/v2x", "/V2/", "/v2/a", "/v2/a/b", "/v2/a/layers/x", "//v2/", "/v2//", "/%76%32/"] {
            let e = err(p);
            assert!(matches!(e, PathError::NotFound { .. }), "{p:?} gave {e:?}");
            assert_eq!((e.code(), e.status()), (ErrorCode::NameUnknown, 404));
        }
    }

    #[test]
    fn error_bodies_name_the_code() {
        let body = err("/v2/A/manifests/x").body();
        assert_eq!(body.code(), Some(ErrorCode::NameInvalid));
    }

    #[test]
    fn manifest_requests_name_an_image() {
        let image = |p: &str| Request::parse(p).unwrap().image("docker.io").map(|r| r.unwrap().to_string());
        assert_eq!(image("/v2/library/nginx/manifests/1?ns=docker.io").as_deref(), Some("docker.io/library/nginx:1"));
        assert_eq!(image("/v2/a/b/manifests/v1?ns=localhost%3A5000").as_deref(), Some("localhost:5000/a/b:v1"));
        assert_eq!(image("/v2/nginx/manifests/latest").as_deref(), Some("docker.io/library/nginx:latest"));
        assert_eq!(image(&format!("/v2/a/manifests/{D}?ns=ghcr.io")), Some(format!("ghcr.io/a@{D}")));
        assert_eq!(image(&format!("/v2/a/blobs/{D}")), None);
        assert_eq!(image("/v2/"), None);
    }

    #[test]
    fn renders_back() {
        for p in ["/v2/", "/v2/a/b/manifests/v1?ns=localhost%3A5000", &format!("/v2/a/blobs/{D}?ns=docker.io")] {
            assert_eq!(Request::parse(p).unwrap().to_path_and_query(), p);
        }
    }
}
