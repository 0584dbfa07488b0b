//! One level of the image graph: what a manifest or index references.
//!
//! An image manifest references a config and layers; an index (or Docker
//! manifest list) references manifests, each for a platform. Docker schema 2
//! and OCI documents share these shapes, so one parser reads all four.
//! Following the graph down (which needs reading content) is the store's.
//!
//! Implementation notes: the kind of a document comes from, in order, the
//! media type it was served or stored with, the `mediaType` field inside it,
//! and finally its shape (`manifests` means index, `config`/`layers` mean
//! manifest), because OCI documents may omit `mediaType`. A document with
//! both `manifests` and `config`/`layers` is refused as ambiguous, and so is
//! one whose declared and embedded types disagree: the image spec forbids
//! both, since a document that reads as two things can show different
//! content to different clients (CVE-2021-41190). Docker schema 1 is
//! refused. `subject` (the referrers API) is not a child: pulling an image
//! never needs it.
//!
//! The full typed documents are in `oci_spec::image`; this module reads only
//! the fields a mirror needs, which lets it keep platform strings verbatim
//! and validate digests with [`Digest`](crate::Digest).

use serde::Deserialize;

use crate::descriptor::Descriptor;
use crate::media;

/// Whether a document is an image manifest or an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An image manifest: config and layers.
    Manifest,
    /// An index or manifest list: manifests for platforms.
    Index,
}

/// A parsed manifest or index, one level deep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// What kind of document this is.
    pub kind: Kind,
    /// Its media type: as declared, else as embedded, else the OCI type for its kind.
    pub media_type: String,
    /// What it references: config then layers, or the index's manifests.
    pub children: Vec<Descriptor>,
}

/// Why bytes are not a manifest or index we can read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or a field has the wrong type (including an invalid digest).
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    /// The document is not a JSON object.
    #[error("manifest is not a JSON object")]
    NotAnObject,
    /// The media type names something that is not a manifest or index we read.
    #[error("media type {media_type:?} is not a supported manifest or index")]
    MediaType { media_type: String },
    /// The declared media type and the one inside the document disagree.
    #[error("declared media type {declared:?} but the document says {embedded:?}")]
    Mismatch { declared: String, embedded: String },
    /// The document has both index and manifest fields.
    #[error("document has both `manifests` and `config`/`layers`")]
    Ambiguous,
    /// Neither a media type nor the fields tell what the document is.
    #[error("cannot tell whether the document is a manifest or an index")]
    UnknownKind,
    /// A field the kind requires is absent.
    #[error("{kind:?} lacks required field `{field}`")]
    Missing { kind: Kind, field: &'static str },
}

/// The fields of either kind of document that matter here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    schema_version: Option<u64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

impl Kind {
    /// The OCI media type for this kind.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Kind::Manifest => media::OCI_MANIFEST,
            Kind::Index => media::OCI_INDEX,
        }
    }

    fn of(media_type: &str) -> Option<Self> {
        if media::is_manifest(media_type) {
            Some(Kind::Manifest)
        } else if media::is_index(media_type) {
            Some(Kind::Index)
        } else {
            None
        }
    }
}

impl Manifest {
    /// Parses a manifest or index stored or served as `media_type` (may be empty when unknown).
    pub fn parse(bytes: &[u8], media_type: &str) -> Result<Self, ManifestError> {
        refuse_non_manifest(media_type)?;
        // serde would read a JSON array as the struct's fields in order; a document is an object.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(ManifestError::NotAnObject);
        }
        let doc: Document = serde_json::from_slice(bytes)?;
        let embedded = doc.media_type.as_deref().map(media::essence).filter(|m| !m.is_empty());
        if let Some(embedded) = embedded {
            refuse_non_manifest(embedded)?;
        }
        if doc.schema_version == Some(1) {
            return Err(ManifestError::MediaType { media_type: media::DOCKER_MANIFEST_V1.to_owned() });
        }
        let has_manifest_fields = doc.config.is_some() || doc.layers.is_some();
        if doc.manifests.is_some() && has_manifest_fields {
            return Err(ManifestError::Ambiguous);
        }
        let declared = media::essence(media_type);
        let kind = match (Kind::of(declared), embedded.and_then(Kind::of)) {
            (Some(d), Some(e)) if d != e => {
                return Err(ManifestError::Mismatch {
                    declared: declared.to_owned(),
                    embedded: embedded.unwrap_or_default().to_owned(),
                })
            }
            (Some(kind), _) | (None, Some(kind)) => kind,
            (None, None) if doc.manifests.is_some() => Kind::Index,
            (None, None) if has_manifest_fields => Kind::Manifest,
            (None, None) => return Err(ManifestError::UnknownKind),
        };
        let media_type = [declared, embedded.unwrap_or_default()]
            .into_iter()
            .find(|m| Kind::of(m) == Some(kind))
            .unwrap_or(kind.oci_media_type())
            .to_owned();
        let children = match kind {
            Kind::Index => doc.manifests.ok_or(ManifestError::Missing { kind, field: "manifests" })?,
            Kind::Manifest => {
                let config = doc.config.ok_or(ManifestError::Missing { kind, field: "config" })?;
                std::iter::once(config).chain(doc.layers.unwrap_or_default()).collect()
            }
        };
        Ok(Self { kind, media_type, children })
    }
}

/// The descriptors a manifest or index references, one level deep.
pub fn children(bytes: &[u8], media_type: &str) -> Result<Vec<Descriptor>, ManifestError> {
    Manifest::parse(bytes, media_type).map(|m| m.children)
}

/// Refuses media types that are known and are not a manifest or index we read.
fn refuse_non_manifest(media_type: &str) -> Result<(), ManifestError> {
    let m = media::essence(media_type);
    let refused = media::is_schema1(m) || media::is_layer(m) || media::is_config(m) || media::is_foreign(m);
    if refused || m.eq_ignore_ascii_case(media::OCI_EMPTY) {
        return Err(ManifestError::MediaType { media_type: m.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
#[path = "manifest/tests.rs"]
mod tests;
