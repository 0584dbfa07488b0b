//! What this node holds.
//!
//! The [`Store`] trait answers, for one containerd namespace, which tags and
//! digests this node can serve, and opens their bytes as bounded streams.
//! [`Containerd`] implements it over the node's containerd socket;
//! [`Memory`] (feature `test-util`) implements it in memory for the unit
//! tests of other crates.
//! This crate does not know about peers or HTTP.
//!
//! The parts:
//! - [`key`]: [`Key`] (a digest or a tag), [`Entry`] (a key with the
//!   registries it came from) and [`Change`] (what a watch reports);
//! - [`error`](mod@error): [`StoreError`];
//! - [`memory`]: [`Memory`], the in-memory store;
//! - [`containerd`]: [`Containerd`], the store backed by containerd;
//! - [`file`]: reading chunks of local files without waiting on the disk in async code.

use std::fmt::Debug;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use peerpull_oci::{ByteRange, Descriptor, Digest, Reference};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod containerd;
pub mod error;
pub mod file;
pub mod key;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;

pub use containerd::Containerd;
pub use error::StoreError;
pub use key::{Change, Entry, Key};
#[cfg(any(test, feature = "test-util"))]
pub use memory::Memory;

/// The bytes of a blob, in bounded chunks. An `Err` item means the read
/// failed mid-stream; the stream ends after it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// What a node holds, read-only.
#[async_trait::async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Resolves a tag reference (`registry/repository:tag`) to the descriptor
    /// of its target: digest, size and media type.
    async fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError>;

    /// The size and media type of `digest` (manifests and indexes report
    /// their own media type), or [`StoreError::NotFound`].
    async fn describe(&self, digest: &Digest) -> Result<Descriptor, StoreError>;

    /// Opens `digest` for reading, whole or the given byte range, as a stream
    /// of bounded chunks. A range past the end is [`StoreError::InvalidRange`].
    async fn open(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StoreError>;

    /// Every key this node can serve: each tag it knows and every digest
    /// reachable from its images that is present in the content store.
    async fn list(&self) -> Result<Vec<Entry>, StoreError>;

    /// Follows changes until `shutdown`: each message says which keys were
    /// added and removed. Implementations reconnect after failures and
    /// re-list afterwards, so no change is lost.
    fn watch(&self, shutdown: CancellationToken) -> mpsc::Receiver<Change>;

    /// Whether the backing store answers right now.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The repositories `digest` was fetched from, as `(host, repository)`
    /// (containerd's `distribution.source` labels name the host without its
    /// port); empty when unknown. [`StoreError::NotFound`] when not held.
    async fn repositories(&self, digest: &Digest) -> Result<Vec<(String, String)>, StoreError> {
        self.describe(digest).await.map(|_| Vec::new())
    }
}
