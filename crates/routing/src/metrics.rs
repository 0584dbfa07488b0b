//! The router's own metrics: `peerpull_routing_peers` and
//! `peerpull_advertised_keys{kind}`.
//!
//! The event loop owns the state both describe (the routing table and the
//! advertised set), so it keeps them current itself; the daemon only
//! registers them with [`Router::register_metrics`](crate::Router::register_metrics).

use std::fmt::Write as _;

use peerpull_oci::KeyKind;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The router's gauges; clones share them.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Peers in the routing table.
    pub(crate) routing_peers: Gauge,
    advertised_keys: Family<KindLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
struct Kind(KeyKind);

impl Metrics {
    pub(crate) fn new() -> Self {
        let metrics = Self { routing_peers: Gauge::default(), advertised_keys: Family::default() };
        // Both kinds are reported from the start, at zero.
        for kind in [KeyKind::Digest, KeyKind::Tag] {
            metrics.advertised(kind);
        }
        metrics
    }

    /// The gauge of advertised keys of `kind`.
    pub(crate) fn advertised(&self, kind: KeyKind) -> Gauge {
        self.advertised_keys.get_or_create(&KindLabels { kind: Kind(kind) }).clone()
    }

    /// Registers the gauges in `registry` under the `peerpull` prefix.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let peerpull = registry.sub_registry_with_prefix("peerpull");
        peerpull.register("routing_peers", "Peers in the routing table", self.routing_peers.clone());
        peerpull.register("advertised_keys", "Keys this node advertises, by kind", self.advertised_keys.clone());
    }
}

impl EncodeLabelValue for Kind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}
