//! The keys a node holds and the changes a watch reports.
//!
//! [`Key`] itself is OCI vocabulary (`peerpull_oci::Key`), shared with the
//! router; it is re-exported here for the store's callers.

use std::collections::BTreeSet;

pub use peerpull_oci::Key;

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
