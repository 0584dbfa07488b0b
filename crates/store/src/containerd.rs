//! The [`Store`] backed by the node's containerd, for one namespace
//! (`k8s.io`, where CRI and so kubelet keep images).
//!
//! It talks gRPC to containerd's socket (images, content, events,
//! introspection) and, when the content directory's path is given, reads
//! blobs straight from its files. It never writes to containerd.
//!
//! The parts:
//! - `client`: the connection, namespace header, deadlines and error mapping;
//! - `catalog`: listing keys by walking images over present content;
//! - `read`: the direct and gRPC read paths ([`ReadPath`]);
//! - `watch`: following containerd's events and reporting key changes ([`Timing`]);
//! - [`doctor`]: what CRI says about its registry `config_path` and
//!   `discard_unpacked_layers`, for `peerpull doctor`.
//!
//! [`Store::watch`] sends everything present as its first change, then the
//! differences between listings made on every burst of containerd events,
//! after every reconnect and every [`Timing::resync`], so nothing changed
//! while containerd was away is lost; see [`Timing`] for the pacing.
//!
//! Implementation notes: containerd's content `Info` has no media type, so
//! [`Store::describe`] takes it from what listing and resolving learnt (image
//! targets and the descriptors inside manifests), else sniffs small JSON
//! blobs for a manifest or index, else answers `application/octet-stream`.

use std::path::PathBuf;
use std::sync::Arc;

use containerd_client::services::v1::GetImageRequest;
use futures::StreamExt;
use peerpull_oci::{media, ByteRange, Descriptor, Digest, Manifest, Reference};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::cause;
use crate::{ByteStream, Change, Entry, Key, Store, StoreError};

mod catalog;
mod client;
pub mod doctor;
mod keep;
mod read;
mod watch;

pub use doctor::{ConfigReport, ConfigSource, Setting};
pub use keep::{PINNED_LABEL, PREHEATED_LABEL};
pub use read::{ReadPath, CHUNK};
pub use watch::Timing;

/// The namespace CRI keeps Kubernetes' images in.
pub const DEFAULT_NAMESPACE: &str = "k8s.io";

/// The media type of blobs that are not known manifests or indexes.
const OCTET_STREAM: &str = "application/octet-stream";

/// Where containerd is and what of it to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// containerd's gRPC socket, e.g. `/run/containerd/containerd.sock`.
    pub socket: PathBuf,
    /// The namespace, normally [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// containerd's content directory (`…/io.containerd.content.v1.content`)
    /// for the direct read path; `None` reads everything over gRPC.
    pub content_path: Option<PathBuf>,
}

/// The store over one containerd namespace. Cloning shares the connection and caches.
#[derive(Debug, Clone)]
pub struct Containerd {
    inner: Arc<Inner>,
    timing: Timing,
}

#[derive(Debug)]
struct Inner {
    client: client::Client,
    content_path: Option<PathBuf>,
    catalog: catalog::Catalog,
}

impl Config {
    /// The default namespace on `socket`, reading over gRPC only.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into(), namespace: DEFAULT_NAMESPACE.to_owned(), content_path: None }
    }
}

impl Containerd {
    /// Connects to containerd and checks that it answers.
    ///
    /// A namespace that does not exist yet is not an error: CRI creates
    /// `k8s.io` with the first pull, and until then the store is empty (see
    /// [`Containerd::check_namespace`]). The connection is remade as needed
    /// after containerd restarts.
    pub async fn connect(config: Config) -> Result<Self, StoreError> {
        let store = Self::new(config)?;
        store.ping().await?;
        if let Err(e) = store.check_namespace().await {
            tracing::info!(namespace = store.inner.client.namespace(), error = %e, "namespace not there yet");
        }
        Ok(store)
    }

    /// A store that connects on first use.
    pub fn new(config: Config) -> Result<Self, StoreError> {
        let client = client::Client::new(config.socket, config.namespace)?;
        let inner = Inner { client, content_path: config.content_path, catalog: catalog::Catalog::default() };
        Ok(Self { inner: Arc::new(inner), timing: Timing::default() })
    }

    /// The same store whose watches use other timings (debounce, backoff, resync).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Whether the namespace exists ([`StoreError::NamespaceMissing`] if not).
    pub async fn check_namespace(&self) -> Result<(), StoreError> {
        self.inner.client.check_namespace().await
    }

