//! The command line: every subcommand's flags, each with its environment
//! variable `PEERPULL_<FLAG_IN_CAPS>` (repeatable flags take a comma-separated
//! list there).
//!
//! Flags several subcommands share (`--config-path`, `--registries-yaml`,
//! `--resolve-tags`, the containerd and listen flags, which registries to
//! mirror) are small `Args` structs flattened into each. A flag that sets a
//! field of a library's configuration takes its default from that type
//! (`defaults`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};
use peerpull_hosts::{DialTimeout, Mirror, RegistriesYaml, Target, CONTAINERD_CONFIG_PATH};
use peerpull_mirror::{PrivateMode, TagResolution};
use peerpull_oci::{Mirrored, Reference, Registry};
use peerpull_routing::{Bootstrap, Zone};

use crate::exit::Failure;

mod defaults;

/// Peer-to-peer container image distribution for Kubernetes nodes.
#[derive(Debug, Parser)]
#[command(name = "peerpull", version = peerpull_node::VERSION, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the node daemon: advertise what containerd holds and serve the /v2 mirror.
    Run(Box<RunArgs>),
    /// Point containerd at the mirrors: write hosts.toml files, backing up what was there.
    Configure(ConfigureArgs),
    /// Undo `configure`: put the backed-up files back and remove what it wrote.
    Cleanup(CleanupArgs),
    /// Check this node's set-up and say how to fix what is wrong.
    Doctor(Box<DoctorArgs>),
    /// Show what the local daemon is, holds and does: readiness, peers, keys, transfers, upstreams.
    Status(StatusArgs),
    /// Show where the blobs of an image are in the cluster: each blob and the peers holding it.
    Locate(LocateArgs),
}

/// A path, where "" is a value of its own (none).
fn parse_maybe_empty_path(text: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(text))
}

/// The admin API's Unix socket: `run` serves it, `status`, `locate` and `doctor` ask it.
#[derive(Debug, Args)]
pub(crate) struct AdminSocketArg {
    /// The admin API's Unix socket (mode 0600), which `peerpull status`, `locate` and `doctor` ask
    /// (for `run`, "" serves none; for `doctor`, "" reads /readyz?verbose on --metrics-addr instead).
    #[arg(
        long = "admin-socket",
        env = "PEERPULL_ADMIN_SOCKET",
        value_name = "PATH",
        default_value = peerpull_admin::DEFAULT_SOCKET,
        // clap's path parser refuses "", which means none here.
        value_parser = parse_maybe_empty_path
    )]
    pub(crate) admin_socket: PathBuf,
}

/// The local daemon's admin socket and how to print its answers; shared by `status` and `locate`.
#[derive(Debug, Args)]
pub(crate) struct AdminClientArgs {
    #[command(flatten)]
    pub(crate) socket: AdminSocketArg,
    /// How to print the answer.
    #[arg(long = "output", short = 'o', env = "PEERPULL_OUTPUT", value_name = "FORMAT", default_value = "text")]
    pub(crate) output: Output,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Tables for people.
    Text,
    /// The API's answer as JSON.
    Json,
}

/// `peerpull status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) admin: AdminClientArgs,
}

/// `peerpull locate`.
#[derive(Debug, Args)]
pub(crate) struct LocateArgs {
    /// An image reference (nginx, ghcr.io/a/b:1.0, registry:5000/x@sha256:…) or a digest (sha256:…).
    #[arg(value_name = "REFERENCE")]
    pub(crate) reference: String,
    /// How many providers to look up per blob.
    #[arg(long = "limit", value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) limit: u32,
    #[command(flatten)]
    pub(crate) admin: AdminClientArgs,
}

/// containerd's registry `config_path`.
#[derive(Debug, Args)]
pub(crate) struct ConfigPathArg {
    /// containerd's registry config_path (on k3s: /var/lib/rancher/k3s/agent/etc/containerd/certs.d; of a list, the first directory).
    #[arg(long = "config-path", env = "PEERPULL_CONFIG_PATH", value_name = "DIR", default_value = CONTAINERD_CONFIG_PATH)]
    pub(crate) config_path: PathBuf,
}

