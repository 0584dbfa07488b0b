//! One upstream request, through redirects and authentication.
//!
//! [`Client::fetch`] sends a `GET` or `HEAD` for a path under a registry's
//! `/v2/`, answers a `401` challenge once (fetching and caching a token, or
//! sending Basic credentials), follows up to [`MAX_REDIRECTS`] redirects
//! (credentials go to the registry's own host only, never to a CDN), and
//! returns the first `2xx` response with its body unread. Anything else is
//! an [`Error`] saying whether the registry is out of reach or said no. A
//! registry that answered `429` is not asked again until its `Retry-After`
//! (10 s when it gave none, 10 min at most) has passed.
//! [`Client::fetch_as`] sends the same request with a pull's own
//! credentials instead of the node's; a token got for them is cached under
//! the caller's fingerprint of them, never shared with other credentials.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use peerpull_oci::Registry;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio::time::Instant;

use crate::auth::{self, Challenge, Tokens};
use crate::{tls, Config, Credentials, Error, Outcome, Tls};

/// The most redirects one request follows.
pub(crate) const MAX_REDIRECTS: usize = 5;
/// The largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// How long a registry that answered 429 without `Retry-After` is left alone.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);
/// How long a registry that did not answer in time is left alone.
const UNREACHABLE_PAUSE: Duration = Duration::from_secs(5);
/// The longest a `Retry-After` is honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

type Http = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What to ask a registry for.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// The repository, as the token scope names it (`library/nginx`).
    pub repository: String,
    /// The path under the registry, `/v2/<repository>/{manifests,blobs}/<reference>`.
    pub path: String,
    /// A `Range` header value, e.g. `bytes=1048576-`.
    pub range: Option<String>,
    /// The `Accept` header (manifest media types), if any.
    pub accept: Option<HeaderValue>,
}

/// What a token is asked for: the scope, the key it is cached under, and
/// the client's credentials (`None`: the node's).
#[derive(Clone, Copy)]
struct Asked<'a> {
    scope: &'a str,
    cached_as: &'a str,
    client: Option<&'a Credentials>,
}

/// A registry client; share one per process.
pub struct Client {
    config: Config,
    default: Http,
    /// Clients for registries with TLS settings of their own.
    own: HashMap<String, Http>,
    tokens: Tokens,
    /// Registries that answered 429, and until when they asked to be left alone.
    quiet: Mutex<HashMap<String, Instant>>,
    /// How each registry asked answered last.
    last: Mutex<HashMap<String, Outcome>>,
}

