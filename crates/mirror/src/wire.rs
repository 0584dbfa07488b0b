//! The wire between nodes: what one node's mirror asks another's, and how
//! the answer reads. Every `x-peerpull-*` name is here and nowhere else.
//!
//! A request between mirrors is the `/v2` `GET` or `HEAD` containerd sent
//! (same path, same `?ns=`), with headers that say who asks and why:
//! - [`PEER`] on every one (the loop guard): the asked node answers from
//!   what it holds or is fetching and never asks other peers, so requests
//!   cannot loop. [`PROOF`] proves cluster membership (`auth`), keyed from
//!   the pre-shared key under [`PROOF_LABEL`].
//! - [`PULL_THROUGH`]: the asked node is the *fetcher* the cluster chose
//!   for this blob and may fetch it from the upstream for the asker, its
//!   *follower* (`source::upstream`). [`FOLLOWER`] names the follower so the
//!   fetcher may place it in its *relay tree* (`relay`), and [`GONE`] names a
//!   follower the asker was sent to that failed it.
//! - [`VERSION`]: the protocol version, [`PROTOCOL`].
//! - [`ZONE`]: the asking node's zone (`--zone`), so a fetcher places a
//!   follower under one of its own zone; on a `307`, the zone of the
//!   follower [`FOLLOW`] names.
//! - [`ACCESS`]: the asking node verified that the pull it asks for may
//!   read the repository (`private`), keyed like [`PROOF`]; a holder in
//!   `--private-images verify` serves private content only with it, and
//!   refuses without it with a 403 marked [`PRIVATE`].
//!
//! Answers are plain `/v2` answers, classified by `classify`: served
//! (200, or 206 for a range), busy (429: the node uploads all it may),
//! not here (404), the upstream failed the fetcher (404 with
//! [`UPSTREAM_FAILED`]), or follow elsewhere (307 with [`FOLLOW`], only to a
//! follower that named itself).
//!
//! Versions: nodes of two versions run side by side during a rolling
//! DaemonSet upgrade. A node ignores headers it does not know, and one
//! without [`VERSION`] speaks version 1. Within a version, a header may be
//! added (older nodes ignore it, so it may only ask for something optional)
//! but none changes meaning or goes; a change an older node would misread
//! takes a new [`PROTOCOL`], and a node keeps answering the version before
//! it for one release.

use std::net::{IpAddr, SocketAddr};

use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use peerpull_oci::ByteRange;
use peerpull_routing::{PeerId, Provider, Zone};

/// On every request to a peer: the loop guard.
pub const PEER: &str = "x-peerpull-peer";

/// A peer's proof of cluster membership: `<peer id> <unix seconds> <hex HMAC-SHA256>` (see `auth`).
pub const PROOF: &str = "x-peerpull-proof";

/// With [`PEER`]: the asking node chose this one as the fetcher of the
/// content, which may fetch it from the upstream for it (never through
/// another peer).
pub const PULL_THROUGH: &str = "x-peerpull-pull-through";

/// With [`PULL_THROUGH`]: the asking node, a follower that may be sent to
/// another follower. `<peer id> <mirror address>`.
pub const FOLLOWER: &str = "x-peerpull-follower";

/// On a `307` answer to a follower: stream from this follower instead.
/// `<peer id> <mirror address>`.
pub const FOLLOW: &str = "x-peerpull-follow";

/// With [`PULL_THROUGH`]: the follower this node was sent to and that failed
/// it (refused, broke off or stalled). `<peer id>`.
pub const GONE: &str = "x-peerpull-follow-gone";

/// On the 404 a fetcher answers a follower with: the upstream itself could
/// not serve it (refused, out of reach, wrong bytes), so the follower
/// answers a miss at once rather than asking the upstream again.
pub const UPSTREAM_FAILED: &str = "x-peerpull-upstream-failed";

/// With [`PROOF`]: the pull asked for was verified to read its repository,
/// `<unix seconds> <hex HMAC-SHA256>` (see `auth`).
pub const ACCESS: &str = "x-peerpull-access";

/// On a holder's 403: the content is private, and the request had no valid [`ACCESS`].
pub const PRIVATE: &str = "x-peerpull-private";

/// The zone of the asking node (on a request) or of the follower named in
/// [`FOLLOW`] (on a `307`); absent: none.
pub const ZONE: &str = "x-peerpull-zone";

/// The protocol version a request speaks.
pub const VERSION: &str = "x-peerpull-version";

/// This build's protocol version.
pub const PROTOCOL: &str = "1";

/// The label the proof key is derived from the pre-shared key under.
pub const PROOF_LABEL: &str = "mirror-proof";

