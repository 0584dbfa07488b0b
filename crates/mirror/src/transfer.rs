//! Streaming a peer's whole-content response: resumed when a peer fails,
//! verified against the digest.
//!
//! [`transfer`] streams the body of the peer [`Fetcher::open`] chose. If
//! that peer dies or stalls mid-stream, the transfer continues from another
//! provider with a `Range` from the byte reached, so the client sees one
//! uninterrupted response.
//!
//! Implementation notes: digest-addressed content is verified as it streams,
//! and the most recent chunk is held back until the next one arrives. The
//! last chunk is released only after the digest checked out, so a corrupt
//! transfer can never complete as a success: the client is short of the
//! announced `Content-Length` and sees the connection fail. Memory per
//! transfer is that one chunk plus hyper's read buffer, whatever the size.

use bytes::Bytes;
use futures::Stream;
use hyper::body::Incoming;
use peerpull_oci::{Digest, Verifier};
use peerpull_routing::{PeerId, Provider};
use prometheus_client::metrics::counter::Counter;

use crate::fetch::{read_data, Ask, Fetcher, Opened, Providers};
use crate::metrics::Failure;
use crate::source::Kind;

/// Why a transfer was aborted.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The bytes did not match the digest; the response must not complete.
    #[error("content from peers does not match {expected}")]
    Mismatch {
        /// The digest asked for.
        expected: Digest,
    },
    /// A pass-through transfer failed; it cannot be resumed.
    #[error("peer transfer broke: {reason}")]
    Broken {
        /// What failed.
        reason: Failure,
    },
    /// No provider could continue the transfer.
    #[error("transfer stopped at byte {offset} of {size}: no provider could continue it")]
    Exhausted {
        /// Bytes delivered.
        offset: u64,
        /// Bytes announced.
        size: u64,
    },
}

/// Streams a whole-content peer response to the client, resuming from other
/// providers on failure and verifying `expected` when given.
pub(crate) fn transfer(
    fetcher: Fetcher,
    providers: Providers,
    ask: Ask,
    opened: Opened,
    size: u64,
    expected: Option<Digest>,
) -> impl Stream<Item = Result<Bytes, TransferError>> + Send {
    let Opened { provider, response } = opened;
    let served = fetcher.metrics.served(Kind::Peer);
    let state = Transfer {
        fetcher,
        providers,
        ask,
        body: Some(response.into_body()),
        provider,
        used: vec![provider.peer],
        offset: 0,
        size,
        verifier: expected.map(Verifier::new),
        held: None,
        served,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.step().await?;
        Some((item, state))
    })
}

struct Transfer {
    fetcher: Fetcher,
    providers: Providers,
    ask: Ask,
    body: Option<Incoming>,
    provider: Provider,
    used: Vec<PeerId>,
    offset: u64,
    size: u64,
    verifier: Option<Verifier>,
    held: Option<Bytes>,
    served: Counter,
    done: bool,
}

impl Transfer {
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
                    self.offset += data.len() as u64;
                    if let Some(verifier) = self.verifier.as_mut() {
                        verifier.update(&data);
                    }
                    if let Some(previous) = self.held.replace(data) {
                        self.served.inc_by(previous.len() as u64);
                        return Some(Ok(previous));
                    }
                }
                Err(reason) => {
                    self.fetcher.metrics.peer_failure(reason);
                    tracing::warn!(peer = %self.provider.peer, offset = self.offset, size = self.size, %reason, "peer transfer broke; resuming");
                    if let Err(e) = self.resume().await {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Reads the next data of the current body; its end before `size` is a failure.
    async fn read(&mut self) -> Result<Bytes, Failure> {
        let Some(body) = self.body.as_mut() else { return Err(Failure::Body) };
        read_data(body, self.fetcher.config.stall_timeout).await?.ok_or(Failure::ShortBody)
    }

    /// Continues from another provider at the current offset.
    async fn resume(&mut self) -> Result<(), TransferError> {
        self.body = None;
        let wait = self.fetcher.config.peer_timeout;
        while let Some(provider) = self.providers.next_within(wait).await {
            let from = Some((self.offset, self.size - 1));
            match self.fetcher.send(provider, self.ask.clone(), from).await {
                Ok(opened) => {
                    tracing::info!(peer = %provider.peer, offset = self.offset, "transfer resumed from another peer");
                    self.provider = provider;
                    self.used.push(provider.peer);
                    self.body = Some(opened.response.into_body());
                    return Ok(());
                }
                Err((_, reason)) => self.fetcher.metrics.peer_failure(reason),
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
                self.fetcher.metrics.peer_failure(Failure::DigestMismatch);
                for peer in &self.used {
                    tracing::warn!(%peer, digest = %expected, "peer served content that does not match its digest");
                    self.fetcher.peers.penalize(*peer).await;
                }
                return Some(Err(TransferError::Mismatch { expected }));
            }
        }
        let last = self.held.take()?;
        self.served.inc_by(last.len() as u64);
        Some(Ok(last))
    }
}
