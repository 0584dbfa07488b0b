//! Nodes for the scenarios: plain containerd nodes pointed at a registry
//! (optionally through a pull-through cache), and clusters of containerd +
//! `peerpull run` nodes, the same as the end-to-end tests start
//! (`peerpull_e2e::start_nodes`), mirroring any upstream URL so the upstream
//! can sit behind a shaped link; or, for a scenario that fills each
//! containerd first, `peerpull run` started beside containerds it is given,
//! set up the same way.

use anyhow::Context as _;
use peerpull_testbed::peerpull::configure;
use peerpull_testbed::{loopback_subnet, Containerd, Peerpull, PeerpullOptions};

pub(crate) use peerpull_e2e::Node;

/// Starts `size` peerpull nodes mirroring `upstream` (a base URL) and waits until all are ready.
pub(crate) async fn peer_cluster(size: usize, upstream: &str) -> anyhow::Result<Vec<Node>> {
    peerpull_e2e::start_nodes(size, upstream, peerpull_e2e::Setup::default()).await.context("starting peerpull nodes")
}

/// Starts a `peerpull run` beside each of `containerds` (already started
/// and filled), set up as [`peer_cluster`]'s nodes are, the chart's way: on
/// loopback addresses of a fresh subnet with the usual ports, bootstrapping
/// from every other node, one fresh pre-shared key, mirroring `upstream`,
/// pull-through, direct content reads, and each containerd configured by
/// `peerpull configure` first. Returns once every daemon answers `/livez`,
/// not when ready.
pub(crate) async fn peerpull_beside(containerds: Vec<Containerd>, upstream: &str) -> anyhow::Result<Vec<Node>> {
    let setup = peerpull_e2e::Setup::default();
    let subnet = loopback_subnet();
    let size = u8::try_from(containerds.len()).context("at most 255 nodes")?;
    let options: Vec<PeerpullOptions> = (0..size).map(|i| PeerpullOptions::on(subnet.node(i))).collect();
    let routers: Vec<String> = options.iter().map(|o| o.router_addr().to_string()).collect();
    for (containerd, o) in containerds.iter().zip(&options) {
        configure(containerd, &o.mirror_url(), &[upstream.to_owned()]).await.context("peerpull configure")?;
    }
    let mut nodes = Vec::with_capacity(containerds.len());
    for (containerd, mut o) in containerds.into_iter().zip(options) {
        let own = o.router_addr().to_string();
        o.bootstrap = routers.iter().filter(|r| **r != own).cloned().collect();
        o.psk.clone_from(&setup.psk);
        o.mirrored = vec![upstream.to_owned()];
        o.direct_read = setup.direct_read;
        let peerpull = Peerpull::start(&containerd, o).await.context("starting peerpull")?;
        nodes.push(Node { containerd, peerpull });
    }
    Ok(nodes)
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
