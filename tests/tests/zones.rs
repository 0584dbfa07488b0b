//! Zones (issue 37): nodes in two zones, each node in a network namespace
//! of its own, with 5 ms between the zones (a [`Network`]). A node takes
//! content from holders of its own zone; a rollout crosses between zones
//! about once per zone; a zone cut off from the other still pulls, from its
//! own peers and the upstream, and is found again once the cut heals; a
//! node cut off from every other node still pulls.
//!
//! `peerpull_peer_bytes_received_total{zone="same"|"other"}` says where the
//! bytes a node received from peers came from; the upstream's access log
//! says how many times it served each blob.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::join_all;
use peerpull_e2e::{start_nodes_as, Node, Setup};
use peerpull_testbed::zones::Network;
use peerpull_testbed::{eventually, http, Image, ImageBuilder, Platform, PulledImage, Upstream};

/// The one-way delay between the two zones.
const DELAY: Duration = Duration::from_millis(5);
/// How long one CRI pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// Nodes in zones, their upstream and their network, dropped in this order.
struct Zoned {
    /// By the network's node index; `None` until started.
    nodes: Vec<Option<Node>>,
    upstream: Upstream,
    setup: Setup,
    zones: bool,
    network: Network,
}

impl Zoned {
    /// An upstream on the network's upstream address, and no node yet.
    async fn new(network: Network, zones: bool) -> Self {
        let upstream = Upstream::start_on(network.upstream_ip()).await.unwrap();
        let nodes = network.members().iter().map(|_| None).collect();
        Self { nodes, upstream, setup: Setup::default(), zones, network }
    }

    /// [`Zoned::new`] with every node started.
    async fn start(network: Network, zones: bool) -> Self {
        let mut cluster = Self::new(network, zones).await;
        let all: Vec<usize> = (0..cluster.nodes.len()).collect();
        cluster.join(&all).await;
        cluster
    }

    /// Starts nodes `which` (with `--zone <its zone>` if zones are on),
    /// bootstrapping from each other and from the nodes already running.
    async fn join(&mut self, which: &[usize]) {
        let running: Vec<String> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].is_some())
            .map(|n| self.network.peerpull_options(n).router_addr().to_string())
            .collect();
        let options = which
            .iter()
            .map(|&n| {
                let mut options = self.network.peerpull_options(n);
                if self.zones {
                    options.extra.extend(["--zone".to_owned(), self.network.member(n).zone.clone()]);
                }
                for router in &running {
                    options.extra.extend(["--bootstrap".to_owned(), router.clone()]);
                }
                options
            })
            .collect();
        let started = start_nodes_as(options, &self.upstream.url(), self.setup.clone()).await.unwrap();
        for (&n, node) in which.iter().zip(started) {
            self.nodes[n] = Some(node);
        }
    }

    fn node(&self, n: usize) -> &Node {
        self.nodes[n].as_ref().unwrap_or_else(|| panic!("node {n} is not started"))
    }

    fn node_mut(&mut self, n: usize) -> &mut Node {
        self.nodes[n].as_mut().unwrap_or_else(|| panic!("node {n} is not started"))
    }

    /// Node `n` pulls `reference` through CRI, within [`PULL_TIMEOUT`].
    async fn pull(&self, n: usize, reference: &str) -> PulledImage {
        let node = self.node(n);
        let pulled = tokio::time::timeout(PULL_TIMEOUT, node.containerd.cri_pull(reference)).await;
        let pulled = pulled.unwrap_or_else(|_| panic!("node {n} pulling {reference} for {PULL_TIMEOUT:?}"));
        pulled.unwrap_or_else(|e| panic!("node {n} pulling {reference}: {e}\n{}", node.peerpull.log()))
    }

    /// Waits until node `n` locates every blob of `reference` at each node of
    /// `holders`, and gives the zone each holder announced.
    async fn wait_located(&self, n: usize, reference: &str, holders: &[usize], timeout: Duration) -> Vec<String> {
        let mut peers = Vec::new();
        for &h in holders {
            peers.push(self.node(h).peerpull.status().await.unwrap().peer_id);
        }
        let asker = &self.node(n).peerpull;
        let what = format!("node {n} to locate {reference} at nodes {holders:?}");
        eventually(&what, timeout, || async {
            let located = asker.locate(reference).await.ok()?;
            let mut zones = Vec::new();
            for peer in &peers {
                let mut found = located.blobs.iter().map(|b| b.providers.iter().find(|p| &p.peer_id == peer));
                let all: Option<Vec<_>> = found.by_ref().collect();
                zones.push(all?.first()?.zone.clone());
            }
            (!located.blobs.is_empty()).then_some(zones)
        })
        .await
        .unwrap()
    }

    /// Bytes node `n` received from peers of its zone and of other zones, so far.
    async fn peer_bytes(&self, n: usize) -> Bytes {
        let url = format!("{}/metrics", self.node(n).peerpull.metrics_url());
        let reply = http::get(&url).await.unwrap();
        let text = String::from_utf8_lossy(&reply.body);
        let sum = |zone: &str| -> u64 {
            let label = format!("zone=\"{zone}\"");
            text.lines()
                .filter(|line| line.starts_with("peerpull_peer_bytes_received_total{") && line.contains(&label))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        Bytes { same: sum("same"), other: sum("other") }
    }

    /// Waits until the nodes `which` count at least `total` bytes from peers
    /// between them, and gives each one's.
    async fn wait_peer_bytes(&self, which: &[usize], total: u64) -> Vec<Bytes> {
        let what = format!("nodes {which:?} to count {total} bytes from peers");
        let counted = eventually(&what, Duration::from_secs(10), || async {
            let bytes = join_all(which.iter().map(|&n| self.peer_bytes(n))).await;
            (bytes.iter().map(|b| b.same + b.other).sum::<u64>() >= total).then_some(bytes)
        })
        .await;
        match counted {
            Ok(bytes) => bytes,
            Err(e) => panic!("{e}: {:?}", join_all(which.iter().map(|&n| self.peer_bytes(n))).await),
        }
    }

    /// How many times the upstream served each blob of `image`, in [`Image::blobs`] order.
    fn downloads(&self, image: &Image) -> Vec<usize> {
        let downloads = self.upstream.blob_downloads().unwrap();
        image.blobs().iter().map(|b| downloads.get(&b.digest).copied().unwrap_or(0)).collect()
    }
}

