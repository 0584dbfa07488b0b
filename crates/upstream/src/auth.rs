//! Registry authentication: challenges, token responses and the token cache.
//!
//! A registry that wants credentials answers `401` with a `WWW-Authenticate`
//! challenge. `Bearer realm="…",service="…",scope="…"` (Docker Hub, and any
//! registry with token auth) means: get a token from `realm` for `service`
//! and `scope` (anonymously, with Basic credentials, or by exchanging an
//! identity token) and send it as `Authorization: Bearer`. `Basic` means:
//! send the credentials themselves. Tokens are cached per registry and
//! scope until shortly before they expire, so a pull of many blobs asks for
//! one token.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;
use tokio::time::Instant;

use crate::Credentials;

/// How long a token whose response names no lifetime is used (the spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// What a registry's `WWW-Authenticate` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Get a token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass on.
        service: Option<String>,
        /// The scope the registry named, if any.
        scope: Option<String>,
    },
    /// Send Basic credentials.
    Basic,
}

/// A token endpoint's answer.
#[derive(Debug, serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Tokens by registry host and scope.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    cache: Mutex<HashMap<(String, String), (HeaderValue, Instant)>>,
}

impl Tokens {
    /// A cached, unexpired `Authorization` value for `host` and `scope`.
    pub(crate) fn get(&self, host: &str, scope: &str) -> Option<HeaderValue> {
        let cache = self.cache.lock();
        let (value, expires) = cache.get(&(host.to_owned(), scope.to_owned()))?;
        (*expires > Instant::now()).then(|| value.clone())
    }

    /// Caches `value` for `host` and `scope` for `lifetime` (less a margin).
    pub(crate) fn put(&self, host: &str, scope: &str, value: HeaderValue, lifetime: Duration) {
        let expires = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN).max(Duration::from_secs(1));
        let mut cache = self.cache.lock();
        cache.retain(|_, (_, at)| *at > Instant::now());
        cache.insert((host.to_owned(), scope.to_owned()), (value, expires));
    }

    /// Forgets the token for `host` and `scope` (the registry refused it).
    pub(crate) fn forget(&self, host: &str, scope: &str) {
        let mut cache = self.cache.lock();
        cache.remove(&(host.to_owned(), scope.to_owned()));
    }
}

/// Parses a `WWW-Authenticate` header; `None` for schemes we do not speak.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
}

/// `a="x, y",b=z` → `[(a, "x, y"), (b, z)]`.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else { break };
        let name = name.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((name, value));
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The `Authorization` value for Basic credentials; `None` for an identity token.
pub(crate) fn basic(credentials: &Credentials) -> Option<HeaderValue> {
    let Credentials::Basic { username, password } = credentials else { return None };
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).ok()
}

/// The `Authorization` value and lifetime a token endpoint's JSON answer gives.
pub(crate) fn parse_token(body: &[u8]) -> Option<(HeaderValue, Duration)> {
    let response: TokenResponse = serde_json::from_slice(body).ok()?;
    let token = response.token.or(response.access_token).filter(|t| !t.is_empty())?;
    let lifetime = response.expires_in.map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Some((HeaderValue::from_str(&format!("Bearer {token}")).ok()?, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            parse_challenge(hub),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        let unquoted = "bearer realm=http://127.0.0.1:1/t, service=reg,error=\"insufficient_scope\"";
        assert!(matches!(parse_challenge(unquoted), Some(Challenge::Bearer { realm, service: Some(s), scope: None })
            if realm == "http://127.0.0.1:1/t" && s == "reg"));
        assert_eq!(parse_challenge(r#"Basic realm="registry""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_params(r#"a="x, \"y\"",b=z"#), [("a".into(), r#"x, "y""#.into()), ("b".into(), "z".into())]);
    }

    #[test]
    fn tokens_and_basic() {
        let (value, lifetime) = parse_token(br#"{"token":"abc","expires_in":300}"#).unwrap_or_else(|| panic!());
        assert_eq!((value.to_str().ok(), lifetime), (Some("Bearer abc"), Duration::from_secs(300)));
        let (value, lifetime) = parse_token(br#"{"access_token":"xyz"}"#).unwrap_or_else(|| panic!());
        assert_eq!((value.to_str().ok(), lifetime), (Some("Bearer xyz"), DEFAULT_TOKEN_LIFETIME));
        assert!(parse_token(br#"{"token":""}"#).is_none());
        assert!(parse_token(b"not json").is_none());
        let basic = basic(&Credentials::Basic { username: "me".into(), password: "pw".into() });
        assert_eq!(basic.as_ref().and_then(|v| v.to_str().ok()), Some("Basic bWU6cHc="));
        assert!(super::basic(&Credentials::IdentityToken("t".into())).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn cached_tokens_expire_before_the_registry_says() {
        let tokens = Tokens::default();
        let value = HeaderValue::from_static("Bearer t");
        tokens.put("r", "s", value.clone(), Duration::from_secs(60));
        assert_eq!(tokens.get("r", "s"), Some(value));
        assert_eq!(tokens.get("r", "other"), None);
        tokio::time::advance(Duration::from_secs(51)).await;
        assert_eq!(tokens.get("r", "s"), None, "renewed 10 s before expiry");
    }
}
