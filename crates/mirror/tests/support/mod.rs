//! Shared helpers of the mirror's black-box tests: mirrors over in-memory
//! stores on 127.0.0.1:0, fake peers speaking raw HTTP, a fake upstream
//! registry, and a client.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use peerpull_mirror::{Config, Identity, Membership, Metrics, Mirror, Peers, Server};
use peerpull_routing::{PeerId, Provider, Zone};
use peerpull_store::Memory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub mod upstream;

/// A running mirror over an in-memory store.
pub struct Node {
    pub addr: SocketAddr,
    pub store: Memory,
    registry: prometheus_client::registry::Registry,
    pub peer: PeerId,
    stop: CancellationToken,
}

impl Node {
    pub async fn start(store: Memory, peers: impl Peers, config: Config) -> Self {
        Self::start_as(store, peers, config, None).await
    }

    /// A mirror proving `membership` on its requests to peers, and asking it of theirs.
    pub async fn start_as(store: Memory, peers: impl Peers, config: Config, membership: Option<Membership>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = PeerId::random();
        let identity = Identity { node: Some(Provider { peer, mirror: addr, zone: Zone::NONE }), membership };
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(&mut registry);
        let mirror = Mirror::new(config, identity, Arc::new(store.clone()), Arc::new(peers), metrics).unwrap();
        let sweeper = mirror.clone();
        let stop = CancellationToken::new();
        let handler = move |request| {
            let mirror = mirror.clone();
            async move { mirror.handle(request).await }
        };
        tokio::spawn(Server::default().serve(listener, handler, stop.clone()));
        let token = stop.clone();
        tokio::spawn(async move { sweeper.maintain(token).await });
        Self { addr, store, registry, peer, stop }
    }

    pub fn provider(&self) -> Provider {
        Provider { peer: self.peer, mirror: self.addr, zone: Zone::NONE }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The metrics as `/metrics` would show them.
    pub async fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Test timings: short hedges and stalls so failures show quickly.
pub fn config() -> Config {
    Config {
        // These mirrors have no upstream: tags come from their store and peers.
        tag_resolution: peerpull_mirror::TagResolution::PeersFirst,
        hedge_delay: Duration::from_millis(100),
        stall_timeout: Duration::from_millis(500),
        provider_wait: Duration::from_millis(300),
        ..Config::default()
    }
}

/// GET (or HEAD) `url` with `headers`; the body is collected, and an aborted
/// body is an error.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<(Response<()>, Bytes), String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client.request(builder.body(Empty::new()).unwrap()).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("body aborted: {e}"))?.to_bytes();
    Ok((Response::from_parts(parts, ()), body))
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Result<(Response<()>, Bytes), String> {
    request("GET", url, headers).await
}

pub fn header<'a>(response: &'a Response<()>, name: &str) -> &'a str {
    response.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// Deterministic bytes of `len`.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// What a fake peer does with a request.
#[derive(Clone, Copy)]
pub enum Misbehaviour {
    /// Nothing: answers as a holder should, the whole content or the one
    /// range asked for (`206` with `Content-Range`).
    Honest,
    /// Announces the full length, sends `n` bytes of the right content, then closes.
    Truncate(usize),
    /// Sends wrong bytes: the full length, or the one range asked for (`206`).
    Corrupt,
    /// Sends wrong bytes chunked, with no `Content-Length`.
    CorruptChunked,
    /// Sends wrong bytes with no `Content-Length`, ending them by closing the connection.
    CorruptUntilClose,
    /// Accepts and never answers.
    Silent,
    /// Announces the full length (or the range asked), sends `n` bytes, then stalls forever.
    Stall(usize),
    /// Sends the right bytes (or the range asked), 64 KiB every 100 ms: slow, never stalled.
    Slow,
    /// Names the right digest in `Docker-Content-Digest` but sends wrong bytes.
    WrongDigest,
}

/// A request a fake peer received.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The request line, e.g. `GET /v2/… HTTP/1.1`.
    pub line: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Asked {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A fake peer speaking raw HTTP, answering every request with its content
/// misbehaving as told, and remembering the requests it received.
pub struct FakePeer {
    pub provider: Provider,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl FakePeer {
    pub async fn start(content: Vec<u8>, how: Misbehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (content, log) = (content.clone(), log.clone());
                tokio::spawn(async move {
                    let Some(request) = read_head(&mut stream).await else { return };
                    let range = request.header("range").and_then(|v| parse_range(v, content.len()));
                    log.lock().unwrap().push(request);
                    answer(&mut stream, &content, how, range).await;
                });
            }
        });
        Self { provider: Provider { peer: PeerId::random(), mirror: addr, zone: Zone::NONE }, asked }
    }