/// How a registry is doing, as this client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The registry's host.
    pub registry: String,
    /// How its last request ended.
    pub last: Outcome,
    /// How long it is left alone still, when it asked for that (or timed out).
    pub paused_for: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `config`; fails when a registry's TLS files cannot be used.
    pub fn new(config: Config) -> Result<Self, Error> {
        let default = http(&config, "*", &Tls::default())?;
        let mut own = HashMap::new();
        for (host, settings) in &config.registries {
            if settings.tls != Tls::default() {
                own.insert(host.clone(), http(&config, host, &settings.tls)?);
            }
        }
        Ok(Self { config, default, own, tokens: Tokens::default(), quiet: Mutex::default(), last: Mutex::default() })
    }

    /// Sends `fetch` to `registry`; the first `2xx` response, body unread.
    pub async fn fetch(&self, registry: &Registry, fetch: &Fetch) -> Result<Response<Incoming>, Error> {
        self.fetch_with(registry, fetch, None).await
    }

    /// Sends `fetch` to `registry` with `credentials` (a client's, not the
    /// node's); a token got for them is cached under `fingerprint`, which
    /// must tell these credentials from any others (a keyed hash of them).
    pub async fn fetch_as(
        &self,
        registry: &Registry,
        fetch: &Fetch,
        credentials: &Credentials,
        fingerprint: &str,
    ) -> Result<Response<Incoming>, Error> {
        self.fetch_with(registry, fetch, Some((credentials, fingerprint))).await
    }

    async fn fetch_with(
        &self,
        registry: &Registry,
        fetch: &Fetch,
        credentials: Option<(&Credentials, &str)>,
    ) -> Result<Response<Incoming>, Error> {
        let result = self.fetch_once(registry, fetch, credentials).await;
        let outcome = result.as_ref().map_or_else(Outcome::from, |_| Outcome::Ok);
        self.last.lock().insert(registry.host().to_owned(), outcome);
        result
    }

    /// Every registry asked so far: how it last answered, and whether it is paused.
    pub fn health(&self) -> Vec<Health> {
        let last = self.last.lock().clone();
        let mut health: Vec<Health> = last
            .into_iter()
            .map(|(registry, last)| {
                let paused_for = self.quiet_until(&registry).map(|t| t.saturating_duration_since(Instant::now()));
                Health { registry, last, paused_for }
            })
            .collect();
        health.sort_by(|a, b| a.registry.cmp(&b.registry));
        health
    }

    /// One request with `client`'s credentials (and their fingerprint), or (`None`) the node's.
    async fn fetch_once(
        &self,
        registry: &Registry,
        fetch: &Fetch,
        client: Option<(&Credentials, &str)>,
    ) -> Result<Response<Incoming>, Error> {
        let host = registry.host();
        let base = registry.upstream_url();
        let scope = format!("repository:{}:pull", fetch.repository);
        // A client's token is cached apart from the node's and from any other credentials'.
        let cached_as = match client {
            Some((_, fingerprint)) => format!("{scope} as {fingerprint}"),
            None => scope.clone(),
        };
        let client = client.map(|(credentials, _)| credentials);
        let mut url = format!("{base}{}", fetch.path);
        if let Some(until) = self.quiet_until(host) {
            let retry_after = Some(until.saturating_duration_since(Instant::now()));
            return Err(Error::RateLimited { url, retry_after });
        }
        let mut authorization = self.tokens.get(host, &cached_as);
        let mut challenged = false;
        let mut redirects = 0;
        loop {
            let own_host = same_authority(&url, &base);
            let credentials = authorization.as_ref().filter(|_| own_host);
            let response = match self.send(host, &base, &url, fetch, credentials).await {
                Ok(response) => response,
                Err(error @ Error::Unreachable { source: None, .. }) => {
                    // It timed out: a black hole costs every request the full time-out, so pause.
                    self.pause(host, UNREACHABLE_PAUSE);
                    return Err(error);
                }
                Err(error) => return Err(error),
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            match status {
                StatusCode::MOVED_PERMANENTLY
                | StatusCode::FOUND
                | StatusCode::SEE_OTHER
                | StatusCode::TEMPORARY_REDIRECT
                | StatusCode::PERMANENT_REDIRECT => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(Error::Protocol { url, what: format!("more than {MAX_REDIRECTS} redirects") });
                    }
                    url = redirect_target(&url, &response)?;
                }
                StatusCode::UNAUTHORIZED if !challenged && own_host => {
                    challenged = true;
                    let header = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
                    let Some(challenge) = header.and_then(auth::parse_challenge) else {
                        return Err(Error::Denied { url, status });
                    };
                    let asked = Asked { scope: &scope, cached_as: &cached_as, client };
                    authorization = Some(self.authenticate(host, &base, asked, challenge, &url).await?);
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    self.tokens.forget(host, &cached_as);
                    return Err(Error::Denied { url, status });
                }
                StatusCode::NOT_FOUND => return Err(Error::NotFound { url }),
                StatusCode::TOO_MANY_REQUESTS => return Err(self.rate_limited(host, url, &response)),
                _ => return Err(Error::Status { url, status }),
            }
        }
    }

    /// A `429` from `host`: leave it alone until its `Retry-After` has passed.
    fn rate_limited(&self, host: &str, url: String, response: &Response<Incoming>) -> Error {
        let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
        self.pause(host, retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(MAX_RETRY_AFTER));
        Error::RateLimited { url, retry_after }
    }

    /// Sends nothing to `host` for `pause`.
    fn pause(&self, host: &str, pause: Duration) {
        let until = Instant::now() + pause;
        let mut quiet = self.quiet.lock();
        let at = quiet.entry(host.to_owned()).or_insert(until);
        *at = (*at).max(until);
    }

    /// When `host` asked to be left alone until, if that is still ahead.
    fn quiet_until(&self, host: &str) -> Option<Instant> {
        let mut quiet = self.quiet.lock();
        let until = *quiet.get(host)?;
        if until <= Instant::now() {
            quiet.remove(host);
            return None;
        }
        Some(until)
    }

    /// One request, bounded by the response time-out.
    async fn send(
        &self,
        host: &str,
        base: &str,
        url: &str,
        fetch: &Fetch,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response<Incoming>, Error> {
        let mut request = Request::builder().method(fetch.method.clone()).uri(url);
        if let Some(range) = &fetch.range {
            request = request.header(RANGE, range);
        }
        if let Some(accept) = &fetch.accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = request
            .body(Full::default())
            .map_err(|e| Error::Protocol { url: url.to_owned(), what: format!("bad request: {e}") })?;
        self.exchange(self.client_for(host, base, url), request).await
    }

    /// Gets an `Authorization` value answering `challenge` with the
    /// client's credentials, or the node's, caching the token.
    async fn authenticate(
        &self,
        host: &str,
        base: &str,
        asked: Asked<'_>,
        challenge: Challenge,
        url: &str,
    ) -> Result<HeaderValue, Error> {
        let Asked { scope, cached_as, client } = asked;
        let node = || self.config.settings(host).and_then(|s| s.credentials.as_ref());
        let credentials = client.or_else(node);
        // Credentials of an HTTPS registry never travel in the clear to a token service.
        let credentials = credentials.filter(|_| !(base.starts_with("https://") && realm_is_plain(&challenge)));
        let (realm, service, asked) = match challenge {
            Challenge::Basic => {
                let denied = Error::Denied { url: url.to_owned(), status: StatusCode::UNAUTHORIZED };
                return credentials.and_then(auth::basic).ok_or(denied);
            }
            Challenge::Bearer { realm, service, scope } => (realm, service, scope),
        };
        let scope_param = asked.unwrap_or_else(|| scope.to_owned());
        let mut query = vec![("scope", scope_param.as_str())];
        if let Some(service) = &service {
            query.push(("service", service));
        }
        let request = match credentials {
            Some(Credentials::IdentityToken(token)) => {
                query.extend([("grant_type", "refresh_token"), ("client_id", "peerpull"), ("refresh_token", token)]);
                Request::post(&realm)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(encode(&query))))
            }
            other => {
                let sep = if realm.contains('?') { '&' } else { '?' };
                let mut request = Request::get(format!("{realm}{sep}{}", encode(&query)));
                if let Some(basic) = other.and_then(auth::basic) {
                    request = request.header(AUTHORIZATION, basic);
                }
                request.body(Full::default())
            }
        };
        let request = request.map_err(|e| Error::Protocol { url: realm.clone(), what: format!("token realm: {e}") })?;
        let response = self.exchange(self.client_for(host, base, &realm), request).await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Denied { url: realm, status });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(self.rate_limited(host, realm, &response));
        }
        if !status.is_success() {
            return Err(Error::Status { url: realm, status });
        }
        let timeout = self.config.response_timeout;
        let collected = tokio::time::timeout(timeout, Limited::new(response.into_body(), MAX_TOKEN_RESPONSE).collect());
        let body = match collected.await {
            Err(_) => {
                let what = format!("token response body not sent within {timeout:?}");
                return Err(Error::Unreachable { url: realm, what, source: None });
            }
            Ok(Err(e)) => return Err(Error::Protocol { url: realm, what: format!("token response: {e}") }),
            Ok(Ok(body)) => body.to_bytes(),
        };
        let (value, lifetime) = auth::parse_token(&body)
            .ok_or_else(|| Error::Protocol { url: realm.clone(), what: "token response without a token".into() })?;
        self.tokens.put(host, cached_as, value.clone(), lifetime);
        Ok(value)
    }

    /// Sends `request`, bounded by the response time-out.
    async fn exchange(&self, http: &Http, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, Error> {
        let url = request.uri().to_string();
        let timeout = self.config.response_timeout;
        match tokio::time::timeout(timeout, http.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(Error::Unreachable { url, what: "request failed".into(), source: Some(Box::new(e)) }),
            Err(_) => Err(Error::Unreachable { url, what: format!("no answer within {timeout:?}"), source: None }),
        }
    }

    /// The client for `url` on a request to `host` at `base`: the registry's own
    /// (its TLS settings) on the registry itself, the default one elsewhere (a
    /// CDN, a token service on another host).
    fn client_for(&self, host: &str, base: &str, url: &str) -> &Http {
        let own = match self.config.registries.contains_key(host) {
            true => self.own.get(host),
            false => self.own.get("*"),
        };
        match own {
            Some(own) if same_authority(url, base) => own,
            _ => &self.default,
        }
    }
}

