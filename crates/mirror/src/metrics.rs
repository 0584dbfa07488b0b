//! Prometheus metrics of the `/v2` mirror, named as Spegel names its own
//! with the `peerpull` prefix.
//!
//! Every label value comes from a fixed set ([`Kind`],
//! [`Cache`], [`Failure`]) except `registry`, the `?ns=` a request names,
//! which is bounded: the mirrored registries and those that served content,
//! at most [`MAX_REGISTRY_LABELS`], and `other` for the rest. Requests are
//! counted once each, from the outcome the handler returns; bytes are
//! counted on a counter resolved once per response.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use peerpull_routing::Zone;
use peerpull_upstream::Outcome;

/// Where content came from; the `source` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// This node's containerd.
    Local,
    /// A fetch from the upstream already under way on this node.
    Spool,
    /// Another node's mirror.
    Peer,
    /// The upstream registry (fetched by this node or by the blob's fetcher).
    Upstream,
}

impl Kind {
    /// Every source, in the order the chain asks them.
    pub const ALL: [Kind; 4] = [Kind::Local, Kind::Spool, Kind::Peer, Kind::Upstream];

    /// The label value: `local`, `spool`, `peer` or `upstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::Spool => "spool",
            Kind::Peer => "peer",
            Kind::Upstream => "upstream",
        }
    }
}

/// How a check of a private repository's pull ended; the `outcome` label
/// of `peerpull_private_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// A pull without credentials was asked for them (401).
    Challenged,
    /// The upstream accepted the pull's credentials for the repository.
    Verified,
    /// A recent verification of the same credentials and repository held.
    Cached,
    /// The upstream could not be asked; a verification within the grace held.
    Grace,
    /// The upstream refused the credentials for the repository (403).
    Denied,
    /// The repository has no such tag or digest for these credentials (404).
    Absent,
    /// The upstream could not be asked and no verification held (403).
    Unverifiable,
    /// A peer asked for private content without an access proof (403).
    PeerRefused,
}

/// Whether the mirror served a request or sent containerd elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cache {
    /// Served from a source.
    Hit,
    /// Answered 404 so containerd tries its next host.
    Miss,
}

/// Why a request to a peer, or a transfer from one, failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The request could not be built.
    Request,
    /// Connecting or sending failed.
    Connect,
    /// No response headers within the peer timeout.
    Timeout,
    /// The peer does not hold the content (any more).
    NotFound,
    /// Another unexpected status.
    Status,
    /// A resumed transfer came back with the wrong range.
    ContentRange,
    /// No body bytes within the stall timeout.
    Stall,
    /// The body ended before its announced length.
    ShortBody,
    /// The body failed mid-stream.
    Body,
    /// The bytes did not match the digest.
    DigestMismatch,
    /// The node asked to pull through could not get it from the upstream.
    UpstreamFailed,
    /// A peer answered a tag without naming the digest it points at.
    NoDigest,
    /// A whole answer without `Content-Length`: no end to check its bytes at.
    NoLength,
    /// The peer is uploading all it may (429): another holder is asked.
    Busy,
}

/// What the mirror is doing now, read from its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Responses whose body is being sent, by source.
    pub in_flight: [(Kind, u64); 4],
    /// Requests that joined an upstream fetch under way on this node, since start.
    pub transfers_shared: u64,
    /// Bytes reserved in the spool.
    pub spool_bytes: u64,
}

/// Labels of `peerpull_mirror_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    registry: String,
    cache: Cache,
    /// Empty for misses.
    source: Option<Kind>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: Kind,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Failure,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: OutcomeLabel,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
struct OutcomeLabel(Outcome);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    zone: ZoneLabel,
}

/// Whether a peer is in this node's zone: the `zone` label.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum ZoneLabel {
    Same,
    Other,
}

impl EncodeLabelValue for ZoneLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            ZoneLabel::Same => "same",
            ZoneLabel::Other => "other",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    outcome: Check,
}

/// Every metric of the mirror, registered once; clone freely.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    resolve_duration: Histogram,
    bytes_served: Family<SourceLabels, Counter>,
    peer_fetch_failures: Family<ReasonLabels, Counter>,
    upstream_requests: Family<OutcomeLabels, Counter>,
    upstream_bytes: Counter,
    transfers_shared: Counter,
    in_flight: Family<SourceLabels, Gauge>,
    spool_bytes: Gauge,
    tags_resolved: Family<SourceLabels, Counter>,
    tags_in_outage: Counter,
    uploads_refused: Counter,
    peer_upload_bytes: Counter,
    relayed: Counter,
    private_checks: Family<CheckLabels, Counter>,
    peer_received: Family<ZoneLabels, Counter>,
    /// This node's zone, which `zone` labels are relative to.
    zone: Zone,
    /// The registries named in the `registry` label.
    registries: Arc<Mutex<HashSet<String>>>,
}

