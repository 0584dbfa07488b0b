//! Descriptors: what a manifest or index says about the content it references.
//!
//! This is the slice of an OCI descriptor a mirror needs: digest, size,
//! media type and, for index entries, the platform. Fields it does not use
//! (annotations, urls, embedded data) are ignored when parsing. Platform
//! strings are kept exactly as written, so a `variant` or an unusual
//! architecture survives unchanged.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A reference to content by digest, with its size and media type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// The digest of the referenced content.
    pub digest: Digest,
    /// The size of the referenced content in bytes.
    pub size: u64,
    /// The platform an index entry is for; absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// The platform an image manifest runs on, as Go spells it (`linux`, `arm64`, `v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for 32-bit ARM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Descriptor {
    /// A descriptor without a platform.
    pub fn new(digest: Digest, size: u64, media_type: impl Into<String>) -> Self {
        Self { media_type: media_type.into(), digest, size, platform: None }
    }

    /// The same descriptor with a platform.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }
}

impl Platform {
    /// A platform without a variant.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Self { os: os.into(), architecture: architecture.into(), variant: None }
    }

    /// The same platform with a variant.
    pub fn with_variant(mut self, variant: impl Into<String>) -> Self {
        self.variant = Some(variant.into());
        self
    }
}

impl fmt::Display for Platform {
    /// `os/architecture[/variant]`, e.g. `linux/arm/v7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let d = Descriptor::new(Digest::sha256_of(b"x"), 1, "application/x")
            .with_platform(Platform::new("linux", "arm").with_variant("v7"));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["mediaType"], "application/x");
        assert_eq!(json["platform"]["variant"], "v7");
        assert_eq!(serde_json::from_value::<Descriptor>(json).unwrap(), d);
        assert_eq!(d.platform.unwrap().to_string(), "linux/arm/v7");
        assert_eq!(Platform::new("linux", "amd64").to_string(), "linux/amd64");
    }

    #[test]
    fn ignores_unused_fields_and_rejects_bad_ones() {
        let digest = Digest::sha256_of(b"x");
        let ok = format!(r#"{{"mediaType":"m","digest":"{digest}","size":3,"annotations":{{"a":"b"}},"urls":["u"]}}"#);
        assert_eq!(serde_json::from_str::<Descriptor>(&ok).unwrap(), Descriptor::new(digest.clone(), 3, "m"));
        for bad in [
            format!(r#"{{"mediaType":"m","digest":"{digest}","size":-1}}"#),
            r#"{"mediaType":"m","digest":"sha256:00","size":1}"#.to_owned(),
            format!(r#"{{"digest":"{digest}","size":1}}"#),
            r#"{"mediaType":"m","size":1}"#.to_owned(),
        ] {
            assert!(serde_json::from_str::<Descriptor>(&bad).is_err(), "{bad}");
        }
    }
}
