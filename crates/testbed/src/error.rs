//! The testbed's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Why a testbed operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A condition was not met before its deadline.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long was waited.
        after: Duration,
    },
    /// A helper command (`skopeo`, `ctr`) exited unsuccessfully.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A gRPC connection to containerd could not be made.
    #[error("connecting to {socket}: {source}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// containerd answered a gRPC call with an error.
    #[error("{what}: {status}")]
    Grpc {
        /// The call.
        what: String,
        /// containerd's answer.
        status: tonic::Status,
    },
    /// A service process exited while it was expected to run.
    #[error("{service} exited early ({status}); log: {log}")]
    Exited {
        /// The service.
        service: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The tail of its log.
        log: String,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn grpc(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> Error {
        let what = what.into();
        move |status| Error::Grpc { what, status }
    }
}
