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

/// How an upstream request ended, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It answered with the content.
    Ok,
    /// It does not have it.
    NotFound,
    /// It refused (401, 403).
    Denied,
    /// It asked us to slow down (429).
    RateLimited,
    /// It could not be reached or did not answer in time.
    Unreachable,
    /// Any other failure (5xx, a broken answer).
    Error,
}

impl Outcome {
    /// `ok`, `not_found`, `denied`, `rate_limited`, `unreachable` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Denied => "denied",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unreachable => "unreachable",
            Outcome::Error => "error",
        }
    }
}

impl From<&Error> for Outcome {
    fn from(error: &Error) -> Self {
        match error {
            Error::NotFound { .. } => Outcome::NotFound,
            Error::Denied { .. } => Outcome::Denied,
            Error::RateLimited { .. } => Outcome::RateLimited,
            Error::Unreachable { .. } => Outcome::Unreachable,
            Error::Settings { .. } | Error::Status { .. } | Error::Protocol { .. } => Outcome::Error,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
