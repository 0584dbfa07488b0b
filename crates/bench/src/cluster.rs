//! Nodes for the scenarios: plain containerd nodes pointed at a registry
//! (optionally through a pull-through cache), and clusters of containerd +
//! `peerpull run` nodes, the same as the end-to-end tests start
//! (`peerpull_e2e::start_nodes`), mirroring any upstream URL so the upstream
//! can sit behind a shaped link.

use anyhow::Context as _;
use peerpull_testbed::Containerd;

pub(crate) use peerpull_e2e::Node;

/// Starts `size` peerpull nodes mirroring `upstream` (a base URL) and waits until all are ready.
pub(crate) async fn peer_cluster(size: usize, upstream: &str) -> anyhow::Result<Vec<Node>> {
    peerpull_e2e::start_nodes(size, upstream, peerpull_e2e::Setup::default()).await.context("starting peerpull nodes")
}

/// The pid of a node's `peerpull run`.
pub(crate) fn pid(node: &Node) -> anyhow::Result<u32> {
    node.peerpull.pid().context("peerpull is not running")
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
