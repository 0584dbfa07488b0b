//! `Locate`: where the blobs of an image are in the cluster.
//!
//! The manifest is fetched the way containerd fetches it from this node's
//! mirror (its store, then peers, then the upstream when pull-through is
//! on); an index is followed into this host's platform; then every blob's
//! providers are looked up in the DHT, all at once. A bare digest names one
//! blob; when this node holds it and it is a manifest or index, it is
//! followed the same way from the store. The manifest request is a request
//! like containerd's (it may be pulled through from the upstream), marked
//! as the node's own: it shows in the recent pulls as such, and is not
//! counted as containerd's in the metrics.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use peerpull_admin::v1;
use peerpull_mirror::{Mirror, Unanswered};
use peerpull_oci::manifest::{Kind, Manifest};
use peerpull_oci::{media, Descriptor, Digest, Key, Reference, ReferenceError};
use peerpull_routing::Router;
use peerpull_store::Store;
use tonic::Status;

/// The largest manifest or index read.
const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// How many providers are asked for per blob when the caller does not say.
const DEFAULT_LIMIT: usize = 16;

/// What `Locate` was asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One blob (or manifest) by digest.
    Digest(Digest),
    /// An image by reference.
    Reference(Reference),
}

/// Reads a digest (`sha256:…`) or an image reference; the error says why
/// it is not a reference.
pub fn parse(input: &str) -> Result<Target, ReferenceError> {
    if let Ok(digest) = input.parse::<Digest>() {
        return Ok(Target::Digest(digest));
    }
    input.parse::<Reference>().map(Target::Reference)
}

/// Answers `Locate` from the node's parts.
#[derive(Debug, Clone)]
pub(crate) struct Locator {
    pub(crate) mirror: Mirror,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) router: Router,
}

/// A blob found while walking the image, before its providers are known.
struct Found {
    descriptor: Descriptor,
    role: &'static str,
}

