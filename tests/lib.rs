//! End-to-end scenarios for peerpull.
//!
//! Several nodes, each its own containerd and `peerpull run` process, a real
//! upstream registry, and faults injected between them. The scenarios live in
//! this package's `tests/` folder; this library holds what they share: a
//! [`Cluster`] of nodes on distinct loopback addresses with the same ports,
//! each set up by `peerpull configure` as a cluster's init container does.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use peerpull_testbed::admin::{Blob, LocateResponse};
use peerpull_testbed::peerpull::configure;
use peerpull_testbed::{free_port, http, loopback_subnet, Containerd, Error, Peerpull, PeerpullOptions, Upstream};

/// How long nodes may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One node: a containerd and the peerpull beside it.
#[derive(Debug)]
pub struct Node {
    /// The node's containerd.
    pub containerd: Containerd,
    /// The node's peerpull.
    pub peerpull: Peerpull,
}

/// The sum over `nodes` of the metric `name` (as [`Peerpull::metric`] reads one).
pub async fn metric_sum(nodes: &[Node], name: &str) -> Result<f64, Error> {
    let mut total = 0.0;
    for node in nodes {
        total += node.peerpull.metric(name).await?;
    }
    Ok(total)
}

/// Nodes that know each other, and the upstream registry they mirror.
#[derive(Debug)]
pub struct Cluster {
    /// The upstream registry.
    pub upstream: Upstream,
    /// The nodes, in order.
    pub nodes: Vec<Node>,
}

/// How the nodes of a cluster run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The upstream's part, as deployed (the default): a miss is fetched
    /// from the upstream once for the cluster, and tags are resolved there
    /// first. Off (`--upstream-fallback false --tag-resolution peers-first`)
    /// for scenarios about what peers alone serve: a miss is a 404 so
    /// containerd goes upstream itself, and tags come from peers first.
    pub upstream_fallback: bool,
    /// A k3s `registries.yaml` to run with instead of `--mirrored-registry`
    /// (it names the upstream and may hold its credentials).
    pub registries_yaml: Option<PathBuf>,
    /// The cluster's pre-shared key (as the Helm chart deploys: a fresh one
    /// by default); `None` runs an open cluster.
    pub psk: Option<String>,
    /// More `peerpull run` flags for every node.
    pub extra: Vec<String>,
    /// Read blobs straight from containerd's content directory, as the Helm
    /// chart deploys (the default); off serves through containerd's gRPC API.
    pub direct_read: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            upstream_fallback: true,
            registries_yaml: None,
            psk: Some(peerpull_testbed::new_psk()),
            extra: Vec::new(),
            direct_read: true,
        }
    }
}

/// Starts `size` nodes mirroring the registry at `upstream` (a base URL such
/// as `http://127.0.0.1:5000`, wherever it runs: `--mirrored-registry`, so
/// they can pull through from it), each configured to try its own mirror
/// first and bootstrapping from the others, and waits until every node is ready.
pub async fn start_nodes(size: usize, upstream: &str, setup: Setup) -> Result<Vec<Node>, Error> {
    let subnet = loopback_subnet();
    let options: Vec<PeerpullOptions> = (0..size).map(|i| PeerpullOptions::on(subnet.node(i as u8))).collect();
    start_nodes_as(options, upstream, setup).await
}

/// The same on IPv6 loopback: every node on `[::1]`, each with ports of its own.
pub async fn start_ipv6_nodes(size: usize, upstream: &str, setup: Setup) -> Result<Vec<Node>, Error> {
    let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let mut options = Vec::new();
    for _ in 0..size {
        options.push(PeerpullOptions {
            registry_port: free_port(ip)?,
            router_port: free_port(ip)?,
            metrics_port: free_port(ip)?,
            ..PeerpullOptions::on(ip)
        });
    }
    start_nodes_as(options, upstream, setup).await
}

