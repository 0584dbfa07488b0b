//! Followers serving onward: the nodes streaming a blob from the one that
//! fetches it form a tree, not a star.
//!
//! On a miss, every node asks the blob's fetcher, the node the cluster chose
//! to fetch it from the upstream (`source::upstream`): it is that fetcher's
//! follower. Each follower spools what it receives, so
//! it can serve the bytes it already has to others while they arrive (the
//! in-flight source). The fetcher serves at most
//! [`Config::relay_fanout`](crate::Config) followers itself; a later one is
//! answered `307` with `wire::FOLLOW` naming a follower to stream from instead,
//! the first placed with room, so the tree fills breadth first. With N
//! nodes behind links of rate L, the last byte of a blob of S bytes then
//! arrives after about fan-out × S / L plus a short delay per level,
//! instead of (N − 1) × S / L.
//!
//! A follower names itself with `wire::FOLLOWER` (its peer id and mirror
//! address). Its address is the connection's, as everywhere between
//! mirrors, with the port it names; only nodes sharing one host (a
//! connection over loopback naming a loopback address, as on a test bed of
//! loopback aliases) are taken at the address they name, and a follower
//! follows a loopback address only from a fetcher on loopback. A
//! follower the node it was sent to fails asks the fetcher again
//! without `wire::FOLLOWER` and is served by it; one that asks again (a
//! resume) is served by it too, so no follower is ever sent to its own
//! descendant. Either names the follower that failed it with `wire::GONE`, and
//! the fetcher sends no one else there (a claim that can only make the
//! fetcher serve more itself). Every follower's spool checks the digest as every spool
//! does: a bad relay never completes a response.
//!
//! Zones: a follower names its zone (`wire::ZONE`). One from another zone
//! than the fetcher's is sent to a follower of its own zone with room, when
//! one is placed, even while the fetcher has room itself, so about one
//! transfer crosses into each zone; a follower of the fetcher's zone is
//! sent, when the fetcher is full, to a follower of its own zone first.

use peerpull_routing::{PeerId, Provider, Zone};

/// How this node builds the relay trees of its fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Followers served by each node (`--relay-fanout`; 0: this node serves all).
    pub(crate) fanout: usize,
    /// This node's zone.
    pub(crate) zone: Zone,
}

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
    pub(crate) fn place(&mut self, joining: Provider, shape: Shape) -> Option<Provider> {
        let fanout = shape.fanout;
        if self.members.iter().any(|m| m.provider.peer == joining.peer) {
            self.direct += 1;
            return None;
        }
        let room = |m: &Member| !m.gone && m.children < fanout;
        let same_zone = |m: &Member| m.provider.zone.same_as(&joining.zone);
        let elsewhere = !joining.zone.same_as(&shape.zone);
        let parent = if fanout == 0 {
            None
        } else if elsewhere && self.members.iter().any(|m| room(m) && same_zone(m)) {
            self.members.iter_mut().find(|m| room(m) && same_zone(m))
        } else if self.direct >= fanout {
            match self.members.iter().position(|m| room(m) && same_zone(m)) {
                Some(at) => self.members.get_mut(at),
                None => self.members.iter_mut().find(|m| room(m)),
            }
        } else {
            None
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    const FLAT: Shape = Shape { fanout: 2, zone: Zone::NONE };
    const ONE: Shape = Shape { fanout: 1, zone: Zone::NONE };

    fn node(n: u8) -> Provider {
        Provider { peer: PeerId::random(), mirror: SocketAddr::from(([127, 0, 0, n], 5000)), zone: Zone::NONE }
    }

    fn in_zone(n: u8, zone: &str) -> Provider {
        Provider { zone: zone.parse().unwrap_or_default(), ..node(n) }
    }

    #[test]
    fn another_zones_followers_stream_from_one_of_their_own() {
        let mut tree = Tree::default();
        let shape = Shape { fanout: 2, zone: "a".parse().unwrap_or_default() };
        let (a1, b1, b2, b3, b4) =
            (in_zone(1, "a"), in_zone(2, "b"), in_zone(3, "b"), in_zone(4, "b"), in_zone(5, "b"));
        assert_eq!(tree.place(b1, shape), None, "the first of zone b: from the fetcher");
        assert_eq!(tree.place(b2, shape), Some(b1), "the fetcher has room, but zone b has b1");
        assert_eq!(tree.place(a1, shape), None, "zone a: from the fetcher");
        assert_eq!(tree.place(b3, shape), Some(b1));
        assert_eq!(tree.place(b4, shape), Some(b2), "b1 is full: the next of zone b with room");
        // The fetcher is full (b1, a1): a zone-a follower goes to zone a's follower first.
        let a2 = in_zone(6, "a");
        assert_eq!(tree.place(a2, shape), Some(a1));
    }

    #[test]
    fn the_tree_fills_breadth_first_with_fanout_followers_each() {
        let mut tree = Tree::default();
        let nodes: Vec<Provider> = (1..=8).map(node).collect();
        let placed: Vec<Option<Provider>> = nodes.iter().map(|n| tree.place(*n, FLAT)).collect();
        let expected = [None, None, Some(nodes[0]), Some(nodes[0]), Some(nodes[1]), Some(nodes[1]), Some(nodes[2])];
        assert_eq!(placed[..7], expected, "two served here, then two for each follower in the order they came");
        assert_eq!(placed[7], Some(nodes[2]));
    }

    #[test]
    fn no_one_is_sent_to_a_follower_that_failed_one() {
        let mut tree = Tree::default();
        let nodes: Vec<Provider> = (1..=6).map(node).collect();
        assert_eq!(tree.place(nodes[0], FLAT), None);
        assert_eq!(tree.place(nodes[1], FLAT), None);
        assert_eq!(tree.place(nodes[2], FLAT), Some(nodes[0]));
        tree.gone(&nodes[0].peer);
        tree.gone(&PeerId::random());
        assert_eq!(tree.place(nodes[3], FLAT), Some(nodes[1]), "past the follower that failed one");
        assert_eq!(tree.place(nodes[4], FLAT), Some(nodes[1]));
        assert_eq!(tree.place(nodes[5], FLAT), Some(nodes[2]), "its own follower still serves onward");
    }

    #[test]
    fn without_fanout_every_follower_is_served_here() {
        let mut tree = Tree::default();
        assert!((1..=5).map(node).all(|n| tree.place(n, Shape { fanout: 0, ..FLAT }).is_none()));
    }

    #[test]
    fn a_follower_asking_again_is_served_here_never_by_its_own_descendant() {
        let mut tree = Tree::default();
        let nodes: Vec<Provider> = (1..=4).map(node).collect();
        for n in &nodes {
            tree.place(*n, ONE);
        }
        // 2 follows 1, 3 follows 2: were 1 sent anywhere, it could be to its descendant.
        assert_eq!(tree.place(nodes[0], ONE), None);
        assert_eq!(tree.place(nodes[2], ONE), None);
        assert_eq!(tree.place(node(9), ONE), Some(nodes[3]), "a new follower still joins the tree");
    }
}
