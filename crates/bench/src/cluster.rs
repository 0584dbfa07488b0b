//! Nodes for the scenarios: plain containerd nodes pointed at a registry
//! (optionally through a pull-through cache), and clusters of containerd +
//! `peerpull run` nodes on distinct loopback addresses that bootstrap from
//! each other, set up by `peerpull configure` as an init container does.
//!
//! Unlike `peerpull-e2e`'s `Cluster` these take any upstream URL, so the
//! upstream can sit behind a shaped link.

use std::time::Duration;

use anyhow::Context as _;
use peerpull_testbed::peerpull::configure;
use peerpull_testbed::{loopback_subnet, Containerd, Peerpull, PeerpullOptions};

/// How long nodes may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A containerd with peerpull beside it.
#[derive(Debug)]
pub(crate) struct Node {
    /// The node's containerd.
    pub(crate) containerd: Containerd,
    /// The node's peerpull.
    pub(crate) peerpull: Peerpull,
}

impl Node {
    /// The pid of this node's `peerpull run`.
    pub(crate) fn pid(&self) -> anyhow::Result<u32> {
        let o = self.peerpull.options();
        crate::procfs::find_peerpull(&std::net::SocketAddr::new(o.ip, o.registry_port).to_string())
    }
}

/// Starts `size` peerpull nodes mirroring `upstream` (a base URL) and waits until all are ready.
pub(crate) async fn peer_cluster(size: usize, upstream: &str) -> anyhow::Result<Vec<Node>> {
    let subnet = loopback_subnet();
    let options: Vec<PeerpullOptions> = (0..size).map(|i| PeerpullOptions::on(subnet.node(i as u8))).collect();
    let routers: Vec<String> = options.iter().map(|o| o.router_addr().to_string()).collect();
    let mut nodes = Vec::new();
    for mut node_options in options {
        let own = node_options.router_addr().to_string();
        node_options.bootstrap = routers.iter().filter(|r| **r != own).cloned().collect();
        let containerd = Containerd::start().await.context("starting containerd")?;
        configure(&containerd, &node_options.mirror_url(), &[upstream.to_owned()]).await?;
        let peerpull = Peerpull::start(&containerd, node_options).await.context("starting peerpull")?;
        nodes.push(Node { containerd, peerpull });
    }
    for node in &nodes {
        node.peerpull.wait_ready(READY_TIMEOUT).await.context("waiting for peerpull to be ready")?;
    }
    Ok(nodes)
}

/// Starts a containerd that pulls `upstream`'s images (a base URL) over
/// plain HTTP, through `via` (a pull-through cache's base URL) when given.
pub(crate) async fn plain_node(upstream: &str, via: Option<&str>) -> anyhow::Result<Containerd> {
    let node = Containerd::start().await.context("starting containerd")?;
    let host = upstream.trim_start_matches("http://");
    let dir = node.config_path().join(host);
    std::fs::create_dir_all(&dir).context("creating a hosts.toml folder")?;
    let first = via.unwrap_or(upstream);
    let toml = format!("server = \"{upstream}\"\n\n[host.\"{first}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
    std::fs::write(dir.join("hosts.toml"), toml).context("writing hosts.toml")?;
    Ok(node)
}
