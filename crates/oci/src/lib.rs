//! The OCI vocabulary peerpull speaks, with no I/O.
//!
//! This crate owns the pure data types every other crate shares: content
//! digests and their incremental verification, image references (with
//! docker.io normalisation), registries, OCI media types, manifest and index
//! parsing with a walk over every referenced descriptor, the `/v2` request
//! path grammar of the OCI distribution spec, HTTP `Range` parsing, and OCI
//! error bodies. It does not read files, open sockets or spawn tasks.

pub mod registry;

pub use registry::{Registry, RegistryError, Scheme};
