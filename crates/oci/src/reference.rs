//! Image references: `nginx`, `ghcr.io/a/b:1.0`, `localhost:5000/x@sha256:…`.
//!
//! Parsing follows containerd and Docker (`ParseNormalizedNamed`): the first
//! `/`-separated component names a registry when it contains `.` or `:`, is
//! `localhost`, or holds upper case; otherwise the registry is Docker Hub.
//! Docker Hub references get `library/` in front of single-component names,
//! Docker Hub's aliases fold to `docker.io`, and a reference with neither tag
//! nor digest means `:latest`. The canonical [`Display`](std::fmt::Display)
//! form, e.g. `docker.io/library/nginx:latest`, parses back to the same value.
//!
//! Implementation notes: a registry must still look like one once
//! canonicalised (lower case), so `A/b` is refused rather than read back as
//! the Docker Hub repository `a/b`. The 255-character limit applies to the repository
//! (what the `/v2` path carries), not to registry plus repository as Docker
//! counts it; a mirror cares about the former.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::name::{validate_name, validate_tag, NameError, TagError};
use crate::registry::{Registry, Scheme, DOCKER_HUB, DOCKER_HUB_UPSTREAM};

/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// What a manifest is asked for by: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TagOrDigest {
    /// A mutable tag such as `latest`.
    Tag(String),
    /// An immutable digest.
    Digest(Digest),
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing was given.
    #[error("image reference is empty")]
    Empty,
    /// The registry part is not a valid `host[:port]`.
    #[error("image reference {input:?}: invalid registry {host:?}")]
    Registry { input: String, host: String },
    /// The repository breaks the name grammar.
    #[error("image reference {input:?}: {source}")]
    Name { input: String, source: NameError },
    /// The tag breaks the tag grammar.
    #[error("image reference {input:?}: {source}")]
    Tag { input: String, source: TagError },
    /// The part after `@` is not a digest.
    #[error("image reference {input:?}: {source}")]
    Digest { input: String, source: DigestError },
    /// A bare 64-hex name, which Docker refuses because it reads like an image ID.
    #[error("image reference {input:?}: a 64-character hex name looks like an image ID")]
    HexName { input: String },
}

