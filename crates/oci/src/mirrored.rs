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

    /// Whether content that came from any of `hosts` is mirrored, where a host
    /// may be a `containerd.io/distribution.source` label's: containerd drops
    /// the port there, so a host without one also stands for that host at any
    /// port (`127.0.0.1` for a mirrored `127.0.0.1:5000`).
    pub fn includes_any_source<'a>(&self, hosts: impl IntoIterator<Item = &'a str>) -> bool {
        match self {
            Mirrored::All => true,
            Mirrored::Only(registries) => hosts
                .into_iter()
                .any(|host| registries.iter().any(|r| r.host() == host || without_port(r.host()) == Some(host))),
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

/// `host` without its `:port`, when it has one.
fn without_port(host: &str) -> Option<&str> {
    let (name, port) = host.rsplit_once(':')?;
    let bare = !name.contains(':') || name.ends_with(']');
    (bare && !name.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(name)
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

    #[test]
    fn a_source_label_host_stands_for_its_host_at_any_port() {
        let only = Mirrored::from_list(vec![
            registry("docker.io"),
            registry("http://127.0.0.1:5000"),
            registry("http://[::1]:5001"),
        ]);
        assert!(only.includes_any_source(["127.0.0.1"]));
        assert!(only.includes_any_source(["127.0.0.1:5000", "ghcr.io"]));
        assert!(only.includes_any_source(["[::1]"]));
        assert!(only.includes_any_source(["docker.io"]));
        assert!(!only.includes_any_source(["127.0.0.2", "ghcr.io", "docker"]));
        assert!(!only.includes_any_source(["127.0.0.1:6000"]), "a host with another port is another registry");
        assert!(!only.includes("127.0.0.1"), "requests name the port");
    }
}
