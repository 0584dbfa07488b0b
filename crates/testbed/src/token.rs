//! A Docker-style token server for a real registry with token auth.
//!
//! [`TokenServer`] answers `GET /token?service=…&scope=repository:<name>:<actions>`
//! the way Docker Hub's auth service does: with a JWT (ES256, its signing
//! certificate in the `x5c` header) granting what the caller may do. Users
//! given at start may push and pull; anonymous callers may pull repositories
//! not under `private/`, when anonymous pulls are allowed; a user may be
//! limited to the repositories under one prefix ([`TokenServer::start_limited`]). `docker-registry`
//! started with [`crate::registry::UpstreamOptions::token`] trusts its
//! certificate and checks every token itself, so tests exercise a real
//! registry's token auth. It counts the tokens it issued.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The `service` the registry names in its challenges.
pub const SERVICE: &str = "peerpull-testbed-registry";
/// The issuer the registry expects in tokens.
pub const ISSUER: &str = "peerpull-testbed-tokens";

/// A running token server.
#[derive(Debug)]
pub struct TokenServer {
    addr: SocketAddr,
    cert: PathBuf,
    issued: Arc<AtomicUsize>,
    stop: CancellationToken,
    _dir: TempDir,
}

struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// `x5c`: the signing certificate, base64 DER.
    chain: String,
    users: HashMap<String, String>,
    /// Users that may use only the repositories under a prefix.
    limits: HashMap<String, String>,
    anonymous_pull: bool,
}

impl TokenServer {
    /// Starts a token server for `users` (`(name, password)`); anonymous
    /// callers may pull public repositories when `anonymous_pull`.
    pub async fn start(users: &[(&str, &str)], anonymous_pull: bool) -> Result<Self, Error> {
        Self::start_limited(users, anonymous_pull, &[]).await
    }

    /// Starts a token server as [`TokenServer::start`] does, where each user
    /// in `limits` (`(user, prefix)`) may use only repositories whose name
    /// starts with its prefix.
    pub async fn start_limited(
        users: &[(&str, &str)],
        anonymous_pull: bool,
        limits: &[(&str, &str)],
    ) -> Result<Self, Error> {
        let dir = tempfile::Builder::new().prefix("pp-token-").tempdir().map_err(Error::io("creating a temp dir"))?;
        let failed = |what: &str, e: String| Error::io(what.to_owned())(std::io::Error::other(e));
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| failed("generating the token key", e.to_string()))?;
        let cert = rcgen::CertificateParams::new(vec!["peerpull-testbed-tokens".to_owned()])
            .and_then(|params| params.self_signed(&key_pair))
            .map_err(|e| failed("signing the token certificate", e.to_string()))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key_pair.serialize_der(), &rng)
            .map_err(|e| failed("loading the token key", e.to_string()))?;
        let cert_path = dir.path().join("token.crt");
        std::fs::write(&cert_path, cert.pem()).map_err(Error::io("writing the token certificate"))?;
        let signer = Arc::new(Signer {
            key,
            rng,
            chain: STANDARD.encode(cert.der()),
            users: users.iter().map(|(u, p)| ((*u).to_owned(), (*p).to_owned())).collect(),
            limits: limits.iter().map(|(u, p)| ((*u).to_owned(), (*p).to_owned())).collect(),
            anonymous_pull,
        });
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .await
            .map_err(Error::io("binding the token server"))?;
        let addr = listener.local_addr().map_err(Error::io("reading the token server's address"))?;
        let (issued, stop) = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
        let (count, token) = (issued.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => return,
                    },
                };
                let (signer, count) = (signer.clone(), count.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (signer, count) = (signer.clone(), count.clone());
                    async move { Ok::<_, Infallible>(signer.answer(request, &count).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Ok(Self { addr, cert: cert_path, issued, stop, _dir: dir })
    }

    /// The token endpoint, as the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The certificate the registry trusts tokens by.
    pub fn certificate(&self) -> &Path {
        &self.cert
    }

    /// How many tokens it has issued.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Signer {
    /// Answers a token request: `GET` with Basic credentials (or none), or
    /// the OAuth2 `POST` form (`grant_type=password`) containerd sends.
    async fn answer(&self, request: Request<Incoming>, issued: &AtomicUsize) -> Response<Full<Bytes>> {
        let basic = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|text| text.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
        let mut params = form(request.uri().query().unwrap_or_default());
        let body =
            Limited::new(request.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        params.extend(form(&String::from_utf8_lossy(&body)));
        let posted = match (params.get("username"), params.get("password")) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            _ => None,
        };
        let query = params;
        let user = basic.or(posted);
        let user = match user {
            Some((name, password)) if self.users.get(&name) == Some(&password) => Some(name),
            Some(_) => return respond(401, r#"{"details":"wrong credentials"}"#.into()),
            None => None,
        };
        let access = query.get("scope").and_then(|scope| self.grant(scope, user.as_deref()));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": user.unwrap_or_default(),
            "aud": query.get("service").cloned().unwrap_or_default(),
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", issued.fetch_add(1, Ordering::SeqCst)),
            "access": access.into_iter().collect::<Vec<_>>(),
        });
        let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "x5c": [self.chain] });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let Ok(signature) = self.key.sign(&self.rng, signing_input.as_bytes()) else {
            return respond(500, r#"{"details":"signing failed"}"#.into());
        };
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        respond(200, serde_json::json!({ "token": token, "access_token": token, "expires_in": 300 }).to_string())
    }

    /// The access entry for `scope` (`repository:<name>:<actions>`), if any is allowed.
    fn grant(&self, scope: &str, user: Option<&str>) -> Option<serde_json::Value> {
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
        let within = |user: &str| self.limits.get(user).is_none_or(|prefix| name.starts_with(prefix.as_str()));
        let authenticated = user.is_some_and(within);
        let allowed: Vec<&str> = actions
            .split(',')
            .filter(|action| {
                authenticated || (self.anonymous_pull && *action == "pull" && !name.starts_with("private/"))
            })
            .collect();
        (!allowed.is_empty()).then(|| serde_json::json!({ "type": kind, "name": name, "actions": allowed }))
    }
}

/// `a=1&b=x%20y` → `{a: 1, b: "x y"}`.
fn form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned()))
        .collect()
}

fn respond(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    response
}
