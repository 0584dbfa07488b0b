//! The command line: which scenarios run, how often, and at what sizes.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Measures peerpull against the alternatives on the same work, on real
/// containerd nodes and real registries on this machine.
#[derive(Debug, Parser)]
#[command(name = "peerpull-bench")]
pub(crate) struct Args {
    /// Scenarios to run, in this order.
    #[arg(long, value_delimiter = ',', default_values_t = Scenario::all())]
    pub(crate) scenarios: Vec<Scenario>,
    /// Repeats of every scenario; the median and the spread are reported.
    #[arg(long, default_value_t = 5)]
    pub(crate) repeats: usize,
    /// Where the report and charts go (default: `target/bench` of the build).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,

    /// serve: size of the blob read through the mirror, MiB.
    #[arg(long, default_value_t = 512)]
    pub(crate) serve_blob_mib: u64,
    /// serve: manifest HEAD/GET requests per repeat.
    #[arg(long, default_value_t = 1000)]
    pub(crate) manifest_requests: usize,
    /// serve: manifest requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub(crate) manifest_concurrency: usize,

    /// peer: layer sizes of the image node B pulls from node A, MiB.
    #[arg(long, value_delimiter = ',', default_values_t = vec![64, 64, 64, 64])]
    pub(crate) peer_layers_mib: Vec<u64>,

    /// rollout: nodes that pull the new image.
    #[arg(long, default_value_t = 5)]
    pub(crate) rollout_nodes: usize,
    /// rollout: image sizes, MiB (e.g. 10,100,1024).
    #[arg(long, value_delimiter = ',', default_values_t = vec![10, 100])]
    pub(crate) rollout_sizes_mib: Vec<u64>,
    /// rollout: layers of each image size, in the same order (the size is split evenly).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 4])]
    pub(crate) rollout_layers: Vec<usize>,
    /// rollout: the upstream registry's bandwidth, MB/s (10^6 bytes).
    #[arg(long, default_value_t = 50)]
    pub(crate) rollout_rate_mbps: u64,
    /// rollout: patterns to run.
    #[arg(long, value_delimiter = ',', default_values_t = vec![Pattern::Rolling, Pattern::AllAtOnce])]
    pub(crate) rollout_patterns: Vec<Pattern>,
    /// rollout: share of the nodes pulling at once in the rolling pattern, percent.
    #[arg(long, default_value_t = 20)]
    pub(crate) rollout_batch_percent: usize,

    /// miss: size of the one layer of the image nobody holds, KiB.
    #[arg(long, default_value_t = 1024)]
    pub(crate) miss_layer_kib: u64,

    /// memory: keys advertised through an in-process router (about 5 per image).
    #[arg(long, default_value_t = 5000)]
    pub(crate) memory_keys: usize,
    /// Internal: be the memory scenario's fresh child process and print its RSS figures.
    #[arg(long, hide = true)]
    pub(crate) memory_probe: bool,

    /// soak: size of the blob one node serves, MiB.
    #[arg(long, default_value_t = 1024)]
    pub(crate) soak_blob_mib: u64,
    /// soak: clients that download it at once.
    #[arg(long, default_value_t = 20)]
    pub(crate) soak_clients: usize,
    /// soak: clients that start downloading it and then read nothing.
    #[arg(long, default_value_t = 200)]
    pub(crate) soak_stalled: usize,
    /// soak: size of the image of the rollout while peers are killed, MiB (in 4 layers).
    #[arg(long, default_value_t = 80)]
    pub(crate) soak_image_mib: u64,
    /// soak: nodes in the rollout while peers are killed.
    #[arg(long, default_value_t = 4)]
    pub(crate) soak_nodes: usize,
    /// soak: how often a random node's peerpull is killed during that rollout, ms.
    #[arg(long, default_value_t = 500)]
    pub(crate) soak_kill_every_ms: u64,

    /// holders: size of the blob fetched from 1 or 3 holders, MiB.
    #[arg(long, default_value_t = 512)]
    pub(crate) holders_blob_mib: u64,
    /// holders: each holder's (and the upstream's) bandwidth, MB/s (10^6 bytes).
    #[arg(long, default_value_t = 50)]
    pub(crate) holders_rate_mbps: u64,

    /// holders: then each holder's --max-upload-rate, MB/s (10^6 bytes), below its link's rate.
    #[arg(long, default_value_t = 20)]
    pub(crate) holders_limit_mbps: u64,