/// Which part of the content a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// All of it, with its length, so it can be verified against its digest.
    Whole,
    /// Exactly these bytes: a resume or a chunk, answered 206.
    Bytes(ByteRange),
    /// The client's `Range` header passed on as it came (a `HEAD`, not verified): 206 or 200.
    AsAsked(HeaderValue),
}

/// What the asked node is to this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Asked {
    /// A holder: it answers from what it holds or is fetching.
    Holder,
    /// The fetcher: it fetches from the upstream for this node if it must.
    Fetcher {
        /// Name this node as a follower, so the answer may send it to another (307).
        follower: bool,
        /// The follower this node was sent to and that failed it.
        gone: Option<PeerId>,
    },
}

/// A request from this node's mirror to another's.
#[derive(Debug, Clone)]
pub(crate) struct PeerRequest {
    /// `GET` or `HEAD`.
    pub(crate) method: Method,
    /// `/v2/…?ns=…`, as the client asked it.
    pub(crate) path_and_query: String,
    pub(crate) part: Part,
    pub(crate) asked: Asked,
    /// Refuse an answer that does not name its digest (a tag's: what the bytes are checked against).
    pub(crate) needs_digest: bool,
    /// The pull was verified to read the repository: say so with [`ACCESS`].
    pub(crate) access: bool,
}

impl PeerRequest {
    /// The whole content of `path_and_query`, from a holder.
    pub(crate) fn holder(method: Method, path_and_query: &str) -> Self {
        let path_and_query = path_and_query.to_owned();
        Self { method, path_and_query, part: Part::Whole, asked: Asked::Holder, needs_digest: false, access: false }
    }

    /// The whole content of `path_and_query`, from the fetcher.
    pub(crate) fn fetcher(path_and_query: &str, follower: bool, gone: Option<PeerId>) -> Self {
        Self { asked: Asked::Fetcher { follower, gone }, ..Self::holder(Method::GET, path_and_query) }
    }

    /// The same request for `range` only.
    pub(crate) fn range(&self, range: ByteRange) -> Self {
        Self { part: Part::Bytes(range), ..self.clone() }
    }

    /// Whether the asked node may take as long as the upstream to answer.
    pub(crate) fn to_fetcher(&self) -> bool {
        matches!(self.asked, Asked::Fetcher { .. })
    }

    /// The headers of this request from `this` node (named when a
    /// follower), with `proof` and, for a verified pull, `access`.
    pub(crate) fn headers(
        &self,
        this: Option<&Provider>,
        proof: Option<HeaderValue>,
        access: Option<HeaderValue>,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(PEER, HeaderValue::from_static("1"));
        headers.insert(VERSION, HeaderValue::from_static(PROTOCOL));
        if let Some(proof) = proof {
            headers.insert(PROOF, proof);
        }
        if let Some(access) = access.filter(|_| self.access) {
            headers.insert(ACCESS, access);
        }
        if let Some(zone) = this.and_then(|t| zone_value(&t.zone)) {
            headers.insert(ZONE, zone);
        }
        if let Asked::Fetcher { follower, gone } = &self.asked {
            headers.insert(PULL_THROUGH, HeaderValue::from_static("1"));
            if let Some(value) = this.filter(|_| *follower).and_then(|p| HeaderValue::from_str(&node_value(p)).ok()) {
                headers.insert(FOLLOWER, value);
            }
            if let Some(value) = gone.and_then(|g| HeaderValue::from_str(&g.to_string()).ok()) {
                headers.insert(GONE, value);
            }
        }
        match &self.part {
            Part::Whole => {}
            Part::Bytes(range) => {
                if let Ok(value) = HeaderValue::from_str(&range.header_value()) {
                    headers.insert(header::RANGE, value);
                }
            }
            Part::AsAsked(value) => {
                headers.insert(header::RANGE, value.clone());
            }
        }
        headers
    }
}

/// Who sent a request, as its headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sender {
    /// A client (containerd, a person): no loop guard.
    Client,
    /// A peer asking this node as a holder.
    Peer,
    /// A follower asking this node as its fetcher.
    Follower {
        /// The follower, when it may be placed in the relay tree (at the connection's address, see [`follower`]).
        named: Option<Box<Provider>>,
        /// A follower it was sent to and that failed it.
        gone: Option<PeerId>,
    },
}

impl Sender {
    /// Reads who sent a request with `headers` from `remote`.
    pub(crate) fn of(headers: &HeaderMap, remote: Option<IpAddr>) -> Self {
        if !headers.contains_key(PEER) {
            return Sender::Client;
        }
        if !headers.contains_key(PULL_THROUGH) {
            return Sender::Peer;
        }
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let zone = text(ZONE).and_then(|z| z.parse().ok()).unwrap_or_default();
        let named = match (text(FOLLOWER), remote) {
            (Some(value), Some(remote)) => follower(value, remote).map(|f| Box::new(Provider { zone, ..f })),
            _ => None,
        };
        let gone = text(GONE).and_then(|v| v.parse().ok());
        Sender::Follower { named, gone }
    }

