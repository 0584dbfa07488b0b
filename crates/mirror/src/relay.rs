//! Followers serving onward: the nodes streaming a blob from the one that
//! fetches it form a tree, not a star.
//!
//! On a miss, every node asks the node the cluster chose to pull the blob
//! through (`source::upstream`). Each follower spools what it receives, so
//! it can serve the bytes it already has to others while they arrive (the
//! in-flight source). The chosen node serves at most
//! [`Config::relay_fanout`](crate::Config) followers itself; a later one is
//! answered `307` with [`FOLLOW`] naming a follower to stream from instead,
//! the first placed with room, so the tree fills breadth first. With N
//! nodes behind links of rate L, the last byte of a blob of S bytes then
//! arrives after about fan-out × S / L plus a short delay per level,
//! instead of (N − 1) × S / L.
//!
//! A follower names itself with [`FOLLOWER`] (its peer id and mirror
//! address). Its address is the connection's, as everywhere between
//! mirrors, with the port it names; only nodes sharing one host (a
//! connection over loopback naming a loopback address, as on a test bed of
//! loopback aliases) are taken at the address they name, and a follower
//! follows a loopback address only from a chosen node on loopback. A
//! follower the node it was sent to fails asks the chosen node again
//! without [`FOLLOWER`] and is served by it; one that asks again (a
//! resume) is served by it too, so no follower is ever sent to its own
//! descendant. Either names the follower that failed it with [`GONE`], and
//! the chosen node sends no one else there (a claim that can only make the
//! chosen node serve more itself). Every follower's spool checks the digest as every spool
//! does: a bad relay never completes a response.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderValue, Response, StatusCode};
use peerpull_routing::{PeerId, Provider};

use crate::body::{self, Body};
use crate::metrics::Metrics;
use crate::request::Wanted;
use crate::spool::Entry;

/// On a pull-through request: the asking node follows, and may be sent to
/// another follower. `<peer id> <mirror address>`.
pub(crate) const FOLLOWER: &str = "x-peerpull-follower";

/// On a `307` answer to a pull-through request: stream from this follower
/// instead. `<peer id> <mirror address>`.
pub(crate) const FOLLOW: &str = "x-peerpull-follow";

/// On a pull-through request: the follower this node was sent to, which
/// failed it (refused, broke off or stalled). `<peer id>`.
pub(crate) const GONE: &str = "x-peerpull-follow-gone";

/// The followers of one spooled blob, as placed by this node.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Followers this node serves itself.
    direct: usize,
    /// Every follower placed, in the order placed.
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    provider: Provider,
    children: usize,
    /// A follower sent here said it failed: no one is sent here again.
    gone: bool,
}

impl Tree {
    /// Where `joining` streams from: `None` for this node, or the follower
    /// it is sent to. At most `fanout` followers each (0: this node serves all).
    pub(crate) fn place(&mut self, joining: Provider, fanout: usize) -> Option<Provider> {
        if self.members.iter().any(|m| m.provider.peer == joining.peer) {
            self.direct += 1;
            return None;
        }
        let parent = match fanout > 0 && self.direct >= fanout {
            true => self.members.iter_mut().find(|m| !m.gone && m.children < fanout),
            false => None,
        };
        let parent = match parent {
            Some(parent) => {
                parent.children += 1;
                Some(parent.provider)
            }
            None => {
                self.direct += 1;
                None
            }
        };
        self.members.push(Member { provider: joining, children: 0, gone: false });
        parent
    }

    /// The follower `peer` failed one sent to it: it gets no one else.
    pub(crate) fn gone(&mut self, peer: &PeerId) {
        if let Some(member) = self.members.iter_mut().find(|m| m.provider.peer == *peer) {
            member.gone = true;
        }
    }
}

/// The `307` sending the follower that asks for `wanted` to another
/// follower of `entry`, if the tree places it there.
pub(crate) fn placed(entry: &Entry, wanted: &Wanted, fanout: usize, metrics: &Metrics) -> Option<Response<Body>> {
    if let Some(gone) = wanted.gone.filter(|_| wanted.pull_through) {
        tracing::debug!(digest = %entry.digest, follower = %gone, "a follower failed one sent to it");
        entry.follower_gone(&gone);
    }
    let follower = wanted.follower.filter(|_| wanted.pull_through && !wanted.head)?;
    let member = entry.place(follower, fanout)?;
    tracing::debug!(digest = %entry.digest, follower = %follower.peer, to = %member.peer, "sending a follower to another");
    metrics.relayed();
    Some(redirect(member))
}

/// The [`FOLLOWER`] value naming `this` node.
pub(crate) fn follower_value(this: &Provider) -> String {
    format!("{} {}", this.peer, this.mirror)
}

/// The follower a [`FOLLOWER`] value names, at the address the request came
/// from (or, between nodes on one host, at the loopback address it names).
pub(crate) fn parse_follower(value: &str, remote: IpAddr) -> Option<Provider> {
    let (peer, named) = value.split_once(' ')?;
    let peer: PeerId = peer.parse().ok()?;
    let named: SocketAddr = named.parse().ok().filter(|a: &SocketAddr| a.port() != 0)?;
    let ip = if remote.is_loopback() && named.ip().is_loopback() { named.ip() } else { remote };
    Some(Provider { peer, mirror: SocketAddr::new(ip, named.port()) })
}

