//! The OCI vocabulary peerpull speaks, with no I/O.
//!
//! This crate owns the pure data types every other crate shares: content
//! digests and their incremental verification, image references (with
//! docker.io normalisation), registries, OCI media types, manifest and index
//! parsing, the keys nodes advertise, which registries a node mirrors, the
//! `/v2` request path grammar of the OCI distribution spec, HTTP `Range`
//! parsing, and OCI error bodies. It does not read files, open sockets or spawn tasks.
//!
//! The parts:
//! - [`digest`]: [`Digest`], `sha256:`/`sha512:` only, lowercase hex;
//! - [`verify`]: [`Verifier`], checking streamed bytes against a digest;
//! - [`name`]: the repository-name and tag grammar;
//! - [`reference`](mod@reference): [`Reference`], `nginx` → `docker.io/library/nginx:latest`;
//! - [`registry`]: [`Registry`], a registry host and how it is reached;
//! - [`mirrored`]: [`Mirrored`], every registry or a chosen few;
//! - [`key`]: [`Key`], a digest or a tag as the DHT indexes it;
//! - [`path`]: [`Request`] and [`Route`], the `/v2` paths a mirror serves;
//! - [`range`]: [`ByteRange`], one `Range` header against a size;
//! - [`media`]: media type constants and kinds;
//! - [`descriptor`]: [`Descriptor`] and [`Platform`];
//! - [`manifest`]: one level of a manifest or index, [`children`];
//! - [`error`]: [`ErrorCode`] and [`ErrorBody`], the registry error JSON.
//!
//! ```
//! use peerpull_oci::{ByteRange, Digest, Reference, Request, Route, TagOrDigest};
//!
//! let image: Reference = "nginx".parse()?;
//! assert_eq!(image.to_string(), "docker.io/library/nginx:latest");
//! assert_eq!(image.upstream_host(), "registry-1.docker.io");
//!
//! let request = Request::parse("/v2/library/nginx/manifests/latest?ns=docker.io")?;
//! assert_eq!(request.route, Route::Manifest { name: "library/nginx".into(), reference: TagOrDigest::Tag("latest".into()) });
//! assert_eq!(request.ns.as_deref(), Some("docker.io"));
//!
//! let range = ByteRange::parse("bytes=-10", 100)?;
//! assert_eq!(range.content_range(100), "bytes 90-99/100");
//!
//! let digest = Digest::sha256_of(b"hello");
//! let mut verifier = digest.verifier();
//! verifier.update(b"hel");
//! verifier.update(b"lo");
//! assert!(verifier.finish());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod descriptor;
pub mod digest;
pub mod error;
pub mod key;
pub mod manifest;
pub mod media;
pub mod mirrored;
pub mod name;
pub mod path;
pub mod range;
pub mod reference;
pub mod registry;
pub mod verify;

pub use descriptor::{Descriptor, Platform};
pub use digest::{Algorithm, Digest, DigestError};
pub use error::{ErrorBody, ErrorCode, ErrorInfo};
pub use key::{Key, KeyKind};
pub use manifest::{children, Kind, Manifest, ManifestError};
pub use mirrored::Mirrored;
pub use name::{validate_name, validate_tag, NameError, TagError};
pub use path::{parse_path, PathError, Request, Route};
pub use range::{unsatisfiable_content_range, ByteRange, RangeError};
pub use reference::{Reference, ReferenceError, TagOrDigest};
pub use registry::{Registry, RegistryError, Scheme};
pub use verify::{Mismatch, Verifier};
