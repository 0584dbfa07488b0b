//! Following containerd's events and reporting which keys came and went.
//!
//! One task per watch subscribes to the namespace's image and content
//! events. On every burst of events, after every (re)connect and now and
//! then without either, it lists the store again and sends the difference
//! from what it sent before, so an event that was missed (containerd
//! restarting, the watch reconnecting) loses nothing. The first message
//! holds everything present when the watch starts.
//!
//! containerd 2.1 and later publish `/content/create` as each blob of a pull
//! is committed, long before the image record that reaches it exists. Such a
//! blob is announced at once, while the rest of its image is still coming,
//! for as long as no image reaches it ([`LANDED_FOR`] at most); once an image
//! does, it is listed like any other. Older containerd publishes nothing
//! until the image is created, so there a blob is announced with its image.
//!
//! Implementation notes: re-listing rather than applying each event keeps
//! one source of truth (the listing) and makes reconnects trivially
//! correct. containerd's garbage collector deletes content without
//! publishing events (after an image is deleted, or layers discarded after
//! unpacking), so a second listing follows each burst after
//! [`Timing::settle`]. containerd sends the response headers of `Subscribe`
//! only with the first event, so the subscription is never awaited on its
//! own; the settle listing also covers the instant between sending the
//! subscription and containerd registering it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use containerd_client::events::{ContentCreate, ContentDelete};
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::{ImageCreate, ImageDelete, ImageUpdate, SubscribeRequest};
use containerd_client::types::Envelope;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::Containerd;
use peerpull_oci::Digest;

use crate::{Change, Entry, Key, StoreError};

/// How many changes may wait for the receiver.
const QUEUE: usize = 64;

/// The event topics that can change what the store lists.
const TOPICS: [&str; 5] = ["/images/create", "/images/update", "/images/delete", "/content/create", "/content/delete"];

/// How long a blob that landed is announced while no image reaches it: a
/// pull's image record comes when its last blob has; leftovers of a pull
/// that failed are not announced for ever.
pub(crate) const LANDED_FOR: Duration = Duration::from_secs(30 * 60);

/// The most landed blobs followed at once; more are announced with their image.
const LANDED_LIMIT: usize = 16_384;

/// How a watch paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Quiet time after an event before listing again.
    pub debounce: Duration,
    /// The longest a stream of events may put a listing off.
    pub max_delay: Duration,
    /// When to list once more after a burst, for garbage collection that publishes nothing.
    pub settle: Duration,
    /// How often to list without any event.
    pub resync: Duration,
    /// The first wait before reconnecting.
    pub backoff_min: Duration,
    /// The longest wait before reconnecting.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            settle: Duration::from_secs(2),
            resync: Duration::from_secs(60),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Why following stopped.
enum Stop {
    /// Shut down, or nobody receives any more.
    Done,
    /// containerd went away or failed; reconnect.
    Lost(String),
}

type Subscribing = Pin<Box<dyn Future<Output = Result<tonic::Response<Streaming<Envelope>>, Status>> + Send>>;

/// An event subscription, before and after containerd's first answer.
enum Events {
    Pending(Subscribing),
    Open(Box<Streaming<Envelope>>),
}

struct Watcher {
    store: Containerd,
    timing: Timing,
    tx: mpsc::Sender<Change>,
    shutdown: CancellationToken,
    sent: Sent,
    /// Blobs containerd said it committed, and when, that no image reached when last listed.
    landed: BTreeMap<Digest, Instant>,
}

/// What a watch has reported: each key's registries, and each tag's target.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    keys: BTreeMap<Key, BTreeSet<String>>,
    targets: BTreeMap<Key, Digest>,
}

/// Starts a watch of `store` until `shutdown` or until the receiver is dropped.
pub(crate) fn spawn(store: Containerd, shutdown: CancellationToken) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let timing = store.timing;
    tokio::spawn(Watcher { store, timing, tx, shutdown, sent: Sent::default(), landed: BTreeMap::new() }.run());
    rx
}

