//! A big blob from several holders at once.
//!
//! Above [`Config::multi_source_min_bytes`](crate::Config) and with more
//! than one holder found, a whole-blob request is split into chunks of
//! [`CHUNK`] bytes, fetched with `Range` requests from every holder in
//! parallel (one request at a time per holder, so each holder's link is
//! kept busy without queueing on it) and sent to the client in order. The
//! first holder's answer, already open, gives the first chunk.
//!
//! Bounded: at most [`WINDOW_PER_HOLDER`] chunks per holder are fetched
//! ahead of the one the client waits for, so memory stays at window ×
//! chunk whatever the blob's size. A holder that fails (refused, busy,
//! stalled, short) gives its chunk back and is asked nothing more; a slow
//! one is overtaken: a holder with nothing left to fetch inside the window
//! asks for the chunk the client is waiting for too, and the first copy to
//! arrive is used. The digest is checked over the bytes in order and the
//! last chunk is held back until it matches, as for a single source.
//!
//! Blame: a blob's digest says only that some chunk was wrong, not which.
//! After a mismatch, each holder that sent chunks is asked for the whole
//! blob once more, in the background, and checked alone; a holder whose
//! copy does not match is penalised, one that could not be read whole is
//! not (its chunks may have been right). A mismatch from one holder alone
//! blames it at once. The cost, one more copy per holder involved, is paid
//! only when a holder sent wrong bytes.
//!
//! Not here: onward sharing of chunks with other nodes while they arrive.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::{FutureExt as _, Stream};
use hyper::body::Incoming;
use peerpull_oci::{ByteRange, Digest, Verifier};
use peerpull_routing::Provider;
use prometheus_client::metrics::counter::Counter;

use crate::fetch::PeerClient;
use crate::metrics::Failure;
use crate::transfer::{read_data, TransferError};
use crate::wire::PeerRequest;

/// Bytes asked of one holder at a time.
pub(crate) const CHUNK: u64 = 4 << 20;
/// Chunks fetched ahead of the client, per holder.
const WINDOW_PER_HOLDER: usize = 2;

/// One chunk fetched by one holder, or why not.
type Fetched = (usize, usize, Result<Bytes, Failure>);

/// A whole blob from `holders` (the first of which answered with `first`, a
/// whole body), verified against `expected`.
pub(crate) struct Multi {
    peer_client: PeerClient,
    request: PeerRequest,
    holders: Vec<Holder>,
    size: u64,
    served: Counter,
    chunks: Vec<Chunk>,
    /// The holder each arrived chunk came from.
    from: Vec<Option<usize>>,
    /// The chunk the client gets next.
    next: usize,
    running: FuturesUnordered<BoxFuture<'static, Fetched>>,
    verifier: Option<Verifier>,
    done: bool,
}

struct Holder {
    provider: Provider,
    busy: bool,
    failed: bool,
}

#[derive(Clone)]
enum Chunk {
    Waiting,
    /// Asked of this many holders at once (more than one: overtaking a slow one).
    Asked(usize),
    Arrived(Bytes),
    Sent,
}

impl Multi {
    pub(crate) fn new(
        peer_client: PeerClient,
        request: PeerRequest,
        first: (Provider, Incoming),
        others: Vec<Provider>,
        size: u64,
        expected: Digest,
        served: Counter,
    ) -> Self {
        let count = size.div_ceil(CHUNK) as usize;
        let mut holders = vec![Holder { provider: first.0, busy: true, failed: false }];
        holders.extend(others.into_iter().map(|provider| Holder { provider, busy: false, failed: false }));
        let mut chunks = vec![Chunk::Waiting; count];
        let from = vec![None; count];
        chunks[0] = Chunk::Asked(1);
        let running = FuturesUnordered::new();
        let (stall, len) = (peer_client.stall(), CHUNK.min(size) as usize);
        running.push(read_first(first.1, len, stall).map(|result| (0, 0, result)).boxed());
        Self {
            peer_client,
            request,
            holders,
            size,
            served,
            chunks,
            from,
            next: 0,
            running,
            verifier: Some(expected.verifier()),
            done: false,
        }
    }

    /// The bytes in order; an `Err` ends it and must abort the response.
    pub(crate) fn stream(self) -> impl Stream<Item = Result<Bytes, TransferError>> + Send {
        futures::stream::unfold(self, |mut state| async move {
            let item = state.step().await?;
            Some((item, state))
        })
    }

