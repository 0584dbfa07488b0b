//! Asking peers for content: hedged requests within one attempts budget.
//!
//! A fetch starts from the providers a lookup streams. [`PeerClient::open`]
//! asks the first provider and, when it has not answered within the hedge
//! delay, the next one too; the first good answer wins and the others are
//! cancelled (and kept as candidates for a resume). Every request to a peer
//! for one client request, hedges and resumes alike, draws on the same
//! budget ([`Config::max_peer_attempts`]), kept by [`Providers`], which
//! hands out holders in this node's zone first ([`Config::zone`]), the one
//! with the lowest round-trip time the liveness probes measured first among
//! them: another zone's holder is asked only when none of this zone's is
//! found within [`ZONE_WAIT`] of the first, or is left.
//!
//! Streaming a body is [`crate::transfer`]'s. What a request to a peer
//! says, and how its answer reads, is [`crate::wire`]'s.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered, StreamExt};
use futures::FutureExt as _;
use http::{header, HeaderMap, Method, Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use peerpull_oci::{ByteRange, Key};
use peerpull_routing::{PeerId, Provider, Zone};
use tokio::time::Instant;

use crate::auth::Proofs;
use crate::metrics::{Failure, Metrics};
use crate::peers::Peers;
use crate::wire::{self, Answer, Part, PeerRequest};
use crate::Config;

/// How long the first hand-out waits for a holder in this node's zone when
/// the lookup has found only others so far.
pub(crate) const ZONE_WAIT: Duration = Duration::from_millis(100);

/// The HTTP client for peer requests.
pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Builds the client: bounded connect time, keep-alive pooling.
fn client(config: &Config) -> HttpClient {
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
    /// This node's zone: its holders are handed out first.
    zone: Zone,
    /// Nothing handed out yet.
    first: bool,
    /// Round-trip times, to hand out the nearest first.
    peers: Option<Arc<dyn Peers>>,
}

impl Providers {
    pub(crate) fn new(lookup: BoxStream<'static, Provider>, wait: Duration, attempts: usize, zone: Zone) -> Self {
        Self {
            lookup,
            queue: VecDeque::new(),
            seen: HashSet::new(),
            wait,
            exhausted: false,
            attempts_left: attempts,
            zone,
            first: true,
            peers: None,
        }
    }

    /// The same, handing out holders with lower round-trip times first within a zone.
    pub(crate) fn nearest_first(mut self, peers: Arc<dyn Peers>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// No providers at all.
    pub(crate) fn none() -> Self {
        Self::new(futures::stream::empty().boxed(), Duration::ZERO, 0, Zone::NONE)
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
        self.gather();
        if self.queue.is_empty() {
            let found = self.discover(wait).await?;
            self.queue.push_back(found);
            self.gather();
        }
        if self.first && !self.zone.is_none() && !self.has_own_zone() {
            self.wait_for_own_zone(ZONE_WAIT.min(wait)).await;
        }
        let rank = |p: &Provider| {
            let rtt = self.peers.as_ref().and_then(|peers| peers.rtt(&p.peer)).unwrap_or(Duration::MAX);
            (!p.zone.same_as(&self.zone), rtt)
        };
        let at = (0..self.queue.len()).min_by_key(|&i| rank(&self.queue[i])).unwrap_or(0);
        let provider = self.queue.remove(at)?;
        self.first = false;
        self.attempts_left -= 1;
        Some(provider)
    }

    /// Moves the providers the lookup has found already into the queue.
    fn gather(&mut self) {
        while !self.exhausted {
            match self.lookup.next().now_or_never() {
                Some(Some(provider)) => {
                    if self.seen.insert(provider.peer) {
                        self.queue.push_back(provider);
                    }
                }
                Some(None) => self.exhausted = true,
                None => return,
            }
        }
    }

    fn has_own_zone(&self) -> bool {
        self.queue.iter().any(|p| p.zone.same_as(&self.zone))
    }

    /// Waits up to `wait` for the lookup to find a holder in this node's zone.
    async fn wait_for_own_zone(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !self.exhausted {
            match tokio::time::timeout_at(deadline, self.lookup.next()).await {
                Ok(Some(provider)) => {
                    if self.seen.insert(provider.peer) {
                        let own = provider.zone.same_as(&self.zone);
                        self.queue.push_back(provider);
                        if own {
                            return;
                        }
                    }
                }
                Ok(None) => self.exhausted = true,
                Err(_) => return,
            }
        }
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

/// A peer's answer that is good enough to serve.
pub(crate) struct Opened {
    pub(crate) provider: Provider,
    pub(crate) response: Response<Incoming>,
}

/// Opens and continues peer transfers: what the rest of the mirror knows of
/// peers (who holds a key, who fetches it, how a peer failed).
#[derive(Clone)]
pub(crate) struct PeerClient {
    client: HttpClient,
    config: Arc<Config>,
    metrics: Metrics,
    peers: Arc<dyn Peers>,
    /// Signs this node's requests to peers, in a keyed cluster.
    proofs: Option<Proofs>,
    /// This node as its peers reach it, named when it follows a fetch.
    this: Option<Provider>,
}

impl PeerClient {
    pub(crate) fn new(
        config: Arc<Config>,
        metrics: Metrics,
        peers: Arc<dyn Peers>,
        proofs: Option<Proofs>,
        this: Option<Provider>,
    ) -> Self {
        Self { client: client(&config), config, metrics, peers, proofs, this }
    }

    /// The holders of `key`, as the lookup finds them, for one client
    /// request: within its attempts budget, the first awaited for the
    /// provider wait.
    pub(crate) async fn holders(&self, key: &Key) -> Providers {
        let lookup = self.peers.lookup(key, self.config.lookup_limit).await;
        Providers::new(lookup, self.config.provider_wait, self.config.max_peer_attempts, self.config.zone)
            .nearest_first(self.peers.clone())
    }

    /// The fetcher of `key` (the node closest to it), passing over `except`.
    pub(crate) async fn fetcher_of(&self, key: &Key, except: &[PeerId]) -> Option<Provider> {
        self.peers.closest(key, except).await
    }

    /// A peer sent bytes that did not match their digest.
    pub(crate) async fn penalize(&self, peer: PeerId) {
        self.peers.penalize(peer).await;
    }

    /// Counts `bytes` received from `provider`.
    pub(crate) fn received(&self, provider: &Provider, bytes: u64) {
        self.metrics.peer_received(&provider.zone, bytes);
    }

    /// Counts a request to a peer, or a transfer from one, that failed.
    pub(crate) fn failed(&self, reason: Failure) {
        self.metrics.peer_failure(reason);
    }

    /// How long a peer's body may send nothing before the transfer moves on.
    pub(crate) fn stall(&self) -> Duration {
        self.config.stall_timeout
    }

    /// How long a fetcher's body may send nothing: it may pause while its own
    /// fetch from the upstream resumes.
    pub(crate) fn fetcher_stall(&self) -> Duration {
        self.config.stall_timeout + self.config.upstream_fallback_timeout()
    }

    /// How long to wait for another holder to resume from.
    pub(crate) fn resume_wait(&self) -> Duration {
        self.config.peer_timeout
    }

    /// Asks providers, hedging after the hedge delay, until one answers well.
    pub(crate) async fn open(&self, providers: &mut Providers, request: &PeerRequest) -> Option<Opened> {
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
                        self.failed(reason);
                        tracing::debug!(peer = %failed.peer, mirror = %failed.mirror, %reason, "peer did not answer well");
                    }
                },
                next = providers.next(), if can_launch && launch_now => match next {
                    Some(provider) => {
                        launched.push(provider);
                        hedge_at = Instant::now() + self.config.hedge_delay;
                        inflight.push(self.send(provider, request));
                    }
                    None => none_found = true,
                },
                () = tokio::time::sleep_until(hedge_at), if can_launch && !launch_now => {}
            }
        }
    }

    /// Sends `request` to `provider`; the answer when it is good to serve (or
    /// a follower sent elsewhere, passed on as is).
    pub(crate) async fn send(&self, provider: Provider, request: &PeerRequest) -> Result<Opened, (Provider, Failure)> {
        let uri = format!("http://{}{}", provider.mirror, request.path_and_query);
        let proof = self.proofs.as_ref().and_then(|p| p.sign(&request.method, &request.path_and_query));
        let access = request.access.then(|| match &self.proofs {
            Some(proofs) => proofs.sign_access(&request.method, &request.path_and_query),
            // Without a key, any peer is trusted to say so.
            None => Some(http::HeaderValue::from_static("1")),
        });
        let mut built = Request::builder().method(request.method.clone()).uri(uri);
        if let Some(headers) = built.headers_mut() {
            *headers = request.headers(self.this.as_ref(), proof, access.flatten());
        }
        let built = built.body(Empty::new()).map_err(|_| (provider, Failure::Request))?;
        // A fetcher may take as long as the upstream does to answer.
        let wait =
            if request.to_fetcher() { self.config.upstream_fallback_timeout() } else { self.config.peer_timeout };
        let response = match tokio::time::timeout(wait, self.client.request(built)).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err((provider, Failure::Connect)),
            Err(_) => return Err((provider, Failure::Timeout)),
        };
        let headers = response.headers();
        match wire::classify(request, response.status(), headers) {
            Answer::Served => {}
            Answer::FollowElsewhere => return Ok(Opened { provider, response }),
            Answer::UpstreamFailed => return Err((provider, Failure::UpstreamFailed)),
            Answer::NotHere => return Err((provider, Failure::NotFound)),
            Answer::Busy => return Err((provider, Failure::Busy)),
            Answer::Other => return Err((provider, Failure::Status)),
        }
        let named = headers.get(crate::body::DOCKER_CONTENT_DIGEST).and_then(|v| v.to_str().ok());
        if request.needs_digest && named.and_then(|v| v.parse::<peerpull_oci::Digest>().ok()).is_none() {
            return Err((provider, Failure::NoDigest));
        }
        // A whole body is verified against its length and digest (and resumed by offset); without a length it cannot be.
        let sized = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if request.method == Method::GET && request.part == Part::Whole && sized.is_none() {
            return Err((provider, Failure::NoLength));
        }
        if let Part::Bytes(asked) = request.part {
            let range = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| ByteRange::parse_content_range(v).ok());
            if !matches!(range, Some((r, _)) if r == asked) {
                return Err((provider, Failure::ContentRange));
            }
        }
        Ok(Opened { provider, response })
    }
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn holder(n: u8, zone: &str) -> Provider {
        let mirror = SocketAddr::from(([10, 0, 0, n], 5000));
        Provider { peer: PeerId::random(), mirror, zone: zone.parse().unwrap_or_default() }
    }

    /// A lookup that finds `first` at once and `later` after `after`.
    fn lookup(first: Vec<Provider>, later: Vec<Provider>, after: Duration) -> BoxStream<'static, Provider> {
        let later =
            futures::stream::once(tokio::time::sleep(after)).flat_map(move |()| futures::stream::iter(later.clone()));
        futures::stream::iter(first).chain(later).boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn holders_in_this_zone_come_first_and_others_when_they_are_left() {
        let (a1, b1, b2) = (holder(1, "a"), holder(2, "b"), holder(3, "b"));
        let found = lookup(vec![b1, b2, a1], Vec::new(), Duration::ZERO);
        let mut providers = Providers::new(found, Duration::from_secs(1), 6, "a".parse().unwrap_or_default());
        assert_eq!(providers.next().await, Some(a1), "found last, asked first");
        assert_eq!(providers.next().await, Some(b1));
        assert_eq!(providers.next().await, Some(b2));
        assert_eq!(providers.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn within_a_zone_the_nearest_holder_comes_first() {
        let (far, near, unknown, elsewhere) = (holder(1, "a"), holder(2, "a"), holder(3, "a"), holder(4, "b"));
        let mut peers = crate::peers::Static::default();
        peers.rtts.insert(far.peer, Duration::from_millis(5));
        peers.rtts.insert(near.peer, Duration::from_millis(1));
        peers.rtts.insert(elsewhere.peer, Duration::from_micros(100));
        let found = lookup(vec![elsewhere, unknown, far, near], Vec::new(), Duration::ZERO);
        let zone: Zone = "a".parse().unwrap_or_default();
        let mut providers = Providers::new(found, Duration::from_secs(1), 6, zone).nearest_first(Arc::new(peers));
        for expected in [near, far, unknown, elsewhere] {
            assert_eq!(providers.next().await, Some(expected));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_ask_waits_briefly_for_a_holder_in_this_zone() {
        let (a1, b1) = (holder(1, "a"), holder(2, "b"));
        let zone: Zone = "a".parse().unwrap_or_default();
        let soon = lookup(vec![b1], vec![a1], ZONE_WAIT / 2);
        let mut providers = Providers::new(soon, Duration::from_secs(1), 6, zone);
        assert_eq!(providers.next().await, Some(a1), "found within the zone wait");
        let late = lookup(vec![b1], vec![a1], ZONE_WAIT * 3);
        let mut providers = Providers::new(late, Duration::from_secs(1), 6, zone);
        let started = Instant::now();
        assert_eq!(providers.next().await, Some(b1), "not found in time: the other zone's");
        assert_eq!(started.elapsed(), ZONE_WAIT);
        let zoneless = lookup(vec![b1], vec![a1], ZONE_WAIT / 2);
        let mut providers = Providers::new(zoneless, Duration::from_secs(1), 6, Zone::NONE);
        let started = Instant::now();
        assert_eq!(providers.next().await, Some(b1), "without a zone, first found, at once");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