impl Watcher {
    async fn run(mut self) {
        let mut backoff = self.first_backoff();
        loop {
            let lost = match self.subscribe().await {
                Ok(events) => match self.follow(events, &mut backoff).await {
                    Stop::Done => return,
                    Stop::Lost(reason) => reason,
                },
                Err(e) => e.to_string(),
            };
            tracing::warn!(socket = %self.store.inner.client.socket().display(), reason = %lost, retry_in = ?backoff, "containerd watch lost");
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.tx.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.timing.backoff_max);
        }
    }

    /// The first wait before reconnecting, never so short that a dead socket is hammered.
    fn first_backoff(&self) -> Duration {
        self.timing.backoff_min.max(Duration::from_millis(10))
    }

    async fn subscribe(&self) -> Result<Events, StoreError> {
        let client = &self.store.inner.client;
        let mut events = EventsClient::new(client.channel().await?);
        let namespace = client.namespace();
        let filters = TOPICS.iter().map(|t| format!("namespace==\"{namespace}\",topic==\"{t}\"")).collect();
        let subscribing = async move { events.subscribe(SubscribeRequest { filters }).await };
        Ok(Events::Pending(Box::pin(subscribing)))
    }

    /// Lists after subscribing, then on events, settling and resync, until the subscription fails.
    async fn follow(&mut self, mut events: Events, backoff: &mut Duration) -> Stop {
        if let Err(stop) = self.sync().await {
            return stop;
        }
        *backoff = self.first_backoff();
        let mut settle_at = Some(Instant::now() + self.timing.settle);
        let mut resync_at = Instant::now() + self.timing.resync;
        loop {
            let wake = settle_at.map_or(resync_at, |s| s.min(resync_at));
            tokio::select! {
                () = self.shutdown.cancelled() => return Stop::Done,
                () = self.tx.closed() => return Stop::Done,
                () = tokio::time::sleep_until(wake) => settle_at = None,
                next = events.next() => match next {
                    Ok(envelope) => {
                        self.note(&envelope);
                        if let Err(stop) = self.drain(&mut events).await {
                            return stop;
                        }
                        settle_at = Some(Instant::now() + self.timing.settle);
                    }
                    Err(reason) => return Stop::Lost(reason),
                },
            }
            resync_at = Instant::now() + self.timing.resync;
            if let Err(stop) = self.sync().await {
                return stop;
            }
        }
    }

    /// Lets a burst of events pass: returns once `debounce` passes without one, or after `max_delay`.
    async fn drain(&mut self, events: &mut Events) -> Result<(), Stop> {
        let deadline = Instant::now() + self.timing.max_delay;
        loop {
            let quiet = (Instant::now() + self.timing.debounce).min(deadline);
            tokio::select! {
                () = self.shutdown.cancelled() => return Err(Stop::Done),
                () = tokio::time::sleep_until(quiet) => return Ok(()),
                next = events.next() => match next {
                    Ok(envelope) => self.note(&envelope),
                    Err(reason) => return Err(Stop::Lost(reason)),
                },
            }
        }
    }

    /// Logs an event and remembers a blob it says landed.
    fn note(&mut self, envelope: &Envelope) {
        log(envelope);
        let Some(digest) = landed(envelope) else { return };
        if self.landed.len() < LANDED_LIMIT {
            self.landed.entry(digest).or_insert_with(Instant::now);
        }
    }

    /// Lists the store and sends what changed since the last message.
    async fn sync(&mut self) -> Result<(), Stop> {
        let listed = self.store.listing().await.map_err(|e| Stop::Lost(e.to_string()))?;
        let mut keys = listed.entries.into_iter().map(|e| (e.key, e.registries)).collect();
        with_landed(&mut keys, &mut self.landed, &listed.unreferenced, Instant::now());
        let now = Sent { keys, targets: listed.targets };
        let change = diff(&self.sent, &now);
        self.sent = now;
        if change.is_empty() {
            return Ok(());
        }
        tracing::debug!(added = change.added.len(), removed = change.removed.len(), "store changed");
        tokio::select! {
            () = self.shutdown.cancelled() => Err(Stop::Done),
            sent = self.tx.send(change) => sent.map_err(|_| Stop::Done),
        }
    }
}

impl Events {
    /// The next event; `Err` when the subscription ended or failed.
    async fn next(&mut self) -> Result<Envelope, String> {
        loop {
            match self {
                Events::Pending(subscribing) => match subscribing.await {
                    Ok(response) => *self = Events::Open(Box::new(response.into_inner())),
                    Err(status) => return Err(format!("subscribe: {status}")),
                },
                Events::Open(stream) => {
                    return match stream.message().await {
                        Ok(Some(envelope)) => Ok(envelope),
                        Ok(None) => Err("event stream ended".into()),
                        Err(status) => Err(format!("event stream: {status}")),
                    }
                }
            }
        }
    }
}

/// The keys added and removed from `before` to `after`; a key whose
/// registries changed, or a tag that points elsewhere, counts as added again.
pub(crate) fn diff(before: &Sent, after: &Sent) -> Change {
    let added = after
        .keys
        .iter()
        .filter(|(key, registries)| {
            before.keys.get(*key) != Some(*registries) || before.targets.get(*key) != after.targets.get(*key)
        })
        .map(|(key, registries)| Entry { key: key.clone(), registries: registries.clone() })
        .collect();
    let removed = before.keys.keys().filter(|key| !after.keys.contains_key(*key)).cloned().collect();
    Change { added, removed }
}

