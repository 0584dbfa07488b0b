//! An in-memory [`Store`] for unit tests of the crates above this one.
//!
//! Cloning a [`Memory`] shares its contents; tests insert blobs and tags,
//! remove them, and make the store unavailable to exercise error paths.
//! Watchers receive every change made through the handle.

use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use peerpull_oci::{ByteRange, Descriptor, Digest, Reference};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{ByteStream, Change, Entry, Key, Store, StoreError};

/// Chunk size of the streams [`Memory::open`] returns unless set otherwise.
const DEFAULT_CHUNK: usize = 64 * 1024;

/// A store held in memory.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    blobs: HashMap<Digest, (String, Bytes)>,
    tags: HashMap<String, Digest>,
    registries: BTreeSet<String>,
    watchers: Vec<(mpsc::Sender<Change>, CancellationToken)>,
    chunk: Option<usize>,
    unavailable: bool,
}

impl Memory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Adds a blob (or manifest) and returns its descriptor.
    pub fn insert(&self, media_type: &str, bytes: impl Into<Bytes>) -> Descriptor {
        let bytes = bytes.into();
        let digest = Digest::sha256_of(&bytes);
        let descriptor = Descriptor::new(digest.clone(), bytes.len() as u64, media_type);
        let mut state = self.state();
        state.blobs.insert(digest.clone(), (media_type.to_owned(), bytes));
        let entry = Entry::new(Key::Digest(digest), state.registries.clone());
        state.notify(Change { added: vec![entry], removed: vec![] });
        descriptor
    }

    /// Points the tag `reference` (`registry/repo:tag`) at `digest`.
    pub fn tag(&self, reference: &Reference, digest: &Digest) {
        let Some(key) = Key::tag(reference) else { return };
        let Key::Tag(name) = &key else { return };
        let mut state = self.state();
        state.tags.insert(name.clone(), digest.clone());
        state.registries.insert(reference.registry().to_owned());
        let entry = Entry::new(key, [reference.registry().to_owned()]);
        state.notify(Change { added: vec![entry], removed: vec![] });
    }

    /// Removes a blob and every tag pointing at it.
    pub fn remove(&self, digest: &Digest) {
        let mut state = self.state();
        state.blobs.remove(digest);
        let tags: Vec<String> = state.tags.iter().filter(|(_, d)| *d == digest).map(|(t, _)| t.clone()).collect();
        let mut removed = vec![Key::Digest(digest.clone())];
        for tag in tags {
            state.tags.remove(&tag);
            removed.push(Key::Tag(tag));
        }
        state.notify(Change { added: vec![], removed });
    }

    /// Sets the chunk size of opened streams.
    pub fn set_chunk_size(&self, bytes: usize) {
        self.state().chunk = Some(bytes.max(1));
    }

    /// Makes every call fail as if containerd were down (or up again).
    pub fn set_available(&self, available: bool) {
        self.state().unavailable = !available;
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.state().unavailable {
            return Err(StoreError::Unreachable {
                socket: "memory".into(),
                cause: crate::error::cause("made unavailable"),
            });
        }
        Ok(())
    }
}

impl State {
    fn notify(&mut self, change: Change) {
        self.watchers.retain(|(tx, stop)| !stop.is_cancelled() && tx.try_send(change.clone()).is_ok());
    }
}

#[async_trait::async_trait]
impl Store for Memory {
    async fn resolve(&self, reference: &Reference) -> Result<Descriptor, StoreError> {
        self.check()?;
        let key = Key::tag(reference).ok_or_else(|| StoreError::NotFound(reference.to_string()))?;
        let digest = self.state().tags.get(&key.to_string()).cloned();
        let digest = digest.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        self.describe(&digest).await
    }

    async fn describe(&self, digest: &Digest) -> Result<Descriptor, StoreError> {
        self.check()?;
        let state = self.state();
        let (media_type, bytes) = state.blobs.get(digest).ok_or_else(|| StoreError::NotFound(digest.to_string()))?;
        Ok(Descriptor::new(digest.clone(), bytes.len() as u64, media_type.clone()))
    }

