//! An upstream fetch already under way on this node: the second source.
//!
//! When this node is fetching a digest from the upstream (for its own
//! containerd, or for peers that chose it), every other request for that
//! digest reads the same spool file as it grows instead of asking anyone
//! else. A request from a peer is answered here too: that is how nodes
//! streaming from the node that fetches get their bytes, and how a node
//! following that fetch serves onward what it has (see `relay`); a
//! follower past this node's fan-out is sent to another.

use std::time::Duration;

use http::Response;

use super::{Kind, Source};
use crate::body::{self, Body};
use crate::metrics::Metrics;
use crate::relay::Shape;
use crate::request::{Target, Wanted};
use crate::spool::{self, Spool};

/// Content this node is fetching (or just fetched) from the upstream.
pub(crate) struct Spooled {
    spool: Spool,
    metrics: Metrics,
    /// How long to wait for the fetch to make progress.
    wait: Duration,
    /// How followers are placed (see `relay`).
    shape: Shape,
}

impl Spooled {
    pub(crate) fn new(spool: Spool, metrics: Metrics, wait: Duration, shape: Shape) -> Self {
        Self { spool, metrics, wait, shape }
    }
}

#[async_trait::async_trait]
impl Source for Spooled {
    fn kind(&self) -> Kind {
        Kind::Spool
    }

    async fn answer(&self, wanted: &Wanted) -> Option<Response<Body>> {
        let Target::Digest(digest) = &wanted.target else { return None };
        let entry = self.spool.get(digest)?;
        let meta = entry.opened(self.wait).await.ok()?;
        if let Some(sent) = super::placed(&entry, wanted, self.shape, &self.metrics) {
            return Some(sent);
        }
        self.metrics.shared();
        Some(respond(entry, meta, wanted, self.wait, self.metrics.served(Kind::Spool)))
    }
}

/// The answer to `wanted` from a spool `entry` whose upstream answered with `meta`.
pub(crate) fn respond(
    entry: spool::Lease,
    meta: spool::Meta,
    wanted: &Wanted,
    wait: Duration,
    served: prometheus_client::metrics::counter::Counter,
) -> Response<Body> {
    let digest = entry.digest.clone();
    let (mut response, range) = match super::content_response(wanted, &digest, meta.size, &meta.media_type) {
        super::Prepared::Content(response, range) => (response, range),
        super::Prepared::Refused(response) => return response,
    };
    if wanted.head {
        return response;
    }
    let (start, end) = range.map_or((0, meta.size), |r| (r.start, r.end_inclusive + 1));
    let chunks = spool::read(entry, start, end, wait);
    *response.body_mut() = body::stream(super::counted(chunks, served));
    response
}
