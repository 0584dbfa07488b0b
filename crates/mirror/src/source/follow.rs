//! A node following another's upstream fetch: its spool's opener.
//!
//! A node that misses a blob no node holds spools it from the blob's
//! fetcher, so that it can serve onward what it already
//! has (see `relay`). The opener asks the fetcher to pull through from
//! an offset, naming this node as a follower; a `307` sends it to another
//! follower, and if that one fails (refuses, or breaks off or stalls and
//! the fetch resumes) the fetcher is asked again to serve this node
//! itself, naming the follower that failed. A fetcher that cannot pull
//! through is passed over for the next one (every node passes over the failed one alike), up to
//! [`MAX_FETCHERS`]; then this node fetches from the upstream itself. When
//! the fetcher says the upstream could not serve it, the fetch fails
//! and the client gets a miss, without asking the upstream again.

use parking_lot::Mutex;
use std::sync::Arc;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use peerpull_oci::{ByteRange, Key};
use peerpull_routing::{PeerId, Provider};

use crate::fetch::PeerClient;
use crate::metrics::Failure;
use crate::spool::{self, OpenError, Opened, Opener};
use crate::wire::{self, PeerRequest};

/// How many fetchers a miss asks to pull through before fetching here.
pub(crate) const MAX_FETCHERS: usize = 3;

/// What one follower's fetch has learnt so far, across its resumes.
#[derive(Debug, Default)]
struct Learnt {
    /// Fetchers that could not pull through.
    failed: Vec<PeerId>,
    /// A follower this node was sent to failed: the fetcher serves it from now on.
    served_by_fetcher: bool,
    /// The content's size, from the first answer.
    size: Option<u64>,
    /// The follower this node streams from now, when not the fetcher.
    streaming_from: Option<PeerId>,
}

/// How asking one fetcher went.
enum Asked {
    Opened(Box<Opened>),
    /// It could not get the content from the upstream either.
    UpstreamFailed,
    Failed(Failure),
}

/// The opener of a follower's spool entry for `key`, asking peers for
/// `path_and_query`, and `upstream` when no fetcher can serve it.
pub(crate) fn opener(peer_client: PeerClient, path_and_query: String, key: Key, upstream: Opener) -> Opener {
    let learnt = Arc::new(Mutex::new(Learnt::default()));
    Arc::new(move |offset| {
        let (peer_client, path, key, upstream, learnt) =
            (peer_client.clone(), path_and_query.clone(), key.clone(), upstream.clone(), learnt.clone());
        Box::pin(async move {
            loop {
                let failed = learnt.lock().failed.clone();
                if failed.len() >= MAX_FETCHERS {
                    break;
                }
                let Some(fetcher) = peer_client.fetcher_of(&key, &failed).await else { break };
                match ask(&peer_client, fetcher, &path, &learnt, offset).await {
                    Asked::Opened(opened) => return Ok(*opened),
                    Asked::UpstreamFailed => {
                        tracing::debug!(peer = %fetcher.peer, %key, "the upstream could not serve the fetcher");
                        return Err(OpenError::FetcherFailed);
                    }
                    Asked::Failed(reason) => {
                        peer_client.failed(reason);
                        tracing::debug!(peer = %fetcher.peer, mirror = %fetcher.mirror, %reason, "the fetcher cannot pull through");
                        learnt.lock().failed.push(fetcher.peer);
                    }
                }
            }
            upstream(offset).await
        })
    })
}

/// Asks `fetcher` for the content from `offset`, following its `307` once.
async fn ask(peer_client: &PeerClient, fetcher: Provider, path: &str, learnt: &Mutex<Learnt>, offset: u64) -> Asked {
    let size = learnt.lock().size;
    let from = match (offset, size) {
        (0, _) => None,
        (_, Some(size)) => Some(ByteRange { start: offset, end_inclusive: size - 1 }),
        (_, None) => return Asked::Failed(Failure::ContentRange),
    };
    // Resuming after streaming from a follower: that follower failed this node.
    let mut gone = learnt.lock().streaming_from.take();
    loop {
        let whole = PeerRequest::fetcher(path, !learnt.lock().served_by_fetcher, gone);
        let request = from.map_or_else(|| whole.clone(), |from| whole.range(from));
        let opened = match peer_client.send(fetcher, &request).await {
            Ok(opened) => opened,
            Err((_, Failure::UpstreamFailed)) => return Asked::UpstreamFailed,
            Err((_, reason)) => return Asked::Failed(reason),
        };
        if opened.response.status() != StatusCode::TEMPORARY_REDIRECT {
            return Asked::Opened(Box::new(spooled(peer_client, opened, offset, learnt)));
        }
        let named = wire::sent_to(opened.response.headers());
        if let Some(member) = named.filter(|m| wire::reachable(m, &fetcher)) {
            let holder = PeerRequest::holder(Method::GET, path);
            let request = from.map_or_else(|| holder.clone(), |from| holder.range(from));
            match peer_client.send(member, &request).await {
                Ok(opened) => {
                    tracing::debug!(peer = %member.peer, mirror = %member.mirror, offset, "streaming from another follower");
                    learnt.lock().streaming_from = Some(member.peer);
                    return Asked::Opened(Box::new(spooled(peer_client, opened, offset, learnt)));
                }
                Err((_, reason)) => {
                    peer_client.failed(reason);
                    tracing::debug!(peer = %member.peer, mirror = %member.mirror, %reason, "the follower named cannot serve; asking the fetcher");
                    gone = Some(member.peer);
                }
            }
        }
        learnt.lock().served_by_fetcher = true;
    }
}

/// A peer's answer, as the spool takes it.
fn spooled(peer_client: &PeerClient, opened: crate::fetch::Opened, offset: u64, learnt: &Mutex<Learnt>) -> Opened {
    let headers = opened.response.headers();
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let media_type = text(CONTENT_TYPE).unwrap_or("application/octet-stream").to_owned();
    let mut learnt = learnt.lock();
    if offset == 0 {
        // `PeerClient::send` lets through no whole answer without a length.
        learnt.size = text(CONTENT_LENGTH).and_then(|v| v.parse().ok());
    }
    let size = learnt.size.unwrap_or_default();
    // A node that fetches for us may pause while its own fetch resumes.
    let stall = peer_client.fetcher_stall();
    Opened {
        meta: spool::Meta { size, media_type },
        body: opened.response.into_body(),
        peer: Some(opened.provider),
        stall: Some(stall),
    }
}
