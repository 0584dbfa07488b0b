//! What the namespace holds, as keys: every tag of its images and every
//! digest reachable from them that is present in the content store, each
//! with the registries it came from.
//!
//! A [`Catalog`] remembers what it learnt that cannot change: the children of
//! each manifest and index it read (content is addressed by digest) and the
//! media type each digest was referenced with, which is how
//! [`describe`](crate::Store::describe) reports a manifest's real type.
//!
//! Implementation notes: presence comes from one content `List` call per
//! listing, so the walk never descends into what containerd did not fetch
//! (the other platforms of an index) or dropped (layers discarded after
//! unpacking). Registries come from image names and from the
//! `containerd.io/distribution.source.<host>` labels containerd puts on
//! fetched content. containerd strips the port from the host in that label,
//! so a label host is only added when no registry from a name already has
//! that host.

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use containerd_client::services::v1::{ListContentRequest, ListImagesRequest};
use peerpull_oci::{children, media, Descriptor, Digest, Reference};

use super::client::Client;
use crate::{Entry, Key, StoreError};

/// The label prefix containerd marks fetched content with.
const SOURCE_LABEL: &str = "containerd.io/distribution.source.";
/// The largest manifest or index read while walking.
pub(crate) const MANIFEST_LIMIT: u64 = 4 << 20;
/// Entries remembered before a cache starts over.
const CACHE_LIMIT: usize = 16_384;

/// Remembered facts about content, shared by the store's handles.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    children: Mutex<HashMap<Digest, Arc<[Descriptor]>>>,
    media_types: Mutex<HashMap<Digest, String>>,
}

/// One image record, read from containerd.
#[derive(Debug)]
pub(crate) struct Image {
    /// The tag key its name gives, if it names a tag.
    pub(crate) tag: Option<Key>,
    /// The registry its name names, if any.
    pub(crate) registry: Option<String>,
    /// Its target.
    pub(crate) target: Descriptor,
}

/// Every key the namespace can serve, and where each tag points.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// The keys, sorted.
    pub(crate) entries: Vec<Entry>,
    /// The target of each tag key.
    pub(crate) targets: BTreeMap<Key, Digest>,
    /// Present blobs no image reaches (yet), with their `distribution.source` hosts.
    pub(crate) unreferenced: BTreeMap<Digest, BTreeSet<String>>,
}

/// What a content `List` said about one blob.
#[derive(Debug)]
pub(crate) struct Present {
    /// Hosts from `distribution.source` labels.
    pub(crate) sources: BTreeSet<String>,
}

impl Catalog {
    /// The media type `digest` was last referenced with, if known.
    pub(crate) fn media_type(&self, digest: &Digest) -> Option<String> {
        self.media_types.lock().get(digest).cloned()
    }

    /// Remembers the media type of a descriptor.
    pub(crate) fn remember(&self, descriptor: &Descriptor) {
        if descriptor.media_type.is_empty() {
            return;
        }
        let mut types = self.media_types.lock();
        if types.len() >= CACHE_LIMIT && !types.contains_key(&descriptor.digest) {
            types.clear();
        }
        types.insert(descriptor.digest.clone(), descriptor.media_type.clone());
    }

    fn cached_children(&self, digest: &Digest) -> Option<Arc<[Descriptor]>> {
        self.children.lock().get(digest).cloned()
    }

    fn remember_children(&self, digest: &Digest, list: Arc<[Descriptor]>) {
        let mut all = self.children.lock();
        if all.len() >= CACHE_LIMIT {
            all.clear();
        }
        all.insert(digest.clone(), list);
    }

    /// Every key the namespace can serve. `read` returns a manifest's bytes.
    pub(crate) async fn list<R, F>(&self, client: &Client, read: R) -> Result<Listing, StoreError>
    where
        R: Fn(Descriptor) -> F,
        F: std::future::Future<Output = Result<Vec<u8>, StoreError>>,
    {
        let images = images(client).await?;
        let present = present(client).await?;
        let mut names: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
        let mut digests: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
        let mut targets = BTreeMap::new();
        for image in images {
            if !present.contains_key(&image.target.digest) {
                continue;
            }
            let registries: BTreeSet<String> = image.registry.iter().cloned().collect();
            if let Some(tag) = image.tag {
                targets.insert(tag.clone(), image.target.digest.clone());
                names.entry(tag).or_default().extend(registries.iter().cloned());
            }
            let mut pending = vec![image.target];
            let mut seen = BTreeSet::new();
            while let Some(descriptor) = pending.pop() {
                if !present.contains_key(&descriptor.digest) || !seen.insert(descriptor.digest.clone()) {
                    continue;
                }
                self.remember(&descriptor);
                digests.entry(descriptor.digest.clone()).or_default().extend(registries.iter().cloned());
                if media::is_manifest_or_index(&descriptor.media_type) {
                    pending.extend(self.children_of(&descriptor, &read).await.iter().rev().cloned());
                }
            }
        }
        let mut entries: Vec<Entry> = names.into_iter().map(|(key, registries)| Entry { key, registries }).collect();
        for (digest, registries) in &mut digests {
            if let Some(found) = present.get(digest) {
                add_sources(registries, &found.sources);
            }
        }
        let unreferenced = present
            .into_iter()
            .filter(|(digest, _)| !digests.contains_key(digest))
            .map(|(d, p)| (d, p.sources))
            .collect();
        entries.extend(digests.into_iter().map(|(digest, registries)| Entry { key: Key::Digest(digest), registries }));
        entries.sort();
        Ok(Listing { entries, targets, unreferenced })
    }

