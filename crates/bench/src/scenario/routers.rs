//! In-process routers for the DHT, memory and scale scenarios: each a real
//! `peerpull-routing` router with its own data directory and event loop
//! task, stopped when dropped; on `127.0.0.1:0` over TCP, or on libp2p's
//! in-process memory transport (scale: no file descriptors per connection).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use futures::StreamExt as _;
use peerpull_routing::{Bootstrap, Config, Key, Router, Transport};
use tokio_util::sync::CancellationToken;

/// How long a router may take to find a peer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running router.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) router: Router,
    listen: SocketAddr,
    transport: Transport,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts a router over TCP whose mirror address is port `mirror_port`, bootstrapping from `seed`.
    pub(crate) async fn start(mirror_port: u16, seed: Option<&Node>) -> anyhow::Result<Self> {
        Self::start_with(mirror_port, seed, |_| {}).await
    }

    /// Starts a router on the memory transport at `/memory/<number>`, with
    /// mirror address `10.x.y.z:5000` from `number`, bootstrapping from `seed`.
    pub(crate) async fn in_memory(
        number: u16,
        seed: Option<&Node>,
        tune: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        Self::start_with(0, seed, |c| {
            c.transport = Transport::Memory;
            c.listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), number);
            let [hi, lo] = number.to_be_bytes();
            c.mirror_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, hi, lo, 1)), 5000);
            tune(c);
        })
        .await
    }

    async fn start_with(mirror_port: u16, seed: Option<&Node>, tune: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("pp-bench-router-").tempdir().context("creating a temp dir")?;
        let mut config = Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            mirror_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), mirror_port),
            data_dir: dir.path().to_owned(),
            lookup_timeout: Duration::from_secs(10),
            advertise_timeout: Duration::from_secs(300),
            ..Config::default()
        };
        tune(&mut config);
        if let Some(seed) = seed {
            let (listen, id) = (seed.listen, seed.router.local_peer_id());
            let addr = match seed.transport {
                Transport::Tcp => format!("/ip4/{}/tcp/{}/p2p/{id}", listen.ip(), listen.port()),
                Transport::Memory | Transport::Simulated(_) => format!("/memory/{}/p2p/{id}", listen.port()),
            };
            config.bootstrap.push(Bootstrap::parse(&addr).map_err(|e| anyhow!("{e:?}"))?);
        }
        let transport = config.transport;
        let (router, event_loop) = Router::start(config).context("starting a router")?;
        let shutdown = CancellationToken::new();
        tokio::spawn(event_loop.run(shutdown.clone()));
        let listen = *router.listen_addrs().await?.first().ok_or_else(|| anyhow!("router listens nowhere"))?;
        Ok(Self { router, listen, transport, shutdown, _dir: dir })
    }

    /// Waits until the router has a peer.
    pub(crate) async fn wait_ready(&self) -> anyhow::Result<()> {
        let mut ready = self.router.ready();
        tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|r| *r))
            .await
            .map_err(|_| anyhow!("router not ready within {READY_TIMEOUT:?}"))?
            .context("router stopped")?;
        Ok(())
    }

    /// Looks `key` up; returns whether a provider came back, and how long the first one took.
    pub(crate) async fn lookup(&self, key: &Key) -> anyhow::Result<(bool, Duration)> {
        let start = tokio::time::Instant::now();
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

/// Starts `n` routers: the first a seed, the others bootstrapping from it; waits until all are ready.
pub(crate) async fn network(n: usize) -> anyhow::Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n.max(2) {
        let node = Node::start(20_000 + i as u16, nodes.first()).await?;
        nodes.push(node);
    }
    for node in &nodes {
        node.wait_ready().await?;
    }
    Ok(nodes)
}
