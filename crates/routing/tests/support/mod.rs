//! Test support: start routers on loopback with short timings, wait for conditions.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::{
    future::Future,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::atomic::{AtomicU16, Ordering},
    time::Duration,
};

use futures::StreamExt as _;
use peerpull_oci::Digest;
use peerpull_routing::{Bootstrap, Config, Key, Provider, Router};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

static NEXT_MIRROR_PORT: AtomicU16 = AtomicU16::new(20_000);

/// A running router with its own data dir.
pub struct Node {
    pub router: Router,
    pub mirror: SocketAddr,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

/// Builds a node: `NodeBuilder::new("127.0.0.1:0").bootstrap(…).start().await`.
pub struct NodeBuilder {
    config: Config,
    dir: Option<tempfile::TempDir>,
}

impl NodeBuilder {
    pub fn new(listen: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = listen.parse().unwrap();
        let config = Config {
            listen,
            // Distinct per node, so a test can tell whose address came back.
            mirror_addr: SocketAddr::new(listen.ip(), NEXT_MIRROR_PORT.fetch_add(1, Ordering::Relaxed)),
            data_dir: dir.path().to_owned(),
            lookup_timeout: Duration::from_secs(5),
            dial_timeout: Duration::from_secs(2),
            bootstrap_interval: Duration::from_secs(2),
            bootstrap_backoff_max: Duration::from_secs(2),
            unreachable_backoff: Duration::from_secs(2),
            cache_ttl: Duration::from_millis(500),
            negative_cache_ttl: Duration::from_millis(200),
            ..Config::default()
        };
        Self { config, dir: Some(dir) }
    }

    pub fn mirror(mut self, mirror: &str) -> Self {
        self.config.mirror_addr = mirror.parse().unwrap();
        self
    }

    pub fn bootstrap(mut self, b: &str) -> Self {
        self.config.bootstrap.push(Bootstrap::parse(b).unwrap());
        self
    }

    pub fn bootstrap_to(self, seed: &Node) -> Self {
        let addr = format!("/ip4/{}/tcp/{}/p2p/{}", seed.listen.ip(), seed.listen.port(), seed.router.local_peer_id());
        self.bootstrap(&addr)
    }

    pub fn data_dir(mut self, dir: PathBuf) -> Self {
        self.config.data_dir = dir;
        self.dir = None;
        self
    }

    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    pub async fn start(self) -> Node {
        init_tracing();
        let mirror = self.config.mirror_addr;
        let data_dir = self.config.data_dir.clone();
        let (router, event_loop) = Router::start(self.config).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(event_loop.run(shutdown.clone()));
        let listen = router.listen_addrs().await.unwrap()[0];
        Node { router, mirror, listen, data_dir, shutdown, task, _dir: self.dir }
    }
}

impl Node {
    /// Stops the event loop and waits for it: the swarm and its connections are dropped.
    pub async fn kill(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }

    pub async fn lookup(&self, name: &str, limit: usize) -> Vec<Provider> {
        self.router.lookup(&key(name), limit).await.unwrap().collect().await
    }

    pub async fn wait_ready(&self) {
        let mut ready = self.router.ready();
        tokio::time::timeout(Duration::from_secs(20), ready.wait_for(|r| *r)).await.unwrap().unwrap();
    }
}

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=peerpull_routing=debug`).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port free on every one of `ips` right now.
pub fn free_port_on(ips: &[&str]) -> u16 {
    for _ in 0..50 {
        let probe = TcpListener::bind(format!("{}:0", ips[0])).unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        if ips.iter().all(|ip| TcpListener::bind(format!("{ip}:{port}")).is_ok()) {
            return port;
        }
    }
    panic!("no common free port on {ips:?}");
}

/// Starts a seed on `127.0.0.1:0` and `n` nodes bootstrapping to it; waits until all are ready.
pub async fn cluster(n: usize) -> Vec<Node> {
    let seed = NodeBuilder::new("127.0.0.1:0").start().await;
    let mut nodes = vec![];
    for _ in 0..n {
        nodes.push(NodeBuilder::new("127.0.0.1:0").bootstrap_to(&seed).start().await);
    }
    for node in &nodes {
        node.wait_ready().await;
    }
    nodes.insert(0, seed);
    nodes
}

/// A test key: `sha256:<word>` is the digest of the word, anything else a tag.
pub fn key(name: &str) -> Key {
    match name.strip_prefix("sha256:") {
        Some(word) => Key::Digest(Digest::sha256_of(word.as_bytes())),
        None => Key::Tag(name.to_owned()),
    }
}