impl Locator {
    pub(crate) async fn locate(&self, input: &str, limit: u32) -> Result<v1::LocateResponse, Status> {
        let target = parse(input).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (digest, found) = match &target {
            Target::Reference(reference) => self.walk_reference(reference).await?,
            Target::Digest(digest) => (digest.clone(), self.walk_digest(digest).await?),
        };
        let limit = match limit {
            0 => DEFAULT_LIMIT,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let blobs = futures::future::join_all(found.into_iter().map(|f| self.blob(f, limit))).await;
        Ok(v1::LocateResponse { digest: digest.to_string(), blobs })
    }

    /// The image's manifest (through the mirror), and every blob under it.
    async fn walk_reference(&self, reference: &Reference) -> Result<(Digest, Vec<Found>), Status> {
        let (top, bytes) = self.fetch(reference).await?;
        let mut found = Vec::new();
        self.descend(reference, top.clone(), bytes, &mut found).await?;
        Ok((top.digest, found))
    }

    /// One blob by digest; followed when it is a manifest or index this node holds.
    async fn walk_digest(&self, digest: &Digest) -> Result<Vec<Found>, Status> {
        let Ok(descriptor) = self.store.describe(digest).await else {
            let descriptor = Descriptor::new(digest.clone(), 0, "");
            return Ok(vec![Found { descriptor, role: "blob" }]);
        };
        if !media::is_manifest_or_index(&descriptor.media_type) {
            return Ok(vec![Found { descriptor, role: "blob" }]);
        }
        let bytes = self.read_local(digest).await?;
        let mut found = Vec::new();
        let manifest = Manifest::parse(&bytes, &descriptor.media_type).map_err(|e| bad_manifest(digest, &e))?;
        found.push(Found { role: role_of(manifest.kind), descriptor });
        found.extend(children(manifest));
        Ok(found)
    }

    /// Records `top` (parsed from `bytes`) and what it references; an index
    /// is followed into this host's platform.
    async fn descend(
        &self,
        reference: &Reference,
        top: Descriptor,
        bytes: Bytes,
        found: &mut Vec<Found>,
    ) -> Result<(), Status> {
        let manifest = Manifest::parse(&bytes, &top.media_type).map_err(|e| bad_manifest(&top.digest, &e))?;
        found.push(Found { role: role_of(manifest.kind), descriptor: top });
        if manifest.kind == Kind::Manifest {
            found.extend(children(manifest));
            return Ok(());
        }
        let Some(chosen) = manifest.children.iter().find(|d| is_host_platform(d)).cloned() else {
            // No manifest for this host: the index's manifests, not followed.
            found.extend(children(manifest));
            return Ok(());
        };
        let child = Reference::new(reference.registry(), reference.repository(), None, Some(chosen.digest.clone()))
            .map_err(|e| Status::invalid_argument(format!("{reference}: {e}")))?;
        let (descriptor, bytes) = self.fetch(&child).await?;
        let manifest = Manifest::parse(&bytes, &descriptor.media_type).map_err(|e| bad_manifest(&chosen.digest, &e))?;
        found.push(Found { role: "manifest", descriptor });
        found.extend(children(manifest));
        Ok(())
    }

    /// A manifest from this node's mirror, as containerd would get it.
    async fn fetch(&self, reference: &Reference) -> Result<(Descriptor, Bytes), Status> {
        self.mirror.resolve(reference, MAX_MANIFEST).await.map_err(|error| match error {
            Unanswered::Miss { .. } => {
                let wanted = reference.target();
                Status::not_found(format!("{reference}: no manifest for {wanted}: {error}"))
            }
            Unanswered::TooLarge(max) => Status::unavailable(format!("{reference}: manifest larger than {max} bytes")),
            Unanswered::Broken { .. } => Status::unavailable(format!("{reference}: reading the manifest: {error}")),
        })
    }

    async fn read_local(&self, digest: &Digest) -> Result<Bytes, Status> {
        let unreadable = |e: &dyn std::fmt::Display| Status::unavailable(format!("reading {digest}: {e}"));
        let mut stream = self.store.open(digest, None).await.map_err(|e| unreadable(&e))?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| unreadable(&e))?);
            if bytes.len() > MAX_MANIFEST {
                return Err(Status::failed_precondition(format!("{digest}: larger than {MAX_MANIFEST} bytes")));
            }
        }
        Ok(Bytes::from(bytes))
    }

    /// A blob with whether this node holds it and who else does.
    async fn blob(&self, found: Found, limit: usize) -> v1::Blob {
        let Found { descriptor, role } = found;
        let key = Key::Digest(descriptor.digest.clone());
        let (local, providers) = futures::join!(self.store.describe(&descriptor.digest), async {
            match self.router.lookup(&key, limit).await {
                Ok(lookup) => lookup.collect::<Vec<_>>().await,
                Err(error) => {
                    tracing::debug!(%error, key = %key, "locate: lookup failed");
                    Vec::new()
                }
            }
        });
        let size = match (&local, descriptor.size) {
            (Ok(held), 0) => held.size,
            (_, size) => size,
        };
        v1::Blob {
            digest: descriptor.digest.to_string(),
            size,
            media_type: descriptor.media_type,
            role: role.to_owned(),
            local: local.is_ok(),
            providers: providers
                .into_iter()
                .map(|p| v1::Provider {
                    peer_id: p.peer.to_string(),
                    mirror_addr: p.mirror.to_string(),
                    zone: p.zone.to_string(),
                })
                .collect(),
        }
    }
}

/// What a manifest references, with roles: config and layers, or an index's manifests.
fn children(manifest: Manifest) -> Vec<Found> {
    let kind = manifest.kind;
    let role = |i: usize| match (kind, i) {
        (Kind::Index, _) => "manifest",
        (Kind::Manifest, 0) => "config",
        (Kind::Manifest, _) => "layer",
    };
    manifest.children.into_iter().enumerate().map(|(i, descriptor)| Found { descriptor, role: role(i) }).collect()
}

fn role_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Index => "index",
        Kind::Manifest => "manifest",
    }
}

fn bad_manifest(digest: &Digest, error: &dyn std::fmt::Display) -> Status {
    Status::failed_precondition(format!("{digest} is not a manifest peerpull reads: {error}"))
}

/// Whether an index entry is for the platform this node runs.
fn is_host_platform(descriptor: &Descriptor) -> bool {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    descriptor.platform.as_ref().is_some_and(|p| p.os == std::env::consts::OS && p.architecture == arch)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_references_are_told_apart() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse(&digest), Ok(Target::Digest(digest.parse().unwrap())));
        assert!(
            matches!(parse("nginx"), Ok(Target::Reference(r)) if r.to_string() == "docker.io/library/nginx:latest")
        );
        assert!(matches!(parse(&format!("registry.example:5000/app@{digest}")), Ok(Target::Reference(_))));
        let error = parse("Not A Reference!").unwrap_err().to_string();
        assert!(error.contains("Not A Reference!"), "{error}");
        assert!(parse("").is_err());
    }
}