    /// The requests received so far, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

/// A fake peer answering every request with `content` misbehaving as told.
pub async fn fake_peer(content: Vec<u8>, how: Misbehaviour) -> Provider {
    FakePeer::start(content, how).await.provider
}

/// Reads a request head (a fake peer's requests have no body).
async fn read_head(stream: &mut TcpStream) -> Option<Asked> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let line = lines.next()?.to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Asked { line, headers })
}

/// `bytes=a-b` or `bytes=a-` of `len` bytes, as inclusive bounds.
fn parse_range(value: &str, len: usize) -> Option<(usize, usize)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end = if end.is_empty() { len.checked_sub(1)? } else { end.parse::<usize>().ok()?.min(len.checked_sub(1)?) };
    (start <= end).then_some((start, end))
}

/// Answers one request with `content` (`range` of it, for those that honour ranges).
async fn answer(stream: &mut TcpStream, content: &[u8], how: Misbehaviour, range: Option<(usize, usize)>) {
    let wrong = |bytes: &[u8]| bytes.iter().map(|b| b ^ 0xff).collect::<Vec<u8>>();
    let honours =
        matches!(how, Misbehaviour::Honest | Misbehaviour::Corrupt | Misbehaviour::Stall(_) | Misbehaviour::Slow);
    let range = range.filter(|_| honours);
    let mut head = match range {
        Some((start, end)) => {
            format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{}\r\n", content.len())
        }
        None => "HTTP/1.1 200 OK\r\n".to_owned(),
    };
    head.push_str("Content-Type: application/octet-stream\r\nConnection: close\r\n");
    let body = range.map_or(content, |(start, end)| &content[start..=end]);
    let sized = format!("{head}Content-Length: {}\r\n\r\n", body.len());
    let sent = match how {
        Misbehaviour::Silent => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        Misbehaviour::Honest => [sized.into_bytes(), body.to_vec()].concat(),
        Misbehaviour::Slow => {
            let _ = stream.write_all(sized.as_bytes()).await;
            for piece in body.chunks(64 << 10) {
                if stream.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Vec::new()
        }
        Misbehaviour::Corrupt => [sized.into_bytes(), wrong(body)].concat(),
        Misbehaviour::Truncate(n) | Misbehaviour::Stall(n) => [sized.into_bytes(), body[..n].to_vec()].concat(),
        Misbehaviour::WrongDigest => {
            let named = peerpull_oci::Digest::sha256_of(content);
            let head = format!("{head}Content-Length: {}\r\nDocker-Content-Digest: {named}\r\n\r\n", body.len());
            [head.into_bytes(), wrong(body)].concat()
        }
        Misbehaviour::CorruptChunked => {
            let head = format!("{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n", body.len());
            [head.into_bytes(), wrong(body), b"\r\n0\r\n\r\n".to_vec()].concat()
        }
        Misbehaviour::CorruptUntilClose => [format!("{head}\r\n").into_bytes(), wrong(body)].concat(),
    };
    let _ = stream.write_all(&sent).await;
    if let Misbehaviour::Stall(_) = how {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let _ = stream.shutdown().await;
}
