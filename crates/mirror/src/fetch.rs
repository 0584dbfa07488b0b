//! Asking peers for content: hedged requests within one attempts budget.
//!
//! A fetch starts from the providers a lookup streams. [`Fetcher::open`]
//! asks the first provider and, when it has not answered within the hedge
//! delay, the next one too; the first good answer wins and the others are
//! cancelled (and kept as candidates for a resume). Every request to a peer
//! for one client request, hedges and resumes alike, draws on the same
//! budget ([`Config::max_peer_attempts`]), kept by [`Providers`].
//!
//! Streaming a body is [`crate::transfer`]'s; both it and [`passthrough`]
//! read frames through [`read_data`], which bounds the wait for each.

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
use peerpull_oci::ByteRange;
use peerpull_routing::{PeerId, Provider};
use tokio::time::Instant;

use crate::auth::{Proofs, PROOF};
use crate::metrics::{Failure, Metrics};
use crate::peers::Peers;
use crate::transfer::TransferError;
use crate::{relay, Config, LOOP_GUARD, PULL_THROUGH, UPSTREAM_FAILED};

/// The HTTP client for peer requests.
pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Builds the client: bounded connect time, keep-alive pooling.
pub(crate) fn client(config: &Config) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.peer_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector)
}

/// The providers of one key for one client request: each handed out once
/// (those cancelled by a lost hedge race are put back for resumes), and no
/// more hand-outs than the request's attempts budget.
pub(crate) struct Providers {
    lookup: BoxStream<'static, Provider>,
    queue: VecDeque<Provider>,
    seen: HashSet<PeerId>,
    wait: Duration,
    exhausted: bool,
    attempts_left: usize,
}

impl Providers {
    pub(crate) fn new(lookup: BoxStream<'static, Provider>, wait: Duration, attempts: usize) -> Self {
        Self { lookup, queue: VecDeque::new(), seen: HashSet::new(), wait, exhausted: false, attempts_left: attempts }
    }

    /// No providers at all.
    pub(crate) fn none() -> Self {
        Self::new(futures::stream::empty().boxed(), Duration::ZERO, 0)
    }

    /// The next provider to ask, waiting at most the lookup wait.
    pub(crate) async fn next(&mut self) -> Option<Provider> {
        self.next_within(self.wait).await
    }

    /// The next provider to ask, waiting at most `wait`; `None` when there is
    /// none or the budget is spent. A lookup slow to find more stays open for
    /// later calls.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Provider> {
        if self.attempts_left == 0 {
            return None;
        }
        let provider = match self.queue.pop_front() {
            Some(provider) => provider,
            None => self.discover(wait).await?,
        };
        self.attempts_left -= 1;
        Some(provider)
    }

    /// Whether another provider may still be asked.
    fn can_ask(&self) -> bool {
        self.attempts_left > 0 && (!self.exhausted || !self.queue.is_empty())
    }

    async fn discover(&mut self, wait: Duration) -> Option<Provider> {
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
    /// Ask the peer to fetch from the upstream for us (it is the one the cluster chose).
    pub(crate) pull_through: bool,
    /// Refuse an answer that does not name its digest (a tag's: what the bytes are checked against).
    pub(crate) needs_digest: bool,
    /// With `pull_through`, name this node as a follower: the answer may be a
    /// `307` sending it to another follower (see `relay`), passed on as is.
    pub(crate) follower: bool,
    /// With `pull_through`, the follower this node was sent to and that failed it.
    pub(crate) gone: Option<PeerId>,
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
    /// Signs this node's requests to peers, in a keyed cluster.
    pub(crate) proofs: Option<Proofs>,
}

