//! The last requests the mirror answered: what was asked, who asked, which
//! source served it, and how fast.
//!
//! A bounded ring of [`CAPACITY`] entries kept in memory only, for people
//! asking "where did that pull come from?" (the admin API's `RecentPulls`
//! and the debug page). An entry is added when its request ends: at once
//! for a miss, when the body has been sent or abandoned otherwise.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{header, Response};
use peerpull_routing::Provider;
use tokio::time::Instant;

use crate::body::{self, Body};
use crate::metrics::{Kind, Metrics};

/// How many requests are remembered.
pub const CAPACITY: usize = 200;

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// containerd (or anything else that is not a peer).
    Containerd,
    /// Another node's mirror.
    Peer,
    /// This node itself: the admin API or the debug page's test pull
    /// ([`Mirror::resolve`](crate::Mirror::resolve), [`Mirror::probe`](crate::Mirror::probe));
    /// such requests are neither remembered as pulls nor counted as containerd's.
    Node,
}

/// A response extension naming the peer that served a response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Via(pub(crate) Provider);

/// A response extension on every answer [`Mirror::handle`](crate::Mirror::handle)
/// served from a source: which, and through which peer. It never goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// The source.
    pub source: Kind,
    /// The peer that served it, if one did.
    pub via: Option<Provider>,
}

/// One request the mirror answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Pull {
    /// When it arrived.
    pub at: SystemTime,
    /// Who asked.
    pub client: Client,
    /// The registry (`?ns=`).
    pub registry: String,
    /// The repository, e.g. `library/nginx`.
    pub repository: String,
    /// The tag or digest asked for.
    pub reference: String,
    /// A manifest (true) or a blob.
    pub manifest: bool,
    /// A `HEAD` request.
    pub head: bool,
    /// The status answered.
    pub status: u16,
    /// The body's announced length.
    pub size: Option<u64>,
    /// The source that served it; `None` for a miss.
    pub source: Option<Kind>,
    /// The peer that served it (a peer, or the node that fetched it from the upstream).
    pub via: Option<Provider>,
    /// Body bytes sent.
    pub bytes: u64,
    /// From arrival to the end of the body.
    pub duration: Duration,
}

impl Pull {
    /// A request arriving now, before it is answered.
    pub(crate) fn arriving(
        client: Client,
        registry: &str,
        repository: &str,
        reference: String,
        manifest: bool,
        head: bool,
    ) -> Self {
        Pull {
            at: SystemTime::now(),
            client,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            reference,
            manifest,
            head,
            status: 0,
            size: None,
            source: None,
            via: None,
            bytes: 0,
            duration: Duration::ZERO,
        }
    }

    /// Whether the whole body was sent.
    pub fn complete(&self) -> bool {
        self.head || self.size.is_none_or(|size| self.bytes >= size)
    }

    /// Body bytes per second, when there was a body.
    pub fn rate(&self) -> Option<f64> {
        let seconds = self.duration.as_secs_f64();
        (self.bytes > 0 && seconds > 0.0).then(|| self.bytes as f64 / seconds)
    }
}

/// The answer `response` from `source` to `pull` (which arrived at
/// `started`), named [`Served`], counted while its body is sent (the
/// in-flight gauge; a peer's bytes as uploaded), and remembered in `recent`
/// once it ends (at once for a miss).
pub(crate) fn recorded(
    mut response: Response<Body>,
    source: Option<Kind>,
    mut pull: Pull,
    started: Instant,
    metrics: &Metrics,
    recent: Option<&Recent>,
) -> Response<Body> {
    let via = response.extensions().get::<Via>().map(|via| via.0);
    if let Some(source) = source {
        response.extensions_mut().insert(Served { source, via });
    }
    pull.status = response.status().as_u16();
    pull.size = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    pull.source = source;
    pull.via = via;
    pull.duration = started.elapsed();
    let recent = recent.cloned();
    let Some(kind) = source else {
        if let Some(recent) = recent {
            recent.push(pull);
        }
        return response;
    };
    let uploaded = (pull.client == Client::Peer).then(|| metrics.clone());
    body::observed(response, metrics.in_flight(kind), move |bytes| {
        if let Some(metrics) = uploaded {
            metrics.peer_upload(bytes);
        }
        pull.bytes = bytes;
        pull.duration = started.elapsed();
        if let Some(recent) = recent {
            recent.push(pull);
        }
    })
}