    /// relay: nodes that fetch one new blob at once, each behind a shaped uplink.
    #[arg(long, default_value_t = 6)]
    pub(crate) relay_nodes: usize,
    /// relay: size of the blob, MiB.
    #[arg(long, default_value_t = 256)]
    pub(crate) relay_blob_mib: u64,
    /// relay: the --relay-fanout of each run, in turn (the first is the baseline; 0: a star).
    #[arg(long, value_delimiter = ',', default_values_t = vec![0, 2])]
    pub(crate) relay_fanouts: Vec<usize>,
    /// relay: each node's (and the upstream's) uplink, MB/s (10^6 bytes).
    #[arg(long, default_value_t = 50)]
    pub(crate) relay_rate_mbps: u64,

    /// zones: nodes in each of the two zones.
    #[arg(long, default_value_t = 3)]
    pub(crate) zones_nodes_per_zone: usize,
    /// zones: the image's one layer, MiB.
    #[arg(long, default_value_t = 64)]
    pub(crate) zones_image_mib: u64,
    /// zones: one-way delay between the zones, ms.
    #[arg(long, default_value_t = 5)]
    pub(crate) zones_delay_ms: u64,
    /// zones: the upstream's link into each zone, MB/s (10^6 bytes).
    #[arg(long, default_value_t = 25)]
    pub(crate) zones_rate_mbps: u64,

    /// dht: routers in one process.
    #[arg(long, default_value_t = 50)]
    pub(crate) dht_routers: usize,
    /// dht: provider lookups per repeat.
    #[arg(long, default_value_t = 200)]
    pub(crate) dht_lookups: usize,

    /// scale: cluster sizes, routers (the first is the baseline). 1,000 does
    /// not finish on a 2-core machine (see the bench README).
    #[arg(long, value_delimiter = ',', default_values_t = vec![50, 200])]
    pub(crate) scale_routers: Vec<usize>,
    /// scale: keys each router advertises.
    #[arg(long, default_value_t = 5)]
    pub(crate) scale_keys: usize,
    /// scale: lookups one at a time (the burst is five times as many).
    #[arg(long, default_value_t = 200)]
    pub(crate) scale_lookups: usize,
    /// scale: seconds over which traffic at rest is counted (past the 100 s re-announcement interval).
    #[arg(long, default_value_t = 120)]
    pub(crate) scale_rest_secs: u64,

    /// content: keys each of the 5 real nodes holds and advertises, one cluster per count (the first is the baseline).
    #[arg(long, value_delimiter = ',', default_values_t = vec![12, 500, 2000, 10_000])]
    pub(crate) content_keys: Vec<usize>,
    /// content: seconds of rest after the lookups before measuring.
    #[arg(long, default_value_t = 150)]
    pub(crate) content_rest_secs: u64,
    /// content: seconds over which CPU and routing traffic at rest are counted (one whole 10-minute
    /// re-announcement interval: a small cluster's node announces in one round per interval).
    #[arg(long, default_value_t = 600)]
    pub(crate) content_measure_secs: u64,
}

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// Blob throughput and manifest latency of one node's mirror.
    Serve,
    /// Node B pulls an image node A holds.
    Peer,
    /// N nodes pull a new image through a shaped upstream.
    Rollout,
    /// Time a mirror that has nothing adds to a pull.
    Miss,
    /// Router memory with many keys advertised (plus peerpull RSS from rollout).
    Memory,
    /// Provider lookup latency among many routers.
    Dht,
    /// One node under stalled and concurrent downloads; a rollout while peers are killed.
    Soak,
    /// A big blob from 1 or 3 holders, each behind a shaped link.
    Holders,
    /// Routing with 50 to 1,000 in-process routers on the memory transport.
    Scale,
    /// A new blob on every node at once, each behind a shaped uplink: star against tree.
    Relay,
    /// Routing at rest on 5 real nodes by how many keys each holds.
    Content,
    /// A new image on nodes in two zones at once: bytes crossing zones, zones on against off.
    Zones,
}

/// How a rollout's nodes pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Pattern {
    /// A batch of nodes at a time, the next when it is done.
    Rolling,
    /// Every node at once.
    AllAtOnce,
}

impl Scenario {
    fn all() -> Vec<Self> {
        vec![
            Self::Memory,
            Self::Dht,
            Self::Scale,
            Self::Serve,
            Self::Peer,
            Self::Miss,
            Self::Rollout,
            Self::Soak,
            Self::Holders,
            Self::Relay,
            Self::Content,
            Self::Zones,
        ]
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.to_possible_value().as_ref().map_or("?", |v| v.get_name()))
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.to_possible_value().as_ref().map_or("?", |v| v.get_name()))
    }
}