impl Fetcher {
    /// Asks providers, hedging after the hedge delay, until one answers well.
    pub(crate) async fn open(&self, providers: &mut Providers, ask: &Ask) -> Option<Opened> {
        let mut inflight = FuturesUnordered::new();
        let mut launched: Vec<Provider> = Vec::new();
        let mut hedge_at = Instant::now();
        // No provider found within the lookup wait: stop launching, let those in flight finish.
        let mut none_found = false;
        loop {
            let can_launch = !none_found && providers.can_ask();
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
                        tracing::debug!(peer = %failed.peer, mirror = %failed.mirror, %reason, "peer did not answer well");
                    }
                },
                next = providers.next(), if can_launch && launch_now => match next {
                    Some(provider) => {
                        launched.push(provider);
                        hedge_at = Instant::now() + self.config.hedge_delay;
                        inflight.push(self.send(provider, ask.clone(), None));
                    }
                    None => none_found = true,
                },
                () = tokio::time::sleep_until(hedge_at), if can_launch && !launch_now => {}
            }
        }
    }

    /// Sends one request to one provider; `from` asks for the rest from that offset.
    pub(crate) async fn send(
        &self,
        provider: Provider,
        ask: Ask,
        from: Option<(u64, u64)>,
    ) -> Result<Opened, (Provider, Failure)> {
        let uri = format!("http://{}{}", provider.mirror, ask.path_and_query);
        let mut request = Request::builder().method(ask.method.clone()).uri(uri).header(LOOP_GUARD, "1");
        if let Some(proof) = self.proofs.as_ref().and_then(|p| p.sign(&ask.method, &ask.path_and_query)) {
            request = request.header(PROOF, proof);
        }
        if ask.pull_through {
            request = request.header(PULL_THROUGH, "1");
            if let Some(node) = self.config.node.as_ref().filter(|_| ask.follower) {
                request = request.header(relay::FOLLOWER, relay::follower_value(node));
            }
            if let Some(gone) = ask.gone {
                request = request.header(relay::GONE, gone.to_string());
            }
        }
        if let Some((start, end)) = from {
            request = request.header(header::RANGE, ByteRange { start, end_inclusive: end }.header_value());
        } else if let Some(range) = &ask.range {
            request = request.header(header::RANGE, range);
        }
        let request = request.body(Empty::new()).map_err(|_| (provider, Failure::Request))?;
        // A node pulling through for us may take as long as the upstream does to answer.
        let wait = if ask.pull_through { self.config.pull_through_timeout() } else { self.config.peer_timeout };
        let response = match tokio::time::timeout(wait, self.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err((provider, Failure::Connect)),
            Err(_) => return Err((provider, Failure::Timeout)),
        };
        let expected = if from.is_some() || ask.range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
        let status = response.status();
        if ask.follower && status == StatusCode::TEMPORARY_REDIRECT && response.headers().contains_key(relay::FOLLOW) {
            return Ok(Opened { provider, response });
        }
        let ok = status == expected || (ask.range.is_some() && status == StatusCode::OK);
        if !ok {
            let reason = match status {
                StatusCode::NOT_FOUND if response.headers().contains_key(UPSTREAM_FAILED) => Failure::UpstreamFailed,
                StatusCode::NOT_FOUND => Failure::NotFound,
                StatusCode::TOO_MANY_REQUESTS => Failure::Busy,
                _ => Failure::Status,
            };
            return Err((provider, reason));
        }
        let named = response.headers().get(crate::body::DOCKER_CONTENT_DIGEST).and_then(|v| v.to_str().ok());
        if ask.needs_digest && named.and_then(|v| v.parse::<peerpull_oci::Digest>().ok()).is_none() {
            return Err((provider, Failure::NoDigest));
        }
        // A whole body is verified against its length and digest (and resumed by offset); without a length it cannot be.
        let sized = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if ask.method == Method::GET && status == StatusCode::OK && sized.is_none() {
            return Err((provider, Failure::NoLength));
        }
        if let Some((start, end)) = from {
            let range = response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| ByteRange::parse_content_range(v).ok());
            if !matches!(range, Some((r, _)) if r.start == start && r.end_inclusive == end) {
                return Err((provider, Failure::ContentRange));
            }
        }
        Ok(Opened { provider, response })
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

/// The headers of a peer response worth passing on.
pub(crate) fn forwarded_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
        crate::body::DOCKER_CONTENT_DIGEST,
    ] {
        if let Some(value) = from.get(&name) {
            to.insert(name, value.clone());
        }
    }
}
