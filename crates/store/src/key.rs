//! The keys a node advertises and the changes a watch reports.

use std::collections::BTreeSet;
use std::fmt;

use peerpull_oci::{Digest, Reference};

/// Something a node can serve: a blob or manifest by digest, or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A digest present in the content store.
    Digest(Digest),
    /// A tag, in canonical form: `registry/repository:tag`.
    Tag(String),
}

/// A key with the registries its image came from (`docker.io`, `ghcr.io`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// The key.
    pub key: Key,
    /// Registry hosts the content was pulled from; may be empty when unknown.
    pub registries: BTreeSet<String>,
}

/// What changed in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Keys now served.
    pub added: Vec<Entry>,
    /// Keys no longer served.
    pub removed: Vec<Key>,
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
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Digest(digest) => digest.fmt(f),
            Key::Tag(tag) => f.write_str(tag),
        }
    }
}

impl Entry {
    /// An entry for `key` from the given registries.
    pub fn new(key: Key, registries: impl IntoIterator<Item = String>) -> Self {
        Self { key, registries: registries.into_iter().collect() }
    }
}

impl Change {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}
