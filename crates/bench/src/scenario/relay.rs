//! Scenario 10, relay: a blob no node holds, wanted by every node at once,
//! each node behind an uplink of the same shaped rate (`--relay-rate-mbps`),
//! with the upstream registry behind one too.
//!
//! Every node's `peerpull run` is in a network namespace of its own on one
//! bridge ([`Lan`]), sending through a veth shaped with `tc tbf`. The
//! cluster is restarted before each measured run (emptying every spool),
//! with each `--relay-fanout` of `--relay-fanouts` in turn: 0 (the node the
//! cluster chose to fetch from the upstream streams the blob to every other
//! node: a star), the chart's default 2 (followers serve onward: a tree),
//! or others. Then every node fetches the
//! blob through its own mirror at once, from inside its namespace as its
//! containerd would (a GET, read to the end, digest checked), and the time
//! until the last has it is reported, with the most bytes any one node
//! uploaded, against one node fetching the blob straight from the upstream
//! behind the same rate (the time one copy takes to cross one link). The
//! mirrors run as the chart configures them (direct read, a key).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use peerpull_testbed::{new_psk, Containerd, ImageBuilder, Peerpull, PeerpullOptions, Upstream};

use crate::cli::Args;
use crate::http::Client;
use crate::registry::{Mode, Registry};
use crate::report::{Row, Section};
use crate::scenario::{check_blob, secs, MIB};
use crate::shaped::Lan;
use crate::Progress;

const DIRECT: &str = "one node, straight from the upstream";
/// Bytes a node's mirror sent to other nodes.
const UPLOADED: &str = "peerpull_peer_upload_bytes_total";

/// A node: its containerd and its peerpull, in namespace `ns`.
struct Node {
    _containerd: Containerd,
    peerpull: Peerpull,
    ns: String,
}

/// What one run measured: seconds until every node had the blob, the most
/// one node uploaded and the upstream's bytes, both in blobs.
struct Run {
    took: f64,
    busiest: f64,
    copies: f64,
}

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let count = args.relay_nodes.clamp(2, 100);
    let rate = args.relay_rate_mbps * 1_000_000;
    let mut seed = Upstream::start().await?;
    progress.say(format!("relay: building a {} MiB image", args.relay_blob_mib));
    let image = ImageBuilder::new("bench-relay").layers(&[args.relay_blob_mib << 20]).build()?;
    image.push(&seed, "bench/relay:v1").await?;
    let layer = image.platforms()[0].layers[0].clone();
    // Member 0 is the upstream; the nodes are the others.
    let lan = Lan::create(rate, count as u8 + 1).context("creating the shaped network (needs root, ip and tc)")?;
    let (upstream_ns, upstream_ip) = lan.members[0].clone();
    let upstream = Registry::start(Some(&upstream_ns), upstream_ip, 5000, Mode::Storage(&seed.storage())).await?;
    seed.stop();

    let psk = new_psk();
    let mut nodes: Vec<Node> = Vec::new();
    for (ns, ip) in &lan.members[1..] {
        let containerd = Containerd::start().await?;
        let options = PeerpullOptions {
            bootstrap: nodes.first().map(|n| n.peerpull.options().router_addr().to_string()).into_iter().collect(),
            mirrored: vec![upstream.url()],
            direct_read: true,
            psk: Some(psk.clone()),
            netns: Some(ns.clone()),
            ..PeerpullOptions::on(*ip)
        };
        let peerpull = Peerpull::start(&containerd, options).await?;
        nodes.push(Node { _containerd: containerd, peerpull, ns: ns.clone() });
    }
    progress.say(format!("relay: {count} nodes started"));

    let path = format!("/v2/bench/relay/blobs/{}?ns={}", layer.digest, upstream.host());
    let fanouts = &args.relay_fanouts;
    let mut direct = Vec::new();
    let mut runs: Vec<Vec<Run>> = fanouts.iter().map(|_| Vec::new()).collect();
    for rep in 0..args.repeats {
        let url = format!("{}/v2/bench/relay/blobs/{}", upstream.url(), layer.digest);
        let start = Instant::now();
        let (size, digest, _) = Client::digest_in(&nodes[0].ns, &url).await?;
        check_blob(size, &digest, &layer)?;
        direct.push(secs(start.elapsed()));
        // Take turns going first, so none gains from what another left in the page cache.
        for i in (0..fanouts.len()).map(|i| (i + rep) % fanouts.len()) {
            let fanout = fanouts[i];
            let run = all_at_once(&mut nodes, fanout, &path, &upstream, &layer).await?;
            progress.say(format!(
                "relay: repeat {}/{}, --relay-fanout {fanout}: {:.2}s, busiest node uploaded {:.2} blobs, upstream {:.2}",
                rep + 1,
                args.repeats,
                run.took,
                run.busiest,
                run.copies
            ));
            runs[i].push(run);
        }
    }

    let mut section = Section::new(
        "relay",
        format!(
            "10. A new blob on {count} nodes at once: star against tree ({} MiB, {} MB/s per node)",
            args.relay_blob_mib, args.relay_rate_mbps
        ),
    );
    section.note(format!(
        "Each node's peerpull in its own network namespace on one bridge, sending through a veth shaped with tc tbf \
         to {} MB/s; the upstream registry behind the same. Before each run every node restarts (empty spools) \
         with the fan-out measured; then all fetch the blob through their own mirror at once, from inside their \
         namespace (GET, digest checked), timed until the last has it. Uploads: the most bytes one node's mirror \
         sent to others; copies: the upstream's blob bytes; both in blobs ({:.0} MiB).",
        args.relay_rate_mbps,
        layer.size as f64 / MIB
    ));
    let column = |runs: &[Run], f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let took = |fanout: usize| format!("every node at once, --relay-fanout {fanout}");
    let uploaded = |fanout: usize| format!("most one node uploaded, --relay-fanout {fanout}");
    section.rows.push(Row::new(DIRECT, "s", direct));
    for (i, (&fanout, runs)) in fanouts.iter().zip(&runs).enumerate() {
        let baseline = if i == 0 { DIRECT.to_owned() } else { took(fanouts[0]) };
        section.rows.push(Row::new(took(fanout), "s", column(runs, |r| r.took)).vs(baseline));
    }
    for (i, (&fanout, runs)) in fanouts.iter().zip(&runs).enumerate() {
        let row = Row::new(uploaded(fanout), "blobs", column(runs, |r| r.busiest));
        section.rows.push(if i == 0 { row } else { row.vs(uploaded(fanouts[0])) });
    }
    for (&fanout, runs) in fanouts.iter().zip(&runs) {
        let label = format!("upstream copies, --relay-fanout {fanout}");
        section.rows.push(Row::new(label, "blobs", column(runs, |r| r.copies)));
    }
    Ok(section)
}