/// A k3s `registries.yaml` to take the mirrored registries (and upstream settings) from.
#[derive(Debug, Args)]
pub(crate) struct RegistriesYamlArg {
    /// k3s registries.yaml: mirror the registries under `mirrors:` ("*" means all).
    #[arg(long = "registries-yaml", env = "PEERPULL_REGISTRIES_YAML", value_name = "FILE")]
    pub(crate) registries_yaml: Option<PathBuf>,
}

/// Which registries to mirror: `--mirrored-registry` or `--registries-yaml`; shared by `run` and `doctor`.
#[derive(Debug, Args)]
pub(crate) struct MirroredArgs {
    /// A registry to mirror: docker.io, ghcr.io, http://127.0.0.1:5000 (repeatable; none = all).
    #[arg(
        long = "mirrored-registry",
        env = "PEERPULL_MIRRORED_REGISTRY",
        value_name = "URL",
        value_delimiter = ',',
        conflicts_with = "registries_yaml"
    )]
    pub(crate) mirrored_registries: Vec<Registry>,
    #[command(flatten)]
    pub(crate) yaml: RegistriesYamlArg,
}

/// Whether mirrors resolve tags.
#[derive(Debug, Args)]
pub(crate) struct ResolveTagsArg {
    /// Let containerd resolve tags through the mirrors, not only pull by digest.
    #[arg(
        long = "resolve-tags",
        env = "PEERPULL_RESOLVE_TAGS",
        value_name = "BOOL",
        default_value_t = defaults::mirror().resolve_tags,
        action = ArgAction::Set
    )]
    pub(crate) resolve_tags: bool,
}

/// `peerpull configure`.
#[derive(Debug, Args)]
pub(crate) struct ConfigureArgs {
    #[command(flatten)]
    pub(crate) config: ConfigPathArg,
    /// A mirror containerd tries before the upstream, e.g. http://10.0.0.7:5000 (repeatable, in order).
    #[arg(long = "mirror", env = "PEERPULL_MIRROR", value_name = "URL", value_delimiter = ',', required = true)]
    pub(crate) mirrors: Vec<Mirror>,
    /// A registry to mirror: docker.io, ghcr.io, http://127.0.0.1:5000 (repeatable; none = all).
    /// The same as `run --mirrored-registry`; `--registry` still works.
    #[arg(
        long = "mirrored-registry",
        alias = "registry",
        env = "PEERPULL_REGISTRY",
        value_name = "URL",
        value_delimiter = ',',
        conflicts_with = "registries_yaml"
    )]
    pub(crate) registries: Vec<Registry>,
    #[command(flatten)]
    pub(crate) yaml: RegistriesYamlArg,
    #[command(flatten)]
    pub(crate) tags: ResolveTagsArg,
    /// Keep the hosts of existing hosts.toml files (and files beside them) after ours.
    #[arg(long = "prepend-existing", env = "PEERPULL_PREPEND_EXISTING")]
    pub(crate) prepend_existing: bool,
    /// How long containerd waits to connect to a mirror (Go syntax; 0 writes none).
    #[arg(long = "dial-timeout", env = "PEERPULL_DIAL_TIMEOUT", value_name = "DURATION", default_value_t)]
    pub(crate) dial_timeout: DialTimeout,
    /// containerd's gRPC socket, asked for its version when a mirror is an IPv6 address
    /// (containerd 1.x and 2.x read such hosts differently).
    #[arg(
        long = "containerd-socket",
        env = "PEERPULL_CONTAINERD_SOCKET",
        value_name = "PATH",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub(crate) containerd_socket: PathBuf,
}

/// How to reach containerd; shared by `run` and `doctor`.
#[derive(Debug, Args)]
pub(crate) struct ContainerdArgs {
    /// containerd's gRPC socket.
    #[arg(
        long = "containerd-socket",
        env = "PEERPULL_CONTAINERD_SOCKET",
        value_name = "PATH",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub(crate) containerd_socket: PathBuf,
    /// The containerd namespace whose images are served.
    #[arg(
        long = "containerd-namespace",
        env = "PEERPULL_CONTAINERD_NAMESPACE",
        value_name = "NS",
        default_value = peerpull_store::containerd::DEFAULT_NAMESPACE
    )]
    pub(crate) containerd_namespace: String,
    /// containerd's content directory (…/io.containerd.content.v1.content), read directly when given.
    #[arg(long = "containerd-content-path", env = "PEERPULL_CONTAINERD_CONTENT_PATH", value_name = "PATH")]
    pub(crate) containerd_content_path: Option<PathBuf>,
}