/// Body bytes a node received from peers, by zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bytes {
    same: u64,
    other: u64,
}

/// Runs `f` and gives how long it took.
async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let value = f.await;
    (value, started.elapsed())
}

#[test]
fn the_network_delays_traffic_between_zones_only() {
    let network = Network::builder().zone("a", 2).zone("b", 2).delay(DELAY).create().unwrap();
    let within = network.rtt(0, 1).unwrap();
    let between = network.rtt(0, 2).unwrap();
    eprintln!("round trip within a zone {within:?}, between zones {between:?}");
    assert!(between >= 2 * DELAY && between < 4 * DELAY, "between zones {between:?}");
    assert!(within * 10 < between, "within {within:?}, between {between:?}");

    network.partition("b").unwrap();
    assert!(network.rtt(0, 2).is_err() && network.rtt(3, 1).is_err(), "the partition lets packets through");
    network.rtt(0, 1).unwrap();
    network.rtt(2, 3).unwrap();
    network.heal().unwrap();
    network.cut(0, 1).unwrap();
    assert!(network.rtt(0, 1).is_err() && network.rtt(1, 0).is_err(), "the cut lets packets through");
    network.rtt(0, 2).unwrap();
    network.heal().unwrap();
    network.rtt(0, 1).unwrap();
    network.rtt(3, 0).unwrap();
}

/// Holders in both zones: a node takes (nearly) everything from its own
/// zone's; once they are gone, from the other zone's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_pulls_from_its_own_zone_and_from_the_other_when_its_own_is_gone() {
    const LAYER: u64 = 64 << 20;
    // Zone a: nodes 0, 1, 2; zone b: node 3.
    let network = Network::builder().zone("a", 3).zone("b", 1).delay(DELAY).create().unwrap();
    let mut cluster = Zoned::new(network, true).await;
    // The holders pull before the other nodes start, so neither of those
    // fetched the layer for the cluster (and serves it from its spool).
    cluster.join(&[0, 3]).await;
    let image = ImageBuilder::new("e2e-zones-near").layers(&[LAYER]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/zones-near:v1").await.unwrap();
    for n in [0, 3] {
        assert_eq!(cluster.pull(n, &reference).await.manifest_digest(), Some(image.digest()), "holder {n}");
    }
    cluster.join(&[1, 2]).await;
    let zones = cluster.wait_located(1, &reference, &[0, 3], Duration::from_secs(20)).await;
    assert_eq!(zones, ["a", "b"], "the zones the holders announced");

    let routed = cluster.network.bytes_between_zones();
    let (pulled, took) = timed(cluster.pull(1, &reference)).await;
    let routed = cluster.network.bytes_between_zones() - routed;
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    let bytes = cluster.wait_peer_bytes(&[1], LAYER).await[0];
    let share = bytes.same as f64 / (bytes.same + bytes.other) as f64;
    eprintln!(
        "node 1 (zone a) pulled in {took:?}: {bytes:?} from peers, {:.1} % from zone a; {routed} IP bytes between the zones",
        share * 100.0
    );
    assert!(share >= 0.95, "node 1 took {bytes:?} bytes from peers: {:.1} % from its zone", share * 100.0);
    // What the node counts, checked against the network (nodes without
    // zones count every peer as their zone's): with zones, the DHT's 10-20 KB
    // cross; without, 2-5 MB of the layer did, as other chunks of it.
    assert!(routed <= LAYER / 100, "{routed} bytes passed between the zones while node 1 pulled");

    // Zone a's holders go away: node 2 takes the image from zone b.
    cluster.node_mut(0).peerpull.stop();
    cluster.node_mut(1).peerpull.stop();
    let before = cluster.downloads(&image);
    let routed = cluster.network.bytes_between_zones();
    let (pulled, took) = timed(cluster.pull(2, &reference)).await;
    let routed = cluster.network.bytes_between_zones() - routed;
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    let bytes = cluster.wait_peer_bytes(&[2], LAYER).await[0];
    eprintln!("node 2 (zone a, its holders gone) pulled in {took:?}: {bytes:?} from peers; {routed} IP bytes between the zones");
    assert!(bytes.other >= LAYER, "node 2 took {bytes:?} bytes from peers");
    assert!(routed >= LAYER, "{routed} bytes passed between the zones while node 2 pulled");
    assert_eq!(cluster.downloads(&image), before, "node 2 went to the upstream");
}

