//! Fetching content from peers: hedged, resumable, verified.
//!
//! A fetch starts from the providers a lookup streams. [`Fetcher::open`]
//! asks the first provider and, when it has not answered within the hedge
//! delay, the next one too; the first good answer wins and the others are
//! cancelled (and kept as candidates for a resume). [`transfer`] then streams
//! the winner's body. If that peer dies or stalls mid-stream, the transfer
//! continues from another provider with a `Range` from the byte reached, so
//! the client sees one uninterrupted response.
//!
//! Implementation notes: digest-addressed content is verified as it streams,
//! and the most recent chunk is held back until the next one arrives. The
//! last chunk is released only after the digest checked out, so a corrupt
//! transfer can never complete as a success: the client is short of the
//! announced `Content-Length` and sees the connection fail. Memory per
//! transfer is that one chunk plus hyper's read buffer, whatever the size.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered, StreamExt};
use futures::Stream;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use peerpull_oci::{ByteRange, Digest, Verifier};
use peerpull_routing::{PeerId, Provider};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::{Config, LOOP_GUARD};

/// The HTTP client for peer requests.
pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Builds the client: bounded connect time, keep-alive pooling.
pub(crate) fn client(config: &Config) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.peer_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector)
}

/// The providers of one key, each handed out once, with those cancelled by
/// a lost hedge race put back for later resumes.
pub(crate) struct Providers {
    lookup: BoxStream<'static, Provider>,
    queue: VecDeque<Provider>,
    seen: HashSet<PeerId>,
    wait: Duration,
    exhausted: bool,
}

impl Providers {
    pub(crate) fn new(lookup: BoxStream<'static, Provider>, wait: Duration) -> Self {
        Self { lookup, queue: VecDeque::new(), seen: HashSet::new(), wait, exhausted: false }
    }

    /// The next provider not yet handed out, waiting at most the lookup wait.
    pub(crate) async fn next(&mut self) -> Option<Provider> {
        self.next_within(self.wait).await
    }

    /// The next provider not yet handed out, waiting at most `wait`. A lookup
    /// that is slow to find more stays open for later calls.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Provider> {
        if let Some(provider) = self.queue.pop_front() {
            return Some(provider);
        }
        let deadline = Instant::now() + wait;
        while !self.exhausted {
            match tokio::time::timeout_at(deadline, self.lookup.next()).await {
                Ok(Some(provider)) if self.seen.insert(provider.peer) => return Some(provider),
                Ok(Some(_)) => continue,
                Ok(None) => self.exhausted = true,
                Err(_) => return None,
            }
        }
        None
    }

    fn put_back(&mut self, provider: Provider) {
        self.queue.push_back(provider);
    }
}

/// What to ask a peer for.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) method: Method,
    /// `/v2/…?ns=…`, as the client asked it.
    pub(crate) path_and_query: String,
    /// The client's byte range, if any.
    pub(crate) range: Option<String>,
}

/// A peer's answer that is good enough to serve.
pub(crate) struct Opened {
    pub(crate) provider: Provider,
    pub(crate) response: Response<Incoming>,
}

/// Opens and continues peer transfers.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub(crate) client: HttpClient,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Metrics,
    pub(crate) peers: Arc<dyn Peers>,
}

impl Fetcher {
    /// Asks providers, hedging after the hedge delay, until one answers well.
    pub(crate) async fn open(&self, providers: &mut Providers, ask: &Ask) -> Option<Opened> {
        let mut inflight = FuturesUnordered::new();
        let mut launched: Vec<Provider> = Vec::new();
        let mut attempts = 0;
        let mut hedge_at = Instant::now();
        let mut exhausted = false;
        loop {
            let can_launch = attempts < self.config.max_peer_attempts && !exhausted;
            if inflight.is_empty() && !can_launch {
                return None;
            }
            let launch_now = inflight.is_empty() || Instant::now() >= hedge_at;
            tokio::select! {
                biased;
                Some(result) = inflight.next(), if !inflight.is_empty() => match result {
                    Ok(opened) => {
                        let Opened { provider, .. } = &opened;
                        for other in launched.iter().filter(|p| p.peer != provider.peer) {
                            providers.put_back(*other);
                        }
                        return Some(opened);
                    }
                    Err((failed, reason)) => {
                        let failed: Provider = failed;
                        launched.retain(|p| p.peer != failed.peer);
                        self.metrics.peer_failure(reason);
                        tracing::debug!(peer = %failed.peer, mirror = %failed.mirror, reason, "peer did not answer well");
                    }
                },
                next = providers.next(), if can_launch && launch_now => match next {
                    Some(provider) => {
                        attempts += 1;
                        launched.push(provider);
                        hedge_at = Instant::now() + self.config.hedge_delay;
                        inflight.push(self.send(provider, ask.clone(), None));
                    }
                    None => exhausted = true,
                },
                () = tokio::time::sleep_until(hedge_at), if can_launch && !launch_now => {}
            }
        }
    }