/// Adds the blobs that `landed` and no image reaches yet to `keys`, each
/// with its source hosts; forgets those an image reaches, that are gone, or
/// that landed [`LANDED_FOR`] ago.
fn with_landed(
    keys: &mut BTreeMap<Key, BTreeSet<String>>,
    landed: &mut BTreeMap<Digest, Instant>,
    unreferenced: &BTreeMap<Digest, BTreeSet<String>>,
    now: Instant,
) {
    landed.retain(|digest, at| unreferenced.contains_key(digest) && now.duration_since(*at) < LANDED_FOR);
    for digest in landed.keys() {
        let sources = unreferenced.get(digest).cloned().unwrap_or_default();
        keys.insert(Key::Digest(digest.clone()), sources);
    }
}

/// The blob a `/content/create` event names.
fn landed(envelope: &Envelope) -> Option<Digest> {
    let event = envelope.event.as_ref().filter(|_| envelope.topic == "/content/create")?;
    decode::<ContentCreate>(event)?.digest.parse().ok()
}

/// The message an event carries, whichever way its type URL is spelled:
/// containerd writes it without the leading `/` that `Any::to_msg` expects.
fn decode<M: prost::Message + Default>(event: &prost_types::Any) -> Option<M> {
    M::decode(event.value.as_slice()).ok()
}

/// Logs what an event is about.
fn log(envelope: &Envelope) {
    let Some(event) = &envelope.event else { return };
    let subject = match envelope.topic.as_str() {
        "/images/create" => decode::<ImageCreate>(event).map(|e| e.name),
        "/images/update" => decode::<ImageUpdate>(event).map(|e| e.name),
        "/images/delete" => decode::<ImageDelete>(event).map(|e| e.name),
        "/content/create" => decode::<ContentCreate>(event).map(|e| e.digest),
        "/content/delete" => decode::<ContentDelete>(event).map(|e| e.digest),
        _ => None,
    };
    tracing::debug!(topic = %envelope.topic, subject = subject.as_deref().unwrap_or("?"), "containerd event");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sent(items: &[(&str, &[&str], &str)]) -> Sent {
        let tag = |k: &str| Key::Tag(k.to_owned());
        Sent {
            keys: items.iter().map(|(k, rs, _)| (tag(k), rs.iter().map(|r| (*r).to_owned()).collect())).collect(),
            targets: items.iter().map(|(k, _, t)| (tag(k), Digest::sha256_of(t.as_bytes()))).collect(),
        }
    }

    #[test]
    fn diff_reports_new_gone_re_sourced_and_re_pointed_keys() {
        let before =
            sent(&[("r/a:1", &["r"], "a"), ("r/b:1", &["r"], "b"), ("r/c:1", &["r"], "c"), ("r/e:1", &[], "e")]);
        let after =
            sent(&[("r/a:1", &["r"], "a"), ("r/c:1", &["r", "s"], "c"), ("r/d:1", &[], "d"), ("r/e:1", &[], "e2")]);
        let change = diff(&before, &after);
        let added: Vec<String> = change.added.iter().map(|e| e.key.to_string()).collect();
        assert_eq!(added, vec!["r/c:1", "r/d:1", "r/e:1"]);
        assert_eq!(change.removed, vec![Key::Tag("r/b:1".into())]);
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn a_landed_blob_is_listed_until_an_image_reaches_it_it_goes_or_it_is_old() {
        let blob = |s: &str| Digest::sha256_of(s.as_bytes());
        let start = Instant::now();
        let mut landed: BTreeMap<Digest, Instant> =
            ["waiting", "reached", "gone", "old"].iter().map(|s| (blob(s), start)).collect();
        landed.insert(blob("old"), start - LANDED_FOR);
        let sources = BTreeSet::from(["r.example".to_owned()]);
        let unreferenced: BTreeMap<Digest, BTreeSet<String>> =
            [(blob("waiting"), sources.clone()), (blob("old"), BTreeSet::new()), (blob("stray"), BTreeSet::new())]
                .into_iter()
                .collect();
        let mut keys = BTreeMap::from([(Key::Digest(blob("reached")), BTreeSet::new())]);

        with_landed(&mut keys, &mut landed, &unreferenced, start);
        assert_eq!(landed.keys().collect::<Vec<_>>(), vec![&blob("waiting")]);
        let listed =
            BTreeMap::from([(Key::Digest(blob("reached")), BTreeSet::new()), (Key::Digest(blob("waiting")), sources)]);
        assert_eq!(keys, listed, "a stray blob nobody said landed is not listed");
    }
}
