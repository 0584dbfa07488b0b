//! Preheating: listed images held by `replicas` nodes before anyone needs
//! them, so a deploy during a registry outage finds them in the cluster.
//!
//! No coordinator decides who holds what: a node is responsible for an image
//! when fewer than `replicas` live peers are closer to the image's key than
//! it is, by the same rule (and so with the same answer on every node) as
//! the choice of a blob's fetcher ([`Router::closest`]). A responsible node
//! pulls the image through CRI, as kubelet would, so the pull goes through
//! its own mirror and the cluster's single flight fetches each blob once from
//! the upstream; then it pins the image so kubelet's image garbage collection
//! keeps it (`peerpull_store::containerd` says how). Every `interval` a
//! responsible node resolves each listed tag again (through its mirror:
//! upstream first, the cluster during an outage) and preheats a tag that
//! moved. Responsibility is checked every [`CYCLE`], so when a responsible
//! node leaves or a closer one joins, the image moves within a cycle or two.
//! An image taken off the list is unpinned; nothing else is ever unpinned.
//!
//! What it costs: per listed image, every node walks towards the image's key
//! about twice a minute (the router keeps a walk's answer 30 s) and looks up
//! its holders once a minute: meant for the handful of images an outage
//! must not stop, not for every image a cluster runs.
//!
//! The list is the `--preheat` references plus the lines of `--preheat-file`
//! (read again each cycle, so an edited ConfigMap needs no restart; a line
//! that is not a reference is reported and skipped).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use parking_lot::Mutex;
use peerpull_mirror::Mirror;
use peerpull_oci::{Digest, Key, Reference};
use peerpull_routing::{PeerId, Router};
use peerpull_store::containerd::Containerd;
use peerpull_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often responsibility is checked, and due work done.
pub const CYCLE: Duration = Duration::from_secs(15);
/// The longest a CRI pull of a listed image may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The first and the longest wait after a failure, before trying an image again.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(15), Duration::from_secs(10 * 60));
/// The largest manifest or index read while resolving.
const MAX_MANIFEST: usize = 4 << 20;
/// How many holders are looked up per image for the status.
const HOLDERS_LIMIT: usize = 16;
/// How often the holders of an image are looked up again (a DHT walk each).
const HOLDERS_EVERY: Duration = Duration::from_secs(60);

/// What to preheat, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The images listed on the command line.
    pub images: Vec<Reference>,
    /// A file listing more, one reference per line (`#` starts a comment).
    pub file: Option<PathBuf>,
    /// How many nodes hold each image.
    pub replicas: usize,
    /// How often each listed tag is resolved again.
    pub interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self { images: Vec::new(), file: None, replicas: 2, interval: Duration::from_secs(5 * 60) }
    }
}

impl Config {
    /// Whether anything is, or may be, listed.
    pub fn enabled(&self) -> bool {
        !self.images.is_empty() || self.file.is_some()
    }
}

/// Where a listed image stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// A listed image, as this node last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The reference as listed.
    pub reference: Reference,
    /// The digest it resolved to last, if it ever did.
    pub digest: Option<Digest>,
    /// The nodes responsible for it, nearest first, as far as this node knows
    /// (itself among them when it is responsible).
    pub responsible: Vec<PeerId>,
    /// Which nodes announce that they hold it.
    pub holders: Vec<PeerId>,
    /// Whether this node is responsible for it.
    pub mine: bool,
    /// `held`, `pending` or `failed`.
    pub state: &'static str,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When it was last checked.
    pub checked: Option<SystemTime>,
}

/// What the preheater tells the rest of the node.
#[derive(Debug, Clone, Default)]
pub struct Report {
    images: Arc<Mutex<Vec<Image>>>,
}

impl Report {
    /// Every listed image, as last checked.
    pub fn images(&self) -> Vec<Image> {
        self.images.lock().clone()
    }
}

/// When an image is due again.
#[derive(Debug, Clone)]
struct Due {
    /// When it was resolved last, with the digest.
    resolved: Option<(Instant, Digest)>,
    /// Not before this after a failure, and the next back-off.
    retry: Option<(Instant, Duration)>,
}

