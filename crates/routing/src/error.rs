//! The crate's typed errors.
//!
//! One enum for everything the `Router` handle and start-up can fail with; a
//! caller needs to tell "bad configuration or identity on disk" (fix and
//! restart) from "the event loop is gone" (the subsystem died) from "an
//! operation took too long" (retry or carry on without peers).

use std::{io, path::PathBuf};

/// What went wrong in the router.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The identity file or its directory could not be read or written.
    #[error("identity file {path}: {source}")]
    Identity {
        /// The file (or directory) involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The identity file exists but does not hold a valid keypair.
    #[error("identity file {path} is not a valid protobuf-encoded keypair: {reason}")]
    IdentityDecode {
        /// The file involved.
        path: PathBuf,
        /// Why decoding failed.
        reason: String,
    },
    /// The libp2p transport could not be built.
    #[error("building the libp2p transport: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The listen address was refused.
    #[error("listening on {addr}: {reason}")]
    Listen {
        /// The address we tried to listen on.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// A bootstrap peer could not be parsed.
    #[error(transparent)]
    Bootstrap(#[from] crate::config::BootstrapParseError),
    /// The local provider store refused a key (too many keys); it stays
    /// advertised and is tried again.
    #[error("the provider store refused key {key}: {source}")]
    Store {
        /// The key that was refused.
        key: peerpull_oci::Key,
        /// Why.
        source: libp2p::kad::store::Error,
    },
    /// The event loop has stopped; the router is unusable.
    #[error("the routing event loop has stopped")]
    Stopped,
    /// An operation did not finish in time.
    #[error("routing operation {op} timed out")]
    Timeout {
        /// Which operation.
        op: &'static str,
    },
}
