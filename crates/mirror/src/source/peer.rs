//! Other nodes' mirrors, found through the DHT: the source after the local store.
//!
//! Looks up the providers of the wanted key, opens the first good answer
//! (hedged, within the request's attempts budget) and streams it through
//! [`crate::transfer`], resumed and verified. Peers are always asked for the
//! whole content, with its length (`fetch` refuses an answer without one): a
//! client's range is cut from it here, since only the whole can be checked
//! against the digest. A big blob with several holders comes from all of
//! them at once ([`crate::multi`]). A request from a peer (loop guard) is
//! never passed on to other peers.

use http::{header, HeaderValue, Method, Response};
use peerpull_oci::Digest;
use peerpull_routing::Zone;

use super::{Kind, Prepared, Source};
use crate::body::{self, Body};
use crate::fetch::{self, PeerClient};
use crate::metrics::Metrics;
use crate::multi::Multi;
use crate::recent::Via;
use crate::request::{Target, Wanted};
use crate::transfer::{Feed, Transfer};
use crate::wire::{Part, PeerRequest};

/// The most holders one blob comes from at once.
const MAX_HOLDERS: usize = 4;
/// How long to wait for more holders once one has answered.
const MORE_HOLDERS_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Content from the peers that hold it.
pub(crate) struct Peer {
    peer_client: PeerClient,
    metrics: Metrics,
    /// Blobs of at least this many bytes come from several holders at once.
    multi_source_min_bytes: u64,
    /// This node's zone: a blob from one of its holders comes from its holders only.
    zone: Zone,
}

impl Peer {
    pub(crate) fn new(peer_client: PeerClient, metrics: Metrics, multi_source_min_bytes: u64, zone: Zone) -> Self {
        Self { peer_client, metrics, multi_source_min_bytes, zone }
    }
}

#[async_trait::async_trait]
impl Source for Peer {
    fn kind(&self) -> Kind {
        Kind::Peer
    }

    async fn answer(&self, wanted: &Wanted) -> Option<Response<Body>> {
        if wanted.by_peer() {
            return None;
        }
        let key = wanted.key()?;
        let started = tokio::time::Instant::now();
        let mut providers = self.peer_client.holders(&key).await;
        let method = if wanted.head { Method::HEAD } else { Method::GET };
        let mut request = PeerRequest::holder(method, &wanted.path_and_query);
        request.needs_digest = matches!(wanted.target, Target::Tag(_));
        request.access = wanted.verified;
        // A body is asked for whole, to be verified; a range is cut from it below.
        let asked = wanted.range.as_deref().filter(|_| wanted.head).and_then(|r| HeaderValue::from_str(r).ok());
        if let Some(range) = asked {
            request.part = Part::AsAsked(range);
        }
        let opened = self.peer_client.open(&mut providers, &request).await?;
        self.metrics.resolved_in(started.elapsed().as_secs_f64());
        tracing::debug!(%key, peer = %opened.provider.peer, mirror = %opened.provider.mirror, "serving from a peer");

        if wanted.head {
            let mut response = Response::new(body::empty());
            *response.status_mut() = opened.response.status();
            fetch::forwarded_headers(opened.response.headers(), response.headers_mut());
            response.extensions_mut().insert(Via(opened.provider));
            return Some(response);
        }
        let headers = opened.response.headers();
        let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let size = value(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let expected: Option<Digest> = match &wanted.target {
            Target::Digest(digest) => Some(digest.clone()),
            Target::Tag(_) => value(body::DOCKER_CONTENT_DIGEST).and_then(|v| v.parse().ok()),
            // Never asked of peers (no key to look up); a made-up index has no digest to check.
            Target::Referrers(_) => None,
        };
        // `PeerClient::send` lets through no whole answer without both.
        let (Some(size), Some(expected)) = (size, expected) else { return None };
        let media_type = value(header::CONTENT_TYPE).unwrap_or("application/octet-stream");
        let (mut response, range) = match super::content_response(wanted, &expected, size, media_type) {
            Prepared::Content(response, range) => (response, range),
            Prepared::Refused(response) => return Some(response),
        };
        response.extensions_mut().insert(Via(opened.provider));
        let served = self.metrics.served(Kind::Peer);
        let min = self.multi_source_min_bytes;
        if range.is_none() && min > 0 && size >= min {
            // Holders come in this node's zone first: from one of its own, only its own.
            let own_zone = !self.zone.is_none() && opened.provider.zone.same_as(&self.zone);
            let mut others = Vec::new();
            while others.len() + 1 < MAX_HOLDERS {
                match providers.next_within(MORE_HOLDERS_WAIT).await {
                    Some(provider) if own_zone && !provider.zone.same_as(&self.zone) => break,
                    Some(provider) => others.push(provider),
                    None => break,
                }
            }
            if !others.is_empty() {
                tracing::debug!(%key, holders = others.len() + 1, size, "serving from several peers");
                let first = (opened.provider, opened.response.into_body());
                let multi = Multi::new(self.peer_client.clone(), request, first, others, size, expected, served);
                *response.body_mut() = body::stream(multi.stream());
                return Some(response);
            }
        }
        let feed = Feed { body: opened.response.into_body(), provider: Some(opened.provider), size };
        let transfer = Transfer::new(self.peer_client.clone(), request, feed, Some(expected), served)
            .resumed_from(providers)
            .only(range);
        *response.body_mut() = body::stream(transfer.stream());
        Some(response)
    }
}
