//! Mapping of peerpull keys (digests, `registry/repo:tag`) to Kademlia record keys.
//!
//! Keys are hashed (SHA-256 over a domain prefix) so that every record key has
//! the same length and is spread evenly over the keyspace, whatever the
//! caller's key looks like. The mapping is a pure function: every node derives
//! the same record key from the same string.

use libp2p::kad::RecordKey;
use peerpull_oci::Key;
use sha2::{Digest as _, Sha256};

/// Domain separation so our record keys can never collide with another use of SHA-256 over the same string.
const DOMAIN: &[u8] = b"peerpull/v1/";

/// The Kademlia record key for a peerpull key.
pub(crate) fn record_key(key: &Key) -> RecordKey {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(key.to_string().as_bytes());
    RecordKey::new(&hasher.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_record_key_and_fixed_length() {
        let digest = Key::Digest(peerpull_oci::Digest::sha256_of(b"abc"));
        let a = record_key(&digest);
        assert_eq!(a, record_key(&digest.clone()));
        assert_ne!(a, record_key(&Key::Tag("docker.io/library/nginx:latest".into())));
        assert_eq!(a.as_ref().len(), 32);
        assert_eq!(record_key(&Key::Tag(String::new())).as_ref().len(), 32);
    }
}