/// Six nodes, three per zone, pull a new image at once behind a slow
/// upstream link, with zones and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_crosses_between_zones_about_once() {
    let zoned = rollout(true).await;
    let plain = rollout(false).await;
    eprintln!("rollout with zones:    {zoned}");
    eprintln!("rollout without zones: {plain}");
    assert!(zoned.cross_zone as f64 <= 1.1 * zoned.image as f64, "with zones: {zoned}");
    // What the nodes count, checked against what the network passed (TCP/IP
    // headers and DHT traffic add a few percent).
    assert!(zoned.routed as f64 <= 1.2 * zoned.image as f64, "with zones: {zoned}");
}

/// What a rollout measured.
#[derive(Debug)]
struct Rollout {
    took: Duration,
    /// The bytes of the image a node pulls.
    image: u64,
    /// What the nodes received from peers of another zone, as they count it.
    cross_zone: u64,
    /// What the network passed between the zones (IP bytes, DHT traffic too).
    routed: u64,
}

impl std::fmt::Display for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let image = self.image as f64;
        let (copies, routed) = (self.cross_zone as f64 / image, self.routed as f64 / image);
        write!(
            f,
            "{:.2?}; from the other zone {} bytes ({copies:.2} images of {image} bytes); ",
            self.took, self.cross_zone
        )?;
        write!(f, "between the zones {} IP bytes ({routed:.2} images)", self.routed)
    }
}

