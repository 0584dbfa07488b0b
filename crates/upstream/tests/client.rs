//! The client against small fake registries on 127.0.0.1: the token flow and
//! its cache, Basic credentials, redirects that must not carry credentials,
//! and how refusals and outages come back.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use peerpull_oci::Registry;
use peerpull_upstream::{Client, Config, Credentials, Error, Fetch, Outcome, RegistrySettings};
use tokio::net::TcpListener;

type Handler = Arc<dyn Fn(Request<Incoming>, SocketAddr) -> Response<Full<Bytes>> + Send + Sync>;

/// Serves `handler` on 127.0.0.1; the handler is told its own address.
async fn serve(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            let service = service_fn(move |request| {
                let response = handler(request, addr);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

fn respond(status: u16, headers: &[(&str, String)], body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    response.body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
}

fn auth_of(request: &Request<Incoming>) -> Option<String> {
    request.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned())
}

fn get(path: &str) -> Fetch {
    Fetch { method: Method::GET, repository: "team/app".into(), path: path.into(), range: None, accept: None }
}

fn registry(addr: SocketAddr) -> Registry {
    format!("http://{addr}").parse().unwrap()
}

/// A client with `credentials` for the registry at `addr`.
fn client_for(addr: SocketAddr, credentials: Credentials) -> Client {
    let settings = RegistrySettings { credentials: Some(credentials), ..Default::default() };
    let registries = BTreeMap::from([(addr.to_string(), settings)]);
    Client::new(Config { registries, ..Config::default() }).unwrap()
}

/// A client without credentials.
fn client() -> Client {
    Client::new(Config::default()).unwrap()
}

async fn body(response: Response<Incoming>) -> String {
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn token_flow_with_a_cached_token() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let issued = tokens.clone();
    let addr = serve(Arc::new(move |request, addr| {
        let path = request.uri().path().to_owned();
        if path == "/token" {
            issued.fetch_add(1, Ordering::SeqCst);
            let query = request.uri().query().unwrap_or_default().to_owned();
            assert!(query.contains("scope=repository%3Ateam%2Fapp%3Apull"), "{query}");
            assert!(query.contains("service=test"), "{query}");
            return respond(200, &[], r#"{"token":"t0k","expires_in":300}"#);
        }
        if auth_of(&request).as_deref() == Some("Bearer t0k") {
            return respond(200, &[], "manifest");
        }
        let challenge =
            format!(r#"Bearer realm="http://{addr}/token",service="test",scope="repository:team/app:pull""#);
        respond(401, &[("www-authenticate", challenge)], "")
    }))
    .await;
    let client = client();
    for _ in 0..3 {
        let response = client.fetch(&registry(addr), &get("/v2/team/app/manifests/v1")).await.unwrap();
        assert_eq!(body(response).await, "manifest");
    }
    assert_eq!(tokens.load(Ordering::SeqCst), 1, "one token for three requests");
}

#[tokio::test]
async fn basic_credentials_when_asked_and_denied_without() {
    let addr = serve(Arc::new(|request, _| match auth_of(&request).as_deref() {
        Some("Basic bWU6cHc=") => respond(200, &[], "blob"),
        _ => respond(401, &[("www-authenticate", r#"Basic realm="r""#.into())], ""),
    }))
    .await;
    let credentials = Credentials::Basic { username: "me".into(), password: "pw".into() };
    let response = client_for(addr, credentials).fetch(&registry(addr), &get("/v2/team/app/blobs/x")).await.unwrap();
    assert_eq!(body(response).await, "blob");
    let error = client().fetch(&registry(addr), &get("/v2/team/app/blobs/x")).await.unwrap_err();
    assert!(matches!(error, Error::Denied { status: StatusCode::UNAUTHORIZED, .. }), "{error}");
    assert!(!error.is_outage());
}

#[tokio::test]
async fn redirects_are_followed_without_credentials() {
    let cdn = serve(Arc::new(|request, _| {
        assert_eq!(auth_of(&request), None, "credentials leaked to another host");
        assert_eq!(request.headers().get("range").unwrap(), "bytes=2-");
        respond(206, &[], "ob")
    }))
    .await;
    let addr = serve(Arc::new(move |request, _| match auth_of(&request).as_deref() {
        Some("Basic bWU6cHc=") => respond(307, &[("location", format!("http://{cdn}/cdn/x?sig=1"))], ""),
        _ => respond(401, &[("www-authenticate", r#"Basic realm="r""#.into())], ""),
    }))
    .await;
    let credentials = Credentials::Basic { username: "me".into(), password: "pw".into() };
    let fetch = Fetch { range: Some("bytes=2-".into()), ..get("/v2/team/app/blobs/x") };
    let response = client_for(addr, credentials).fetch(&registry(addr), &fetch).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(body(response).await, "ob");

    let looping = serve(Arc::new(|request, addr| {
        respond(302, &[("location", format!("http://{addr}{}", request.uri().path()))], "")
    }))
    .await;
    let error = client().fetch(&registry(looping), &get("/v2/team/app/blobs/x")).await.unwrap_err();
    assert!(matches!(error, Error::Protocol { .. }), "{error}");
}

#[tokio::test]
async fn refusals_and_outages_are_told_apart() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let limited = serve(Arc::new(move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        respond(429, &[("retry-after", "7".into())], "")
    }))
    .await;
    let other = serve(Arc::new(|_, _| respond(404, &[], ""))).await;
    let client = client();
    let registry = registry(limited);
    let error = client.fetch(&registry, &get("/v2/team/app/blobs/limited")).await.unwrap_err();
    assert!(matches!(error, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)), "{error}");
    assert!(error.is_outage());
    // Until the Retry-After has passed, the registry is not asked again.
    let error = client.fetch(&registry, &get("/v2/team/app/blobs/missing")).await.unwrap_err();
    assert!(matches!(error, Error::RateLimited { retry_after: Some(d), .. } if d <= Duration::from_secs(7)), "{error}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "a request went out during the pause");
    let error = client.fetch(&self::registry(other), &get("/v2/team/app/blobs/missing")).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "other registries are still asked: {error}");
    // The client tells how each registry it asked is doing.
    let health = client.health();
    let of = |addr: SocketAddr| health.iter().find(|h| h.registry == addr.to_string()).cloned().unwrap();
    let paused = of(limited);
    assert_eq!(paused.last, Outcome::RateLimited);
    assert!(paused.paused_for.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(7)), "{paused:?}");
    assert_eq!((of(other).last, of(other).paused_for), (Outcome::NotFound, None));
    assert_eq!(health.len(), 2);

    let addr = serve(Arc::new(|request, _| match request.uri().path() {
        "/v2/team/app/blobs/broken" => respond(503, &[], ""),
        _ => respond(404, &[], ""),
    }))
    .await;
    let registry = self::registry(addr);
    let error = client.fetch(&registry, &get("/v2/team/app/blobs/broken")).await.unwrap_err();
    assert!(error.is_outage(), "{error}");
    let error = client.fetch(&registry, &get("/v2/team/app/blobs/missing")).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }) && !error.is_outage(), "{error}");

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let error = client.fetch(&self::registry(closed), &get("/v2/team/app/blobs/x")).await.unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }) && error.is_outage(), "{error}");
}
