//! Which registry a `hosts.toml` is for, and the folder containerd looks it up in.
//!
//! containerd looks for `<config_path>/<host[:port]>/hosts.toml` first and
//! falls back to `<config_path>/_default/hosts.toml`, so mirroring "every
//! registry" means writing `_default`, which has no `server` line: there the
//! registry named in the image reference is the server.

use std::fmt;

use peerpull_oci::{Mirrored, Registry};

/// The folder containerd falls back to for any registry without its own.
pub const DEFAULT_DIR: &str = "_default";

/// A registry to mirror, or all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Every registry without a folder of its own (`_default`).
    All,
    /// One registry, reached over its own scheme.
    Registry(Registry),
}

impl Target {
    /// The folder under the config path: `docker.io`, `127.0.0.1:5000`, `_default`.
    pub fn dir_name(&self) -> &str {
        match self {
            Target::All => DEFAULT_DIR,
            Target::Registry(registry) => registry.host(),
        }
    }

    /// The `server` line: the real upstream (`https://registry-1.docker.io` for Docker Hub).
    pub fn server(&self) -> Option<String> {
        match self {
            Target::All => None,
            Target::Registry(registry) => Some(registry.upstream_url()),
        }
    }

    /// The targets that mirror `mirrored`: `_default` for every registry.
    pub fn of(mirrored: &Mirrored) -> Vec<Target> {
        match mirrored {
            Mirrored::All => vec![Target::All],
            Mirrored::Only(registries) => registries.iter().cloned().map(Target::Registry).collect(),
        }
    }

    /// Which registries `targets` mirror: every one when any target is `_default`.
    pub fn mirrored(targets: &[Target]) -> Mirrored {
        let mut registries = Vec::new();
        for target in targets {
            match target {
                Target::All => return Mirrored::All,
                Target::Registry(registry) => registries.push(registry.clone()),
            }
        }
        Mirrored::from_list(registries)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all registries (_default)"),
            Target::Registry(registry) => registry.fmt(f),
        }
    }
}

impl From<Registry> for Target {
    fn from(registry: Registry) -> Self {
        Target::Registry(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(s: &str) -> Registry {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn targets_and_mirrored_registries_agree() {
        assert_eq!(Target::of(&Mirrored::All), vec![Target::All]);
        let only = Mirrored::from_list(vec![registry("docker.io"), registry("http://127.0.0.1:5000")]);
        let targets = Target::of(&only);
        assert_eq!(targets.iter().map(Target::dir_name).collect::<Vec<_>>(), ["docker.io", "127.0.0.1:5000"]);
        assert_eq!(Target::mirrored(&targets), only);
        let with_default = [Target::Registry(registry("ghcr.io")), Target::All];
        assert_eq!(Target::mirrored(&with_default), Mirrored::All);
    }
}
