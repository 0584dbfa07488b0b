//! Content digests: `sha256:<64 hex>` and `sha512:<128 hex>`, nothing else.
//!
//! A [`Digest`] names content by its hash. Only the two registered OCI
//! algorithms are accepted, and only in lowercase hex, so every digest has
//! exactly one spelling and two equal strings always mean equal content.
//! Checking bytes against a digest lives in [`crate::verify`].

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::verify::Verifier;

/// A validated content digest such as `sha256:e3b0c442…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole `algorithm:hex` string, kept so `as_str` borrows.
    value: String,
}

/// The hash algorithms a [`Digest`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 hex characters.
    Sha256,
    /// SHA-512, 128 hex characters.
    Sha512,
}

/// Why a string is not a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// There is no `:` between algorithm and hex.
    #[error("digest {input:?}: expected <algorithm>:<hex>")]
    Format { input: String },
    /// The algorithm is neither `sha256` nor `sha512`.
    #[error("digest {input:?}: unsupported algorithm {algorithm:?} (use sha256 or sha512)")]
    Algorithm { input: String, algorithm: String },
    /// The hex part has the wrong length for its algorithm.
    #[error("digest {input:?}: {algorithm} needs {expected} hex characters, found {found}")]
    Length { input: String, algorithm: Algorithm, expected: usize, found: usize },
    /// The hex part holds something other than `0-9a-f`.
    #[error("digest {input:?}: the hex part must be lowercase hexadecimal")]
    Hex { input: String },
}

impl Algorithm {
    /// The algorithm as written before the `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// How many hex characters a digest of this algorithm has.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self::from_hash(Algorithm::Sha256, &Sha256::digest(bytes))
    }

    /// The SHA-512 digest of `bytes`.
    pub fn sha512_of(bytes: &[u8]) -> Self {
        Self::from_hash(Algorithm::Sha512, &Sha512::digest(bytes))
    }

    /// A digest from an algorithm and its hex string, validated like [`FromStr`].
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self, DigestError> {
        format!("{algorithm}:{hex}").parse()
    }

    /// Builds a digest from raw hash output; the caller guarantees the length.
    pub(crate) fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Self {
        Self { algorithm, value: format!("{algorithm}:{}", hex::encode(hash)) }
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part, after the `:`.
    pub fn hex(&self) -> &str {
        &self.value[self.algorithm.as_str().len() + 1..]
    }

    /// The whole digest, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Starts checking bytes against this digest; see [`Verifier`].
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.clone())
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let Some((name, hex)) = input.split_once(':') else {
            return Err(DigestError::Format { input: input.to_owned() });
        };
        let Some(algorithm) = Algorithm::from_name(name) else {
            return Err(DigestError::Algorithm { input: input.to_owned(), algorithm: name.to_owned() });
        };
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::Length {
                input: input.to_owned(),
                algorithm,
                expected: algorithm.hex_len(),
                found: hex.len(),
            });
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Hex { input: input.to_owned() });
        }
        Ok(Self { algorithm, value: input.to_owned() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;

    /// oci-spec accepts any registered-looking algorithm; we keep only sha256 and sha512.
    fn try_from(digest: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        digest.as_ref().parse()
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(digest: &Digest) -> Self {
        // Infallible in practice: every Digest we hold is one oci-spec accepts.
        match digest.as_str().parse() {
            Ok(d) => d,
            Err(_) => unreachable!("a validated sha256/sha512 digest is a valid oci-spec digest"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_bytes() {
        let d = Digest::sha256_of(b"");
        assert_eq!(d.as_str(), EMPTY_SHA256);
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), &EMPTY_SHA256[7..]);
        let d = Digest::sha512_of(b"abc");
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert!(d.hex().starts_with("ddaf35a193617aba"));
        assert_eq!(d.hex().len(), 128);
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn parses_both_algorithms() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY_SHA256);
        let sha512 = format!("sha512:{}", "0f".repeat(64));
        assert_eq!(sha512.parse::<Digest>().unwrap().algorithm(), Algorithm::Sha512);
        assert_eq!(Digest::new(Algorithm::Sha256, &EMPTY_SHA256[7..]).unwrap(), d);
    }

    #[test]
    fn rejects_bad_digests() {
        let hex64 = "a".repeat(64);
        type Check = fn(&DigestError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (String::new(), |e| matches!(e, DigestError::Format { .. })),
            (hex64.clone(), |e| matches!(e, DigestError::Format { .. })),
            (format!("md5:{hex64}"), |e| matches!(e, DigestError::Algorithm { .. })),
            (format!("SHA256:{hex64}"), |e| matches!(e, DigestError::Algorithm { .. })),
            (format!("sha384:{}", "a".repeat(96)), |e| matches!(e, DigestError::Algorithm { .. })),
            (format!(":{hex64}"), |e| matches!(e, DigestError::Algorithm { .. })),
            (format!("sha256:{}", "a".repeat(63)), |e| matches!(e, DigestError::Length { found: 63, .. })),
            (format!("sha256:{}", "a".repeat(65)), |e| matches!(e, DigestError::Length { found: 65, .. })),
            (format!("sha256:{}", "a".repeat(128)), |e| matches!(e, DigestError::Length { expected: 64, .. })),
            (format!("sha512:{hex64}"), |e| matches!(e, DigestError::Length { expected: 128, .. })),
            ("sha256:".to_owned(), |e| matches!(e, DigestError::Length { found: 0, .. })),
            (format!("sha256:{}", "A".repeat(64)), |e| matches!(e, DigestError::Hex { .. })),
            (format!("sha256:{}g", "a".repeat(63)), |e| matches!(e, DigestError::Hex { .. })),
            (format!("sha256:{} ", "a".repeat(63)), |e| matches!(e, DigestError::Hex { .. })),
            (format!("sha256:{}:", "a".repeat(63)), |e| matches!(e, DigestError::Hex { .. })),
            (format!("sha256+b64:{hex64}"), |e| matches!(e, DigestError::Algorithm { .. })),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Digest>().unwrap_err();
            assert!(expected(&err), "{input:?} gave {err:?}");
        }
        // Multi-byte characters must not confuse the length check into slicing mid-character.
        assert!(format!("sha256:{}é", "a".repeat(62)).parse::<Digest>().is_err());
    }

    #[test]
    fn serde_as_a_string() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY_SHA256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:abc\"").is_err());
        assert!(serde_json::from_str::<Digest>("42").is_err());
    }

    #[test]
    fn converts_to_and_from_oci_spec() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        let theirs = oci_spec::image::Digest::from(&d);
        assert_eq!(theirs.to_string(), EMPTY_SHA256);
        assert_eq!(Digest::try_from(&theirs).unwrap(), d);
        let sha384: oci_spec::image::Digest = format!("sha384:{}", "a".repeat(96)).parse().unwrap();
        assert!(Digest::try_from(&sha384).is_err());
    }
}