/// The ring; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent {
    pulls: Arc<Mutex<VecDeque<Pull>>>,
}

impl Recent {
    /// Remembers `pull`, forgetting the oldest past [`CAPACITY`].
    pub(crate) fn push(&self, pull: Pull) {
        let mut pulls = self.pulls.lock();
        if pulls.len() == CAPACITY {
            pulls.pop_front();
        }
        pulls.push_back(pull);
    }

    /// Up to `limit` of the last requests, newest first.
    pub(crate) fn last(&self, limit: usize) -> Vec<Pull> {
        let pulls = self.pulls.lock();
        pulls.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn an_answer_is_remembered_when_its_body_ends_and_a_miss_at_once() {
        let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
        let recent = Recent::default();
        let arriving = |client| Pull::arriving(client, "docker.io", "library/nginx", "1.27".into(), true, false);
        let sending = |stats: crate::Stats| stats.in_flight.iter().map(|(_, n)| n).sum::<u64>();

        let mut response = Response::new(body::full("hello"));
        response.headers_mut().insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("5"));
        let started = Instant::now();
        let response =
            recorded(response, Some(Kind::Local), arriving(Client::Containerd), started, &metrics, Some(&recent));
        assert_eq!(response.extensions().get::<Served>().map(|s| s.source), Some(Kind::Local));
        assert_eq!((recent.last(10).len(), sending(metrics.stats())), (0, 1), "sending, not yet remembered");
        let sent = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        assert_eq!(sent.as_ref(), b"hello");
        assert_eq!(sending(metrics.stats()), 0);
        let pulls = recent.last(10);
        assert_eq!(pulls.len(), 1);
        assert_eq!((pulls[0].bytes, pulls[0].size, pulls[0].status), (5, Some(5), 200));
        assert!(pulls[0].complete());

        let miss = Response::builder().status(404).body(body::empty()).unwrap_or_default();
        let miss = recorded(miss, None, arriving(Client::Containerd), started, &metrics, Some(&recent));
        assert!(miss.extensions().get::<Served>().is_none());
        assert_eq!(recent.last(10).first().map(|p| (p.status, p.source)), Some((404, None)), "a miss, at once");

        let own =
            recorded(Response::new(body::full("x")), Some(Kind::Peer), arriving(Client::Node), started, &metrics, None);
        drop(own);
        assert_eq!(recent.last(10).len(), 2, "the node's own requests are not remembered");
    }

    fn pull(n: u64) -> Pull {
        Pull {
            at: SystemTime::UNIX_EPOCH,
            client: Client::Containerd,
            registry: "docker.io".into(),
            repository: "library/nginx".into(),
            reference: n.to_string(),
            manifest: false,
            head: false,
            status: 200,
            size: Some(10),
            source: Some(Kind::Local),
            via: None,
            bytes: n,
            duration: Duration::from_secs(2),
        }
    }

    #[test]
    fn keeps_the_newest_first_and_no_more_than_its_capacity() {
        let recent = Recent::default();
        for n in 0..(CAPACITY as u64 + 5) {
            recent.push(pull(n));
        }
        let last = recent.last(usize::MAX);
        assert_eq!(last.len(), CAPACITY);
        assert_eq!(last[0].reference, (CAPACITY + 4).to_string());
        assert_eq!(last[CAPACITY - 1].reference, "5");
        assert_eq!(recent.last(3).len(), 3);
    }

    #[test]
    fn completeness_and_rate() {
        assert!(!pull(4).complete());
        assert!(pull(10).complete());
        assert_eq!(pull(10).rate(), Some(5.0));
        assert_eq!(pull(0).rate(), None);
        assert!(Pull { head: true, ..pull(0) }.complete());
    }
}
