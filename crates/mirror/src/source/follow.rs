//! A node following another's upstream fetch: its spool's opener.
//!
//! A node that misses a blob no node holds spools it from the node the
//! cluster chose to fetch it, so that it can serve onward what it already
//! has (see `relay`). The opener asks the chosen node to pull through from
//! an offset, naming this node as a follower; a `307` sends it to another
//! follower, and if that one fails (refuses, or breaks off or stalls and
//! the fetch resumes) the chosen node is asked again to serve this node
//! itself, naming the follower that failed. A chosen node that cannot pull through is passed over
//! for the next one (every node passes over the failed one alike), up to
//! [`MAX_CHOSEN`]; then this node fetches from the upstream itself. When
//! the chosen node says the upstream could not serve it, the fetch fails
//! and the client gets a miss, without asking the upstream again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use peerpull_oci::{ByteRange, Key};
use peerpull_routing::{PeerId, Provider};

use crate::fetch::Fetcher;
use crate::metrics::Failure;
use crate::spool::{self, Opened, Opener};
use crate::wire::{self, PeerRequest};

/// How many chosen nodes a miss asks to pull through before fetching here.
pub(crate) const MAX_CHOSEN: usize = 3;

/// What one follower's fetch has learnt so far, across its resumes.
#[derive(Debug, Default)]
struct Learnt {
    /// Chosen nodes that could not pull through.
    failed: Vec<PeerId>,
    /// A follower this node was sent to failed: the chosen node serves it from now on.
    served_by_chosen: bool,
    /// The content's size, from the first answer.
    size: Option<u64>,
    /// The follower this node streams from now, when not the chosen node.
    streaming_from: Option<PeerId>,
}

/// How asking one chosen node went.
enum Asked {
    Opened(Opened),
    /// It could not get the content from the upstream either.
    UpstreamFailed,
    Failed(Failure),
}

/// The opener of a follower's spool entry for `key`, asking peers for
/// `path_and_query`, and `upstream` when no chosen node can serve it.
pub(crate) fn opener(fetcher: Fetcher, path_and_query: String, key: Key, upstream: Opener) -> Opener {
    let learnt = Arc::new(Mutex::new(Learnt::default()));
    Arc::new(move |offset| {
        let (fetcher, path, key, upstream, learnt) =
            (fetcher.clone(), path_and_query.clone(), key.clone(), upstream.clone(), learnt.clone());
        Box::pin(async move {
            loop {
                let failed = lock(&learnt).failed.clone();
                if failed.len() >= MAX_CHOSEN {
                    break;
                }
                let Some(chosen) = fetcher.peers.closest(&key, &failed).await else { break };
                match ask(&fetcher, chosen, &path, &learnt, offset).await {
                    Asked::Opened(opened) => return Ok(opened),
                    Asked::UpstreamFailed => {
                        tracing::debug!(peer = %chosen.peer, %key, "the upstream could not serve the chosen node");
                        return Err("the upstream could not serve the node chosen to fetch it".to_owned());
                    }
                    Asked::Failed(reason) => {
                        fetcher.metrics.peer_failure(reason);
                        tracing::debug!(peer = %chosen.peer, mirror = %chosen.mirror, %reason, "the chosen node cannot pull through");
                        lock(&learnt).failed.push(chosen.peer);
                    }
                }
            }
            upstream(offset).await
        })
    })
}

/// Asks `chosen` for the content from `offset`, following its `307` once.
async fn ask(fetcher: &Fetcher, chosen: Provider, path: &str, learnt: &Mutex<Learnt>, offset: u64) -> Asked {
    let size = lock(learnt).size;
    let from = match (offset, size) {
        (0, _) => None,
        (_, Some(size)) => Some(ByteRange { start: offset, end_inclusive: size - 1 }),
        (_, None) => return Asked::Failed(Failure::ContentRange),
    };
    // Resuming after streaming from a follower: that follower failed this node.
    let mut gone = lock(learnt).streaming_from.take();
    loop {
        let whole = PeerRequest::fetcher(path, !lock(learnt).served_by_chosen, gone);
        let request = from.map_or_else(|| whole.clone(), |from| whole.range(from));
        let opened = match fetcher.send(chosen, &request).await {
            Ok(opened) => opened,
            Err((_, Failure::UpstreamFailed)) => return Asked::UpstreamFailed,
            Err((_, reason)) => return Asked::Failed(reason),
        };
        if opened.response.status() != StatusCode::TEMPORARY_REDIRECT {
            return Asked::Opened(spooled(fetcher, opened, offset, learnt));
        }
        let named = wire::sent_to(opened.response.headers());
        if let Some(member) = named.filter(|m| wire::reachable(m, &chosen)) {
            let holder = PeerRequest::holder(Method::GET, path);
            let request = from.map_or_else(|| holder.clone(), |from| holder.range(from));
            match fetcher.send(member, &request).await {
                Ok(opened) => {
                    tracing::debug!(peer = %member.peer, mirror = %member.mirror, offset, "streaming from another follower");
                    lock(learnt).streaming_from = Some(member.peer);
                    return Asked::Opened(spooled(fetcher, opened, offset, learnt));
                }
                Err((_, reason)) => {
                    fetcher.metrics.peer_failure(reason);
                    tracing::debug!(peer = %member.peer, mirror = %member.mirror, %reason, "the follower named cannot serve; asking the chosen node");
                    gone = Some(member.peer);
                }
            }
        }
        lock(learnt).served_by_chosen = true;
    }
}

/// A peer's answer, as the spool takes it.
fn spooled(fetcher: &Fetcher, opened: crate::fetch::Opened, offset: u64, learnt: &Mutex<Learnt>) -> Opened {
    let headers = opened.response.headers();
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let media_type = text(CONTENT_TYPE).unwrap_or("application/octet-stream").to_owned();
    let mut learnt = lock(learnt);
    if offset == 0 {
        // `Fetcher::send` lets through no whole answer without a length.
        learnt.size = text(CONTENT_LENGTH).and_then(|v| v.parse().ok());
    }
    let size = learnt.size.unwrap_or_default();
    let config = &fetcher.config;
    // A node that fetches for us may pause while its own fetch resumes.
    let stall: Duration = config.stall_timeout + config.pull_through_timeout();
    Opened {
        meta: spool::Meta { size, media_type },
        body: opened.response.into_body(),
        peer: Some(opened.provider),
        stall: Some(stall),
    }
}

fn lock(learnt: &Mutex<Learnt>) -> std::sync::MutexGuard<'_, Learnt> {
    learnt.lock().unwrap_or_else(|p| p.into_inner())
}