/// The most registries named in the `registry` label.
pub const MAX_REGISTRY_LABELS: usize = 64;

/// The `registry` label of requests for any registry not named.
pub const OTHER_REGISTRY: &str = "other";

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            resolve_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            bytes_served: Family::default(),
            peer_fetch_failures: Family::default(),
            upstream_requests: Family::default(),
            upstream_bytes: Counter::default(),
            transfers_shared: Counter::default(),
            in_flight: Family::default(),
            spool_bytes: Gauge::default(),
            tags_resolved: Family::default(),
            tags_in_outage: Counter::default(),
            uploads_refused: Counter::default(),
            peer_upload_bytes: Counter::default(),
            relayed: Counter::default(),
            private_checks: Family::default(),
            peer_received: Family::default(),
            zone: Zone::NONE,
            registries: Arc::default(),
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
        peerpull.register(
            "upstream_requests",
            "Requests to upstream registries, by outcome",
            metrics.upstream_requests.clone(),
        );
        peerpull.register(
            "upstream_bytes",
            "Body bytes fetched from upstream registries",
            metrics.upstream_bytes.clone(),
        );
        peerpull.register(
            "transfers_shared",
            "Requests that joined an upstream fetch already under way on this node",
            metrics.transfers_shared.clone(),
        );
        peerpull.register(
            "transfers_in_flight",
            "Responses with a body being sent, by source",
            metrics.in_flight.clone(),
        );
        peerpull.register("spool_bytes", "Bytes reserved in the spool", metrics.spool_bytes.clone());
        peerpull.register(
            "tags_resolved",
            "Tags resolved, by where the answer came from",
            metrics.tags_resolved.clone(),
        );
        peerpull.register(
            "tags_resolved_in_outage",
            "Tags answered by this node or its peers because the upstream could not answer",
            metrics.tags_in_outage.clone(),
        );
        peerpull.register(
            "peer_uploads_refused",
            "Requests from peers answered 429 at the upload limits (--max-peer-uploads, --max-upload-rate)",
            metrics.uploads_refused.clone(),
        );
        peerpull.register(
            "peer_upload_bytes",
            "Body bytes sent to other nodes, counted when each response ends",
            metrics.peer_upload_bytes.clone(),
        );
        peerpull.register(
            "followers_relayed",
            "Nodes following this node's upstream fetch that were sent to stream from another follower (--relay-fanout)",
            metrics.relayed.clone(),
        );
        peerpull.register(
            "peer_bytes_received",
            "Body bytes received from other nodes (holders, the fetcher, followers), by whether the sender is in \
             this node's zone (same) or not (other)",
            metrics.peer_received.clone(),
        );
        peerpull.register(
            "private_checks",
            "Checks of pulls of private repositories (--private-images verify), by outcome",
            metrics.private_checks.clone(),
        );
        metrics
    }

    /// The same metrics, labelling bytes received by whether the sender is in `zone`.
    pub(crate) fn in_zone(mut self, zone: Zone) -> Self {
        self.zone = zone;
        self
    }

    /// Counts `bytes` received from a peer in `zone`.
    pub(crate) fn peer_received(&self, zone: &Zone, bytes: u64) {
        let zone = if zone.same_as(&self.zone) { ZoneLabel::Same } else { ZoneLabel::Other };
        self.peer_received.get_or_create(&ZoneLabels { zone }).inc_by(bytes);
    }

    /// Counts one check of a private repository's pull.
    pub(crate) fn private_check(&self, outcome: Check) {
        self.private_checks.get_or_create(&CheckLabels { outcome }).inc();
    }

    /// Names `registries` in the `registry` label from the start (the mirrored ones).
    pub(crate) fn name_registries<'a>(&self, registries: impl IntoIterator<Item = &'a str>) {
        let mut named = self.registries.lock();
        for registry in registries.into_iter().take(MAX_REGISTRY_LABELS) {
            named.insert(registry.to_owned());
        }
    }

    /// Counts one request for `registry`: a hit from `source`, or a miss.
    ///
    /// The label is the registry when it is named: a mirrored one, or one
    /// that has served content (up to [`MAX_REGISTRY_LABELS`]); any other
    /// value a client puts in `?ns=` counts as [`OTHER_REGISTRY`], so
    /// clients cannot grow the metrics without bound.
    pub(crate) fn request(&self, registry: &str, source: Option<Kind>) {
        let cache = if source.is_some() { Cache::Hit } else { Cache::Miss };
        let registry = {
            let mut named = self.registries.lock();
            if source.is_some() && named.len() < MAX_REGISTRY_LABELS {
                named.insert(registry.to_owned());
            }
            if named.contains(registry) {
                registry.to_owned()
            } else {
                OTHER_REGISTRY.to_owned()
            }
        };
        self.requests.get_or_create(&RequestLabels { registry, cache, source }).inc();
    }

    /// The counter of body bytes served from `source`; resolve once per response.
    pub(crate) fn served(&self, source: Kind) -> Counter {
        self.bytes_served.get_or_create(&SourceLabels { source }).clone()
    }

    /// Counts one failed peer request or transfer.
    pub(crate) fn peer_failure(&self, reason: Failure) {
        self.peer_fetch_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Records how long finding the first good provider took.
    pub(crate) fn resolved_in(&self, seconds: f64) {
        self.resolve_duration.observe(seconds);
    }

    /// Counts one upstream request by how it ended.
    pub(crate) fn upstream(&self, outcome: Outcome) {
        self.upstream_requests.get_or_create(&OutcomeLabels { outcome: OutcomeLabel(outcome) }).inc();
    }

    /// Counts body bytes fetched from an upstream.
    pub(crate) fn upstream_bytes(&self, bytes: u64) {
        self.upstream_bytes.inc_by(bytes);
    }

    /// Counts a request that joined a fetch under way.
    pub(crate) fn shared(&self) {
        self.transfers_shared.inc();
    }

    /// Counts a peer's request turned away at the upload limits (429).
    pub(crate) fn upload_refused(&self) {
        self.uploads_refused.inc();
    }

    /// Counts body bytes sent to another node.
    pub(crate) fn peer_upload(&self, bytes: u64) {
        self.peer_upload_bytes.inc_by(bytes);
    }

    /// Counts a follower sent to stream from another follower.
    pub(crate) fn relayed(&self) {
        self.relayed.inc();
    }

    /// Counts a tag resolved by `source` (none: not resolved), `outage` when the upstream could not answer.
    pub(crate) fn tag(&self, source: Option<Kind>, outage: bool) {
        let Some(source) = source else { return };
        self.tags_resolved.get_or_create(&SourceLabels { source }).inc();
        if outage {
            self.tags_in_outage.inc();
        }
    }

    /// The gauge of responses from `source` whose body is being sent.
    pub(crate) fn in_flight(&self, source: Kind) -> Gauge {
        self.in_flight.get_or_create(&SourceLabels { source }).clone()
    }

    /// What the mirror is doing now.
    pub fn stats(&self) -> Stats {
        let count = |gauge: &Gauge| u64::try_from(gauge.get()).unwrap_or(0);
        Stats {
            in_flight: Kind::ALL.map(|source| (source, count(&self.in_flight(source)))),
            transfers_shared: self.transfers_shared.get(),
            spool_bytes: count(&self.spool_bytes),
        }
    }

    /// Sets the bytes reserved in the spool.
    pub(crate) fn spool_bytes(&self, bytes: u64) {
        self.spool_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

impl Failure {
    /// The label value, e.g. `digest_mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Request => "request",
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::NotFound => "not_found",
            Failure::Status => "status",
            Failure::ContentRange => "content_range",
            Failure::Stall => "stall",
            Failure::ShortBody => "short_body",
            Failure::Body => "body",
            Failure::DigestMismatch => "digest_mismatch",
            Failure::UpstreamFailed => "upstream_failed",
            Failure::NoDigest => "no_digest",
            Failure::NoLength => "no_length",
            Failure::Busy => "busy",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Kind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl Check {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Challenged => "challenged",
            Check::Verified => "verified",
            Check::Cached => "cached",
            Check::Grace => "grace",
            Check::Denied => "denied",
            Check::Absent => "absent",
            Check::Unverifiable => "unverifiable",
            Check::PeerRefused => "peer_refused",
        }
    }
}

impl EncodeLabelValue for Check {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Cache {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Cache::Hit => "hit",
            Cache::Miss => "miss",
        })
    }
}

impl EncodeLabelValue for Failure {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for OutcomeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}
