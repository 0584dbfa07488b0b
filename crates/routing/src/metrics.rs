//! The router's own metrics, all under the `peerpull_` prefix:
//!
//! - `routing_peers`: peers in the routing table; `routing_connected_peers`;
//!   `advertised_keys{kind}`.
//! - `routing_lookups_total{outcome}` (`found`, `none`, `timeout`,
//!   `cancelled`) and
//!   `routing_lookup_seconds`, the time from a lookup's start to its first
//!   usable provider (found lookups only).
//! - `routing_providers_resolved_total{how}`: how each provider a lookup
//!   returned became usable: `connected` (already connected and identified),
//!   `record` (its mirror address came with the provider record: no
//!   connection needed) or `dialed` (a dial plus Identify first).
//! - `routing_announcements_queued` (regions waiting for a round),
//!   `routing_announcements_total{result}` (keys whose round succeeded or
//!   failed), `routing_region_depth` (how deep announcement regions are).
//! - `routing_walks_total{kind}` (`bootstrap`, `closest`, `region`).
//! - `routing_batch_keys` (keys per batch sent) and
//!   `routing_records_stored_total{origin}` (records stored for others, from
//!   a `batch` or a single `add_provider`).
//! - `routing_requests_total{direction, kind}`: Kademlia requests and
//!   batches (`provide_batch`) this node sent (counted when each query ends,
//!   or as each batch goes out) and answered, and
//!   `routing_pings_total`: what a quiet cluster costs a node.
//! - `routing_stored_records`, `routing_stored_providers` and
//!   `routing_stored_records_max_per_peer`: the records this node holds for
//!   others (refreshed on the housekeeping sweep), and
//!   `routing_records_refused_total` (a peer past its quota, or a full store),
//!   `routing_records_gone_total` (dropped: their holder is gone).
//!
//! The event loop owns the state all of these describe, so it keeps them
//! current itself; the daemon only registers them with
//! [`Router::register_metrics`](crate::Router::register_metrics).

use std::fmt::Write as _;

use peerpull_oci::KeyKind;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The router's metrics; clones share them.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Peers in the routing table.
    pub(crate) routing_peers: Gauge,
    /// Peers with at least one open connection.
    pub(crate) connected_peers: Gauge,
    advertised_keys: Family<KindLabels, Gauge>,
    lookups: Family<OutcomeLabels, Counter>,
    /// Seconds from a lookup's start to its first usable provider.
    pub(crate) lookup_seconds: Histogram,
    resolved: Family<HowLabels, Counter>,
    /// Announcements waiting for a free slot.
    pub(crate) announcements_queued: Gauge,
    announcements: Family<ResultLabels, Counter>,
    /// The depth of announcement regions.
    pub(crate) region_depth: Gauge,
    batch_keys: Histogram,
    records_stored: Family<OriginLabels, Counter>,
    walks: Family<WalkLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    /// Liveness probes answered.
    pub(crate) pings: Counter,
    /// Provider records held for other nodes.
    pub(crate) stored_records: Gauge,
    /// Other nodes with at least one record here.
    pub(crate) stored_providers: Gauge,
    /// The most records held for any one other node.
    pub(crate) stored_max_per_peer: Gauge,
    /// Records refused (quota or a full store).
    pub(crate) records_refused: Counter,
    /// Records dropped because their holder is gone.
    pub(crate) records_gone: Counter,
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// At least one usable provider.
    Found,
    /// The DHT has no provider.
    None,
    /// The lookup's time ran out before any provider was usable.
    Timeout,
    /// Every caller gave up on it first.
    Cancelled,
}

/// How a provider became usable.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum How {
    /// Already connected and identified.
    Connected,
    /// Its mirror address came with its provider record.
    Record,
    /// Dialled, then identified.
    Dialed,
}

/// A Kademlia walk this node started.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Walk {
    Bootstrap,
    Closest,
    Region,
}

/// The Kademlia requests counted.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Request {
    FindNode,
    GetProviders,
    AddProvider,
    Batch,
    Other,
}

/// How a record stored for another node came.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Origin {
    Batch,
    AddProvider,
}