    /// What a manifest or index references; empty when it cannot be read.
    async fn children_of<R, F>(&self, descriptor: &Descriptor, read: &R) -> Arc<[Descriptor]>
    where
        R: Fn(Descriptor) -> F,
        F: std::future::Future<Output = Result<Vec<u8>, StoreError>>,
    {
        if let Some(known) = self.cached_children(&descriptor.digest) {
            return known;
        }
        let digest = &descriptor.digest;
        if descriptor.size > MANIFEST_LIMIT {
            tracing::warn!(%digest, size = descriptor.size, "manifest too large to walk");
            return Arc::from(Vec::new());
        }
        let bytes = match read(descriptor.clone()).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "reading a manifest failed");
                return Arc::from(Vec::new());
            }
        };
        let list: Arc<[Descriptor]> = match children(&bytes, &descriptor.media_type) {
            Ok(list) => Arc::from(list),
            Err(e) => {
                tracing::warn!(%digest, error = %e, "unreadable manifest");
                Arc::from(Vec::new())
            }
        };
        self.remember_children(digest, list.clone());
        list
    }
}

/// Every image record of the namespace.
pub(crate) async fn images(client: &Client) -> Result<Vec<Image>, StoreError> {
    let mut images = client.images().await?;
    let request = client.request(ListImagesRequest { filters: vec![] });
    let reply = client.call("images list", "images", images.list(request)).await?;
    let mut out = Vec::new();
    for record in reply.images {
        let Some(target) = record.target else { continue };
        let Ok(digest) = target.digest.parse::<Digest>() else {
            tracing::warn!(image = %record.name, digest = %target.digest, "image target is not a digest");
            continue;
        };
        let size = u64::try_from(target.size).unwrap_or_default();
        let (tag, registry) = name_keys(&record.name);
        out.push(Image { tag, registry, target: Descriptor::new(digest, size, target.media_type) });
    }
    Ok(out)
}

/// The tag key and registry an image name gives.
///
/// `registry/repo:tag` gives both; `registry/repo@sha256:…` only the
/// registry; CRI's image-id records (`sha256:…`) and unreadable names neither.
pub(crate) fn name_keys(name: &str) -> (Option<Key>, Option<String>) {
    if name.parse::<Digest>().is_ok() {
        return (None, None);
    }
    match name.parse::<Reference>() {
        Ok(reference) if reference.digest().is_some() => (None, Some(reference.registry().to_owned())),
        Ok(reference) => (Key::tag(&reference), Some(reference.registry().to_owned())),
        Err(e) => {
            tracing::debug!(image = name, error = %e, "image name is not a reference");
            (None, None)
        }
    }
}

/// Every blob in the namespace's content store.
async fn present(client: &Client) -> Result<HashMap<Digest, Present>, StoreError> {
    let mut content = client.content().await?;
    let request = client.request(ListContentRequest { filters: vec![] });
    let mut stream = client.call("content list", "content", content.list(request)).await?;
    let mut out = HashMap::new();
    loop {
        let message = tokio::time::timeout(super::client::CALL_TIMEOUT, stream.message()).await;
        let batch = match message {
            Ok(Ok(Some(batch))) => batch,
            Ok(Ok(None)) => break,
            Ok(Err(status)) => return Err(client.error("content list", "content", status)),
            Err(_) => return Err(client.unreachable("content list stalled")),
        };
        for info in batch.info {
            let Ok(digest) = info.digest.parse::<Digest>() else { continue };
            let sources = info.labels.keys().filter_map(|k| k.strip_prefix(SOURCE_LABEL)).map(str::to_owned).collect();
            out.insert(digest, Present { sources });
        }
    }
    Ok(out)
}

/// The `(host, repository)` pairs `distribution.source` labels name (a
/// label's value lists repositories, comma-separated).
pub(crate) fn source_repositories(labels: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in labels {
        let Some(host) = key.strip_prefix(SOURCE_LABEL) else { continue };
        out.extend(value.split(',').filter(|r| !r.is_empty()).map(|r| (host.to_owned(), r.to_owned())));
    }
    out.sort();
    out
}

/// Adds label hosts not already named, with or without a port, by `registries`.
pub(crate) fn add_sources(registries: &mut BTreeSet<String>, sources: &BTreeSet<String>) {
    for source in sources {
        let named = registries.iter().any(|r| r == source || host_of(r) == source);
        if !named {
            registries.insert(source.clone());
        }
    }
}

/// `host` of `host:port` (IPv6 literals keep their brackets).
fn host_of(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn names() {
        let tag = |s: &str| Some(Key::Tag(s.to_owned()));
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(name_keys("127.0.0.1:5000/repo:tag"), (tag("127.0.0.1:5000/repo:tag"), some("127.0.0.1:5000")));
        assert_eq!(
            name_keys("docker.io/library/nginx:latest"),
            (tag("docker.io/library/nginx:latest"), some("docker.io"))
        );
        let pinned = format!("ghcr.io/a/b@{}", Digest::sha256_of(b"m"));
        assert_eq!(name_keys(&pinned), (None, some("ghcr.io")));
        assert_eq!(name_keys(Digest::sha256_of(b"config").as_str()), (None, None));
        assert_eq!(name_keys("Not A Name"), (None, None));
    }

    #[test]
    fn label_hosts_without_ports_are_folded_into_named_registries() {
        let mut registries = set(&["127.0.0.1:5000"]);
        add_sources(&mut registries, &set(&["127.0.0.1", "docker.io"]));
        assert_eq!(registries, set(&["127.0.0.1:5000", "docker.io"]));
        let mut none = BTreeSet::new();
        add_sources(&mut none, &set(&["ghcr.io"]));
        assert_eq!(none, set(&["ghcr.io"]));
        assert_eq!(host_of("[::1]:5000"), "[::1]");
        assert_eq!(host_of("registry"), "registry");
    }
}
