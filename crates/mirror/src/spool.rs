//! The spool: what this node fetches from the upstream, on disk while it streams.
//!
//! One [`Entry`] per digest being (or just) fetched, in a file under
//! `--data-dir/spool`. The first request for a digest starts the fetch
//! ([`Spool::start`]); every later request on this node, or from a peer that
//! asked this node to pull through, reads the same file as it grows
//! ([`Entry::read`]), so the upstream sends each blob to this node once
//! however many ask for it at the same time.
//!
//! Bounds: the entries' sizes add up to at most `max_bytes`. Making room
//! evicts completed entries nobody reads, oldest first; a fetch that finds
//! no room fails, and the mirror answers as if it could not fetch at all.
//! A completed entry is dropped once containerd holds the blob (checked
//! every [`SWEEP_EVERY`]) or `ttl` after it completed; a failed one at once.
//! Every request that reads an entry holds a [`Lease`] on it, taken under
//! the spool's lock, and a leased entry is never evicted or swept, so its
//! file is there when the reader opens it.
//!
//! Verification: the fetch checks the digest as the bytes arrive. A reader
//! hands out the last bytes of a blob only after the whole digest checked
//! out, so unverified bytes never complete a response; on a mismatch the
//! entry fails and every reader's response is cut short.

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peerpull_oci::Digest;
use peerpull_routing::{PeerId, Provider};
use peerpull_store::Store;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::relay::Tree;

mod fill;
mod read;

pub(crate) use fill::{OpenError, Opened, Opener};
pub(crate) use read::{read, SpoolError};

/// How often completed entries are checked against the store and their time-out.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// What is known of an entry's content once the upstream answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The content's size in bytes.
    pub(crate) size: u64,
    /// Its media type, as the upstream sent it.
    pub(crate) media_type: String,
}

/// Where an entry's fetch is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for the upstream's answer.
    Opening,
    /// Bytes `0..written` are in the file.
    Writing { meta: Meta, written: u64 },
    /// Every byte is in the file and the digest checked out.
    Done { meta: Meta },
    /// The fetch failed; readers stop.
    Failed(Failed),
}

/// Why a fetch failed, and whose failure it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    /// What happened.
    pub(crate) reason: String,
    /// The upstream's doing (it refused, could not be reached, sent wrong
    /// bytes), as opposed to this node's (no room, a disk error).
    pub(crate) upstream: bool,
}

/// One digest's fetch and its file.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) digest: Digest,
    path: PathBuf,
    state: watch::Sender<State>,
    /// When the fetch completed, for the time-out.
    completed: Mutex<Option<Instant>>,
    /// Readers with the entry open; an entry is dropped only when there are none.
    readers: AtomicUsize,
    /// Bytes reserved in the spool for it.
    reserved: AtomicU64,
    /// How long its fetch may take to answer.
    open_timeout: Duration,
    /// The followers streaming it from this node.
    followers: Mutex<Tree>,
    /// The peer its bytes come from now (`None`: the upstream).
    streaming_from: Mutex<Option<Provider>>,
}

/// The spool of one node; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    inner: Arc<Inner>,
}

/// How much a spool holds and how long it waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The most bytes its entries reserve together.
    pub(crate) max_bytes: u64,
    /// How long a completed entry containerd did not take stays.
    pub(crate) ttl: Duration,
    /// An upstream body that sends nothing for this long is resumed.
    pub(crate) stall: Duration,
    /// The longest the upstream may take to answer a fetch (auth and redirects included).
    pub(crate) open_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    ttl: Duration,
    stall: Duration,
    open_timeout: Duration,
    store: Arc<dyn Store>,
    /// Told of peers whose bytes did not match.
    peers: Arc<dyn Peers>,
    metrics: Metrics,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_digest: HashMap<Digest, Arc<Entry>>,
    /// Bytes reserved by the entries in `by_digest`.
    used: u64,
}

impl Spool {
    /// A spool in `dir` (emptied: what a previous run left is unverified), within `limits`.
    pub(crate) fn new(
        dir: PathBuf,
        limits: Limits,
        store: Arc<dyn Store>,
        peers: Arc<dyn Peers>,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&dir)?;
        let Limits { max_bytes, ttl, stall, open_timeout } = limits;
        let entries = Mutex::default();
        let inner = Inner { dir, max_bytes, ttl, stall, open_timeout, store, peers, metrics, entries };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// A lease on the entry of `digest` being fetched or fetched, unless it failed.
    pub(crate) fn get(&self, digest: &Digest) -> Option<Lease> {
        let entries = self.entries();
        entries.by_digest.get(digest).filter(|e| !e.failed()).map(|e| Lease::new(e.clone()))
    }

    /// A lease on the entry of `digest`: the one in flight, or a new one whose
    /// fetch `open` starts (and resumes from an offset after a broken body).
    pub(crate) fn start(&self, digest: &Digest, open: Opener) -> Lease {
        self.start_within(digest, open, self.inner.open_timeout)
    }

    /// The same, for a fetch that may take up to `open_timeout` to answer.
    pub(crate) fn start_within(&self, digest: &Digest, open: Opener, open_timeout: Duration) -> Lease {
        let mut entries = self.entries();
        if let Some(entry) = entries.by_digest.get(digest) {
            if !entry.failed() {
                self.inner.metrics.shared();
                return Lease::new(entry.clone());
            }
            // A failed fetch not yet cleaned up: give its room back now.
            let failed = entry.clone();
            Self::forget(&mut entries, &failed);
        }
        let path = self.inner.dir.join(digest.hex());
        let entry = Arc::new(Entry {
            digest: digest.clone(),
            path,
            state: watch::Sender::new(State::Opening),
            completed: Mutex::new(None),
            readers: AtomicUsize::new(0),
            reserved: AtomicU64::new(0),
            open_timeout,
            followers: Mutex::default(),
            streaming_from: Mutex::default(),
        });
        entries.by_digest.insert(digest.clone(), entry.clone());
        let lease = Lease::new(entry.clone());
        drop(entries);
        tokio::spawn(fill::fill(self.clone(), entry, open));
        lease
    }

