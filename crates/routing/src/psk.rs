//! The cluster's pre-shared key: who may join the DHT.
//!
//! With a key, libp2p runs as a private network (the `pnet` handshake
//! before Noise): a node without the same key cannot connect, so it can
//! neither look up nor announce. The mirror derives its own key for proving
//! membership on peer HTTP from the same secret ([`Psk::derive`]).
//!
//! The file holds the 32 bytes as 64 hex characters, or libp2p's
//! `swarm.key` format (`/key/swarm/psk/1.0.0/`, `/base16/`, the hex).

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// A 32-byte pre-shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; 32]);

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    /// The file could not be read.
    #[error("cannot read the pre-shared key {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: KeyFormat,
    },
}

/// What is wrong with a key's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormat {
    /// Nothing but blank lines.
    #[error("the pre-shared key file is empty")]
    Empty,
    /// A `swarm.key` in another encoding.
    #[error("a swarm.key must use /base16/ encoding")]
    NotBase16,
    /// A `swarm.key` header without a key.
    #[error("the swarm.key has no key line")]
    NoKeyLine,
    /// More than the key.
    #[error("unexpected text after the key")]
    TrailingText,
    /// Not 32 bytes in hexadecimal.
    #[error("the key must be 64 hexadecimal characters (32 bytes)")]
    NotHex,
}

const SWARM_KEY_HEADER: &str = "/key/swarm/psk/1.0.0/";

impl Psk {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads the key in `path`.
    pub fn from_file(path: &Path) -> Result<Self, PskError> {
        let text = std::fs::read_to_string(path).map_err(|source| PskError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|reason| PskError::Format { path: path.to_owned(), reason })
    }

    /// Parses 64 hex characters, or the `swarm.key` format.
    pub fn parse(text: &str) -> Result<Self, KeyFormat> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().ok_or(KeyFormat::Empty)?;
        let hex = if first == SWARM_KEY_HEADER {
            if lines.next() != Some("/base16/") {
                return Err(KeyFormat::NotBase16);
            }
            lines.next().ok_or(KeyFormat::NoKeyLine)?
        } else {
            first
        };
        if lines.next().is_some() {
            return Err(KeyFormat::TrailingText);
        }
        let bytes = decode_hex(hex).ok_or(KeyFormat::NotHex)?;
        Ok(Self(bytes))
    }

    /// A key for `purpose`, derived from this one (the mirror's HTTP proofs).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"peerpull/psk/");
        hasher.update(purpose.as_bytes());
        hasher.update([0]);
        hasher.update(self.0);
        hasher.finalize().into()
    }

    /// A short fingerprint to tell keys apart in logs, revealing nothing.
    pub fn fingerprint(&self) -> String {
        self.derive("fingerprint")[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn pnet(&self) -> libp2p::pnet::PreSharedKey {
        libp2p::pnet::PreSharedKey::new(self.0)
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk({})", self.fingerprint())
    }
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn hex_and_swarm_key_formats() {
        let plain = Psk::parse(&format!("{HEX}\n")).unwrap_or_else(|e| panic!("{e}"));
        let swarm = Psk::parse(&format!("{SWARM_KEY_HEADER}\n/base16/\n{HEX}\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain, swarm);
        assert_ne!(plain.derive("a"), plain.derive("b"));
        assert!(!format!("{plain:?}").contains("0011"), "Debug must not show the key");
        for (bad, why) in [
            ("", KeyFormat::Empty),
            ("abc", KeyFormat::NotHex),
            (&HEX[..62], KeyFormat::NotHex),
            (&format!("{HEX}00"), KeyFormat::NotHex),
            (&format!("{SWARM_KEY_HEADER}\n/base64/\n{HEX}"), KeyFormat::NotBase16),
            (&format!("{SWARM_KEY_HEADER}\n/base16/\n"), KeyFormat::NoKeyLine),
            (&format!("{HEX}\nmore"), KeyFormat::TrailingText),
        ] {
            assert_eq!(Psk::parse(bad), Err(why), "{bad:?}");
        }
    }
}
