//! The chain of sources a request is answered from.
//!
//! Each [`Source`] either answers a request or passes it on; the mirror
//! tries them in order and answers a 404 when none could:
//! 1. `local`: this node's containerd;
//! 2. `spooled`: a fetch already under way on this node (the spool);
//! 3. `peer`: another node that holds it, found in the DHT;
//! 4. `upstream`: the registry itself, fetched once for the whole cluster
//!    (`follow`: the other nodes' side of that one fetch).
//!
//! A source that answers owns its response whole: status, headers and a
//! body that counts its bytes under the source's [`Kind`]. The mirror counts
//! the request itself, once, from which source answered.

use bytes::Bytes;
use futures::StreamExt as _;
use http::{header, Response, StatusCode};
use peerpull_oci::{ByteRange, Digest, ErrorCode, RangeError};
use prometheus_client::metrics::counter::Counter;

use crate::body::{self, Body};
use crate::metrics::Metrics;
use crate::relay::Shape;
use crate::request::Wanted;
use crate::spool::Entry;
use crate::wire::{self, Sender};

pub(crate) mod follow;
pub(crate) mod local;
pub(crate) mod peer;
pub(crate) mod spooled;
pub(crate) mod upstream;

pub(crate) use crate::metrics::Kind;

/// One place content can come from.
#[async_trait::async_trait]
pub(crate) trait Source: Send + Sync {
    /// Which source this is.
    fn kind(&self) -> Kind;

    /// The response when this source can serve `wanted`, or `None` to try the next.
    async fn answer(&self, wanted: &Wanted) -> Option<Response<Body>>;
}

/// An answer with content, before its body.
pub(crate) enum Prepared {
    /// The headers, and the range of the content to send (`None`: all of it).
    Content(Response<Body>, Option<ByteRange>),
    /// The 416 for a range the content cannot satisfy.
    Refused(Response<Body>),
}

/// The headers of an answer with content of `size` bytes: whole, or the one
/// range the client asked for (206); a malformed `Range` header is ignored,
/// as HTTP allows, and the whole content is served.
pub(crate) fn content_response(wanted: &Wanted, digest: &Digest, size: u64, media_type: &str) -> Prepared {
    let range = match wanted.range.as_deref().map(|value| ByteRange::parse(value, size)) {
        None | Some(Err(RangeError::Unit { .. } | RangeError::Malformed { .. })) => None,
        Some(Ok(range)) => Some(range),
        Some(Err(RangeError::Unsatisfiable { .. } | RangeError::Multiple)) => {
            let message = format!("range not satisfiable for {size} bytes");
            let mut response = body::error_with_status(ErrorCode::SizeInvalid, 416, message);
            body::insert(&mut response, header::CONTENT_RANGE, &peerpull_oci::unsatisfiable_content_range(size));
            return Prepared::Refused(response);
        }
    };
    let media_type = if wanted.manifest { media_type } else { "application/octet-stream" };
    let mut response = Response::new(body::empty());
    body::insert(&mut response, header::CONTENT_TYPE, media_type);
    body::insert(&mut response, body::DOCKER_CONTENT_DIGEST, digest.as_str());
    body::insert(&mut response, header::ACCEPT_RANGES, "bytes");
    let length = match range {
        Some(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            body::insert(&mut response, header::CONTENT_RANGE, &range.content_range(size));
            range.len()
        }
        None => size,
    };
    body::insert(&mut response, header::CONTENT_LENGTH, &length.to_string());
    Prepared::Content(response, range)
}

/// `chunks` with every chunk's length added to `served`.
pub(crate) fn counted<S, E>(chunks: S, served: Counter) -> impl futures::Stream<Item = Result<Bytes, E>> + Send
where
    S: futures::Stream<Item = Result<Bytes, E>> + Send,
{
    chunks.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            served.inc_by(chunk.len() as u64);
        }
    })
}

/// The `307` sending the follower that asks for `wanted` to another
/// follower of `entry`, if the relay tree places it there (see `relay`).
pub(crate) fn placed(entry: &Entry, wanted: &Wanted, shape: Shape, metrics: &Metrics) -> Option<Response<Body>> {
    let Sender::Follower { named, gone } = &wanted.sender else { return None };
    if let Some(gone) = gone {
        tracing::debug!(digest = %entry.digest, follower = %gone, "a follower failed one sent to it");
        entry.follower_gone(gone);
    }
    let follower = named.as_deref().copied().filter(|_| !wanted.head)?;
    let member = entry.place(follower, shape)?;
    tracing::debug!(digest = %entry.digest, follower = %follower.peer, to = %member.peer, "sending a follower to another");
    metrics.relayed();
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    wire::send_to(response.headers_mut(), &member);
    Some(response)
}