    /// Drops completed entries containerd now holds or that timed out, until `shutdown`.
    pub(crate) async fn sweep(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let done: Vec<Arc<Entry>> =
                self.entries().by_digest.values().filter(|e| e.is_done() && e.unread()).cloned().collect();
            for entry in done {
                let expired = entry.completed_at().is_some_and(|at| at.elapsed() >= self.inner.ttl);
                if expired || self.inner.store.describe(&entry.digest).await.is_ok() {
                    let mut entries = self.entries();
                    // A reader may have taken a lease while the store answered.
                    if entry.unread() && Self::current(&entries, &entry) {
                        tracing::debug!(digest = %entry.digest, expired, "dropping a spool entry");
                        Self::forget(&mut entries, &entry);
                        self.inner.metrics.spool_bytes(entries.used);
                    }
                }
            }
        }
    }

    /// Reserves `size` bytes for `entry`, evicting completed entries nobody
    /// reads, oldest first; false when that does not make room.
    fn reserve_for(&self, entry: &Entry, size: u64) -> bool {
        if size > self.inner.max_bytes {
            return false;
        }
        let mut entries = self.entries();
        while entries.used + size > self.inner.max_bytes {
            let victim = entries
                .by_digest
                .values()
                .filter(|e| e.is_done() && e.unread())
                .min_by_key(|e| e.completed_at())
                .cloned();
            let Some(victim) = victim else { return false };
            Self::forget(&mut entries, &victim);
            tracing::debug!(digest = %victim.digest, "evicted from the spool");
        }
        if !Self::current(&entries, entry) {
            return false;
        }
        entries.used += size;
        entry.reserved.store(size, Ordering::Release);
        self.inner.metrics.spool_bytes(entries.used);
        true
    }

    /// Marks `entry` failed and removes it with its file, at once: readers
    /// see the failure and stop, whatever they hold.
    fn fail(&self, entry: &Entry, failed: Failed) {
        let mut entries = self.entries();
        entry.state.send_replace(State::Failed(failed));
        if Self::current(&entries, entry) {
            Self::forget(&mut entries, entry);
            self.inner.metrics.spool_bytes(entries.used);
        }
    }

    /// Whether `entry` is the one the spool holds for its digest.
    fn current(entries: &Entries, entry: &Entry) -> bool {
        entries.by_digest.get(&entry.digest).is_some_and(|e| std::ptr::eq(Arc::as_ptr(e), entry))
    }

    fn forget(entries: &mut Entries, entry: &Entry) {
        entries.by_digest.remove(&entry.digest);
        entries.used = entries.used.saturating_sub(entry.reserved.swap(0, Ordering::AcqRel));
        // Readers that still hold the file open keep reading it.
        let _ = std::fs::remove_file(&entry.path);
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.inner.entries.lock()
    }
}

/// A reader's hold on an entry: while any lease is alive the entry is
/// neither evicted nor swept. Taken under the spool's lock.
#[derive(Debug)]
pub(crate) struct Lease {
    entry: Arc<Entry>,
}

impl Lease {
    fn new(entry: Arc<Entry>) -> Self {
        entry.readers.fetch_add(1, Ordering::AcqRel);
        Self { entry }
    }
}

impl std::ops::Deref for Lease {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        &self.entry
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.entry.readers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Entry {
    /// Waits (at most `timeout`) for the upstream's answer: the size and media
    /// type, or why there will be none.
    pub(crate) async fn opened(&self, timeout: Duration) -> Result<Meta, SpoolError> {
        let mut state = self.state.subscribe();
        let waited = tokio::time::timeout(timeout, state.wait_for(|s| !matches!(s, State::Opening))).await;
        match waited {
            Err(_) => Err(SpoolError::Timeout),
            Ok(Err(_)) => Err(SpoolError::Failed(Failed { reason: "the fetch went away".into(), upstream: false })),
            Ok(Ok(state)) => match &*state {
                State::Writing { meta, .. } | State::Done { meta } => Ok(meta.clone()),
                State::Failed(failed) => Err(SpoolError::Failed(failed.clone())),
                State::Opening => Err(SpoolError::Timeout),
            },
        }
    }

    /// Where the follower `joining` streams this entry from (see [`Tree::place`]).
    pub(crate) fn place(&self, joining: Provider, shape: crate::relay::Shape) -> Option<Provider> {
        self.followers.lock().place(joining, shape)
    }

    /// The follower `peer` failed one this node sent to it (see [`Tree::gone`]).
    pub(crate) fn follower_gone(&self, peer: &PeerId) {
        self.followers.lock().gone(peer);
    }

    /// The peer its bytes come from now, if not the upstream.
    pub(crate) fn streaming_from(&self) -> Option<Provider> {
        *self.streaming_from.lock()
    }

    fn fed_by(&self, peer: Option<Provider>) {
        *self.streaming_from.lock() = peer;
    }

    fn unread(&self) -> bool {
        self.readers.load(Ordering::Acquire) == 0
    }

    fn failed(&self) -> bool {
        matches!(&*self.state.borrow(), State::Failed(_))
    }

    fn is_done(&self) -> bool {
        matches!(&*self.state.borrow(), State::Done { .. })
    }

    fn completed_at(&self) -> Option<Instant> {
        *self.completed.lock()
    }
}
