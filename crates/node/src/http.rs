//! What the node's two HTTP listeners answer.
//!
//! The registry port answers `/livez` and `/readyz` and hands everything
//! else to the `/v2` mirror; the metrics port answers `/metrics`, `/livez`
//! and `/readyz`, and `/debug` when the debug page is on. `/readyz` is `200 ok` or `503` with the first failing
//! check's reason; `/readyz?verbose` lists every check, one per line, the way
//! Kubernetes components do.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use peerpull_mirror::Mirror;
use peerpull_mirror::{full, text, Body};
use prometheus_client::registry::Registry;

use crate::debug::Debug;
use crate::Health;

/// Answers a request to the registry port.
pub(crate) async fn registry_port<B>(mirror: Mirror, health: Health, request: Request<B>) -> Response<Body> {
    match request.uri().path() {
        "/livez" => live(),
        "/readyz" => ready(&health, &request).await,
        _ => mirror.handle(request).await,
    }
}

/// Answers a request to the metrics port.
pub(crate) async fn metrics_port<B>(
    registry: Arc<Registry>,
    health: Health,
    debug: Option<Debug>,
    request: Request<B>,
) -> Response<Body> {
    match request.uri().path() {
        "/livez" => live(),
        "/readyz" => ready(&health, &request).await,
        "/metrics" => metrics(&registry),
        path if path == "/debug" || path.starts_with("/debug/") => match debug {
            Some(debug) => debug.answer(&request).await,
            None => text(StatusCode::NOT_FOUND, "the debug page is off (peerpull run --debug-web true)\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn live() -> Response<Body> {
    text(StatusCode::OK, "ok\n")
}

async fn ready<B>(health: &Health, request: &Request<B>) -> Response<Body> {
    let verbose = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "verbose" || p == "verbose=1"));
    if !verbose {
        return match health.check().await {
            Ok(()) => live(),
            Err(failed) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", failed.detail)),
        };
    }
    let checks = health.checks().await;
    let ok = checks.iter().all(|c| c.ok);
    let mut out: String = checks.iter().map(|c| format!("{c}\n")).collect();
    out.push_str(if ok { "readyz check passed\n" } else { "readyz check failed\n" });
    text(if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, out)
}

fn metrics(registry: &Registry) -> Response<Body> {
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(%error, "encoding metrics failed");
    }
    let mut response = Response::new(full(out));
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
