//! Shared helpers of the mirror's black-box tests: mirrors over in-memory
//! stores on 127.0.0.1:0, fake peers speaking raw HTTP, a fake upstream
//! registry, and a client.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use peerpull_mirror::{Config, Metrics, Mirror, Peers, Server};
use peerpull_routing::{PeerId, Provider};
use peerpull_store::Memory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
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
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(&mut registry);
        let mirror = Mirror::new(config, Arc::new(store.clone()), Arc::new(peers), metrics).unwrap();
        let sweeper = mirror.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let handler = move |request| {
            let mirror = mirror.clone();
            async move { mirror.handle(request).await }
        };
        tokio::spawn(Server::default().serve(listener, handler, stop.clone()));
        let token = stop.clone();
        tokio::spawn(async move { sweeper.maintain(token).await });
        Self { addr, store, registry, peer: PeerId::random(), stop }
    }

    pub fn provider(&self) -> Provider {
        Provider { peer: self.peer, mirror: self.addr }
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
        lookup_timeout: Duration::from_millis(300),
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
    /// Announces the full length, sends `n` bytes of the right content, then closes.
    Truncate(usize),
    /// Sends the full length of wrong bytes.
    Corrupt,
    /// Accepts and never answers.
    Silent,
    /// Announces the full length, sends `n` bytes, then stalls forever.
    Stall(usize),
    /// Names the right digest in `Docker-Content-Digest` but sends wrong bytes.
    WrongDigest,
}

/// A fake peer answering every request with `content` misbehaving as told.
pub async fn fake_peer(content: Vec<u8>, how: Misbehaviour) -> Provider {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let content = content.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                    content.len()
                );
                match how {
                    Misbehaviour::Silent => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Misbehaviour::Truncate(n) => {
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(&content[..n]).await;
                    }
                    Misbehaviour::Stall(n) => {
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(&content[..n]).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Misbehaviour::Corrupt => {
                        let wrong: Vec<u8> = content.iter().map(|b| b ^ 0xff).collect();
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(&wrong).await;
                    }
                    Misbehaviour::WrongDigest => {
                        let named = peerpull_oci::Digest::sha256_of(&content);
                        let head = head.replace("\r\n\r\n", &format!("\r\nDocker-Content-Digest: {named}\r\n\r\n"));
                        let wrong: Vec<u8> = content.iter().map(|b| b ^ 0xff).collect();
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(&wrong).await;
                    }
                }
            });
        }
    });
    Provider { peer: PeerId::random(), mirror: addr }
}