async fn rollout(zones: bool) -> Rollout {
    // 8 MiB/s into each zone: the two layers come down side by side in about
    // 3 s, so every node asks while their fetch is under way (a node asking
    // after it ended takes the blob from any holder, and a holder of its zone
    // may not be known yet).
    let network = Network::builder().zone("a", 3).zone("b", 3).delay(DELAY).upstream_rate(8 << 20).create().unwrap();
    let cluster = Zoned::start(network, zones).await;
    let image = ImageBuilder::new("e2e-zones-rollout").layers(&[12 << 20, 12 << 20]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/zones-rollout:v1").await.unwrap();
    let all: Vec<usize> = (0..cluster.nodes.len()).collect();
    let (pulled, took) = timed(join_all(all.iter().map(|&n| cluster.pull(n, &reference)))).await;
    for (n, pulled) in pulled.iter().enumerate() {
        assert_eq!(pulled.manifest_digest(), Some(image.digest()), "node {n}");
    }
    let downloads = cluster.downloads(&image);
    assert!(
        downloads[1..].iter().all(|&d| d == 1),
        "upstream downloads of the config and layers {:?}",
        &downloads[1..]
    );
    // Every node but the one that fetched a layer got it from peers.
    let layers: u64 = image.platforms()[0].layers.iter().map(|b| b.size).sum();
    let bytes = cluster.wait_peer_bytes(&all, (all.len() as u64 - 1) * layers).await;
    eprintln!("zones {}: bytes from peers {bytes:?}", if zones { "on" } else { "off" });
    let cross_zone = bytes.iter().map(|b| b.other).sum();
    let routed = cluster.network.bytes_between_zones();
    Rollout { took, image: image.pull_size(&Platform::host()), cross_zone, routed }
}

/// Zone b cut off from zone a (not from the upstream): its nodes still pull
/// what only zone a holds (from the upstream) and what zone b holds (from
/// their zone); once the cut heals, zone a finds what zone b pulled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_cut_off_pulls_from_itself_and_the_upstream_and_is_found_again() {
    const LAYER: u64 = 4 << 20;
    // Zone a: nodes 0, 1; zone b: nodes 2, 3.
    let network = Network::builder().zone("a", 2).zone("b", 2).delay(DELAY).create().unwrap();
    let mut cluster = Zoned::new(network, true).await;
    let only_a = ImageBuilder::new("e2e-zones-only-a").layers(&[LAYER]).build().unwrap();
    let only_a_ref = only_a.push(&cluster.upstream, "e2e/zones-only-a:v1").await.unwrap();
    let in_b = ImageBuilder::new("e2e-zones-in-b").layers(&[LAYER]).build().unwrap();
    let in_b_ref = in_b.push(&cluster.upstream, "e2e/zones-in-b:v1").await.unwrap();
    // Node 0 alone fetches what only zone a holds, so no node of zone b
    // has it, not even in its spool as the one that fetched it for the cluster.
    cluster.join(&[0]).await;
    assert_eq!(cluster.pull(0, &only_a_ref).await.manifest_digest(), Some(only_a.digest()));
    cluster.join(&[2]).await;
    assert_eq!(cluster.pull(2, &in_b_ref).await.manifest_digest(), Some(in_b.digest()));
    cluster.join(&[1, 3]).await;
    cluster.wait_located(3, &only_a_ref, &[0], Duration::from_secs(20)).await;
    cluster.wait_located(3, &in_b_ref, &[2], Duration::from_secs(20)).await;

    cluster.network.partition("b").unwrap();
    let only_a_before = cluster.downloads(&only_a);
    let (pulled, took) = timed(cluster.pull(3, &only_a_ref)).await;
    assert_eq!(pulled.manifest_digest(), Some(only_a.digest()));
    let only_a_after = cluster.downloads(&only_a);
    eprintln!("cut off, node 3 pulled what only zone a holds in {took:?}; upstream downloads {only_a_before:?} -> {only_a_after:?}");
    assert_eq!(only_a_after[2], only_a_before[2] + 1, "the upstream served the layer again");

    let before = cluster.peer_bytes(3).await;
    let in_b_before = cluster.downloads(&in_b);
    let (pulled, took) = timed(cluster.pull(3, &in_b_ref)).await;
    assert_eq!(pulled.manifest_digest(), Some(in_b.digest()));
    let after = cluster.peer_bytes(3).await;
    eprintln!("cut off, node 3 pulled what node 2 holds in {took:?}; from peers {before:?} -> {after:?}");
    assert!(after.same >= before.same + LAYER, "node 3 took {before:?} -> {after:?} bytes from peers");
    assert_eq!(cluster.downloads(&in_b), in_b_before, "node 3 went to the upstream");

    cluster.network.heal().unwrap();
    let (_, took) = timed(cluster.wait_located(0, &in_b_ref, &[3], Duration::from_secs(30))).await;
    cluster.wait_located(0, &only_a_ref, &[3], Duration::from_secs(30)).await;
    eprintln!("healed: node 0 (zone a) located what node 3 pulled during the cut in {took:?}");
}

/// A node cut off from every other node (not from the upstream) before a
/// rollout of three still pulls the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_its_peers_still_pulls() {
    const CUT: usize = 1;
    // Zone a: nodes 0, 1; zone b: node 2.
    let network = Network::builder().zone("a", 2).zone("b", 1).delay(DELAY).upstream_rate(16 << 20).create().unwrap();
    let cluster = Zoned::start(network, true).await;
    let image = ImageBuilder::new("e2e-zones-cut").layers(&[16 << 20]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/zones-cut:v1").await.unwrap();
    for other in [0, 2] {
        cluster.network.cut(CUT, other).unwrap();
        cluster.network.cut(other, CUT).unwrap();
    }
    let all: Vec<usize> = (0..cluster.nodes.len()).collect();
    let started = Instant::now();
    let (cluster, reference) = (&cluster, &reference);
    let pulls = all.iter().map(|&n| async move {
        let pulled = cluster.pull(n, reference).await;
        (pulled, started.elapsed())
    });
    for (n, (pulled, took)) in join_all(pulls).await.into_iter().enumerate() {
        eprintln!("node {n} pulled in {took:?}");
        assert_eq!(pulled.manifest_digest(), Some(image.digest()), "node {n}");
    }
    let fetched = cluster.node(CUT).peerpull.metric("peerpull_upstream_bytes_total").await.unwrap();
    eprintln!(
        "the cut node fetched {fetched} bytes from the upstream; upstream downloads {:?}",
        cluster.downloads(&image)
    );
}
