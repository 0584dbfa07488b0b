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

use peerpull_routing::{PeerId, Provider};

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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

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
}