/// Where `peerpull run` listens; `doctor` probes the same addresses.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Where the /v2 mirror listens (also /readyz and /livez).
    #[arg(
        long = "registry-addr",
        env = "PEERPULL_REGISTRY_ADDR",
        value_name = "ADDR",
        default_value_t = defaults::routing().mirror_addr
    )]
    pub(crate) registry_addr: SocketAddr,
    /// Where libp2p listens (TCP).
    #[arg(
        long = "router-addr",
        env = "PEERPULL_ROUTER_ADDR",
        value_name = "ADDR",
        default_value_t = defaults::routing().listen
    )]
    pub(crate) router_addr: SocketAddr,
    /// Where /metrics, /readyz and /livez are served.
    #[arg(long = "metrics-addr", env = "PEERPULL_METRICS_ADDR", value_name = "ADDR", default_value = "0.0.0.0:9090")]
    pub(crate) metrics_addr: SocketAddr,
}

/// `peerpull run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) containerd: ContainerdArgs,
    #[command(flatten)]
    pub(crate) listen: ListenArgs,
    /// A peer to join through: a multiaddr, HOST:PORT, or dns:NAME[:PORT] (repeatable; none = stand alone).
    #[arg(
        long = "bootstrap",
        env = "PEERPULL_BOOTSTRAP",
        value_name = "PEER",
        value_delimiter = ',',
        value_parser = parse_bootstrap
    )]
    pub(crate) bootstrap: Vec<Bootstrap>,
    #[command(flatten)]
    pub(crate) mirrored: MirroredArgs,
    /// The cluster's pre-shared key file (64 hex characters, or a libp2p swarm.key): only nodes with the same
    /// key join the DHT, and requests between mirrors prove it. Without it any host that reaches the ports is trusted.
    #[arg(long = "psk-file", env = "PEERPULL_PSK_FILE", value_name = "PATH")]
    pub(crate) psk_file: Option<PathBuf>,
    /// A network allowed to use this mirror as containerd does, besides loopback and this node's own
    /// addresses (repeatable; 0.0.0.0/0 and ::/0 allow everyone).
    #[arg(
        long = "client-cidr",
        env = "PEERPULL_CLIENT_CIDR",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = parse_cidr
    )]
    pub(crate) client_cidrs: Vec<ipnet::IpNet>,
    /// Where the node identity and state are kept.
    #[arg(
        long = "data-dir",
        env = "PEERPULL_DATA_DIR",
        value_name = "DIR",
        default_value_os_t = defaults::routing().data_dir
    )]
    pub(crate) data_dir: PathBuf,
    #[command(flatten)]
    pub(crate) tags: ResolveTagsArg,
    /// Where a tag is resolved first: upstream-first (fresh while the upstream answers; this node and its
    /// peers when it cannot) or peers-first (a flaky or metered upstream; tags that moved may be stale).
    #[arg(
        long = "tag-resolution",
        env = "PEERPULL_TAG_RESOLUTION",
        value_name = "MODE",
        value_enum,
        default_value_t = defaults::tag_resolution()
    )]
    pub(crate) tag_resolution: TagResolutionArg,
    /// How long the upstream may take to resolve a tag before this node and its peers answer (Go syntax).
    #[arg(
        long = "tag-timeout",
        env = "PEERPULL_TAG_TIMEOUT",
        value_name = "DURATION",
        default_value = defaults::tag_timeout(),
        value_parser = parse_duration
    )]
    pub(crate) tag_timeout: std::time::Duration,
    /// On a miss, fetch from the upstream (once for the whole cluster) instead of answering 404.
    #[arg(
        long = "upstream-fallback",
        env = "PEERPULL_UPSTREAM_FALLBACK",
        value_name = "BOOL",
        default_value_t = peerpull_mirror::Config::UPSTREAM_FALLBACK,
        action = ArgAction::Set
    )]
    pub(crate) upstream_fallback: bool,
    /// The most bytes the spool of upstream fetches (under --data-dir) holds; suffixes Ki, Mi, Gi, Ti, K, M, G, T.
    #[arg(
        long = "spool-max-bytes",
        env = "PEERPULL_SPOOL_MAX_BYTES",
        value_name = "BYTES",
        default_value = defaults::spool_max_bytes(),
        value_parser = parse_bytes
    )]
    pub(crate) spool_max_bytes: u64,
    /// Bytes per second this node sends to other nodes in all (0: no limit); suffixes as for --spool-max-bytes.
    /// Past it a peer's new request is answered 429 and it asks another holder.
    #[arg(
        long = "max-upload-rate",
        env = "PEERPULL_MAX_UPLOAD_RATE",
        value_name = "BYTES",
        default_value = defaults::max_upload_rate(),
        value_parser = parse_bytes
    )]
    pub(crate) max_upload_rate: u64,
    /// Blobs of at least this many bytes come from several holders at once when several hold them
    /// (0: always from one); suffixes as for --spool-max-bytes.
    #[arg(
        long = "multi-source-min-bytes",
        env = "PEERPULL_MULTI_SOURCE_MIN_BYTES",
        value_name = "BYTES",
        default_value = defaults::multi_source_min_bytes(),
        value_parser = parse_bytes
    )]
    pub(crate) multi_source_min_bytes: u64,
    /// Nodes the node fetching a blob from the upstream streams it to itself; the others stream it from
    /// those while it arrives, each to as many more (0: the fetching node streams it to every node).
    #[arg(
        long = "relay-fanout",
        env = "PEERPULL_RELAY_FANOUT",
        value_name = "N",
        default_value_t = defaults::count(defaults::mirror().relay_fanout)
    )]
    pub(crate) relay_fanout: u32,
    /// This node's zone (e.g. its topology.kubernetes.io/zone label): holders in the same zone are asked first,
    /// and one transfer per zone crosses zones when the cluster fetches a blob from the upstream (empty: none).
    #[arg(long = "zone", env = "PEERPULL_ZONE", value_name = "NAME")]
    pub(crate) zone: Option<Zone>,
    /// Read this node's zone at start from the topology.kubernetes.io/zone label of the Kubernetes Node of this
    /// name, through the in-cluster API (the chart passes $(NODE_NAME) and a read-only RBAC rule); when it cannot
    /// be read, the node runs without a zone and says so.
    #[arg(long = "zone-from-node", env = "PEERPULL_ZONE_FROM_NODE", value_name = "NODE", conflicts_with = "zone")]
    pub(crate) zone_from_node: Option<String>,
    /// Private repositories (those the upstream refuses this node): public serves their content to any pull
    /// once a node holds it; verify serves it only to a pull whose credentials the upstream accepts for that
    /// repository (containerd sends the pod's pull secret when the mirror asks), here and between nodes.
    #[arg(
        long = "private-images",
        env = "PEERPULL_PRIVATE_IMAGES",
        value_name = "MODE",
        value_enum,
        default_value_t = defaults::private_images()
    )]
    pub(crate) private_images: PrivateImagesArg,
    /// With --private-images verify: how long credentials the upstream accepted for a repository keep working
    /// while it cannot be asked again (an outage) (Go syntax).
    #[arg(
        long = "private-grace",
        env = "PEERPULL_PRIVATE_GRACE",
        value_name = "DURATION",
        default_value = defaults::private_grace(),
        value_parser = parse_duration
    )]
    pub(crate) private_grace: std::time::Duration,
    /// Uploads to other nodes at once (0: no cap); past it a peer is answered 429 and asks another holder.
    #[arg(
        long = "max-peer-uploads",
        env = "PEERPULL_MAX_PEER_UPLOADS",
        value_name = "N",
        default_value_t = defaults::count(defaults::mirror().max_peer_uploads)
    )]
    pub(crate) max_peer_uploads: u32,
    #[command(flatten)]
    pub(crate) admin: AdminSocketArg,
    /// Serve the admin API on this TCP address too (off by default: it has no authentication).
    #[arg(long = "admin-addr", env = "PEERPULL_ADMIN_ADDR", value_name = "ADDR")]
    pub(crate) admin_addr: Option<SocketAddr>,
    /// Connections the mirror serves at once; past this (or --max-connections-per-ip from one address) a new
    /// connection is answered 503 with Retry-After at once, so containerd tries its next host.
    #[arg(
        long = "max-connections",
        env = "PEERPULL_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = defaults::count(defaults::limits().max_connections),
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) max_connections: u32,
    /// Connections the mirror serves at once from one address.
    #[arg(
        long = "max-connections-per-ip",
        env = "PEERPULL_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        default_value_t = defaults::count(defaults::limits().max_connections_per_ip),
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) max_connections_per_ip: u32,
    /// Serve the debug page, /debug on --metrics-addr: readiness, peers, recent pulls with the source of each
    /// blob, and a test pull (it reads through the mirror, which may fetch from the upstream).
    #[arg(
        long = "debug-web",
        env = "PEERPULL_DEBUG_WEB",
        value_name = "BOOL",
        default_value_t = false,
        action = ArgAction::Set
    )]
    pub(crate) debug_web: bool,
    /// An image to keep on --preheat-replicas nodes before anyone needs it, fetched once for the
    /// cluster, pinned against image garbage collection (repeatable).
    #[arg(long = "preheat", env = "PEERPULL_PREHEAT", value_name = "REF", value_delimiter = ',')]
    pub(crate) preheat: Vec<Reference>,
    /// A file listing more images to preheat, one reference per line (`#` comments); read again as it changes.
    #[arg(long = "preheat-file", env = "PEERPULL_PREHEAT_FILE", value_name = "FILE")]
    pub(crate) preheat_file: Option<PathBuf>,
    /// How many nodes hold each preheated image (the nodes closest to its key).
    #[arg(
        long = "preheat-replicas",
        env = "PEERPULL_PREHEAT_REPLICAS",
        value_name = "N",
        default_value_t = defaults::count(defaults::preheat().replicas),
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) preheat_replicas: u32,
    /// How often each preheated tag is resolved again, to follow the upstream (Go syntax).
    #[arg(
        long = "preheat-interval",
        env = "PEERPULL_PREHEAT_INTERVAL",
        value_name = "DURATION",
        default_value = defaults::preheat_interval(),
        value_parser = parse_duration
    )]
    pub(crate) preheat_interval: std::time::Duration,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter such as peerpull_mirror=debug).
    #[arg(long = "log-level", env = "PEERPULL_LOG_LEVEL", value_name = "LEVEL", default_value = "info")]
    pub(crate) log_level: String,
    /// Log format.
    #[arg(long = "log-format", env = "PEERPULL_LOG_FORMAT", value_name = "FORMAT", default_value = "text")]
    pub(crate) log_format: LogFormat,
}

