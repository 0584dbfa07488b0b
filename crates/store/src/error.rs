//! Why a store operation failed.

use peerpull_oci::Digest;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// containerd could not be reached.
    #[error("containerd at {socket} is unreachable: {reason}")]
    Unreachable {
        /// The socket tried.
        socket: String,
        /// What failed.
        reason: String,
    },
    /// The namespace does not exist in containerd.
    #[error("containerd namespace {0:?} does not exist")]
    NamespaceMissing(String),
    /// The tag or digest is not held here.
    #[error("{0} not found")]
    NotFound(String),
    /// The range lies outside the blob.
    #[error("range {start}-{end} outside {digest} of {size} bytes")]
    InvalidRange {
        /// The blob.
        digest: Digest,
        /// First byte asked for.
        start: u64,
        /// Last byte asked for.
        end: u64,
        /// The blob's size.
        size: u64,
    },
    /// Reading failed, possibly mid-stream.
    #[error("reading {digest} failed: {reason}")]
    ReadFailed {
        /// The blob.
        digest: Digest,
        /// What failed.
        reason: String,
    },
    /// containerd answered with an unexpected error.
    #[error("containerd {call} failed: {reason}")]
    Backend {
        /// The call.
        call: &'static str,
        /// What it said.
        reason: String,
    },
}