/// A `Retry-After` value: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// Whether `challenge` sends us to a plain-HTTP token service.
fn realm_is_plain(challenge: &Challenge) -> bool {
    matches!(challenge, Challenge::Bearer { realm, .. } if realm.to_ascii_lowercase().starts_with("http://"))
}

/// A hyper client with `tls`, bounded connect time and pooled connections.
fn http(config: &Config, host: &str, tls: &Tls) -> Result<Http, Error> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(host, tls)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

/// Whether `url` is on the same scheme and authority as `base`.
fn same_authority(url: &str, base: &str) -> bool {
    let parts = |u: &str| {
        let uri = u.parse::<Uri>().ok()?;
        Some((uri.scheme_str()?.to_ascii_lowercase(), uri.authority()?.as_str().to_ascii_lowercase()))
    };
    parts(url).is_some() && parts(url) == parts(base)
}

/// Where a redirect points, resolved against the URL that answered it.
fn redirect_target(url: &str, response: &Response<Incoming>) -> Result<String, Error> {
    let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok());
    let Some(location) = location else {
        return Err(Error::Protocol { url: url.to_owned(), what: "redirect without a Location".into() });
    };
    resolve(url, location)
        .ok_or_else(|| Error::Protocol { url: url.to_owned(), what: format!("bad Location {location:?}") })
}