/// Keeps the listed images on the responsible nodes.
#[derive(Debug)]
pub struct Preheater {
    config: Config,
    store: Containerd,
    router: Router,
    mirror: Mirror,
    report: Report,
    gauge: Family<StateLabel, Gauge>,
    due: BTreeMap<Reference, Due>,
    pinned: BTreeMap<Reference, Digest>,
    /// The holders of each image when last looked up.
    holders: BTreeMap<Reference, (Instant, Vec<PeerId>)>,
}

impl Preheater {
    /// A preheater of `config`'s images, its metrics in `registry`.
    pub fn new(config: Config, store: Containerd, router: Router, mirror: Mirror, registry: &mut Registry) -> Self {
        let gauge = Family::<StateLabel, Gauge>::default();
        registry.register(
            "peerpull_preheat_images",
            "Listed images on this node by state (held, pending, failed)",
            gauge.clone(),
        );
        let (due, pinned, holders) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        Self { config, store, router, mirror, report: Report::default(), gauge, due, pinned, holders }
    }

    /// The images as last checked, for status and the debug page.
    pub fn report(&self) -> Report {
        self.report.clone()
    }

    /// Checks the list every [`CYCLE`] until `shutdown`, the first time a
    /// cycle after the router found its first peer: a node that knows too
    /// few peers takes itself for one of the closest, as do the others.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ready = self.router.ready();
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ready.wait_for(|ready| *ready) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(CYCLE) => {}
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.cycle() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(CYCLE) => {}
            }
        }
    }

    /// One pass over the list.
    async fn cycle(&mut self) {
        let listed = self.listed().await;
        self.unpin_unlisted(&listed).await;
        let mut images = Vec::with_capacity(listed.len());
        for reference in listed {
            images.push(self.check(reference).await);
        }
        for state in ["held", "pending", "failed"] {
            let count = images.iter().filter(|i| i.state == state && i.mine).count();
            self.gauge.get_or_create(&StateLabel { state }).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        *self.report.images.lock() = images;
    }

    /// The command line's references, then the file's, each once.
    async fn listed(&self) -> Vec<Reference> {
        let mut listed = self.config.images.clone();
        if let Some(file) = &self.config.file {
            match tokio::fs::read_to_string(file).await {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let line = line.split('#').next().unwrap_or_default().trim();
                        if line.is_empty() {
                            continue;
                        }
                        match line.parse::<Reference>() {
                            Ok(reference) => listed.push(reference),
                            Err(error) => {
                                tracing::warn!(file = %file.display(), line = n + 1, %error, "preheat: skipping a line that is not an image reference")
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(file = %file.display(), %error, "preheat: cannot read the list"),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        listed.retain(|r| seen.insert(r.clone()));
        listed
    }

    /// Unpins what this node pinned for an image no longer listed (also
    /// before a restart: containerd's labels say what peerpull pinned).
    async fn unpin_unlisted(&mut self, listed: &[Reference]) {
        let names = match self.store.pinned_by_us().await {
            Ok(names) => names,
            Err(error) => {
                tracing::debug!(%error, "preheat: cannot list pinned images");
                return;
            }
        };
        // Each image has a record per name, digest and id; its tag's name stands for all.
        let gone = names
            .iter()
            .filter_map(|name| name.parse::<Reference>().ok())
            .filter(|r| r.tag().is_some() && r.digest().is_none() && !listed.contains(r));
        for reference in gone {
            match self.store.pin(&reference.to_string(), false).await {
                Ok(()) => tracing::info!(image = %reference, "preheat: no longer listed, unpinned"),
                Err(error) => tracing::warn!(image = %reference, %error, "preheat: unpinning failed"),
            }
            self.pinned.remove(&reference);
        }
        self.due.retain(|r, _| listed.contains(r));
        self.holders.retain(|r, _| listed.contains(r));
    }

    /// Where `reference` stands, preheating it when this node is responsible and it is due.
    async fn check(&mut self, reference: Reference) -> Image {
        let key = match (Key::tag(&reference), reference.digest()) {
            (Some(key), _) => key,
            (None, Some(digest)) => Key::Digest(digest.clone()),
            (None, None) => Key::Tag(reference.to_string()),
        };
        let (responsible, mine) = self.responsible(&key).await;
        let holders = self.holders(&reference, &key).await;
        let mut image = Image {
            digest: self.due.get(&reference).and_then(|d| d.resolved.as_ref().map(|(_, digest)| digest.clone())),
            reference: reference.clone(),
            responsible,
            holders,
            mine,
            state: "pending",
            error: None,
            checked: Some(SystemTime::now()),
        };
        if !mine {
            image.state = if image.holders.is_empty() { "pending" } else { "held" };
            return image;
        }
        let due = self.due.entry(reference.clone()).or_insert(Due { resolved: None, retry: None });
        if due.retry.is_some_and(|(at, _)| Instant::now() < at) {
            image.state = "failed";
            return image;
        }
        match self.preheat(&reference).await {
            Ok(digest) => {
                let due = self.due.entry(reference.clone()).or_insert(Due { resolved: None, retry: None });
                due.retry = None;
                due.resolved = Some((Instant::now(), digest.clone()));
                image.digest = Some(digest);
                image.state = "held";
                let own = self.router.local_peer_id();
                if !image.holders.contains(&own) {
                    image.holders.push(own);
                }
            }
            Err(error) => {
                tracing::warn!(image = %reference, %error, "preheat failed; trying again later");
                let due = self.due.entry(reference.clone()).or_insert(Due { resolved: None, retry: None });
                let wait = due.retry.map_or(BACKOFF.0, |(_, wait)| (wait * 2).min(BACKOFF.1));
                due.retry = Some((Instant::now() + wait, wait));
                image.state = "failed";
                image.error = Some(error);
            }
        }
        image
    }

    /// Brings `reference` into containerd at its current digest and pins it; returns the digest.
    async fn preheat(&mut self, reference: &Reference) -> Result<Digest, String> {
        let due = self.due.get(reference).and_then(|d| d.resolved.clone());
        let fresh = due.as_ref().filter(|(at, _)| at.elapsed() < self.config.interval).map(|(_, d)| d.clone());
        let wanted = match fresh {
            Some(digest) => digest,
            None => match self.mirror.resolve(reference, MAX_MANIFEST).await {
                Ok((descriptor, _)) => descriptor.digest,
                // During an outage the last digest stays.
                Err(unanswered) => match due {
                    Some((_, digest)) => digest,
                    None => return Err(format!("cannot resolve {reference}: {unanswered}")),
                },
            },
        };
        let held = match reference.digest() {
            Some(digest) => self.store.describe(digest).await.is_ok(),
            None => self.store.resolve(reference).await.is_ok_and(|d| d.digest == wanted),
        };
        if !held {
            tracing::info!(image = %reference, digest = %wanted, "preheat: pulling");
            let started = Instant::now();
            self.store.cri_pull(&reference.to_string(), PULL_TIMEOUT).await.map_err(|e| e.to_string())?;
            tracing::info!(image = %reference, took = ?started.elapsed(), "preheat: pulled");
        }
        if self.pinned.get(reference) != Some(&wanted) {
            self.store.pin(&reference.to_string(), true).await.map_err(|e| format!("pinning: {e}"))?;
            self.pinned.insert(reference.clone(), wanted.clone());
        }
        Ok(wanted)
    }

    /// The responsible nodes, nearest first (the peers closer to `key` than
    /// this node, up to `replicas`, then, when there is room, this node and
    /// the next ones after it), and whether this node is one of them.
    async fn responsible(&self, key: &Key) -> (Vec<PeerId>, bool) {
        let own = self.router.local_peer_id();
        let mut order = Vec::new();
        let mut mine = false;
        while order.len() < self.config.replicas {
            let next = if mine {
                self.router.closest_other(key, &order).await
            } else {
                self.router.closest(key, &order).await
            };
            match next {
                Ok(Some(provider)) => order.push(provider.peer),
                Ok(None) if !mine => {
                    mine = true;
                    order.push(own);
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, %key, "preheat: closest failed");
                    break;
                }
            }
        }
        (order, mine)
    }

    /// The nodes that announce `key`, looked up at most every [`HOLDERS_EVERY`].
    async fn holders(&mut self, reference: &Reference, key: &Key) -> Vec<PeerId> {
        if let Some((_, holders)) = self.holders.get(reference).filter(|(at, _)| at.elapsed() < HOLDERS_EVERY) {
            return holders.clone();
        }
        let holders: Vec<PeerId> = match self.router.lookup(key, HOLDERS_LIMIT).await {
            Ok(lookup) => lookup.map(|p| p.peer).collect().await,
            Err(_) => Vec::new(),
        };
        self.holders.insert(reference.clone(), (Instant::now(), holders.clone()));
        holders
    }
}