    /// Opens `digest` like [`Store::open`], through the given read path.
    pub async fn open_with(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
        path: ReadPath,
    ) -> Result<ByteStream, StoreError> {
        let client = &self.inner.client;
        let info = client.info(digest).await?;
        let size = u64::try_from(info.size).unwrap_or_default();
        let span = read::Span::of(digest, size, range)?;
        match (path, &self.inner.content_path) {
            (ReadPath::Grpc, _) | (ReadPath::Auto, None) => read::grpc(client, digest, span).await,
            (ReadPath::Auto, Some(root)) => match read::direct(root, digest, size, span).await {
                Some(stream) => Ok(stream),
                None => read::grpc(client, digest, span).await,
            },
            (ReadPath::Direct, root) => {
                let stream = match root {
                    Some(root) => read::direct(root, digest, size, span).await,
                    None => None,
                };
                stream.ok_or_else(|| StoreError::ReadFailed {
                    digest: digest.clone(),
                    cause: cause("no readable file in the content directory"),
                })
            }
        }
    }

    /// Every key with the targets of the tags.
    async fn listing(&self) -> Result<catalog::Listing, StoreError> {
        self.inner.catalog.list(&self.inner.client, |d| self.read_small(d)).await
    }

    /// Reads a whole small blob (a manifest) into memory.
    async fn read_small(&self, descriptor: Descriptor) -> Result<Vec<u8>, StoreError> {
        let stream = self.open_with(&descriptor.digest, None, ReadPath::Auto).await?;
        read::collect(stream, catalog::MANIFEST_LIMIT as usize).await
    }

    /// The media type of a present blob of `size` bytes.
    async fn media_type(&self, digest: &Digest, size: u64) -> Result<String, StoreError> {
        if let Some(known) = self.inner.catalog.media_type(digest) {
            return Ok(known);
        }
        if size == 0 || size > catalog::MANIFEST_LIMIT {
            return Ok(OCTET_STREAM.to_owned());
        }
        let mut stream = self.open_with(digest, None, ReadPath::Auto).await?;
        let mut bytes = match stream.next().await {
            Some(first) => first?.to_vec(),
            None => return Ok(OCTET_STREAM.to_owned()),
        };
        // Layers are binary; only what opens like a JSON object is read on.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Ok(OCTET_STREAM.to_owned());
        }
        bytes.extend(read::collect(stream, catalog::MANIFEST_LIMIT as usize).await?);
        let media_type = Manifest::parse(&bytes, "").map(|m| m.media_type).unwrap_or_else(|_| OCTET_STREAM.into());
        if media::is_manifest_or_index(&media_type) {
            self.inner.catalog.remember(&Descriptor::new(digest.clone(), size, media_type.clone()));
        }
        Ok(media_type)
    }
}

#[async_trait::async_trait]
impl Store for Containerd {
    async fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        let Some(Key::Tag(name)) = Key::tag(reference) else {
            return Err(StoreError::NotFound(reference.to_string()));
        };
        let client = &self.inner.client;
        let mut images = client.images().await?;
        let request = client.request(GetImageRequest { name: name.clone() });
        let reply = client.call("images get", &name, images.get(request)).await?;
        let target = reply.image.and_then(|i| i.target).ok_or_else(|| StoreError::NotFound(name.clone()))?;
        let digest: Digest = target.digest.parse().map_err(|_| StoreError::NotFound(name.clone()))?;
        // A tag whose target was deleted is not served.
        let info = client.info(&digest).await.map_err(|e| match e {
            StoreError::NotFound(_) => StoreError::NotFound(name.clone()),
            other => other,
        })?;
        let size = u64::try_from(info.size).unwrap_or_default();
        let descriptor = Descriptor::new(digest, size, target.media_type);
        self.inner.catalog.remember(&descriptor);
        Ok(descriptor)
    }

    async fn describe(&self, digest: &Digest) -> Result<Descriptor, StoreError> {
        let info = self.inner.client.info(digest).await?;
        let size = u64::try_from(info.size).unwrap_or_default();
        let media_type = self.media_type(digest, size).await?;
        Ok(Descriptor::new(digest.clone(), size, media_type))
    }

    async fn open(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StoreError> {
        self.open_with(digest, range, ReadPath::Auto).await
    }

    async fn list(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.listing().await?.entries)
    }

    fn watch(&self, shutdown: CancellationToken) -> mpsc::Receiver<Change> {
        watch::spawn(self.clone(), shutdown)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.client.ping().await
    }

    async fn repositories(&self, digest: &Digest) -> Result<Vec<(String, String)>, StoreError> {
        let info = self.inner.client.info(digest).await?;
        Ok(catalog::source_repositories(&info.labels))
    }
}
