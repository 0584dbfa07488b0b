//! Keyspace regions: where a key lies in Kademlia's keyspace, and the
//! prefix-aligned slices of it that announcements are grouped by.
//!
//! A key's [`Position`] is the SHA-256 hash Kademlia measures distances
//! with (`kbucket::Key::hashed_bytes`), so nodes and keys share one space.
//! A [`Region`] of depth `d` is every position whose first `d` bits equal
//! its prefix. Keys in one region have nearly the same closest nodes once
//! the region is small enough to hold only a few dozen nodes, so one walk
//! towards any key of the region finds the nodes that should store all of
//! them (see `event_loop::provides`). [`depth_for`] reads from a walk's
//! answer how deep regions must be for that to hold.

use libp2p::{
    kad::{KBucketKey, RecordKey},
    PeerId,
};

/// The deepest region used: 2^24 regions is far past any cluster.
pub(crate) const MAX_DEPTH: u8 = 24;

/// A position in the keyspace: the hash Kademlia measures XOR distances on.
pub(crate) type Position = [u8; 32];

/// A prefix-aligned slice of the keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Region {
    /// How many leading bits are fixed.
    pub(crate) depth: u8,
    /// Those bits, right-aligned (`0 ..= 2^depth - 1`).
    pub(crate) prefix: u32,
}

/// The keyspace position of a record key.
pub(crate) fn position_of_key(key: &RecordKey) -> Position {
    to_position(KBucketKey::new(key.clone()).hashed_bytes())
}

/// The keyspace position of a peer.
pub(crate) fn position_of_peer(peer: PeerId) -> Position {
    to_position(KBucketKey::from(peer).hashed_bytes())
}

fn to_position(bytes: &[u8]) -> Position {
    let mut out = [0u8; 32];
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// How many leading bits `a` and `b` share.
pub(crate) fn common_prefix(a: &Position, b: &Position) -> u32 {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let diff = x ^ y;
        if diff != 0 {
            return u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(8) + diff.leading_zeros();
        }
    }
    256
}

/// The XOR distance between two positions, comparable as bytes.
pub(crate) fn distance(a: &Position, b: &Position) -> Position {
    let mut out = [0u8; 32];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// The region depth a walk towards `target` answered with `closest` (its
/// nearest nodes, in any order, `wanted` asked for) calls for: the depth of
/// the smallest region around `target` that holds every one of them. Keys in
/// a region that deep have nearly the same closest nodes as `target`. A walk
/// that found fewer nodes than it asked for has seen the whole cluster: one
/// region (depth 0) is enough.
pub(crate) fn depth_for(target: &Position, closest: &[Position], wanted: usize) -> u8 {
    if closest.len() < wanted {
        return 0;
    }
    let shared = closest.iter().map(|p| common_prefix(target, p)).min().unwrap_or(0);
    u8::try_from(shared).unwrap_or(u8::MAX).min(MAX_DEPTH)
}

impl Region {
    /// The region of depth `depth` that holds `position`.
    pub(crate) fn of(position: &Position, depth: u8) -> Self {
        let depth = depth.min(MAX_DEPTH);
        let head = u32::from_be_bytes([position[0], position[1], position[2], position[3]]);
        let prefix = if depth == 0 { 0 } else { head >> (32 - u32::from(depth)) };
        Self { depth, prefix }
    }

    /// The first and last positions in the region.
    pub(crate) fn bounds(&self) -> (Position, Position) {
        let mut low = [0u8; 32];
        let mut high = [0xffu8; 32];
        if self.depth > 0 {
            let shift = 32 - u32::from(self.depth);
            let low_head = self.prefix << shift;
            let high_head = low_head | (u32::MAX >> u32::from(self.depth));
            low[..4].copy_from_slice(&low_head.to_be_bytes());
            high[..4].copy_from_slice(&high_head.to_be_bytes());
        }
        (low, high)
    }

    /// How many regions of this depth the keyspace has.
    pub(crate) fn count(depth: u8) -> u64 {
        1u64 << depth.min(MAX_DEPTH)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pos(head: u32) -> Position {
        let mut p = [0u8; 32];
        p[..4].copy_from_slice(&head.to_be_bytes());
        p
    }

    #[test]
    fn a_region_holds_exactly_the_positions_between_its_bounds() {
        let p = pos(0b1011_0000 << 24);
        let r = Region::of(&p, 3);
        assert_eq!(r, Region { depth: 3, prefix: 0b101 });
        let (low, high) = r.bounds();
        assert_eq!(low, pos(0b1010_0000 << 24));
        assert_eq!(&high[..4], &(0b1011_1111_u32 << 24 | 0x00ff_ffff).to_be_bytes());
        assert!(low <= p && p <= high);
        assert_eq!(Region::of(&p, 0), Region { depth: 0, prefix: 0 });
        assert_eq!(Region::of(&p, 0).bounds(), ([0u8; 32], [0xff; 32]));
        assert_eq!(Region::of(&p, 40).depth, MAX_DEPTH, "depth is capped");
        assert_eq!(Region::count(3), 8);
    }

    #[test]
    fn common_prefix_counts_leading_equal_bits() {
        assert_eq!(common_prefix(&pos(0), &pos(0)), 256);
        assert_eq!(common_prefix(&pos(0), &pos(1 << 31)), 0);
        assert_eq!(common_prefix(&pos(0b0100 << 28), &pos(0b0110 << 28)), 2);
        let mut far = pos(0);
        far[9] = 1;
        assert_eq!(common_prefix(&pos(0), &far), 79);
    }

    #[test]
    fn depth_follows_how_far_the_closest_nodes_reach() {
        let target = pos(0b0101 << 28);
        // Every node of the answer shares 2 bits with the target: depth 2.
        let closest = [pos(0b0100 << 28), pos(0b0111 << 28), pos(0b0_1011 << 27)];
        assert_eq!(depth_for(&target, &closest, 3), 2);
        // Fewer nodes than asked for: the walk saw the whole cluster.
        assert_eq!(depth_for(&target, &closest, 20), 0);
    }

    #[test]
    fn distance_orders_like_kademlia() {
        let a = RecordKey::new(&b"a");
        let (p, q) = (PeerId::random(), PeerId::random());
        let ka = KBucketKey::new(a.clone());
        let by_kad = ka.distance(&KBucketKey::from(p)) < ka.distance(&KBucketKey::from(q));
        let pa = position_of_key(&a);
        let ours = distance(&pa, &position_of_peer(p)) < distance(&pa, &position_of_peer(q));
        assert_eq!(by_kad, ours);
    }
}
