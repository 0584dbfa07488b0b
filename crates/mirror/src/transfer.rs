//! Streaming a whole-content response: resumed when its source fails,
//! verified against the digest.
//!
//! [`Transfer`] streams the body of the peer [`PeerClient::open`] chose (or of
//! the upstream). If that source dies or stalls mid-stream, the transfer
//! continues from another provider with a `Range` from the byte reached,
//! so the client sees one uninterrupted response.
//!
//! Implementation notes: digest-addressed content is verified as it streams,
//! and the most recent chunk is held back until the next one arrives. The
//! last chunk is released only after the digest checked out, so a corrupt
//! transfer can never complete as a success: the client is short of the
//! announced `Content-Length` and sees the connection fail. Memory per
//! transfer is that one chunk plus the read buffer, whatever the size.
//! A client's range ([`Transfer::only`]) is cut from the whole content as it
//! streams: every byte is read and hashed, only the range is sent, and its
//! last chunk is held back the same way.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use peerpull_oci::{ByteRange, Digest, Verifier};
use peerpull_routing::{PeerId, Provider};
use prometheus_client::metrics::counter::Counter;

use crate::fetch::{PeerClient, Providers};
use crate::metrics::Failure;
use crate::wire::PeerRequest;

/// Why a transfer was aborted.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The bytes did not match the digest; the response must not complete.
    #[error("content does not match {expected}")]
    Mismatch {
        /// The digest asked for.
        expected: Digest,
    },
    /// A pass-through transfer failed; it cannot be resumed.
    #[error("transfer broke: {reason}")]
    Broken {
        /// What failed.
        reason: Failure,
    },
    /// No source could continue the transfer.
    #[error("transfer stopped at byte {offset} of {size}: nothing could continue it")]
    Exhausted {
        /// Bytes delivered.
        offset: u64,
        /// Bytes announced.
        size: u64,
    },
}

/// The body a transfer starts from.
pub(crate) struct Feed {
    pub(crate) body: Incoming,
    /// The peer sending it, if a peer.
    pub(crate) provider: Option<Provider>,
    /// The content's size in bytes.
    pub(crate) size: u64,
}

/// A whole-content transfer, resumable and verified.
pub(crate) struct Transfer {
    peer_client: PeerClient,
    /// Who else may continue it.
    providers: Providers,
    /// What a resume asks for, from the byte reached.
    request: PeerRequest,
    /// The body read from (a peer's or the upstream's).
    feed: Option<Incoming>,
    /// The peer the feed comes from, if a peer.
    provider: Option<Provider>,
    used: Vec<PeerId>,
    offset: u64,
    size: u64,
    verifier: Option<Verifier>,
    /// The part of the content sent (`None`: all of it).
    window: Option<ByteRange>,
    held: Option<Bytes>,
    served: Counter,
    /// How long a body may send nothing before the feed counts as stalled.
    stall: Duration,
    done: bool,
}

impl Transfer {
    /// A transfer of `size` bytes from `feed`, the answer to `request` (from
    /// `provider`, if a peer), counting bytes on `served` and verifying
    /// `expected` when given. Nothing continues it unless [`Transfer::resumed_from`] says who.
    pub(crate) fn new(
        peer_client: PeerClient,
        request: PeerRequest,
        feed: Feed,
        expected: Option<Digest>,
        served: Counter,
    ) -> Self {
        let stall = peer_client.stall();
        let Feed { body, provider, size } = feed;
        Self {
            peer_client,
            providers: Providers::none(),
            request,
            feed: Some(body),
            provider,
            used: provider.map(|p| p.peer).into_iter().collect(),
            offset: 0,
            size,
            verifier: expected.map(Verifier::new),
            window: None,
            held: None,
            stall,
            served,
            done: false,
        }
    }

    /// Continues from `providers` when the feed fails.
    pub(crate) fn resumed_from(mut self, providers: Providers) -> Self {
        self.providers = providers;
        self
    }

    /// Sends only `range` of the content (all of it when `None`), still reading
    /// and verifying the whole.
    pub(crate) fn only(mut self, range: Option<ByteRange>) -> Self {
        self.window = range;
        self
    }