/// Starts a node for each of `options`, set up as [`start_nodes`] says.
pub async fn start_nodes_as(options: Vec<PeerpullOptions>, upstream: &str, setup: Setup) -> Result<Vec<Node>, Error> {
    let routers: Vec<String> = options.iter().map(|o| o.router_addr().to_string()).collect();
    let mut nodes = Vec::new();
    for mut node_options in options {
        let own = node_options.router_addr().to_string();
        node_options.bootstrap = routers.iter().filter(|r| **r != own).cloned().collect();
        node_options.psk = setup.psk.clone();
        match &setup.registries_yaml {
            Some(path) => node_options.extra.extend(["--registries-yaml".to_owned(), path.display().to_string()]),
            None => node_options.mirrored = vec![upstream.to_owned()],
        }
        node_options.extra.extend(setup.extra.iter().cloned());
        node_options.direct_read = setup.direct_read;
        if !setup.upstream_fallback {
            let flags = ["--upstream-fallback", "false", "--tag-resolution", "peers-first"];
            node_options.extra.extend(flags.map(str::to_owned));
        }
        let containerd = Containerd::start().await?;
        configure(&containerd, &node_options.mirror_url(), &[upstream.to_owned()]).await?;
        let peerpull = Peerpull::start(&containerd, node_options).await?;
        nodes.push(Node { containerd, peerpull });
    }
    for node in &nodes {
        node.peerpull.wait_ready(READY_TIMEOUT).await?;
    }
    Ok(nodes)
}

impl Cluster {
    /// Starts an upstream and `size` nodes, each configured to try its own
    /// mirror first and bootstrapping from the others, and waits until every
    /// node is ready. The nodes pull through from the upstream.
    pub async fn start(size: usize) -> Result<Self, Error> {
        Self::start_with(size, Setup::default()).await
    }

    /// The same, with nodes that answer a miss with 404 (no pull-through):
    /// scenarios about what peers alone serve.
    pub async fn peers_only(size: usize) -> Result<Self, Error> {
        Self::start_with(size, Setup { upstream_fallback: false, ..Setup::default() }).await
    }

    /// An upstream and `size` nodes on IPv6 loopback (`[::1]`, ports of their own).
    pub async fn start_ipv6(size: usize, setup: Setup) -> Result<Self, Error> {
        let upstream = Upstream::start().await?;
        let nodes = start_ipv6_nodes(size, &upstream.url(), setup).await?;
        Ok(Self { upstream, nodes })
    }

    /// Starts an upstream and `size` nodes set up as `setup` says.
    pub async fn start_with(size: usize, setup: Setup) -> Result<Self, Error> {
        let upstream = Upstream::start().await?;
        let nodes = start_nodes(size, &upstream.url(), setup).await?;
        Ok(Self { upstream, nodes })
    }

    /// `/v2/<repo>/<kind>/<reference>?ns=<upstream>` on node `n`'s mirror.
    pub fn mirror_url(&self, n: usize, repo: &str, kind: &str, reference: &str) -> String {
        format!("{}/v2/{repo}/{kind}/{reference}?ns={}", self.nodes[n].peerpull.mirror_url(), self.upstream.host())
    }

    /// Waits until node `n`'s admin API (`Locate`) finds every blob of
    /// `reference` at each node of `holders`, and returns that answer.
    pub async fn wait_located(
        &self,
        n: usize,
        reference: &str,
        holders: &[usize],
        timeout: Duration,
    ) -> Result<LocateResponse, Error> {
        let mut peers = Vec::new();
        for &h in holders {
            peers.push(self.nodes[h].peerpull.status().await?.peer_id);
        }
        let asker = &self.nodes[n].peerpull;
        let what = format!("node {n} to locate every blob of {reference} at nodes {holders:?}");
        peerpull_testbed::eventually(&what, timeout, || async {
            let located = asker.locate(reference).await.ok()?;
            let everywhere = |blob: &Blob| peers.iter().all(|p| blob.providers.iter().any(|q| &q.peer_id == p));
            (!located.blobs.is_empty() && located.blobs.iter().all(everywhere)).then_some(located)
        })
        .await
    }

    /// Waits until node `n`'s mirror answers `HEAD` of `url` with `status`.
    pub async fn wait_status(&self, url: &str, status: u16, timeout: Duration) -> Result<(), Error> {
        peerpull_testbed::eventually(&format!("HEAD {url} to answer {status}"), timeout, || async {
            let reply = http::request("HEAD", url, &[]).await.ok()?;
            (reply.status == status).then_some(())
        })
        .await
    }
}
