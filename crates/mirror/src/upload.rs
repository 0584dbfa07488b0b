//! What this node sends to other nodes: a cap on uploads at once and one
//! byte rate shared by all of them, so a popular holder keeps its link for
//! its own workloads.
//!
//! A peer's request past the cap, or arriving while the rate is already
//! more than [`MAX_BACKLOG`] behind, is answered `429 Too Many Requests`
//! with `Retry-After` at once, before any work: the asking node counts it as
//! a busy peer and asks another holder straight away (it is not penalised).
//! An upload that is admitted is paced: each chunk waits for its bytes in a
//! token bucket refilled at the rate, with up to [`BURST`] of a second saved.
//!
//! Requests to pull through (a follower asking its fetcher) are paced but
//! never refused: refusing would send the follower to the upstream itself,
//! one more upstream copy for the cluster. Responses to this node's own
//! containerd are neither.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt as _, BodyStream, StreamBody};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use peerpull_oci::ErrorCode;

use crate::body::{self, Body};

/// How far behind the rate may be before new uploads are refused.
pub(crate) const MAX_BACKLOG: Duration = Duration::from_secs(1);
/// The part of a second's bytes an idle bucket saves up.
const BURST: f64 = 0.1;

/// The node's upload limits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Uploads {
    permits: Option<Arc<Semaphore>>,
    bucket: Option<Arc<Bucket>>,
}

/// An upload refused: the node uploads all it may.
#[derive(Debug)]
pub(crate) struct Busy;

impl Busy {
    /// The `429` to answer, asking to retry in a second.
    pub(crate) fn answer(self) -> Response<Body> {
        let mut busy = body::error(ErrorCode::TooManyRequests, "this node is uploading all it may");
        busy.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        busy
    }
}

/// One admitted upload: holds its place under the cap until dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Slot {
    /// A place outside the cap, for a request that must not be turned away.
    pub(crate) fn unlimited() -> Self {
        Self { _permit: None }
    }
}

impl Uploads {
    /// At most `max` uploads at once and `rate` bytes per second in all (0: no limit).
    pub(crate) fn new(max: usize, rate: u64) -> Self {
        Self {
            permits: (max > 0).then(|| Arc::new(Semaphore::new(max))),
            bucket: (rate > 0).then(|| Arc::new(Bucket::new(rate))),
        }
    }

    /// A place for one more upload, or `None` (answer 429) at the cap or
    /// with the rate too far behind.
    fn admit(&self) -> Option<Slot> {
        if self.bucket.as_ref().is_some_and(|b| b.backlog() > MAX_BACKLOG) {
            return None;
        }
        match &self.permits {
            Some(permits) => permits.clone().try_acquire_owned().ok().map(|p| Slot { _permit: Some(p) }),
            None => Some(Slot { _permit: None }),
        }
    }

    /// The place an answer takes under the cap: none when it is no upload
    /// (`upload` false: a `HEAD`, or this node's own containerd), one outside
    /// the cap for a `follower` (never turned away), else one under the cap
    /// or [`Busy`].
    pub(crate) fn admit_for(&self, upload: bool, follower: bool) -> Result<Option<Slot>, Busy> {
        if !upload {
            return Ok(None);
        }
        match self.admit() {
            Some(slot) => Ok(Some(slot)),
            None if follower => Ok(Some(Slot::unlimited())),
            None => Err(Busy),
        }
    }

    /// `response` with its body paced to the rate, holding `slot` until the
    /// body ends; as it is without a slot.
    pub(crate) fn paced(&self, response: Response<Body>, slot: Option<Slot>) -> Response<Body> {
        let Some(slot) = slot else { return response };
        let bucket = self.bucket.clone();
        response.map(move |body| {
            let frames = BodyStream::new(body).then(move |frame| {
                let _slot = &slot;
                let wait = match (&frame, &bucket) {
                    (Ok(frame), Some(bucket)) => frame.data_ref().map_or(Duration::ZERO, |d| bucket.take(d.len())),
                    _ => Duration::ZERO,
                };
                async move {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    frame
                }
            });
            StreamBody::new(frames).boxed_unsync()
        })
    }
}

/// A token bucket of bytes whose balance may go negative: a chunk is sent
/// once the balance it left behind has been refilled.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        let rate = rate as f64;
        Self { rate, state: Mutex::new((rate * BURST, Instant::now())) }
    }

    /// Takes `bytes`; how long to wait before sending them.
    fn take(&self, bytes: usize) -> Duration {
        let mut state = self.state.lock();
        let balance = self.refilled(&mut state) - bytes as f64;
        state.0 = balance;
        self.debt(balance)
    }

    /// How long the bytes already taken need to be sent.
    fn backlog(&self) -> Duration {
        let mut state = self.state.lock();
        let balance = self.refilled(&mut state);
        self.debt(balance)
    }

    /// The balance now, after the refill since the last look.
    fn refilled(&self, state: &mut (f64, Instant)) -> f64 {
        let now = Instant::now();
        let elapsed = now.duration_since(state.1).as_secs_f64();
        state.1 = now;
        state.0 = (state.0 + elapsed * self.rate).min(self.rate * BURST);
        state.0
    }

    fn debt(&self, balance: f64) -> Duration {
        if balance >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-balance / self.rate)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_spends_its_burst_then_the_rate() {
        let bucket = Bucket::new(1000);
        assert_eq!(bucket.take(100), Duration::ZERO, "a tenth of a second is saved up");
        assert_eq!(bucket.take(500), Duration::from_millis(500));
        assert_eq!(bucket.backlog(), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(bucket.backlog(), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(bucket.take(100), Duration::ZERO, "idle time saves no more than the burst");
        assert_eq!(bucket.take(1), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn admission_stops_at_the_cap_and_when_the_rate_is_behind() {
        let uploads = Uploads::new(2, 0);
        let (a, _b) = (uploads.admit().unwrap(), uploads.admit().unwrap());
        assert!(uploads.admit().is_none());
        let busy = uploads.admit_for(true, false).map(|_| ()).unwrap_err().answer();
        assert_eq!(busy.status(), 429, "past the cap");
        assert!(busy.headers().contains_key(header::RETRY_AFTER));
        assert!(matches!(uploads.admit_for(true, true), Ok(Some(_))), "a follower is never turned away");
        assert!(matches!(uploads.admit_for(false, false), Ok(None)), "not an upload: no place taken");
        drop(a);
        assert!(uploads.admit().is_some());

        let uploads = Uploads::new(0, 1000);
        let bucket = uploads.bucket.clone().unwrap();
        bucket.take(1100);
        assert!(uploads.admit().is_some(), "1 s behind is still admitted");
        bucket.take(1);
        assert!(uploads.admit().is_none());
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(uploads.admit().is_some());
    }
}