/// Sent by this node, or answered by it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) enum Direction {
    Sent,
    Answered,
}

/// Label values in snake case, as Prometheus names go.
macro_rules! label_values {
    ($($ty:ident { $($variant:ident => $text:literal),+ $(,)? })+) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(match self { $($ty::$variant => $text),+ })
            }
        }
    )+};
}

label_values! {
    Outcome { Found => "found", None => "none", Timeout => "timeout", Cancelled => "cancelled" }
    How { Connected => "connected", Record => "record", Dialed => "dialed" }
    Walk { Bootstrap => "bootstrap", Closest => "closest", Region => "region" }
    Request {
        FindNode => "find_node",
        GetProviders => "get_providers",
        AddProvider => "add_provider",
        Batch => "provide_batch",
        Other => "other",
    }
    Origin { Batch => "batch", AddProvider => "add_provider" }
    Direction { Sent => "sent", Answered => "answered" }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: Kind,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HowLabels {
    how: How,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WalkLabels {
    kind: Walk,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: Origin,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    direction: Direction,
    kind: Request,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
struct Kind(KeyKind);

impl Metrics {
    pub(crate) fn new() -> Self {
        let metrics = Self {
            routing_peers: Gauge::default(),
            connected_peers: Gauge::default(),
            advertised_keys: Family::default(),
            lookups: Family::default(),
            // 0.25 ms to about 8 s.
            lookup_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            resolved: Family::default(),
            announcements_queued: Gauge::default(),
            announcements: Family::default(),
            region_depth: Gauge::default(),
            // 1 to 8192 keys.
            batch_keys: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            records_stored: Family::default(),
            walks: Family::default(),
            requests: Family::default(),
            pings: Counter::default(),
            stored_records: Gauge::default(),
            stored_providers: Gauge::default(),
            stored_max_per_peer: Gauge::default(),
            records_refused: Counter::default(),
            records_gone: Counter::default(),
        };
        // Every series is reported from the start, at zero.
        for kind in [KeyKind::Digest, KeyKind::Tag] {
            metrics.advertised(kind);
        }
        for outcome in [Outcome::Found, Outcome::None, Outcome::Timeout, Outcome::Cancelled] {
            drop(metrics.lookups.get_or_create(&OutcomeLabels { outcome }));
        }
        for how in [How::Connected, How::Record, How::Dialed] {
            drop(metrics.resolved.get_or_create(&HowLabels { how }));
        }
        for result in ["ok", "failed"] {
            drop(metrics.announcements.get_or_create(&ResultLabels { result }));
        }
        for kind in [Walk::Bootstrap, Walk::Closest, Walk::Region] {
            drop(metrics.walks.get_or_create(&WalkLabels { kind }));
        }
        for direction in [Direction::Sent, Direction::Answered] {
            for kind in [Request::FindNode, Request::GetProviders, Request::AddProvider, Request::Batch] {
                drop(metrics.requests.get_or_create(&RequestLabels { direction, kind }));
            }
        }
        for origin in [Origin::Batch, Origin::AddProvider] {
            drop(metrics.records_stored.get_or_create(&OriginLabels { origin }));
        }
        metrics
    }

    /// The gauge of advertised keys of `kind`.
    pub(crate) fn advertised(&self, kind: KeyKind) -> Gauge {
        self.advertised_keys.get_or_create(&KindLabels { kind: Kind(kind) }).clone()
    }

    pub(crate) fn lookup(&self, outcome: Outcome) {
        self.lookups.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub(crate) fn resolved(&self, how: How) {
        self.resolved.get_or_create(&HowLabels { how }).inc();
    }

    /// The counts `Router::counters` reports.
    pub(crate) fn counters(&self) -> crate::Counters {
        let resolved = |how| self.resolved.get_or_create(&HowLabels { how }).get();
        crate::Counters {
            messages: self.messages(),
            pings: self.pings.get(),
            connections: u64::try_from(self.connected_peers.get()).unwrap_or(0),
            connected: resolved(How::Connected),
            from_record: resolved(How::Record),
            dialed: resolved(How::Dialed),
            announcements: self.announcements.get_or_create(&ResultLabels { result: "ok" }).get()
                + self.announcements.get_or_create(&ResultLabels { result: "failed" }).get(),
            announcements_failed: self.announcements.get_or_create(&ResultLabels { result: "failed" }).get(),
            bootstraps: self.walks.get_or_create(&WalkLabels { kind: Walk::Bootstrap }).get(),
        }
    }

    /// A region's round ended, announcing `keys` keys (or failing to).
    pub(crate) fn region_announced(&self, ok: bool, keys: usize) {
        let result = if ok { "ok" } else { "failed" };
        self.announcements.get_or_create(&ResultLabels { result }).inc_by(u64::try_from(keys).unwrap_or(u64::MAX));
    }

    /// A batch of `keys` keys went out.
    pub(crate) fn batch_sent(&self, keys: usize) {
        self.requests(Direction::Sent, Request::Batch, 1);
        self.batch_keys.observe(keys as f64);
    }

    /// A record for another node was stored.
    pub(crate) fn stored(&self, origin: Origin) {
        self.records_stored.get_or_create(&OriginLabels { origin }).inc();
    }

    pub(crate) fn walk(&self, kind: Walk) {
        self.walks.get_or_create(&WalkLabels { kind }).inc();
    }

    pub(crate) fn requests(&self, direction: Direction, kind: Request, n: u64) {
        self.requests.get_or_create(&RequestLabels { direction, kind }).inc_by(n);
    }

    /// Kademlia requests sent and answered, and pings, so far: what the simulation reads.
    fn messages(&self) -> u64 {
        let mut total = self.pings.get();
        for direction in [Direction::Sent, Direction::Answered] {
            for kind in [Request::FindNode, Request::GetProviders, Request::AddProvider, Request::Batch, Request::Other]
            {
                total += self.requests.get_or_create(&RequestLabels { direction, kind }).get();
            }
        }
        total
    }

    /// Registers the metrics in `registry` under the `peerpull` prefix.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("peerpull");
        r.register("routing_peers", "Peers in the routing table", self.routing_peers.clone());
        r.register("routing_connected_peers", "Peers with an open connection", self.connected_peers.clone());
        r.register("advertised_keys", "Keys this node advertises, by kind", self.advertised_keys.clone());
        r.register("routing_lookups", "Provider lookups, by outcome", self.lookups.clone());
        r.register(
            "routing_lookup_seconds",
            "Seconds from a lookup's start to its first usable provider",
            self.lookup_seconds.clone(),
        );
        r.register(
            "routing_providers_resolved",
            "Providers returned by lookups, by how their mirror became known",
            self.resolved.clone(),
        );
        r.register(
            "routing_announcements_queued",
            "Announcements waiting for a free slot",
            self.announcements_queued.clone(),
        );
        r.register("routing_announcements", "Announcements finished, by result", self.announcements.clone());
        r.register("routing_region_depth", "How deep announcement regions are", self.region_depth.clone());
        r.register("routing_batch_keys", "Keys per batch of provider records sent", self.batch_keys.clone());
        r.register(
            "routing_records_stored",
            "Provider records stored for other nodes, by how they came",
            self.records_stored.clone(),
        );
        r.register("routing_walks", "Routing-table walks finished, by kind", self.walks.clone());
        r.register("routing_requests", "Kademlia requests and batches sent and answered", self.requests.clone());
        r.register("routing_pings", "Liveness probes answered", self.pings.clone());
        r.register("routing_stored_records", "Provider records held for other nodes", self.stored_records.clone());
        r.register(
            "routing_stored_providers",
            "Other nodes with provider records held here",
            self.stored_providers.clone(),
        );
        r.register(
            "routing_stored_records_max_per_peer",
            "The most provider records held for any one other node",
            self.stored_max_per_peer.clone(),
        );
        r.register(
            "routing_records_refused",
            "Provider records refused: the peer's quota or the store was full",
            self.records_refused.clone(),
        );
        r.register(
            "routing_records_gone",
            "Provider records dropped because their holder is gone (its liveness probe or a dial failed)",
            self.records_gone.clone(),
        );
    }
}

impl EncodeLabelValue for Kind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}