    async fn step(&mut self) -> Option<Result<Bytes, TransferError>> {
        if self.done || self.next >= self.chunks.len() {
            return None;
        }
        loop {
            if let Chunk::Arrived(bytes) = &self.chunks[self.next] {
                let bytes = bytes.clone();
                self.chunks[self.next] = Chunk::Sent;
                self.next += 1;
                let verifier = self.verifier.as_mut()?;
                verifier.update(&bytes);
                if self.next == self.chunks.len() {
                    self.done = true;
                    let verifier = self.verifier.take()?;
                    let expected = verifier.expected().clone();
                    if !verifier.finish() {
                        self.peer_client.failed(Failure::DigestMismatch);
                        self.blame(expected.clone());
                        return Some(Err(TransferError::Mismatch { expected }));
                    }
                }
                self.served.inc_by(bytes.len() as u64);
                return Some(Ok(bytes));
            }
            self.assign();
            let Some((chunk, holder, result)) = self.running.next().await else {
                self.done = true;
                return Some(Err(TransferError::Broken { reason: Failure::Body }));
            };
            self.holders[holder].busy = false;
            match result {
                Ok(bytes) => {
                    self.peer_client.received(&self.holders[holder].provider, bytes.len() as u64);
                    if matches!(self.chunks[chunk], Chunk::Asked(_)) {
                        self.chunks[chunk] = Chunk::Arrived(bytes);
                        self.from[chunk] = Some(holder);
                    }
                }
                Err(reason) => {
                    self.peer_client.failed(reason);
                    let provider = self.holders[holder].provider;
                    tracing::debug!(peer = %provider.peer, mirror = %provider.mirror, chunk, %reason, "a holder failed a chunk");
                    self.holders[holder].failed = true;
                    if let Chunk::Asked(n) = self.chunks[chunk] {
                        self.chunks[chunk] = if n > 1 { Chunk::Asked(n - 1) } else { Chunk::Waiting };
                    }
                }
            }
        }
    }

    /// Finds, in the background, which of the holders that sent chunks sent
    /// a copy that does not match `expected`, and penalises them.
    fn blame(&self, expected: Digest) {
        let mut suspects: Vec<Provider> = Vec::new();
        for provider in self.from.iter().flatten().map(|&h| self.holders[h].provider) {
            if !suspects.iter().any(|s| s.peer == provider.peer) {
                suspects.push(provider);
            }
        }
        let (peer_client, request) = (self.peer_client.clone(), self.request.clone());
        tokio::spawn(async move {
            let certain = suspects.len() == 1;
            for suspect in suspects {
                let matches =
                    if certain { Some(false) } else { whole_matches(&peer_client, &request, suspect, &expected).await };
                match matches {
                    Some(false) => {
                        tracing::warn!(peer = %suspect.peer, digest = %expected, "a holder's copy does not match its digest");
                        peer_client.penalize(suspect.peer).await;
                    }
                    Some(true) => tracing::debug!(peer = %suspect.peer, "a holder's copy matches: not to blame"),
                    None => {
                        tracing::debug!(peer = %suspect.peer, "a holder's copy could not be read whole: not blamed")
                    }
                }
            }
        });
    }

    /// Gives every idle holder a chunk: the first waiting one inside the
    /// window, or else the one the client waits for, if it is still out.
    fn assign(&mut self) {
        let window = WINDOW_PER_HOLDER * self.holders.len();
        let end = (self.next + window).min(self.chunks.len());
        for h in 0..self.holders.len() {
            if self.holders[h].busy || self.holders[h].failed {
                continue;
            }
            let waiting = (self.next..end).find(|&c| matches!(self.chunks[c], Chunk::Waiting));
            let overtake = match self.chunks[self.next] {
                Chunk::Asked(1) => Some(self.next),
                _ => None,
            };
            let Some(chunk) = waiting.or(overtake) else { continue };
            self.chunks[chunk] = match self.chunks[chunk] {
                Chunk::Asked(n) => Chunk::Asked(n + 1),
                _ => Chunk::Asked(1),
            };
            self.holders[h].busy = true;
            let start = chunk as u64 * CHUNK;
            let last = (start + CHUNK).min(self.size) - 1;
            let (peer_client, provider) = (self.peer_client.clone(), self.holders[h].provider);
            let chunk_request = self.request.range(ByteRange { start, end_inclusive: last });
            self.running.push(
                async move {
                    let result = match peer_client.send(provider, &chunk_request).await {
                        Ok(opened) => {
                            let len = (last - start + 1) as usize;
                            read_first(opened.response.into_body(), len, peer_client.stall()).await
                        }
                        Err((_, reason)) => Err(reason),
                    };
                    (chunk, h, result)
                }
                .boxed(),
            );
        }
    }
}

/// Whether `holder`'s whole copy matches `expected`; `None` when it could not be read whole.
async fn whole_matches(
    peer_client: &PeerClient,
    request: &PeerRequest,
    holder: Provider,
    expected: &Digest,
) -> Option<bool> {
    let opened = peer_client.send(holder, request).await.ok()?;
    let mut body = opened.response.into_body();
    let mut verifier = expected.verifier();
    while let Some(data) = read_data(&mut body, peer_client.stall()).await.ok()? {
        verifier.update(&data);
    }
    Some(verifier.finish())
}

/// The first `len` bytes of `body` (which then is dropped).
async fn read_first(mut body: Incoming, len: usize, stall: Duration) -> Result<Bytes, Failure> {
    let mut out = BytesMut::with_capacity(len);
    while out.len() < len {
        match read_data(&mut body, stall).await? {
            Some(data) => {
                let take = data.len().min(len - out.len());
                out.extend_from_slice(&data[..take]);
            }
            None => return Err(Failure::ShortBody),
        }
    }
    Ok(out.freeze())
}
