//! Runtime configuration on disk.
//!
//! Writing containerd `hosts.toml` files that point a node's containerd at
//! its peerpull mirror, backing up and restoring what was there before, and
//! reading k3s `registries.yaml`. This crate touches only files; it does not
//! talk to containerd, log, or exit.
//!
//! - [`configure`] writes `<config_path>/<registry>/hosts.toml` (or
//!   `_default/hosts.toml` for all registries) in the format Spegel writes,
//!   after copying each replaced folder into `<config_path>/_backup`.
//! - [`cleanup`] puts the originals back byte for byte and removes `_backup`.
//! - [`render`] is the pure `hosts.toml` renderer both use.
//! - [`RegistriesYaml`] reads k3s's `registries.yaml`: the registries to
//!   mirror and their upstream credentials and TLS settings.
//!
//! containerd reads these files only when its CRI registry `config_path`
//! points at the folder: [`CONTAINERD_CONFIG_PATH`] on a plain containerd
//! node, [`K3S_CONFIG_PATH`] on k3s (RKE2: `/var/lib/rancher/rke2/agent/etc/containerd/certs.d`).
//! k3s regenerates its `hosts.toml` files from `registries.yaml` when it
//! starts, so on k3s run `configure` after k3s, with `--prepend-existing` to
//! keep the endpoints k3s wrote.
//!
//! `dial_timeout` is honoured by containerd 2.1 and later; 1.6 and 1.7 ignore it.

mod cleanup;
mod configure;
mod duration;
mod error;
mod fs;
mod mirror;
mod registries_yaml;
mod render;
mod report;
mod state;
mod target;

pub use cleanup::cleanup;
pub use configure::{configure, Config};
pub use duration::{DialTimeout, DurationError};
pub use error::Error;
pub use mirror::{Mirror, MirrorError};
pub use registries_yaml::{Auth, MirrorConfig, RegistriesYaml, RegistriesYamlError, RegistryConfig, Tls};
pub use render::{parse_existing, render, Dialect, HostsOptions, ParseError};
pub use report::{Change, Report};
pub use state::BACKUP_DIR;
pub use target::{Target, DEFAULT_DIR};

/// containerd's conventional registry `config_path`.
pub const CONTAINERD_CONFIG_PATH: &str = "/etc/containerd/certs.d";
/// The registry `config_path` of k3s's embedded containerd.
pub const K3S_CONFIG_PATH: &str = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d";
/// Where k3s reads `registries.yaml`.
pub const K3S_REGISTRIES_YAML: &str = "/etc/rancher/k3s/registries.yaml";