impl Reference {
    /// A reference from its parts, normalised and validated like [`FromStr`].
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self, ReferenceError> {
        let input = || format!("{registry}/{repository}");
        let host = Registry::new(Scheme::Https, registry)
            .map_err(|_| ReferenceError::Registry { input: input(), host: registry.to_owned() })?
            .host()
            .to_owned();
        // A host that would not read back as a registry (a single label other than
        // `localhost`, e.g. `A` folded to `a`) would turn into a Docker Hub namespace.
        if !is_registry(&host) {
            return Err(ReferenceError::Registry { input: input(), host: registry.to_owned() });
        }
        let repository = if host == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        validate_name(&repository).map_err(|source| ReferenceError::Name { input: input(), source })?;
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|source| ReferenceError::Tag { input: input(), source })?;
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Self { registry: host, repository, tag, digest })
    }

    /// The registry as references name it, e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository within the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (always, unless it was given only a digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when pinned, otherwise the tag.
    pub fn target(&self) -> TagOrDigest {
        match (&self.digest, &self.tag) {
            (Some(d), _) => TagOrDigest::Digest(d.clone()),
            (None, Some(t)) => TagOrDigest::Tag(t.clone()),
            (None, None) => TagOrDigest::Tag(DEFAULT_TAG.to_owned()),
        }
    }

    /// The host that serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn upstream_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_UPSTREAM
        } else {
            &self.registry
        }
    }

    /// The registry, reached over `scheme`.
    pub fn registry_over(&self, scheme: Scheme) -> Option<Registry> {
        Registry::new(scheme, &self.registry).ok()
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let err_input = || input.to_owned();
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse().map_err(|source| ReferenceError::Digest { input: err_input(), source })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if is_registry(first) => (first, path),
            _ => (DOCKER_HUB, name),
        };
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ReferenceError::HexName { input: err_input() });
        }
        Self::new(registry, repository, tag, digest).map_err(|e| match e {
            ReferenceError::Registry { host, .. } => ReferenceError::Registry { input: err_input(), host },
            ReferenceError::Name { source, .. } => ReferenceError::Name { input: err_input(), source },
            ReferenceError::Tag { source, .. } => ReferenceError::Tag { input: err_input(), source },
            other => other,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for TagOrDigest {
    type Err = ReferenceError;

    /// A digest when the string holds a `:` (tags cannot), otherwise a tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse().map(TagOrDigest::Digest).map_err(|source| ReferenceError::Digest { input: s.to_owned(), source })
        } else {
            validate_tag(s).map_err(|source| ReferenceError::Tag { input: s.to_owned(), source })?;
            Ok(TagOrDigest::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for TagOrDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagOrDigest::Tag(t) => f.write_str(t),
            TagOrDigest::Digest(d) => d.fmt(f),
        }
    }
}

/// Docker's rule for whether the first component is a registry host.
fn is_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn canon(s: &str) -> String {
        s.parse::<Reference>().unwrap_or_else(|e| panic!("{s}: {e}")).to_string()
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("library/nginx", "docker.io/library/nginx:latest"),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            ("index.docker.io/nginx", "docker.io/library/nginx:latest"),
            ("registry-1.docker.io/a/b", "docker.io/a/b:latest"),
            ("ghcr.io/owner/app:v1", "ghcr.io/owner/app:v1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
            ("127.0.0.1:5000/a:t", "127.0.0.1:5000/a:t"),
            ("[::1]:5000/a:t", "[::1]:5000/a:t"),
            ("Example.COM/a", "example.com/a:latest"),
            ("LOCALHOST/b", "localhost/b:latest"),
            ("localhost:5000", "docker.io/library/localhost:5000"),
            ("a/b/c/d", "docker.io/a/b/c/d:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn digests_and_tags_together() {
        let r: Reference = format!("localhost:5000/a/b@{D}").parse().unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.target(), TagOrDigest::Digest(D.parse().unwrap()));
        assert_eq!(r.to_string(), format!("localhost:5000/a/b@{D}"));

        let r: Reference = format!("host.io:443/repo:v2@{D}").parse().unwrap();
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.target(), TagOrDigest::Digest(D.parse().unwrap()));
        assert_eq!(r.to_string(), format!("host.io:443/repo:v2@{D}"));

        let r: Reference = "nginx".parse().unwrap();
        assert_eq!(r.target(), TagOrDigest::Tag("latest".into()));
    }

    #[test]
    fn upstream_host() {
        assert_eq!("nginx".parse::<Reference>().unwrap().upstream_host(), "registry-1.docker.io");
        assert_eq!("ghcr.io/a".parse::<Reference>().unwrap().upstream_host(), "ghcr.io");
        let r: Reference = "127.0.0.1:5000/a".parse().unwrap();
        assert_eq!(r.registry_over(Scheme::Http).unwrap().upstream_url(), "http://127.0.0.1:5000");
    }

    #[test]
    fn rejects() {
        let long_tag = format!("nginx:{}", "t".repeat(129));
        let long_name = format!("ghcr.io/{}", "a".repeat(256));
        let hex = "a".repeat(64);
        type Check = fn(&ReferenceError) -> bool;
        let cases: Vec<(&str, Check)> = vec![
            ("", |e| matches!(e, ReferenceError::Empty)),
            ("Nginx", |e| matches!(e, ReferenceError::Name { .. })),
            ("docker.io/Library/nginx", |e| matches!(e, ReferenceError::Name { .. })),
            ("ghcr.io/", |e| matches!(e, ReferenceError::Name { .. })),
            ("ghcr.io//a", |e| matches!(e, ReferenceError::Name { .. })),
            ("ghcr.io/a/../b", |e| matches!(e, ReferenceError::Name { .. })),
            ("a%2Fb", |e| matches!(e, ReferenceError::Name { .. })),
            (":tag", |e| matches!(e, ReferenceError::Name { .. })),
            ("nginx:", |e| matches!(e, ReferenceError::Tag { .. })),
            ("nginx:.x", |e| matches!(e, ReferenceError::Tag { .. })),
            (&long_tag, |e| matches!(e, ReferenceError::Tag { source: TagError::TooLong { len: 129 }, .. })),
            (&long_name, |e| matches!(e, ReferenceError::Name { source: NameError::TooLong { .. }, .. })),
            ("nginx@sha256:abc", |e| matches!(e, ReferenceError::Digest { .. })),
            ("nginx@", |e| matches!(e, ReferenceError::Digest { .. })),
            ("bad_host.io:x/a", |e| matches!(e, ReferenceError::Registry { .. })),
            ("host:99999/a", |e| matches!(e, ReferenceError::Registry { .. })),
            ("A/b", |e| matches!(e, ReferenceError::Registry { .. })),
            (&hex, |e| matches!(e, ReferenceError::HexName { .. })),
            (" nginx", |e| matches!(e, ReferenceError::Name { .. })),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Reference>().unwrap_err();
            assert!(expected(&err), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn new_normalises_and_validates_like_parse() {
        let r = Reference::new("index.docker.io", "nginx", Some("1"), None).unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:1");
        assert!(matches!(Reference::new("registry", "x", None, None), Err(ReferenceError::Registry { .. })));
        assert!(matches!(Reference::new("ghcr.io", "X", None, None), Err(ReferenceError::Name { .. })));
    }

    #[test]
    fn tag_or_digest() {
        assert_eq!("latest".parse::<TagOrDigest>().unwrap(), TagOrDigest::Tag("latest".into()));
        assert_eq!(D.parse::<TagOrDigest>().unwrap().to_string(), D);
        assert!(matches!("sha256:xyz".parse::<TagOrDigest>(), Err(ReferenceError::Digest { .. })));
        assert!(matches!("a/b".parse::<TagOrDigest>(), Err(ReferenceError::Tag { .. })));
    }
}
