//! What `configure` and `cleanup` did, for the binary to print.

use std::fmt;
use std::path::PathBuf;

/// One change (or non-change) on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An original registry folder was copied into `_backup`.
    BackedUp(PathBuf),
    /// A `hosts.toml` was written.
    Wrote(PathBuf),
    /// A `hosts.toml` already held exactly what it should.
    Unchanged(PathBuf),
    /// An original registry folder was moved back from `_backup`.
    Restored(PathBuf),
    /// A folder configure had written was removed.
    Removed(PathBuf),
}

/// Everything one run did, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The changes, in the order they were made.
    pub changes: Vec<Change>,
}

impl Report {
    /// True when nothing on disk was modified.
    pub fn is_noop(&self) -> bool {
        self.changes.iter().all(|c| matches!(c, Change::Unchanged(_)))
    }

    pub(crate) fn push(&mut self, change: Change) {
        self.changes.push(change);
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, path) = match self {
            Change::BackedUp(p) => ("backed up", p),
            Change::Wrote(p) => ("wrote", p),
            Change::Unchanged(p) => ("unchanged", p),
            Change::Restored(p) => ("restored", p),
            Change::Removed(p) => ("removed", p),
        };
        write!(f, "{verb} {}", path.display())
    }
}