    /// Whether a peer sent it (the loop guard).
    pub(crate) fn is_peer(&self) -> bool {
        !matches!(self, Sender::Client)
    }
}

/// Whether a request claims to come from a peer, and so must carry a proof.
pub(crate) fn claims_peer(headers: &HeaderMap) -> bool {
    headers.contains_key(PEER)
}

/// How a peer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The content (or the part asked for).
    Served,
    /// A follower is sent to stream from another follower ([`FOLLOW`]).
    FollowElsewhere,
    /// The node uploads all it may (429).
    Busy,
    /// The node does not hold it.
    NotHere,
    /// The fetcher's upstream could not serve it.
    UpstreamFailed,
    /// Any other status.
    Other,
}

/// How the answer `status` with `headers` to `request` reads.
pub(crate) fn classify(request: &PeerRequest, status: StatusCode, headers: &HeaderMap) -> Answer {
    let follower = matches!(request.asked, Asked::Fetcher { follower: true, .. });
    if follower && status == StatusCode::TEMPORARY_REDIRECT && headers.contains_key(FOLLOW) {
        return Answer::FollowElsewhere;
    }
    let served = match request.part {
        Part::Whole => status == StatusCode::OK,
        Part::Bytes(_) => status == StatusCode::PARTIAL_CONTENT,
        Part::AsAsked(_) => status == StatusCode::PARTIAL_CONTENT || status == StatusCode::OK,
    };
    match status {
        _ if served => Answer::Served,
        StatusCode::NOT_FOUND if headers.contains_key(UPSTREAM_FAILED) => Answer::UpstreamFailed,
        StatusCode::NOT_FOUND => Answer::NotHere,
        StatusCode::TOO_MANY_REQUESTS => Answer::Busy,
        _ => Answer::Other,
    }
}

/// Marks a fetcher's 404: its upstream could not serve the content.
pub(crate) fn mark_upstream_failed(headers: &mut HeaderMap) {
    headers.insert(UPSTREAM_FAILED, HeaderValue::from_static("1"));
}

/// Sends a follower to stream from `member` (on a `307`).
pub(crate) fn send_to(headers: &mut HeaderMap, member: &Provider) {
    if let Ok(value) = HeaderValue::from_str(&node_value(member)) {
        headers.insert(FOLLOW, value);
    }
    if let Some(zone) = zone_value(&member.zone) {
        headers.insert(ZONE, zone);
    }
}

/// The follower a [`FOLLOW`] answer names.
pub(crate) fn sent_to(headers: &HeaderMap) -> Option<Provider> {
    let (peer, mirror) = headers.get(FOLLOW)?.to_str().ok()?.split_once(' ')?;
    let zone = headers.get(ZONE).and_then(|z| z.to_str().ok()?.parse().ok()).unwrap_or_default();
    Some(Provider { peer: peer.parse().ok()?, mirror: mirror.parse().ok()?, zone })
}

/// Whether a follower may stream from `member`, named by `fetcher`: a
/// loopback address only when the fetcher is on loopback too.
pub(crate) fn reachable(member: &Provider, fetcher: &Provider) -> bool {
    !member.mirror.ip().is_loopback() || fetcher.mirror.ip().is_loopback()
}

/// A zone as [`ZONE`] says it; `None` for no zone.
fn zone_value(zone: &Zone) -> Option<HeaderValue> {
    (!zone.is_none()).then(|| HeaderValue::from_str(zone.as_str()).ok()).flatten()
}

/// A node as [`FOLLOWER`] and [`FOLLOW`] name it.
fn node_value(provider: &Provider) -> String {
    format!("{} {}", provider.peer, provider.mirror)
}

/// The follower a [`FOLLOWER`] value names, at the address the request came
/// from (or, between nodes on one host, at the loopback address it names).
fn follower(value: &str, remote: IpAddr) -> Option<Provider> {
    let (peer, named) = value.split_once(' ')?;
    let peer: PeerId = peer.parse().ok()?;
    let named: SocketAddr = named.parse().ok().filter(|a: &SocketAddr| a.port() != 0)?;
    let ip = if remote.is_loopback() && named.ip().is_loopback() { named.ip() } else { remote };
    Some(Provider { peer, mirror: SocketAddr::new(ip, named.port()), zone: Zone::NONE })
}

#[cfg(test)]
mod tests;
