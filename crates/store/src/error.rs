//! Why a store operation failed.
//!
//! Failures that have an underlying error (gRPC transport and status, file
//! I/O) keep it as their [`source`](std::error::Error::source), so a caller
//! can walk the chain; the message names it too, as every error of this
//! project does, so one line tells the whole story.

use peerpull_oci::Digest;

/// The error beneath a failure: a transport, status or I/O error, or a
/// description where nothing lower failed (a stream that ended early).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// containerd could not be reached.
    #[error("containerd at {socket} is unreachable: {cause}")]
    Unreachable {
        /// The socket tried.
        socket: String,
        /// What failed.
        #[source]
        cause: Cause,
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
    #[error("reading {digest} failed: {cause}")]
    ReadFailed {
        /// The blob.
        digest: Digest,
        /// What failed.
        #[source]
        cause: Cause,
    },
    /// containerd answered with an unexpected error.
    #[error("containerd {call} failed: {cause}")]
    Backend {
        /// The call.
        call: &'static str,
        /// What it said.
        #[source]
        cause: Cause,
    },
}

/// A [`Cause`] from an error, or from a description (`String`, `&str`).
pub fn cause(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Cause {
    error.into()
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn the_cause_is_kept_as_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let error = StoreError::ReadFailed { digest: Digest::sha256_of(b"x"), cause: cause(io) };
        assert!(error.to_string().ends_with("failed: denied"), "{error}");
        let source = error.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("denied"));
        let io = error.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(std::io::Error::kind), Some(std::io::ErrorKind::PermissionDenied));
    }
}