    /// Waits up to `stall` for each body chunk instead of the stall time-out: a
    /// node fetching from the upstream for us may pause while it resumes.
    pub(crate) fn patient(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// The bytes, as a stream; an `Err` ends it and must abort the response.
    pub(crate) fn stream(self) -> impl Stream<Item = Result<Bytes, TransferError>> + Send {
        futures::stream::unfold(self, |mut state| async move {
            let item = state.step().await?;
            Some((item, state))
        })
    }

    /// The next item to send, or `None` at the end.
    async fn step(&mut self) -> Option<Result<Bytes, TransferError>> {
        if self.done {
            return None;
        }
        loop {
            if self.offset == self.size {
                return self.finish().await;
            }
            match self.read().await {
                Ok(data) => {
                    let room = self.size - self.offset;
                    let data = if data.len() as u64 > room { data.slice(..room as usize) } else { data };
                    let at = self.offset;
                    self.offset += data.len() as u64;
                    if let Some(verifier) = self.verifier.as_mut() {
                        verifier.update(&data);
                    }
                    let data = match self.window {
                        Some(window) => clip(data, at, window),
                        None => data,
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if let Some(previous) = self.held.replace(data) {
                        self.served.inc_by(previous.len() as u64);
                        return Some(Ok(previous));
                    }
                }
                Err(reason) => {
                    if self.provider.is_some() {
                        self.peer_client.failed(reason);
                    }
                    let peer = self.provider.map(|p| p.peer.to_string()).unwrap_or_else(|| "-".into());
                    tracing::warn!(%peer, offset = self.offset, size = self.size, %reason, "transfer broke; resuming");
                    if let Err(e) = self.resume().await {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Reads the next data of the current feed; its end before `size` is a failure.
    async fn read(&mut self) -> Result<Bytes, Failure> {
        let data = match self.feed.as_mut() {
            None => return Err(Failure::Body),
            Some(body) => read_data(body, self.stall).await?.ok_or(Failure::ShortBody)?,
        };
        if let Some(provider) = &self.provider {
            self.peer_client.received(provider, data.len() as u64);
        }
        Ok(data)
    }

    /// Continues from another provider at the current offset.
    async fn resume(&mut self) -> Result<(), TransferError> {
        self.feed = None;
        let wait = self.peer_client.resume_wait();
        while let Some(provider) = self.providers.next_within(wait).await {
            let rest = self.request.range(ByteRange { start: self.offset, end_inclusive: self.size - 1 });
            match self.peer_client.send(provider, &rest).await {
                Ok(opened) => {
                    tracing::info!(peer = %provider.peer, offset = self.offset, "transfer resumed from another peer");
                    self.provider = Some(provider);
                    self.used.push(provider.peer);
                    self.feed = Some(opened.response.into_body());
                    return Ok(());
                }
                Err((_, reason)) => self.peer_client.failed(reason),
            }
        }
        Err(TransferError::Exhausted { offset: self.offset, size: self.size })
    }

    /// All bytes are in: verify, then release the held chunk.
    async fn finish(&mut self) -> Option<Result<Bytes, TransferError>> {
        self.done = true;
        if let Some(verifier) = self.verifier.take() {
            let expected = verifier.expected().clone();
            if !verifier.finish() {
                self.peer_client.failed(Failure::DigestMismatch);
                for peer in &self.used {
                    tracing::warn!(%peer, digest = %expected, "content does not match its digest");
                    self.peer_client.penalize(*peer).await;
                }
                return Some(Err(TransferError::Mismatch { expected }));
            }
        }
        let last = self.held.take()?;
        self.served.inc_by(last.len() as u64);
        Some(Ok(last))
    }
}

/// The next non-empty data frame of `body`: `Ok(None)` at its end, `Err` when
/// it fails or sends nothing for `stall`.
pub(crate) async fn read_data(body: &mut Incoming, stall: Duration) -> Result<Option<Bytes>, Failure> {
    loop {
        match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => return Err(Failure::Stall),
            Ok(None) => return Ok(None),
            Ok(Some(Err(_))) => return Err(Failure::Body),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// Streams a partial (or unsized) response body as it comes, aborting on a stall.
pub(crate) fn passthrough(body: Incoming, stall: Duration) -> impl Stream<Item = Result<Bytes, TransferError>> + Send {
    futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match read_data(&mut body, stall).await {
            Ok(Some(data)) => Some((Ok(data), Some(body))),
            Ok(None) => None,
            Err(reason) => Some((Err(TransferError::Broken { reason }), None)),
        }
    })
}

/// The part of `data`, found at offset `at` of the content, inside `window`.
fn clip(data: Bytes, at: u64, window: ByteRange) -> Bytes {
    let end = at + data.len() as u64;
    let (from, to) = (window.start.clamp(at, end), window.end_inclusive.saturating_add(1).clamp(at, end));
    if from >= to {
        return Bytes::new();
    }
    data.slice((from - at) as usize..(to - at) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_the_part_of_a_chunk_inside_the_window() {
        let window = ByteRange { start: 10, end_inclusive: 19 };
        let chunk = Bytes::from_static(b"0123456789");
        assert_eq!(clip(chunk.clone(), 0, window), Bytes::new(), "before");
        assert_eq!(clip(chunk.clone(), 5, window), Bytes::from_static(b"56789"), "overlapping the start");
        assert_eq!(clip(chunk.clone(), 10, window), chunk, "exactly inside");
        assert_eq!(clip(chunk.clone(), 15, window), Bytes::from_static(b"01234"), "overlapping the end");
        assert_eq!(clip(chunk.clone(), 20, window), Bytes::new(), "after");
        assert_eq!(clip(Bytes::from_static(b"x"), 19, window), Bytes::from_static(b"x"), "the last byte");
    }
}
