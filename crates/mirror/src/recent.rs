//! The last requests the mirror answered: what was asked, who asked, which
//! source served it, and how fast.
//!
//! A bounded ring of [`CAPACITY`] entries kept in memory only, for people
//! asking "where did that pull come from?" (the admin API's `RecentPulls`
//! and the debug page). An entry is added when its request ends: at once
//! for a miss, when the body has been sent or abandoned otherwise.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use peerpull_routing::Provider;

use crate::metrics::Kind;

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

/// The ring; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent {
    pulls: Arc<Mutex<VecDeque<Pull>>>,
}

impl Recent {
    /// Remembers `pull`, forgetting the oldest past [`CAPACITY`].
    pub(crate) fn push(&self, pull: Pull) {
        let mut pulls = self.pulls.lock().unwrap_or_else(PoisonError::into_inner);
        if pulls.len() == CAPACITY {
            pulls.pop_front();
        }
        pulls.push_back(pull);
    }

    /// Up to `limit` of the last requests, newest first.
    pub(crate) fn last(&self, limit: usize) -> Vec<Pull> {
        let pulls = self.pulls.lock().unwrap_or_else(PoisonError::into_inner);
        pulls.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
