//! Runtime configuration on disk.
//!
//! Writing containerd `hosts.toml` files that point a node's containerd at
//! its peerpull mirror, backing up and restoring what was there before, and
//! reading k3s `registries.yaml`. This crate touches only files; it does not
//! talk to containerd.