/// `--tag-resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TagResolutionArg {
    /// The upstream first; this node and its peers when it cannot answer.
    UpstreamFirst,
    /// This node and its peers first; the upstream last.
    PeersFirst,
}

impl From<TagResolution> for TagResolutionArg {
    fn from(resolution: TagResolution) -> Self {
        match resolution {
            TagResolution::UpstreamFirst => Self::UpstreamFirst,
            TagResolution::PeersFirst => Self::PeersFirst,
        }
    }
}

impl From<TagResolutionArg> for TagResolution {
    fn from(arg: TagResolutionArg) -> Self {
        match arg {
            TagResolutionArg::UpstreamFirst => Self::UpstreamFirst,
            TagResolutionArg::PeersFirst => Self::PeersFirst,
        }
    }
}

/// What the mirror does with private repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PrivateImagesArg {
    /// Any pull gets any content a node holds.
    Public,
    /// A private repository's content goes only to pulls the upstream accepted for it.
    Verify,
}

impl From<PrivateMode> for PrivateImagesArg {
    fn from(mode: PrivateMode) -> Self {
        match mode {
            PrivateMode::Public => Self::Public,
            PrivateMode::Verify => Self::Verify,
        }
    }
}

impl From<PrivateImagesArg> for PrivateMode {
    fn from(arg: PrivateImagesArg) -> Self {
        match arg {
            PrivateImagesArg::Public => Self::Public,
            PrivateImagesArg::Verify => Self::Verify,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The registries [`MirroredArgs`] name, and the `registries.yaml` they came from.
#[derive(Debug)]
pub(crate) struct Registries {
    /// The `hosts.toml` targets (`_default` for every registry).
    pub(crate) targets: Vec<Target>,
    /// The file, when `--registries-yaml` named one (its `configs:` hold upstream settings).
    pub(crate) yaml: Option<RegistriesYaml>,
}

impl MirroredArgs {
    /// Reads what these flags name.
    pub(crate) fn load(&self) -> Result<Registries, Failure> {
        let Some(path) = &self.yaml.registries_yaml else {
            let targets = Target::of(&Mirrored::from_list(self.mirrored_registries.clone()));
            return Ok(Registries { targets, yaml: None });
        };
        let yaml = RegistriesYaml::from_path(path).map_err(Failure::usage)?;
        let targets = yaml.targets().map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", path.display())))?;
        Ok(Registries { targets, yaml: Some(yaml) })
    }
}

impl Registries {
    /// The registries mirrored.
    pub(crate) fn mirrored(&self) -> Mirrored {
        Target::mirrored(&self.targets)
    }
}

fn parse_bootstrap(value: &str) -> Result<Bootstrap, String> {
    Bootstrap::parse(value).map_err(|e| e.to_string())
}

/// A network in CIDR notation; a bare address is that one address.
fn parse_cidr(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{value:?} is not a network (10.0.0.0/8) or an address"))
}

/// A Go duration (`1500ms`, `2s`, `1m`), more than zero.
fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    let parsed: DialTimeout = value.parse().map_err(|e: peerpull_hosts::DurationError| e.to_string())?;
    match parsed.duration() {
        d if d.is_zero() => Err(format!("{value:?} must be more than zero")),
        d => Ok(d),
    }
}

/// A byte count: digits with an optional suffix, `Ki`/`Mi`/`Gi`/`Ti` (powers of 1024) or `K`/`M`/`G`/`T` (of 1000).
fn parse_bytes(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (digits, suffix) = value.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("{value:?} is not a byte count such as 4Gi"))?;
    let unit: u64 = match suffix {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(format!("{value:?}: unknown unit {suffix:?} (use Ki, Mi, Gi, Ti, K, M, G or T)")),
    };
    number.checked_mul(unit).ok_or_else(|| format!("{value:?} is too large"))
}

/// `peerpull doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) containerd: ContainerdArgs,
    /// containerd's configuration file, read for settings the running containerd does not report.
    #[arg(
        long = "containerd-config",
        env = "PEERPULL_CONTAINERD_CONFIG",
        value_name = "FILE",
        default_value = "/etc/containerd/config.toml"
    )]
    pub(crate) containerd_config: PathBuf,
    /// Where hosts.toml files are expected when containerd does not say.
    #[arg(long = "config-path", env = "PEERPULL_CONFIG_PATH", value_name = "DIR", default_value = CONTAINERD_CONFIG_PATH)]
    pub(crate) config_path: PathBuf,
    #[command(flatten)]
    pub(crate) listen: ListenArgs,
    #[command(flatten)]
    pub(crate) admin: AdminSocketArg,
    #[command(flatten)]
    pub(crate) mirrored: MirroredArgs,
}

