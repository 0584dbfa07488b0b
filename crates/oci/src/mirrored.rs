//! Which registries a node mirrors: all of them, or a chosen few.
//!
//! Operators name the registries to mirror (`--mirrored-registry`, the
//! `mirrors:` of a k3s `registries.yaml`); naming none, or `"*"`, means every
//! registry. [`Mirrored`] says which of the two it is, so no caller has to
//! remember that an empty list means "all".

use crate::registry::Registry;

/// The registries a node serves and advertises content of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mirrored {
    /// Every registry.
    #[default]
    All,
    /// Only these registries (never empty).
    Only(Vec<Registry>),
}

impl Mirrored {
    /// The registries an operator listed: none means every registry.
    pub fn from_list(registries: Vec<Registry>) -> Self {
        if registries.is_empty() {
            Mirrored::All
        } else {
            Mirrored::Only(registries)
        }
    }

    /// Whether the registry named `host` (as `?ns=` and references name it) is mirrored.
    pub fn includes(&self, host: &str) -> bool {
        match self {
            Mirrored::All => true,
            Mirrored::Only(registries) => registries.iter().any(|r| r.host() == host),
        }
    }

    /// Whether content that came from any of `hosts` is mirrored.
    pub fn includes_any<'a>(&self, hosts: impl IntoIterator<Item = &'a str>) -> bool {
        match self {
            Mirrored::All => true,
            Mirrored::Only(_) => hosts.into_iter().any(|host| self.includes(host)),
        }
    }

    /// The listed registries; empty for [`Mirrored::All`].
    pub fn registries(&self) -> &[Registry] {
        match self {
            Mirrored::All => &[],
            Mirrored::Only(registries) => registries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(s: &str) -> Registry {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn none_listed_means_all() {
        let all = Mirrored::from_list(Vec::new());
        assert_eq!(all, Mirrored::All);
        assert!(all.includes("anything.example"));
        assert!(all.includes_any([]));
        assert!(all.registries().is_empty());
    }

    #[test]
    fn a_list_mirrors_only_its_hosts() {
        let only = Mirrored::from_list(vec![registry("docker.io"), registry("http://127.0.0.1:5000")]);
        assert!(only.includes("docker.io"));
        assert!(only.includes("127.0.0.1:5000"));
        assert!(!only.includes("ghcr.io"));
        assert!(only.includes_any(["ghcr.io", "docker.io"]));
        assert!(!only.includes_any(["ghcr.io"]));
        assert!(!only.includes_any([]));
        assert_eq!(only.registries().len(), 2);
    }
}
