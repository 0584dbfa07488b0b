//! Prometheus metrics of the mirror and the daemon, named as Spegel names its
//! own with the `peerpull` prefix.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `peerpull_mirror_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The registry the request was for (`?ns=`), or `unknown`.
    pub registry: String,
    /// `hit` when the mirror served it, `miss` when it answered 404.
    pub cache: String,
    /// `local` or `peer`; empty for misses.
    pub source: String,
}

/// A label set of one `kind` (tag or digest).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `tag` or `digest`.
    pub kind: String,
}

/// A label set of one `source` (local or peer).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `local` or `peer`.
    pub source: String,
}

/// A label set of one failure `reason`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// e.g. `connect`, `status`, `stall`, `digest_mismatch`.
    pub reason: String,
}

/// Every metric, registered once; clone freely.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Requests by registry, outcome and source.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to find the first provider of a key.
    pub resolve_duration: Histogram,
    /// Keys this node advertises, by kind.
    pub advertised_keys: Family<KindLabels, Gauge>,
    /// Body bytes served, by where they came from.
    pub bytes_served: Family<SourceLabels, Counter>,
    /// Failed peer fetches, by reason.
    pub peer_fetch_failures: Family<ReasonLabels, Counter>,
    /// Peers in the routing table.
    pub routing_peers: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            resolve_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            advertised_keys: Family::default(),
            bytes_served: Family::default(),
            peer_fetch_failures: Family::default(),
            routing_peers: Gauge::default(),
        };
        let peerpull = registry.sub_registry_with_prefix("peerpull");
        peerpull.register(
            "mirror_requests",
            "Mirror requests by registry, cache hit or miss and source",
            metrics.requests.clone(),
        );
        peerpull.register(
            "resolve_duration_seconds",
            "Time to find the first peer holding a key",
            metrics.resolve_duration.clone(),
        );
        peerpull.register("advertised_keys", "Keys this node advertises, by kind", metrics.advertised_keys.clone());
        peerpull.register(
            "mirror_bytes_served",
            "Body bytes the mirror served, by source",
            metrics.bytes_served.clone(),
        );
        peerpull.register(
            "peer_fetch_failures",
            "Failed fetches from peers, by reason",
            metrics.peer_fetch_failures.clone(),
        );
        peerpull.register("routing_peers", "Peers in the routing table", metrics.routing_peers.clone());
        metrics
    }

    /// Counts one request.
    pub fn request(&self, registry: &str, hit: bool, source: &str) {
        let labels = RequestLabels {
            registry: registry.to_owned(),
            cache: if hit { "hit" } else { "miss" }.to_owned(),
            source: source.to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts served bytes.
    pub fn served(&self, source: &str, bytes: u64) {
        self.bytes_served.get_or_create(&SourceLabels { source: source.to_owned() }).inc_by(bytes);
    }

    /// Counts one failed peer fetch.
    pub fn peer_failure(&self, reason: &str) {
        self.peer_fetch_failures.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// Sets the number of advertised keys of one kind.
    pub fn set_advertised(&self, kind: &str, count: i64) {
        self.advertised_keys.get_or_create(&KindLabels { kind: kind.to_owned() }).set(count);
    }
}

/// Renders `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(%error, "encoding metrics failed");
    }
    out
}
