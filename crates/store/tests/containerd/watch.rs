//! Watching: pulls, a re-pointed tag, deletions, discarded layers and restarts.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{WriteAction, WriteContentRequest};
use peerpull_oci::Digest;
use peerpull_store::containerd::{Config, Timing};
use peerpull_store::{Change, Containerd, Entry, Key, Store, StoreError};
use peerpull_testbed::{ContainerdOptions, ImageBuilder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::gate::Gate;
use crate::support::{digest, host_blobs, keys, list_becomes, Bed, WATCH_TIMEOUT};

/// Allowance on top of a watch's backoff for it to notice a lost connection and dial again.
const RETRY_SLACK: Duration = Duration::from_secs(1);

/// What a watcher has been told, applied change by change.
#[derive(Default)]
struct Seen {
    keys: BTreeMap<Key, BTreeSet<String>>,
    changes: Vec<Change>,
}

impl Seen {
    /// Applies changes until the view equals `expected`; fails after a deadline.
    async fn until(&mut self, rx: &mut mpsc::Receiver<Change>, expected: &[Entry]) {
        let want: BTreeMap<Key, BTreeSet<String>> =
            expected.iter().map(|e| (e.key.clone(), e.registries.clone())).collect();
        let deadline = tokio::time::Instant::now() + WATCH_TIMEOUT;
        while self.keys != want {
            let change = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("watch view {:?}\nnever became {:?}", self.keys.keys(), want.keys()))
                .expect("watch ended");
            for key in &change.removed {
                assert!(self.keys.remove(key).is_some(), "{key} removed but never added");
            }
            for entry in &change.added {
                self.keys.insert(entry.key.clone(), entry.registries.clone());
            }
            self.changes.push(change);
        }
    }

    /// Whether any change since `from` re-announced `key`.
    fn added_since(&self, from: usize, key: &Key) -> bool {
        self.changes[from..].iter().any(|c| c.added.iter().any(|e| &e.key == key))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_pulls_retags_and_deletions() {
    let bed = Bed::start().await;
    let store = bed.store().await;
    let stop = CancellationToken::new();
    let mut rx = store.watch(stop.clone());
    let mut seen = Seen::default();
    let host = bed.upstream.host();

    let v1 = ImageBuilder::new("store-watch-1").layers(&[200_000, 100]).build().unwrap();
    let tag = bed.push_and_pull(&v1, "store/w:latest").await;
    seen.until(&mut rx, &keys(&host, &[&tag], &host_blobs(&v1))).await;

    // Re-point the tag: v2's blobs come, and the tag is announced again; v1 stays
    // (CRI keeps its digest and id records).
    let v2 = ImageBuilder::new("store-watch-2").layers(&[150_000]).build().unwrap();
    let before = seen.changes.len();
    bed.push_and_pull(&v2, "store/w:latest").await;
    let mut both = keys(&host, &[&tag], &host_blobs(&v1));
    both.extend(keys(&host, &[], &host_blobs(&v2)));
    both.sort();
    seen.until(&mut rx, &both).await;
    assert!(seen.added_since(before, &Key::Tag(tag.clone())), "re-pointed tag not re-announced");
    assert_eq!(store.resolve(&tag.parse().unwrap()).await.unwrap().digest, digest(v2.top()));

    // Delete the tagged image: the tag and v2's blobs go.
    bed.node.cri_remove(&tag).await.unwrap();
    seen.until(&mut rx, &keys(&host, &[], &host_blobs(&v1))).await;

    // Delete one blob of v1 by hand: only it goes.
    let layer = &v1.platforms()[0].layers[0];
    bed.node.delete_content(&layer.digest).await.unwrap();
    let rest: Vec<_> = host_blobs(&v1).into_iter().filter(|b| b.digest != layer.digest).collect();
    seen.until(&mut rx, &keys(&host, &[], &rest)).await;
    assert_eq!(store.list().await.unwrap(), keys(&host, &[], &rest));

    stop.cancel();
    let end = tokio::time::timeout(WATCH_TIMEOUT, async { while rx.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "watch did not end after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_while_the_watch_is_disconnected_are_reported() {
    let mut bed = Bed::start().await;
    // The watch reaches containerd through a gate: shut, it is certainly cut off
    // however soon it retries, so quick retries cannot blur what is tested.
    let gate = Gate::open(bed.node.socket());
    let timing =
        Timing { backoff_min: Duration::from_millis(50), backoff_max: Duration::from_millis(200), ..Timing::default() };
    let config = Config { socket: gate.path().to_owned(), ..bed.config(true) };
    let store = Containerd::connect(config).await.unwrap().with_timing(timing);
    let stop = CancellationToken::new();
    let mut rx = store.watch(stop.clone());
    let mut seen = Seen::default();
    let host = bed.upstream.host();

    let gone = ImageBuilder::new("store-gap-1").layers(&[50_000]).build().unwrap();
    let gone_tag = bed.push_and_pull(&gone, "store/gap:one").await;
    seen.until(&mut rx, &keys(&host, &[&gone_tag], &host_blobs(&gone))).await;

    // Cut off, the watch notices and retries within its longest backoff, in vain.
    gate.shut().await;
    gate.refused_within(timing.backoff_max + RETRY_SLACK, "the watch reconnecting").await;
    assert!(matches!(store.ping().await, Err(StoreError::Unreachable { .. })));
    // Meanwhile containerd restarts (forgetting the subscription) and changes.
    bed.node.crash();
    bed.node.restart().await.unwrap();
    bed.node.cri_remove(&gone_tag).await.unwrap();
    let came = ImageBuilder::new("store-gap-2").layers(&[60_000]).build().unwrap();
    let came_tag = bed.push_and_pull(&came, "store/gap:two").await;
    assert!(rx.try_recv().is_err(), "the watch reported a change while cut off");

    // No event tells of those changes: only listing again after reconnecting does.
    gate.reopen();
    seen.until(&mut rx, &keys(&host, &[&came_tag], &host_blobs(&came))).await;

    // And it follows events again afterwards.
    bed.node.cri_remove(&came_tag).await.unwrap();
    seen.until(&mut rx, &[]).await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_layers_are_never_listed() {
    let bed = Bed::start_with(ContainerdOptions { discard_unpacked_layers: true, set_config_path: true }).await;
    let store = bed.store().await;
    let stop = CancellationToken::new();
    let mut rx = store.watch(stop.clone());
    let image = ImageBuilder::new("store-discard").layers(&[100_000, 20]).build().unwrap();
    let tag = bed.push_and_pull(&image, "store/discard:v1").await;

    let platform = &image.platforms()[0];
    let kept = keys(&bed.upstream.host(), &[&tag], &[&platform.manifest, &platform.config]);
    list_becomes(&store, &kept).await;
    // The watch ends up with the same view, even though garbage collection publishes no event.
    Seen::default().until(&mut rx, &kept).await;
    for layer in &platform.layers {
        assert!(!bed.node.has_content(&layer.digest).await.unwrap());
        assert!(matches!(store.open(&digest(layer), None).await, Err(StoreError::NotFound(_))));
    }
    stop.cancel();
}

/// containerd 2.1 and later publish `/content/create` as each blob of a pull is
/// committed: such a blob is announced before any image reaches it, and stays
/// announced beside the images. Older containerd publishes nothing until an
/// image exists, so there a blob no image reaches is not announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_is_announced_as_it_lands_where_containerd_says_so() {
    let bed = Bed::start().await;
    let store = bed.store().await;
    let stop = CancellationToken::new();
    let mut rx = store.watch(stop.clone());
    let mut seen = Seen::default();
    let host = bed.upstream.host();
    let channel = containerd_client::connect(bed.node.socket()).await.unwrap();
    let (version, major_minor) = bed.version().await;
    let says_so = major_minor >= (2, 1);

    // A first image, reported: the watch's subscription is in place.
    let first = ImageBuilder::new("store-landed-1").layers(&[20_000]).build().unwrap();
    let first_tag = bed.push_and_pull(&first, "store/landed:1").await;
    let mut expected = keys(&host, &[&first_tag], &host_blobs(&first));
    seen.until(&mut rx, &expected).await;

    let bytes = b"a layer that landed before its image".to_vec();
    let landed = Entry { key: Key::Digest(Digest::sha256_of(&bytes)), registries: BTreeSet::new() };
    let committed = tokio::time::Instant::now();
    write_blob(channel, bytes).await;
    if says_so {
        expected.push(landed);
        expected.sort();
        seen.until(&mut rx, &expected).await;
        println!(
            "containerd {version}: a blob no image reaches was announced {:?} after its commit",
            committed.elapsed()
        );
    }

    // Once the watch reports an image pulled after the blob landed, it has listed
    // since: the blob is there beside it where containerd said it landed, else not.
    let second = ImageBuilder::new("store-landed-2").layers(&[20_000]).build().unwrap();
    let second_tag = bed.push_and_pull(&second, "store/landed:2").await;
    expected.extend(keys(&host, &[&second_tag], &host_blobs(&second)));
    expected.sort();
    expected.dedup();
    seen.until(&mut rx, &expected).await;
    println!("containerd {version}: content events {}", if says_so { "followed" } else { "not published" });
    stop.cancel();
}

/// Commits `bytes` to the content store as a garbage-collection root, with no image.
async fn write_blob(channel: tonic::transport::Channel, bytes: Vec<u8>) {
    let digest = Digest::sha256_of(&bytes);
    let write = WriteContentRequest {
        action: WriteAction::Commit.into(),
        r#ref: format!("landed-{}", digest.hex()),
        total: i64::try_from(bytes.len()).unwrap(),
        expected: digest.to_string(),
        offset: 0,
        data: bytes,
        labels: [("containerd.io/gc.root".to_owned(), "test".to_owned())].into(),
    };
    let mut request = tonic::Request::new(futures::stream::iter([write]));
    request.metadata_mut().insert("containerd-namespace", "k8s.io".parse().unwrap());
    let mut answers = ContentClient::new(channel).write(request).await.unwrap().into_inner();
    while answers.message().await.unwrap().is_some() {}
}
