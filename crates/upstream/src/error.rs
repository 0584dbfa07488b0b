//! What an upstream request can come back with, besides a usable response.

use std::time::Duration;

use http::StatusCode;

/// Why an upstream request did not give a usable response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's settings are unusable (a CA or key file that cannot be read).
    #[error("upstream TLS settings for {host}: {reason}")]
    Settings {
        /// The registry.
        host: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry could not be reached, or did not answer in time.
    #[error("{url}: {what}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// What failed.
        what: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The registry does not have it.
    #[error("{url}: not found")]
    NotFound {
        /// What was asked.
        url: String,
    },
    /// The registry refused: no or wrong credentials (401, 403).
    #[error("{url}: access denied ({status})")]
    Denied {
        /// What was asked.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// Too many requests (429); try again after `retry_after`, when given.
    #[error("{url}: rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// What was asked.
        url: String,
        /// The registry's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Another status that is not an answer (5xx, or an unexpected one).
    #[error("{url}: answered {status}")]
    Status {
        /// What was asked.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// The registry's answer made no sense (a redirect loop, a broken challenge or token).
    #[error("{url}: {what}")]
    Protocol {
        /// What was asked.
        url: String,
        /// What was wrong.
        what: String,
    },
}

impl Error {
    /// Whether the registry could not answer at all (down, overloaded, rate
    /// limited), as opposed to answering "no" (not found, denied).
    pub fn is_outage(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::RateLimited { .. } => true,
            Error::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}
