//! Mapping of peerpull keys (digests, `registry/repo:tag`) to Kademlia record keys.
//!
//! Keys are hashed (SHA-256 over a domain prefix) so that every record key has
//! the same length and is spread evenly over the keyspace, whatever the
//! caller's key looks like. The mapping is a pure function: every node derives
//! the same record key from the same string.

use libp2p::kad::RecordKey;
use sha2::{Digest as _, Sha256};

/// Domain separation so our record keys can never collide with another use of SHA-256 over the same string.
const DOMAIN: &[u8] = b"peerpull/v1/";

/// The Kademlia record key for a peerpull key.
pub(crate) fn record_key(key: &str) -> RecordKey {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(key.as_bytes());
    RecordKey::new(&hasher.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_record_key_and_fixed_length() {
        let a = record_key("sha256:abc");
        assert_eq!(a, record_key("sha256:abc"));
        assert_ne!(a, record_key("docker.io/library/nginx:latest"));
        assert_eq!(a.as_ref().len(), 32);
        assert_eq!(record_key("").as_ref().len(), 32);
    }
}