/// Restarts every node with `fanout`, then has each fetch `path` through its
/// own mirror at once.
async fn all_at_once(
    nodes: &mut [Node],
    fanout: usize,
    path: &str,
    upstream: &Registry,
    layer: &peerpull_testbed::Blob,
) -> anyhow::Result<Run> {
    for node in nodes.iter_mut() {
        let mut options = node.peerpull.options().clone();
        options.extra = vec!["--relay-fanout".into(), fanout.to_string()];
        node.peerpull.restart_with(options).await?;
    }
    connected(nodes).await?;
    let served_before = upstream.blob_bytes_served()?;
    let start = Instant::now();
    let fetches = nodes.iter().map(|n| async move {
        let url = format!("{}{path}", n.peerpull.mirror_url());
        Client::digest_in(&n.ns, &url).await
    });
    let mut last = start;
    for fetched in futures::future::join_all(fetches).await {
        let (size, digest, done) = fetched?;
        check_blob(size, &digest, layer)?;
        last = last.max(done);
    }
    let took = secs(last - start);
    // A response is counted when it ends: every follower's copy came from some node.
    let expected = (nodes.len() as u64 - 1) * layer.size;
    let what = format!("the nodes' uploads to add up to {expected} bytes");
    let uploads = peerpull_testbed::eventually(&what, Duration::from_secs(10), || async {
        let mut uploads = Vec::new();
        for node in nodes.iter() {
            uploads.push(node.peerpull.metric(UPLOADED).await.ok()?);
        }
        (uploads.iter().sum::<f64>() >= expected as f64).then_some(uploads)
    })
    .await?;
    let busiest = uploads.iter().copied().fold(0.0, f64::max) / layer.size as f64;
    let copies = upstream.blob_bytes_served()?.saturating_sub(served_before) as f64 / layer.size as f64;
    Ok(Run { took, busiest, copies })
}

/// Waits until every node's routing table holds every other node, so they
/// agree on the one to fetch from the upstream.
async fn connected(nodes: &[Node]) -> anyhow::Result<()> {
    let others = nodes.len() - 1;
    let what = format!("every node to know the {others} others");
    peerpull_testbed::eventually(&what, Duration::from_secs(60), || async {
        for node in nodes {
            let status = node.peerpull.status().await.ok()?;
            if status.peers.len() < others {
                return None;
            }
        }
        Some(())
    })
    .await
    .map_err(Into::into)
}
