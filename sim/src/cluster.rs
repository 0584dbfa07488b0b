//! The simulated cluster: production routers on the simulated network
//! (`peerpull_routing::simulated`), each with its own data directory and
//! event loop task, all on the one thread of a paused-clock runtime.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _};
use futures::StreamExt as _;
use peerpull_oci::{Digest, Key};
use peerpull_routing::{simulated::Latency, Bootstrap, Config, Counters, Router, Transport};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Routers a new one may bootstrap through (several seeds behind a Service).
pub(crate) const SEEDS: usize = 3;
/// Routers started together; the next ones start `START_GAP` later (5 a
/// simulated second), as a DaemonSet's pods come up over minutes rather
/// than in one instant. Started faster, a thousand routers' first walks
/// would hold a connection between most pairs at once: about 60 KB each in
/// this process.
const START_BATCH: usize = 25;
const START_GAP: Duration = Duration::from_secs(5);
/// How long a router may take (simulated) to find a peer.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Router settings that differ from the production defaults, for experiments.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tuning {
    pub(crate) reprovide: Option<Duration>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) refresh: Option<Duration>,
    pub(crate) ping: Option<Duration>,
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show =
            |name: &str, d: Option<Duration>| d.map(|d| format!("{name} {}s, ", d.as_secs())).unwrap_or_default();
        write!(
            f,
            "{}{}{}{}{}",
            show("reprovide_interval", self.reprovide),
            show("provider_ttl", self.ttl),
            show("idle_timeout", self.idle),
            show("refresh_interval", self.refresh),
            show("ping_interval", self.ping)
        )
    }
}

/// A running router.
pub(crate) struct Node {
    pub(crate) router: Router,
    port: u16,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// The routers, by number; a stopped one leaves `None`.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Option<Node>>,
    latency: Latency,
    tuning: Tuning,
    next_port: u16,
    /// When the last router started.
    pub(crate) last_start: Instant,
}

impl Cluster {
    pub(crate) fn new(latency: Latency, tuning: Tuning) -> Self {
        // Memory-transport ports are process-wide; each size starts past the last.
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
        let next_port = NEXT.fetch_add(10_000, std::sync::atomic::Ordering::Relaxed);
        Self { nodes: Vec::new(), latency, tuning, next_port, last_start: Instant::now() }
    }

    /// Starts `n` more routers (the first `SEEDS` ever started are the
    /// seeds), in batches, and waits until each is ready.
    pub(crate) async fn grow(&mut self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            if i > 0 && i % START_BATCH == 0 {
                tokio::time::sleep(START_GAP).await;
            }
            let node = self.start_one()?;
            self.last_start = Instant::now();
            self.nodes.push(Some(node));
        }
        let total = self.nodes.len();
        for (i, node) in self.nodes.iter().flatten().enumerate() {
            node.wait_ready().await.with_context(|| format!("router {i} of {total}"))?;
        }
        Ok(())
    }

    fn start_one(&mut self) -> anyhow::Result<Node> {
        let port = self.next_port;
        self.next_port = self.next_port.checked_add(1).ok_or_else(|| anyhow!("out of memory-transport ports"))?;
        let dir = tempfile::Builder::new().prefix("pp-sim-router-").tempdir().context("creating a temp dir")?;
        let [hi, lo] = port.to_be_bytes();
        let mut config = Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            mirror_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, hi, lo, 1)), 5000),
            data_dir: dir.path().to_owned(),
            transport: Transport::Simulated(self.latency),
            // Kademlia times its walks on the wall clock, which here runs
            // apart from simulated time; our own bounds (lookups, dials,
            // announcements) run on simulated time and still hold.
            walk_timeout: Duration::from_secs(3600),
            advertise_timeout: Duration::from_secs(3600),
            command_timeout: Duration::from_secs(600),
            ..Config::default()
        };
        config.reprovide_interval = self.tuning.reprovide.unwrap_or(config.reprovide_interval);
        config.provider_ttl = self.tuning.ttl.unwrap_or(config.provider_ttl);
        config.idle_timeout = self.tuning.idle.unwrap_or(config.idle_timeout);
        config.refresh_interval = self.tuning.refresh.unwrap_or(config.refresh_interval);
        config.ping_interval = self.tuning.ping.unwrap_or(config.ping_interval);
        let seeds: Vec<&Node> = self.nodes.iter().flatten().take(SEEDS).collect();
        if let Some(seed) = seeds.get(port as usize % seeds.len().max(1)) {
            let addr = format!("/memory/{}/p2p/{}", seed.port, seed.router.local_peer_id());
            config.bootstrap.push(Bootstrap::parse(&addr).map_err(|e| anyhow!("{e}"))?);
        }
        let (router, event_loop) = Router::start(config).context("starting a router")?;
        let shutdown = CancellationToken::new();
        tokio::spawn(event_loop.run(shutdown.clone()));
        Ok(Node { router, port, shutdown, _dir: dir })
    }

    /// The re-announcement interval the routers run with.
    pub(crate) fn reprovide_interval(&self) -> Duration {
        self.tuning.reprovide.unwrap_or(Config::default().reprovide_interval)
    }

    /// Stops router `i`.
    pub(crate) fn stop(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// How many routers run.
    pub(crate) fn running(&self) -> usize {
        self.nodes.iter().flatten().count()
    }

    /// The sum of every running router's counters.
    pub(crate) fn counters(&self) -> Counters {
        self.nodes.iter().flatten().map(|n| n.router.counters()).fold(Counters::default(), |a, c| Counters {
            messages: a.messages + c.messages,
            pings: a.pings + c.pings,
            connections: a.connections + c.connections,
            connected: a.connected + c.connected,
            from_record: a.from_record + c.from_record,
            dialed: a.dialed + c.dialed,
            announcements: a.announcements + c.announcements,
            announcements_failed: a.announcements_failed + c.announcements_failed,
            bootstraps: a.bootstraps + c.bootstraps,
        })
    }

    /// Waits until every router finished its first routing-table walk and
    /// the cluster's routing messages (probes aside) fell below `per_router`
    /// a simulated second; how long that took (simulated).
    pub(crate) async fn at_rest(&self, per_router: u64, deadline: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let running = self.running() as u64;
        let traffic = |c: Counters| c.messages - c.pings;
        let mut last = traffic(self.counters());
        while start.elapsed() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = traffic(self.counters());
            let walked = self.nodes.iter().flatten().filter(|n| n.router.counters().bootstraps > 0).count() as u64;
            if now - last < per_router * running && walked == running {
                return Ok(start.elapsed());
            }
            last = now;
        }
        bail!("the cluster did not come to rest within {deadline:?} (simulated)")
    }
}

/// The `i`th key of router `owner`.
pub(crate) fn key(owner: usize, i: usize) -> Key {
    Key::Digest(Digest::sha256_of(format!("sim/{owner:05}/{i:05}").as_bytes()))
}

impl Node {
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let mut ready = self.router.ready();
        tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|r| *r))
            .await
            .map_err(|_| anyhow!("not ready within {READY_TIMEOUT:?} (simulated)"))?
            .context("router stopped")?;
        Ok(())
    }

    /// Looks `key` up: whether a provider came back, and when the first did (simulated).
    pub(crate) async fn lookup(&self, key: &Key) -> anyhow::Result<(bool, Duration)> {
        let start = Instant::now();
        let mut providers = self.router.lookup(key, 1).await?;
        let found = providers.next().await.is_some();
        Ok((found, start.elapsed()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