/// `peerpull cleanup`.
#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    #[command(flatten)]
    pub(crate) config: ConfigPathArg,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn byte_counts() {
        assert_eq!(super::parse_bytes("4Gi"), Ok(4 << 30));
        assert_eq!(super::parse_bytes("500M"), Ok(500_000_000));
        assert_eq!(super::parse_bytes("1024"), Ok(1024));
        assert!(super::parse_bytes("4GB").is_err_and(|e| e.contains("unknown unit")));
        assert!(super::parse_bytes("Gi").is_err());
        assert_eq!(super::parse_duration("1500ms"), Ok(std::time::Duration::from_millis(1500)));
        assert_eq!(super::parse_cidr("10.0.0.7").map(|n| n.to_string()), Ok("10.0.0.7/32".to_owned()));
        assert_eq!(super::parse_cidr(" 10.0.0.0/8 ").map(|n| n.to_string()), Ok("10.0.0.0/8".to_owned()));
        assert!(super::parse_cidr("10.0.0.0/33").is_err());
        assert!(super::parse_duration("0s").is_err_and(|e| e.contains("more than zero")));
        assert!(super::parse_duration("2 seconds").is_err());
        assert!(super::parse_bytes("99999999999Ti").is_err_and(|e| e.contains("too large")));
    }
}
