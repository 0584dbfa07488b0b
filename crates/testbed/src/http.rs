//! A small HTTP client for tests: GET or HEAD a URL and collect the answer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::Error;

/// How long one test request may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A collected HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The first value of header `name` (lower-case), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

/// Sends `method` to `url` with `headers`. A body that breaks off is an error.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<Reply, Error> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Empty::new())
        .map_err(|e| Error::io(format!("building {method} {url}"))(std::io::Error::other(e)))?;
    let what = format!("{method} {url}");
    let exchange = async {
        let response = client.request(request).await.map_err(|e| Error::io(what.clone())(std::io::Error::other(e)))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| Error::io(format!("{what}: body"))(std::io::Error::other(e)))?;
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        Ok(Reply { status: parts.status.as_u16(), headers, body: body.to_bytes() })
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| Error::Timeout { what, after: TIMEOUT })?
}

/// GETs `url`.
pub async fn get(url: &str) -> Result<Reply, Error> {
    request("GET", url, &[]).await
}

/// GETs `url` and hands back the status and the body unread, for tests that
/// read a transfer at their own pace.
pub async fn open(url: &str) -> Result<(u16, hyper::body::Incoming), Error> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::get(url)
        .body(Empty::new())
        .map_err(|e| Error::io(format!("building GET {url}"))(std::io::Error::other(e)))?;
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| Error::Timeout { what: format!("GET {url}"), after: TIMEOUT })?
        .map_err(|e| Error::io(format!("GET {url}"))(std::io::Error::other(e)))?;
    Ok((response.status().as_u16(), response.into_body()))
}
