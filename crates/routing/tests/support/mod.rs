//! Test support: start routers on loopback with short timings, wait for conditions.
//!
//! Waits are derived from the timings a node is configured with (`Node::config`),
//! never guessed: `eventually` for what must come true by a bound, `always` for
//! what must hold for a whole window. Both bound every single check as well, so a
//! check that hangs fails the test instead of stretching the bound.
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
use peerpull_routing::{Bootstrap, Config, Key, Provider, Router, Transport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

static NEXT_MIRROR_PORT: AtomicU16 = AtomicU16::new(20_000);
static NEXT_MEMORY_PORT: AtomicU16 = AtomicU16::new(1);

/// A running router with its own data dir.
pub struct Node {
    pub router: Router,
    /// The configuration it runs with, to derive the bounds a test waits for.
    pub config: Config,
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

    /// A router on the in-process memory transport (no sockets), on a port of its own.
    pub fn in_memory() -> Self {
        let port = NEXT_MEMORY_PORT.fetch_add(1, Ordering::Relaxed);
        let mut builder = Self::new(&format!("127.0.0.1:{port}"));
        builder.config.transport = Transport::Memory;
        builder
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
        let id = seed.router.local_peer_id();
        let addr = match seed.config.transport {
            Transport::Tcp => format!("/ip4/{}/tcp/{}/p2p/{id}", seed.listen.ip(), seed.listen.port()),
            Transport::Memory | Transport::Simulated(_) => format!("/memory/{}/p2p/{id}", seed.listen.port()),
        };
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
        let config = self.config.clone();
        let (router, event_loop) = Router::start(self.config).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(event_loop.run(shutdown.clone()));
        let listen = router.listen_addrs().await.unwrap()[0];
        Node { router, config, mirror, listen, data_dir, shutdown, task, _dir: self.dir }
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

    /// Waits until the node is ready; set-up, so the bound is generous.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(Duration::from_secs(20), "node ready").await;
    }

    /// Waits until the node is ready, failing with `what` after `bound`.
    pub async fn wait_ready_within(&self, bound: Duration, what: &str) {
        let mut ready = self.router.ready();
        let waited = tokio::time::timeout(bound, ready.wait_for(|r| *r)).await;
        assert!(matches!(waited, Ok(Ok(_))), "not within {bound:?}: {what} ({})", self.router.local_peer_id());
    }

    /// How long a node with no peer takes to have made one more bootstrap round
    /// and seen it fail: the longest wait between rounds, plus a dial.
    pub fn bootstrap_retry(&self) -> Duration {
        self.config.bootstrap_backoff_max + self.config.dial_timeout
    }

    /// The longest one lookup may take: it ends by `lookup_timeout`.
    pub fn lookup_bound(&self) -> Duration {
        self.config.lookup_timeout + SLACK
    }

    /// The longest any other router call may take: it fails by `command_timeout`.
    pub fn command_bound(&self) -> Duration {
        self.config.command_timeout + SLACK
    }

    /// How long a node takes to learn of one that joined after it: its next
    /// bootstrap round walks the table, with a dial to each new peer.
    pub fn discovery_bound(&self) -> Duration {
        self.config.bootstrap_interval + self.config.dial_timeout + SLACK
    }

    /// Fails if the node becomes ready, even for a moment, within `window`.
    pub async fn stays_unready(&self, window: Duration, what: &str) {
        let mut ready = self.router.ready();
        let became = tokio::time::timeout(window, ready.wait_for(|r| *r)).await;
        assert!(became.is_err(), "{what}: ready within {window:?}");
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

/// Allowance added to bounds derived from the configuration: the event loop
/// checks its deadlines on a 100 ms tick, and a debug build on a loaded 2-core
/// runner schedules late.
pub const SLACK: Duration = Duration::from_secs(1);

/// The pause between two checks.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Some`.
///
/// `by` is when the behaviour promises the condition, counted from the call: a
/// check that *starts* after `by` and still fails fails the test. A check may
/// itself take up to `check_bound` (a lookup runs until `lookup_timeout`); one
/// that takes longer fails the test too. So a passing test waits only as long
/// as the condition takes, and a failing one at most `by + check_bound`.
pub async fn eventually<T, F, Fut>(what: &str, by: Duration, check_bound: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    let mut checks = 0;
    loop {
        checks += 1;
        let began = start.elapsed();
        let Ok(outcome) = tokio::time::timeout(check_bound, check()).await else {
            panic!("{what}: a check started {began:?} in took longer than {check_bound:?}");
        };
        if let Some(v) = outcome {
            return v;
        }
        assert!(began < by, "{what}: not by {by:?} (a check started {began:?} in still failed; {checks} checks)");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `check` for `window` and fails at the first check that returns false;
/// the last check starts after `window`. Each check may take up to `check_bound`.
pub async fn always<F, Fut>(what: &str, window: Duration, check_bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        let began = start.elapsed();
        let Ok(holds) = tokio::time::timeout(check_bound, check()).await else {
            panic!("{what}: a check started {began:?} in took longer than {check_bound:?}");
        };
        assert!(holds, "{what}: broke in a check started {began:?} in, within the {window:?} it must hold");
        if began >= window {
            return;
        }
        tokio::time::sleep(POLL_EVERY).await;
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
