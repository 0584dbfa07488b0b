//! Shared set-up: a registry, a node, a store over it, and expected key sets.

use std::time::Duration;

use containerd_client::services::v1::version_client::VersionClient;
use futures::StreamExt;
use peerpull_oci::Digest;
use peerpull_store::containerd::Config;
use peerpull_store::{ByteStream, Containerd, Entry, Key, Store, StoreError};
use peerpull_testbed::{Blob, Containerd as Node, ContainerdOptions, Image, Platform, Upstream};

/// How long a watch may take to report a change.
pub(crate) const WATCH_TIMEOUT: Duration = Duration::from_secs(15);

/// A registry and a node that trusts it.
pub(crate) struct Bed {
    pub(crate) upstream: Upstream,
    pub(crate) node: Node,
}

impl Bed {
    pub(crate) async fn start() -> Self {
        Self::start_with(ContainerdOptions::default()).await
    }

    pub(crate) async fn start_with(options: ContainerdOptions) -> Self {
        let upstream = Upstream::start().await.unwrap();
        let node = Node::start_with(options).await.unwrap();
        node.trust_registry(&upstream).unwrap();
        Self { upstream, node }
    }

    /// The store over this node, reading the content directory directly.
    pub(crate) async fn store(&self) -> Containerd {
        Containerd::connect(self.config(true)).await.unwrap()
    }

    /// The store over this node, with or without the direct read path.
    pub(crate) fn config(&self, direct: bool) -> Config {
        Config {
            socket: self.node.socket().to_owned(),
            namespace: "k8s.io".into(),
            content_path: direct.then(|| self.node.content_path()),
        }
    }

    /// The version of this node's containerd, e.g. `2.1.9`, and its major and minor numbers.
    pub(crate) async fn version(&self) -> (String, (u32, u32)) {
        let channel = containerd_client::connect(self.node.socket()).await.unwrap();
        let version = VersionClient::new(channel).version(()).await.unwrap().into_inner().version;
        let mut numbers = version.trim_start_matches('v').split('.').map(|n| n.parse::<u32>().unwrap_or(0));
        let major_minor = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        (version, major_minor)
    }

    /// Pushes `image` as `name` (`repo:tag`) and pulls it through CRI; returns the reference.
    pub(crate) async fn push_and_pull(&self, image: &Image, name: &str) -> String {
        let reference = image.push(&self.upstream, name).await.unwrap();
        self.node.cri_pull(&reference).await.unwrap();
        reference
    }
}

pub(crate) fn digest(blob: &Blob) -> Digest {
    blob.digest.parse().unwrap()
}

/// The keys a node that pulled `blobs` as `tags` lists, all from `registry`.
pub(crate) fn keys(registry: &str, tags: &[&str], blobs: &[&Blob]) -> Vec<Entry> {
    let mut all: Vec<Entry> =
        tags.iter().map(|t| Entry::new(Key::Tag((*t).to_owned()), [registry.to_owned()])).collect();
    all.extend(blobs.iter().map(|b| Entry::new(Key::Digest(digest(b)), [registry.to_owned()])));
    all.sort();
    all.dedup();
    all
}

/// The host platform's blobs of `image`.
pub(crate) fn host_blobs(image: &Image) -> Vec<&Blob> {
    image.blobs_for(&Platform::host())
}

/// Every byte of a stream, checking no chunk exceeds 1 MiB.
pub(crate) async fn read_all(mut stream: ByteStream) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        assert!(chunk.len() <= 1 << 20, "chunk of {} bytes", chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Lists until `expected` comes back (garbage collection runs after pulls and deletes).
pub(crate) async fn list_becomes(store: &Containerd, expected: &[Entry]) {
    let what = format!("list to become {} keys", expected.len());
    let found = peerpull_testbed::eventually(&what, Duration::from_secs(10), || async {
        let listed = store.list().await.unwrap();
        (listed == expected).then_some(())
    })
    .await;
    if found.is_err() {
        assert_eq!(store.list().await.unwrap(), expected);
    }
}
