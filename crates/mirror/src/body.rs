//! Response bodies and the small helpers that build responses.

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use peerpull_oci::{ErrorBody, ErrorCode};
use prometheus_client::metrics::gauge::Gauge;

/// The error a body stream fails with; failing aborts the response.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the mirror sends.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body of known bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A body streamed from chunks; an `Err` aborts the response.
pub fn stream<S, E>(chunks: S) -> Body
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<BodyError> + 'static,
{
    StreamBody::new(chunks.map_ok(Frame::data).map_err(Into::into)).boxed_unsync()
}

/// `response`, counted in `gauge` until its body is dropped (sent, or
/// abandoned); then `ended` is told how many body bytes went out.
pub(crate) fn observed(
    response: Response<Body>,
    gauge: Gauge,
    ended: impl FnOnce(u64) + Send + 'static,
) -> Response<Body> {
    gauge.inc();
    let mut watch = Watch { gauge, bytes: 0, ended: Some(Box::new(ended)) };
    response.map(|body| {
        body.map_frame(move |frame| {
            // The whole watch moves into the closure (not just its counter), so it lives as long as the body.
            let watch = &mut watch;
            if let Some(data) = frame.data_ref() {
                watch.bytes += data.len() as u64;
            }
            frame
        })
        .boxed_unsync()
    })
}

/// Watches a body: takes one off its gauge and reports the bytes sent when dropped.
struct Watch {
    gauge: Gauge,
    bytes: u64,
    ended: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.gauge.dec();
        if let Some(ended) = self.ended.take() {
            ended(self.bytes);
        }
    }
}

/// An OCI error response.
pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> Response<Body> {
    error_with_status(code, code.status(), message)
}

/// An OCI error response with an explicit status.
pub(crate) fn error_with_status(code: ErrorCode, status: u16, message: impl Into<String>) -> Response<Body> {
    let json = ErrorBody::new(code, message, None).to_json();
    let mut response = Response::new(full(json));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A plain-text response.
pub fn text(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The header carrying the digest of the content served.
pub(crate) const DOCKER_CONTENT_DIGEST: header::HeaderName = header::HeaderName::from_static("docker-content-digest");

/// Sets header `name` to `value` (dropped if it is not a valid header value).
pub(crate) fn insert(response: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}
