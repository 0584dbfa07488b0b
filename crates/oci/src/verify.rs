//! Checking streamed bytes against the digest they were asked for.
//!
//! Content from a peer or upstream is untrusted until its hash matches. A
//! [`Verifier`] hashes bytes as they pass, in whatever chunks they arrive,
//! so a transfer never has to be buffered to be checked. It owns no I/O; the
//! `std::io::Write` impl only lets it sit at the end of `io::copy`.

use sha2::{Digest as _, Sha256, Sha512};

use crate::digest::{Algorithm, Digest};

/// Hashes bytes incrementally and compares them with an expected digest.
#[derive(Debug, Clone)]
pub struct Verifier {
    expected: Digest,
    hasher: Hasher,
    len: u64,
}

/// Bytes hashed to a different digest than the one expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("digest mismatch: expected {expected}, got {actual}")]
pub struct Mismatch {
    /// The digest the content was requested by.
    pub expected: Digest,
    /// The digest of the bytes actually received.
    pub actual: Digest,
}

#[derive(Debug, Clone)]
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Verifier {
    /// A verifier expecting `expected`, using that digest's algorithm.
    pub fn new(expected: Digest) -> Self {
        let hasher = match expected.algorithm() {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        };
        Self { expected, hasher, len: 0 }
    }

    /// Feeds the next chunk of content.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
        self.len = self.len.saturating_add(bytes.len() as u64);
    }

    /// How many bytes have been fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no bytes have been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest being checked against.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// The digest of everything fed, consuming the verifier.
    pub fn actual(self) -> Digest {
        let algorithm = self.expected.algorithm();
        match self.hasher {
            Hasher::Sha256(h) => Digest::from_hash(algorithm, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_hash(algorithm, &h.finalize()),
        }
    }

    /// Whether the bytes fed hash to the expected digest.
    pub fn finish(self) -> bool {
        self.verify().is_ok()
    }

    /// `Ok` when the bytes fed hash to the expected digest, otherwise both digests.
    pub fn verify(self) -> Result<(), Mismatch> {
        let expected = self.expected.clone();
        let actual = self.actual();
        if actual == expected {
            Ok(())
        } else {
            Err(Mismatch { expected, actual })
        }
    }
}

impl std::io::Write for Verifier {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_matching_bytes_in_any_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for digest in [Digest::sha256_of(&data), Digest::sha512_of(&data)] {
            for chunk in [1, 7, 4096, data.len()] {
                let mut v = digest.verifier();
                data.chunks(chunk).for_each(|c| v.update(c));
                assert_eq!(v.len(), data.len() as u64);
                assert!(v.finish(), "{digest} chunk {chunk}");
            }
        }
    }

    #[test]
    fn reports_both_digests_on_mismatch() {
        let expected = Digest::sha256_of(b"right");
        let mut v = expected.verifier();
        assert!(v.is_empty());
        v.update(b"wrong");
        let err = v.verify().unwrap_err();
        assert_eq!(err.expected, expected);
        assert_eq!(err.actual, Digest::sha256_of(b"wrong"));
        assert!(err.to_string().contains(expected.as_str()));

        let mut v = Digest::sha512_of(b"right").verifier();
        v.update(b"righ");
        assert!(!v.finish(), "a truncated transfer must not verify");
    }

    #[test]
    fn works_as_an_io_sink() {
        let data = b"streamed through io::copy";
        let mut v = Digest::sha256_of(data).verifier();
        std::io::copy(&mut &data[..], &mut v).unwrap();
        assert_eq!(v.expected(), &Digest::sha256_of(data));
        assert!(v.finish());
    }
}