    /// Sends one request to one provider; `from` asks for the rest from that offset.
    async fn send(
        &self,
        provider: Provider,
        ask: Ask,
        from: Option<(u64, u64)>,
    ) -> Result<Opened, (Provider, &'static str)> {
        let uri = format!("http://{}{}", provider.mirror, ask.path_and_query);
        let mut request = Request::builder().method(ask.method.clone()).uri(uri).header(LOOP_GUARD, "1");
        if let Some((start, end)) = from {
            request = request.header(header::RANGE, ByteRange { start, end_inclusive: end }.header_value());
        } else if let Some(range) = &ask.range {
            request = request.header(header::RANGE, range);
        }
        let request = request.body(Empty::new()).map_err(|_| (provider, "request"))?;
        let response = match tokio::time::timeout(self.config.peer_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err((provider, "connect")),
            Err(_) => return Err((provider, "timeout")),
        };
        let expected = if from.is_some() || ask.range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
        let status = response.status();
        let ok = status == expected || (ask.range.is_some() && status == StatusCode::OK);
        if !ok {
            return Err((provider, if status == StatusCode::NOT_FOUND { "not_found" } else { "status" }));
        }
        if let Some((start, end)) = from {
            let range = response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| ByteRange::parse_content_range(v).ok());
            if !matches!(range, Some((r, _)) if r.start == start && r.end_inclusive == end) {
                return Err((provider, "content_range"));
            }
        }
        Ok(Opened { provider, response })
    }
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
        resumes: 0,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.step().await?;
        Some((item, state))
    })
}

/// Streams a partial (or unsized) peer response as it comes, aborting on a stall.
pub(crate) fn passthrough(opened: Opened, stall: Duration) -> impl Stream<Item = Result<Bytes, TransferError>> + Send {
    futures::stream::unfold(Some(opened.response.into_body()), move |body| async move {
        let mut body = body?;
        loop {
            match tokio::time::timeout(stall, body.frame()).await {
                Err(_) => return Some((Err(TransferError::Broken { reason: "stall" }), None)),
                Ok(None) => return None,
                Ok(Some(Err(_))) => return Some((Err(TransferError::Broken { reason: "body" }), None)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Some((Ok(data), Some(body)));
                    }
                }
            }
        }
    })
}

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
        reason: &'static str,
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
    resumes: usize,
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
                        self.fetcher.metrics.served("peer", previous.len() as u64);
                        return Some(Ok(previous));
                    }
                }
                Err(reason) => {
                    self.fetcher.metrics.peer_failure(reason);
                    tracing::warn!(peer = %self.provider.peer, offset = self.offset, size = self.size, reason, "peer transfer broke; resuming");
                    if let Err(e) = self.resume().await {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Reads the next data frame of the current body, bounded by the stall timeout.
    async fn read(&mut self) -> Result<Bytes, &'static str> {
        let Some(body) = self.body.as_mut() else { return Err("no_body") };
        loop {
            match tokio::time::timeout(self.fetcher.config.stall_timeout, body.frame()).await {
                Err(_) => return Err("stall"),
                Ok(None) => return Err("short_body"),
                Ok(Some(Err(_))) => return Err("body"),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(data);
                        }
                    }
                }
            }
        }
    }

    /// Continues from another provider at the current offset.
    async fn resume(&mut self) -> Result<(), TransferError> {
        self.body = None;
        let exhausted = TransferError::Exhausted { offset: self.offset, size: self.size };
        while self.resumes < self.fetcher.config.max_peer_attempts {
            let wait = self.fetcher.config.peer_timeout;
            let Some(provider) = self.providers.next_within(wait).await else { return Err(exhausted) };
            self.resumes += 1;
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
        Err(exhausted)
    }

    /// All bytes are in: verify, then release the held chunk.
    async fn finish(&mut self) -> Option<Result<Bytes, TransferError>> {
        self.done = true;
        if let Some(verifier) = self.verifier.take() {
            let expected = verifier.expected().clone();
            if !verifier.finish() {
                self.fetcher.metrics.peer_failure("digest_mismatch");
                for peer in &self.used {
                    tracing::warn!(%peer, digest = %expected, "peer served content that does not match its digest");
                    self.fetcher.peers.penalize(*peer).await;
                }
                return Some(Err(TransferError::Mismatch { expected }));
            }
        }
        let last = self.held.take()?;
        self.fetcher.metrics.served("peer", last.len() as u64);
        Some(Ok(last))
    }
}

/// The headers of a peer response worth passing on.
pub(crate) fn forwarded_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
        header::HeaderName::from_static("docker-content-digest"),
    ] {
        if let Some(value) = from.get(&name) {
            to.insert(name, value.clone());
        }
    }
}
