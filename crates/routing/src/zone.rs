//! Where a node runs: its zone (a Kubernetes node's
//! `topology.kubernetes.io/zone`), or none.
//!
//! A [`Zone`] is a name of up to 63 characters of `[A-Za-z0-9._-]` (a label
//! value). Names are interned (a cluster has a handful of zones), so a
//! [`crate::Provider`] stays small and `Copy`; past [`MAX_NAMES`] distinct
//! names (peers could announce any), a new name is refused. A zone travels
//! in the Identify agent string and in the mirror address of provider
//! records (see `agent`), so a node learns the zone of every holder it finds.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// The longest zone name (a Kubernetes label value).
pub const MAX_LEN: usize = 63;
/// The most distinct zone names a process keeps.
pub const MAX_NAMES: usize = 1024;

/// A zone name, or none (empty).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zone(&'static str);

/// Why a zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zone {0:?}: up to 63 characters of letters, digits, '.', '_' and '-'")]
pub struct ZoneError(pub String);

impl Zone {
    /// No zone.
    pub const NONE: Zone = Zone("");

    /// The zone `name` (empty: none).
    pub fn new(name: &str) -> Result<Self, ZoneError> {
        let ok = name.len() <= MAX_LEN && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(ZoneError(name.to_owned()));
        }
        if name.is_empty() {
            return Ok(Self::NONE);
        }
        static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut names = NAMES.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = names.get(name) {
            return Ok(Self(known));
        }
        if names.len() >= MAX_NAMES {
            return Err(ZoneError(name.to_owned()));
        }
        let interned: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(interned);
        Ok(Self(interned))
    }

    /// The name ("" for none).
    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// Whether this is no zone.
    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a node in this zone and one in `other` are in the same place:
    /// the same zone, or neither has one.
    pub fn same_as(&self, other: &Zone) -> bool {
        self == other
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self::NONE
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({:?})", self.as_str())
    }
}

impl std::str::FromStr for Zone {
    type Err = ZoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_are_label_values() {
        let zone = Zone::new("europe-west4_b.1").unwrap_or_default();
        assert_eq!(zone.as_str(), "europe-west4_b.1");
        assert!(Zone::new("").is_ok_and(|z| z.is_none()));
        assert!(Zone::new(&"a".repeat(63)).is_ok());
        for bad in ["a b", "zone=a", "a/b", "ä", &"a".repeat(64)] {
            assert!(Zone::new(bad).is_err(), "{bad}");
        }
        assert!(zone.same_as(&"europe-west4_b.1".parse().unwrap_or_default()));
        assert!(!zone.same_as(&Zone::NONE));
        assert!(Zone::NONE.same_as(&Zone::default()));
    }
}
