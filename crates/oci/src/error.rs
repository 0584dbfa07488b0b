//! OCI distribution error codes and the JSON error bodies registries send.
//!
//! The codes are the fourteen of the OCI distribution spec plus `UNKNOWN`,
//! which the CNCF distribution registry uses for internal errors. Each code's
//! HTTP status is the one that registry (the reference implementation)
//! returns for it. This module builds bodies; turning a failure into one is
//! the HTTP server's job.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An OCI distribution error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Blob unknown to registry (404).
    BlobUnknown,
    /// Blob upload invalid (400).
    BlobUploadInvalid,
    /// Blob upload unknown to registry (404).
    BlobUploadUnknown,
    /// Provided digest did not match, or is not a digest (400).
    DigestInvalid,
    /// A manifest references a blob unknown to the registry (400).
    ManifestBlobUnknown,
    /// Manifest invalid (400).
    ManifestInvalid,
    /// Manifest unknown to registry (404).
    ManifestUnknown,
    /// Invalid repository name (400).
    NameInvalid,
    /// Repository name not known to registry (404).
    NameUnknown,
    /// Provided length did not match content length (400).
    SizeInvalid,
    /// Authentication required (401).
    Unauthorized,
    /// Requested access to the resource is denied (403).
    Denied,
    /// The operation is unsupported (405).
    Unsupported,
    /// Too many requests (429).
    TooManyRequests,
    /// An error with no API classification (500); a distribution extension.
    Unknown,
}

/// A registry error response: `{"errors":[{"code":…,"message":…,"detail":…}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The errors, usually exactly one.
    pub errors: Vec<ErrorInfo>,
}

/// One entry of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The code as sent; kept as a string so unknown codes from upstream survive.
    pub code: String,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// Free-form detail, left out when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

const ALL: [ErrorCode; 15] = [
    ErrorCode::BlobUnknown,
    ErrorCode::BlobUploadInvalid,
    ErrorCode::BlobUploadUnknown,
    ErrorCode::DigestInvalid,
    ErrorCode::ManifestBlobUnknown,
    ErrorCode::ManifestInvalid,
    ErrorCode::ManifestUnknown,
    ErrorCode::NameInvalid,
    ErrorCode::NameUnknown,
    ErrorCode::SizeInvalid,
    ErrorCode::Unauthorized,
    ErrorCode::Denied,
    ErrorCode::Unsupported,
    ErrorCode::TooManyRequests,
    ErrorCode::Unknown,
];

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 15] = ALL;

    /// The code as it appears in an error body, e.g. `MANIFEST_UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status the distribution registry sends with this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown | ErrorCode::BlobUploadUnknown => 404,
            ErrorCode::ManifestUnknown | ErrorCode::NameUnknown => 404,
            ErrorCode::BlobUploadInvalid | ErrorCode::DigestInvalid | ErrorCode::ManifestBlobUnknown => 400,
            ErrorCode::ManifestInvalid | ErrorCode::NameInvalid | ErrorCode::SizeInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unknown => 500,
        }
    }

    /// The short message the spec gives for this code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown | ErrorCode::ManifestBlobUnknown => "blob unknown to registry",
            ErrorCode::BlobUploadInvalid => "blob upload invalid",
            ErrorCode::BlobUploadUnknown => "blob upload unknown to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::ManifestUnknown => "manifest unknown",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::SizeInvalid => "provided length did not match content length",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::Unsupported => "the operation is unsupported",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::Unknown => "unknown error",
        }
    }

    /// The code an error body names, if it is one we know.
    pub fn parse(code: &str) -> Option<Self> {
        ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorBody {
    /// A body holding one error.
    pub fn new(code: ErrorCode, message: impl Into<String>, detail: Option<serde_json::Value>) -> Self {
        Self { errors: vec![ErrorInfo { code: code.as_str().to_owned(), message: message.into(), detail }] }
    }

    /// A body holding one error with the spec's message for its code and no detail.
    pub fn from_code(code: ErrorCode) -> Self {
        Self::new(code, code.message(), None)
    }

    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings and JSON values into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body a registry sent.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The first error's message.
    pub fn message(&self) -> Option<&str> {
        self.errors.first().map(|e| e.message.as_str())
    }

    /// The first error's code, if it is a known one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.errors.first().and_then(|e| ErrorCode::parse(&e.code))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(ErrorCode::NameInvalid.as_str(), "NAME_INVALID");
        assert_eq!(ErrorCode::TooManyRequests.as_str(), "TOOMANYREQUESTS");
        assert_eq!(ErrorCode::ManifestUnknown.status(), 404);
        assert_eq!(ErrorCode::BlobUnknown.status(), 404);
        assert_eq!(ErrorCode::DigestInvalid.status(), 400);
        assert_eq!(ErrorCode::ManifestBlobUnknown.status(), 400);
        assert_eq!(ErrorCode::Unauthorized.status(), 401);
        assert_eq!(ErrorCode::Denied.status(), 403);
        assert_eq!(ErrorCode::Unsupported.status(), 405);
        assert_eq!(ErrorCode::TooManyRequests.status(), 429);
        assert_eq!(ErrorCode::Unknown.status(), 500);
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
            assert!(!code.message().is_empty());
        }
        assert_eq!(ErrorCode::parse("name_invalid"), None);
    }

    #[test]
    fn serialises_the_spec_shape() {
        let body = ErrorBody::new(ErrorCode::BlobUnknown, "blob unknown", Some(serde_json::json!({"digest": "x"})));
        let json: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown", "detail": {"digest": "x"}}]})
        );
        let plain = String::from_utf8(ErrorBody::from_code(ErrorCode::ManifestUnknown).to_json()).unwrap();
        assert_eq!(plain, r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#);
    }

    #[test]
    fn parses_upstream_bodies() {
        let body = ErrorBody::from_json(br#"{"errors":[{"code":"DENIED","message":"no","detail":null}]}"#).unwrap();
        assert_eq!(body.code(), Some(ErrorCode::Denied));
        let odd = ErrorBody::from_json(br#"{"errors":[{"code":"SOMETHING_NEW"}]}"#).unwrap();
        assert_eq!(odd.code(), None);
        assert_eq!(odd.errors[0].code, "SOMETHING_NEW");
        assert!(ErrorBody::from_json(b"not json").is_err());
    }
}
