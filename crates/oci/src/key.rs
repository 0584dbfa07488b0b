//! What a node advertises and looks up: a digest, or a tag.
//!
//! A [`Key`] names content the way the DHT indexes it. Every node derives
//! the same key from the same content: a digest as `sha256:…`, a tag as
//! `registry/repository:tag` with the registry spelled as references
//! normalise it (`docker.io/library/nginx:latest`).

use std::fmt;

use crate::digest::Digest;
use crate::reference::Reference;

/// Something a node can serve: a blob or manifest by digest, or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A digest present in the content store.
    Digest(Digest),
    /// A tag, in canonical form: `registry/repository:tag`.
    Tag(String),
}

/// A key's kind, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// A digest key.
    Digest,
    /// A tag key.
    Tag,
}

impl Key {
    /// The key of a tag reference; `None` when the reference has no tag.
    pub fn tag(reference: &Reference) -> Option<Self> {
        let tag = reference.tag()?;
        Some(Key::Tag(format!("{}/{}:{tag}", reference.registry(), reference.repository())))
    }

    /// Whether this is a tag key.
    pub fn is_tag(&self) -> bool {
        matches!(self, Key::Tag(_))
    }

    /// Whether this is a digest or a tag key.
    pub fn kind(&self) -> KeyKind {
        match self {
            Key::Digest(_) => KeyKind::Digest,
            Key::Tag(_) => KeyKind::Tag,
        }
    }
}

impl From<Digest> for Key {
    fn from(digest: Digest) -> Self {
        Key::Digest(digest)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Digest(digest) => digest.fmt(f),
            Key::Tag(tag) => f.write_str(tag),
        }
    }
}

impl KeyKind {
    /// `digest` or `tag`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Digest => "digest",
            KeyKind::Tag => "tag",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys_are_canonical_references() {
        let reference: Reference = "nginx".parse().unwrap_or_else(|e| panic!("{e}"));
        let key = Key::tag(&reference).unwrap_or_else(|| panic!("no tag"));
        assert_eq!(key.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(key.kind(), KeyKind::Tag);
        let digest = Digest::sha256_of(b"x");
        assert_eq!(Key::from(digest.clone()).to_string(), digest.to_string());
        let pinned: Reference = format!("nginx@{digest}").parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Key::tag(&pinned), None);
    }
}