/// `location` resolved against `base` (absolute, or absolute-path).
fn resolve(base: &str, location: &str) -> Option<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_owned());
    }
    let base = base.parse::<Uri>().ok()?;
    let origin = format!("{}://{}", base.scheme_str()?, base.authority()?);
    location.starts_with('/').then(|| format!("{origin}{location}"))
}

fn encode(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC))).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_and_credentials_stay_home() {
        assert_eq!(resolve("https://r.io/v2/x/blobs/d", "/other").as_deref(), Some("https://r.io/other"));
        assert_eq!(resolve("https://r.io/v2/x", "https://cdn.io/b?s=1").as_deref(), Some("https://cdn.io/b?s=1"));
        assert_eq!(resolve("https://r.io/v2/x", "relative"), None);
        assert!(same_authority("https://R.io/v2/a", "https://r.io"));
        assert!(!same_authority("https://cdn.io/a", "https://r.io"));
        assert!(!same_authority("http://r.io/a", "https://r.io"));
        assert_eq!(
            encode(&[("scope", "repository:a/b:pull"), ("service", "x y")]),
            "scope=repository%3Aa%2Fb%3Apull&service=x%20y"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let parsed = retry_after(&later).unwrap_or_default();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        assert_eq!(retry_after("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO), "a date passed");
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn credentials_do_not_go_to_a_plain_token_service() {
        let plain = Challenge::Bearer { realm: "HTTP://auth.example/token".into(), service: None, scope: None };
        let tls = Challenge::Bearer { realm: "https://auth.example/token".into(), service: None, scope: None };
        assert!(realm_is_plain(&plain));
        assert!(!realm_is_plain(&tls));
        assert!(!realm_is_plain(&Challenge::Basic));
    }
}
