//! A fake upstream registry: serves fixed content by path, with `Range`,
//! optionally slowly or corrupted, and counts the `GET`s of each path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use peerpull_oci::{ByteRange, Digest, Registry};
use tokio::net::TcpListener;

/// How the fake misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Pause between 64 KiB chunks of a body.
    pub chunk_delay: Duration,
    /// Flip every byte of blob bodies.
    pub corrupt: bool,
    /// Answer every request with this status and nothing else.
    pub status: Option<u16>,
    /// Accept requests and never answer.
    pub hang: bool,
}

/// A running fake registry.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    gets: Arc<Mutex<HashMap<String, usize>>>,
    how: Arc<Mutex<Behaviour>>,
    files: Arc<Mutex<HashMap<String, Arc<Content>>>>,
}

struct Content {
    bytes: Bytes,
    media_type: String,
    digest: Digest,
}

impl FakeUpstream {
    /// Serves `files` (`path`, bytes, media type) as told by `how`.
    pub async fn start(files: Vec<(String, Vec<u8>, &str)>, how: Behaviour) -> Self {
        let files: HashMap<String, Arc<Content>> = files
            .into_iter()
            .map(|(path, bytes, media_type)| {
                let digest = Digest::sha256_of(&bytes);
                (path, Arc::new(Content { bytes: bytes.into(), media_type: media_type.to_owned(), digest }))
            })
            .collect();
        let files = Arc::new(Mutex::new(files));
        let how = Arc::new(Mutex::new(how));
        let gets = Arc::new(Mutex::new(HashMap::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (counted, serving, behaving) = (gets.clone(), files.clone(), how.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (files, counted, how) = (serving.clone(), counted.clone(), behaving.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let how = *how.lock().unwrap();
                    let response = answer(&files.lock().unwrap(), &counted, how, &request);
                    async move {
                        if how.hang {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { addr, gets, how, files }
    }

    /// Behaves as `how` from now on.
    pub fn behave(&self, how: Behaviour) {
        *self.how.lock().unwrap() = how;
    }

    /// Serves `bytes` at `path` from now on (replacing what was there).
    pub fn put(&self, path: &str, bytes: Vec<u8>, media_type: &str) {
        let digest = Digest::sha256_of(&bytes);
        let content = Arc::new(Content { bytes: bytes.into(), media_type: media_type.to_owned(), digest });
        self.files.lock().unwrap().insert(path.to_owned(), content);
    }

    /// The registry as a mirror config names it.
    pub fn registry(&self) -> Registry {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// `?ns=` for it.
    pub fn ns(&self) -> String {
        format!("?ns={}", self.addr)
    }

    /// How many requests of any kind it received.
    pub fn requests(&self) -> usize {
        self.gets("*")
    }

    /// How many `GET`s `path` received (`path?query`: with exactly that query).
    pub fn gets(&self, path: &str) -> usize {
        self.gets.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn answer(
    files: &HashMap<String, Arc<Content>>,
    gets: &Mutex<HashMap<String, usize>>,
    how: Behaviour,
    request: &Request<Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let empty = |status: u16| Response::builder().status(status).body(Full::default().boxed()).unwrap();
    *gets.lock().unwrap().entry("*".to_owned()).or_default() += 1;
    if let Some(status) = how.status {
        return empty(status);
    }
    let path = request.uri().path().to_owned();
    let Some(content) = files.get(&path).cloned() else { return empty(404) };
    if request.method() == http::Method::GET {
        let mut gets = gets.lock().unwrap();
        *gets.entry(path.clone()).or_default() += 1;
        if let Some(query) = request.uri().query() {
            *gets.entry(format!("{path}?{query}")).or_default() += 1;
        }
    }
    let size = content.bytes.len() as u64;
    let range = request.headers().get("range").and_then(|v| ByteRange::parse(v.to_str().ok()?, size).ok());
    let (start, end) = range.map_or((0, size), |r| (r.start, r.end_inclusive + 1));
    let mut response = Response::builder()
        .status(if range.is_some() { 206 } else { 200 })
        .header("content-type", &content.media_type)
        .header("content-length", (end - start).to_string())
        .header("docker-content-digest", content.digest.to_string());
    if let Some(range) = range {
        response = response.header("content-range", range.content_range(size));
    }
    if request.method() == http::Method::HEAD {
        return response.body(Full::default().boxed()).unwrap();
    }
    let mut bytes = content.bytes.slice(start as usize..end as usize).to_vec();
    if how.corrupt && path.contains("/blobs/") {
        bytes.iter_mut().for_each(|b| *b ^= 0xff);
    }
    let chunks: Vec<Bytes> = bytes.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
    let delay = how.chunk_delay;
    let stream = futures::stream::iter(chunks).then(move |chunk| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, Infallible>(Frame::data(chunk))
    });
    response.body(BodyExt::boxed(StreamBody::new(stream))).unwrap()
}

/// The repository the tests' blobs are in.
pub const REPO: &str = "team/app";

/// A mirror config that pulls through from `upstream`, spooling in `dir`.
pub fn pulling(upstream: &FakeUpstream, dir: &tempfile::TempDir) -> peerpull_mirror::Config {
    peerpull_mirror::Config {
        mirrored: peerpull_oci::Mirrored::Only(vec![upstream.registry()]),
        upstream_fallback: Some(peerpull_mirror::UpstreamFallback::new(dir.path().join("spool"))),
        tag_resolution: peerpull_mirror::TagResolution::UpstreamFirst,
        ..super::config()
    }
}

/// The path of the blob `digest` in [`REPO`].
pub fn blob_path(digest: &Digest) -> String {
    format!("/v2/{REPO}/blobs/{digest}")
}

/// A fake upstream serving one blob of `len` bytes, as told by `how`.
pub async fn upstream_with_blob(len: usize, how: Behaviour) -> (FakeUpstream, Vec<u8>, Digest) {
    let blob = super::bytes(len, 9);
    let digest = Digest::sha256_of(&blob);
    let path = blob_path(&digest);
    let upstream = FakeUpstream::start(vec![(path, blob.clone(), peerpull_oci::media::OCI_LAYER_GZIP)], how).await;
    (upstream, blob, digest)
}