    async fn open(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StoreError> {
        self.check()?;
        let state = self.state();
        let (_, bytes) = state.blobs.get(digest).ok_or_else(|| StoreError::NotFound(digest.to_string()))?;
        let size = bytes.len() as u64;
        let (start, end) = match range {
            Some(r) if r.end_inclusive < size => (r.start, r.end_inclusive + 1),
            Some(r) => {
                return Err(StoreError::InvalidRange {
                    digest: digest.clone(),
                    start: r.start,
                    end: r.end_inclusive,
                    size,
                })
            }
            None => (0, size),
        };
        let body = bytes.slice(start as usize..end as usize);
        let chunk = state.chunk.unwrap_or(DEFAULT_CHUNK);
        let chunks: Vec<Result<Bytes, StoreError>> =
            (0..body.len()).step_by(chunk).map(|at| Ok(body.slice(at..(at + chunk).min(body.len())))).collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn list(&self) -> Result<Vec<Entry>, StoreError> {
        self.check()?;
        let state = self.state();
        let mut entries: Vec<Entry> =
            state.blobs.keys().map(|d| Entry::new(Key::Digest(d.clone()), state.registries.clone())).collect();
        for name in state.tags.keys() {
            let registry = name.split('/').next().unwrap_or_default().to_owned();
            entries.push(Entry::new(Key::Tag(name.clone()), [registry]));
        }
        entries.sort();
        Ok(entries)
    }

    fn watch(&self, shutdown: CancellationToken) -> mpsc::Receiver<Change> {
        let (tx, rx) = mpsc::channel(1024);
        self.state().watchers.push((tx, shutdown));
        rx
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::StreamExt;

    use super::*;

    async fn read(store: &Memory, digest: &Digest, range: Option<ByteRange>) -> Vec<Bytes> {
        store.open(digest, range).await.unwrap().map(|c| c.unwrap()).collect().await
    }

    #[tokio::test]
    async fn stores_resolves_and_reads_in_chunks() {
        let store = Memory::new();
        store.set_chunk_size(4);
        let blob = store.insert("application/vnd.oci.image.manifest.v1+json", &b"0123456789"[..]);
        let reference: Reference = "127.0.0.1:5000/app:v1".parse().unwrap();
        store.tag(&reference, &blob.digest);

        assert_eq!(store.resolve(&reference).await.unwrap(), blob);
        assert_eq!(store.describe(&blob.digest).await.unwrap(), blob);
        assert_eq!(read(&store, &blob.digest, None).await, vec!["0123", "4567", "89"]);
        assert_eq!(read(&store, &blob.digest, ByteRange::new(3, 8)).await, vec!["3456", "78"]);
        let past = store.open(&blob.digest, ByteRange::new(5, 10)).await.err().unwrap();
        assert!(matches!(past, StoreError::InvalidRange { start: 5, end: 10, size: 10, .. }));
        let registries = ["127.0.0.1:5000".to_owned()];
        assert_eq!(
            store.list().await.unwrap(),
            vec![
                Entry::new(Key::Digest(blob.digest.clone()), registries.clone()),
                Entry::new(Key::Tag("127.0.0.1:5000/app:v1".into()), registries),
            ]
        );
    }

    #[tokio::test]
    async fn watchers_see_changes_and_unavailability_fails_calls() {
        let store = Memory::new();
        let stop = CancellationToken::new();
        let mut rx = store.watch(stop.clone());
        let blob = store.insert("application/octet-stream", &b"x"[..]);
        let added = rx.recv().await.unwrap();
        assert_eq!(added.added, vec![Entry::new(Key::Digest(blob.digest.clone()), [])]);
        let reference: Reference = "docker.io/library/nginx:1".parse().unwrap();
        store.tag(&reference, &blob.digest);
        assert_eq!(rx.recv().await.unwrap().added[0].key, Key::Tag("docker.io/library/nginx:1".into()));

        store.remove(&blob.digest);
        let removed = rx.recv().await.unwrap().removed;
        assert_eq!(removed, vec![Key::Digest(blob.digest.clone()), Key::Tag("docker.io/library/nginx:1".into())]);
        assert!(matches!(store.describe(&blob.digest).await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.resolve(&reference).await, Err(StoreError::NotFound(_))));

        store.set_available(false);
        assert!(matches!(store.ping().await, Err(StoreError::Unreachable { .. })));
        assert!(matches!(store.list().await, Err(StoreError::Unreachable { .. })));
        store.set_available(true);
        store.ping().await.unwrap();
        assert_eq!(store.list().await.unwrap(), vec![]);
    }
}