/// Whether a follower may stream from `member`, named by `chosen`: a
/// loopback address only when the chosen node is on loopback too.
pub(crate) fn reachable(member: &Provider, chosen: &Provider) -> bool {
    !member.mirror.ip().is_loopback() || chosen.mirror.ip().is_loopback()
}

/// The answer sending a follower to stream from `member`.
pub(crate) fn redirect(member: Provider) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let value = format!("{} {}", member.peer, member.mirror);
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(FOLLOW, value);
    }
    response
}

/// The follower a [`FOLLOW`] answer names.
pub(crate) fn parse_follow(value: &str) -> Option<Provider> {
    let (peer, mirror) = value.split_once(' ')?;
    Some(Provider { peer: peer.parse().ok()?, mirror: mirror.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> Provider {
        Provider { peer: PeerId::random(), mirror: SocketAddr::from(([127, 0, 0, n], 5000)) }
    }

    #[test]
    fn the_tree_fills_breadth_first_with_fanout_followers_each() {
        let mut tree = Tree::default();
        let nodes: Vec<Provider> = (1..=8).map(node).collect();
        let placed: Vec<Option<Provider>> = nodes.iter().map(|n| tree.place(*n, 2)).collect();
        let expected = [None, None, Some(nodes[0]), Some(nodes[0]), Some(nodes[1]), Some(nodes[1]), Some(nodes[2])];
        assert_eq!(placed[..7], expected, "two served here, then two for each follower in the order they came");
        assert_eq!(placed[7], Some(nodes[2]));
    }

    #[test]
    fn no_one_is_sent_to_a_follower_that_failed_one() {
        let mut tree = Tree::default();
        let nodes: Vec<Provider> = (1..=6).map(node).collect();
        assert_eq!(tree.place(nodes[0], 2), None);
        assert_eq!(tree.place(nodes[1], 2), None);
        assert_eq!(tree.place(nodes[2], 2), Some(nodes[0]));
        tree.gone(&nodes[0].peer);
        tree.gone(&PeerId::random());
        assert_eq!(tree.place(nodes[3], 2), Some(nodes[1]), "past the follower that failed one");
        assert_eq!(tree.place(nodes[4], 2), Some(nodes[1]));
        assert_eq!(tree.place(nodes[5], 2), Some(nodes[2]), "its own follower still serves onward");
    }

    #[test]
    fn without_fanout_every_follower_is_served_here() {
        let mut tree = Tree::default();
        assert!((1..=5).map(node).all(|n| tree.place(n, 0).is_none()));
    }

    #[test]
    fn a_follower_asking_again_is_served_here_never_by_its_own_descendant() {
        let mut tree = Tree::default();
        let nodes: Vec<Provider> = (1..=4).map(node).collect();
        for n in &nodes {
            tree.place(*n, 1);
        }
        // 2 follows 1, 3 follows 2: were 1 sent anywhere, it could be to its descendant.
        assert_eq!(tree.place(nodes[0], 1), None);
        assert_eq!(tree.place(nodes[2], 1), None);
        assert_eq!(tree.place(node(9), 1), Some(nodes[3]), "a new follower still joins the tree");
    }

    #[test]
    fn follower_and_follow_values_round_trip() {
        let this = node(7);
        let value = follower_value(&this);
        let remote = IpAddr::from([10, 0, 0, 3]);
        let parsed = parse_follower(&value, remote).expect("parses");
        assert_eq!(parsed.peer, this.peer);
        assert_eq!(parsed.mirror, SocketAddr::new(remote, 5000), "the connection's address, the named port");
        let local = parse_follower(&value, IpAddr::from([127, 0, 0, 1])).expect("parses");
        assert_eq!(local.mirror, this.mirror, "on one host, the loopback address named");
        let named_public = format!("{} 10.0.0.9:5000", this.peer);
        let spoofed = parse_follower(&named_public, IpAddr::from([127, 0, 0, 1])).expect("parses");
        assert_eq!(spoofed.mirror.ip(), IpAddr::from([127, 0, 0, 1]), "never an address other than the connection's");
        let (public, looped) = (node(1), Provider { mirror: SocketAddr::from(([10, 0, 0, 1], 5000)), ..node(1) });
        assert!(reachable(&public, &public), "a loopback member of a chosen node on loopback");
        assert!(!reachable(&public, &looped), "no loopback member from a chosen node elsewhere");
        assert!(reachable(&looped, &public) && reachable(&looped, &looped));
        let response = redirect(parsed);
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        let follow = response.headers().get(FOLLOW).and_then(|v| v.to_str().ok()).expect("named");
        let member = parse_follow(follow).expect("parses");
        assert_eq!((member.peer, member.mirror), (parsed.peer, parsed.mirror));
        assert!(parse_follower("not-a-peer 127.0.0.7:5000", remote).is_none());
        assert!(parse_follower(&format!("{} 127.0.0.7:0", this.peer), remote).is_none(), "port 0");
        assert!(parse_follower(&format!("{} 5000", this.peer), remote).is_none(), "no address");
        assert!(parse_follow("x 127.0.0.1:1").is_none());
    }
}
