//! Which registry a `hosts.toml` is for, and the folder containerd looks it up in.
//!
//! containerd looks for `<config_path>/<host[:port]>/hosts.toml` first and
//! falls back to `<config_path>/_default/hosts.toml`, so mirroring "every
//! registry" means writing `_default`, which has no `server` line: there the
//! registry named in the image reference is the server.

use std::fmt;

use peerpull_oci::Registry;

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

    /// The targets for a list of registries: `_default` when the list is empty.
    pub fn from_registries(registries: impl IntoIterator<Item = Registry>) -> Vec<Target> {
        let targets: Vec<Target> = registries.into_iter().map(Target::Registry).collect();
        if targets.is_empty() {
            vec![Target::All]
        } else {
            targets
        }
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
