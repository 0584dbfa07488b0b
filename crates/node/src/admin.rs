//! The admin API: what this node is, holds and does, over gRPC.
//!
//! [`Service`] implements `peerpull.admin.v1.Admin` from the node's parts:
//! `Status` from the router, the mirror's live figures, the upstream
//! client's view of each registry and the readiness checks; `Locate` in
//! `locate`; `ListAdvertised` from the router's advertised set;
//! `RecentPulls` from the mirror's ring of recent requests. It keeps no
//! state of its own. The node serves it on a Unix socket (and, when asked,
//! on TCP); `peerpull status` and `peerpull locate` are its clients.

use std::net::SocketAddr;
use std::sync::Arc;

use peerpull_admin::v1;
use peerpull_mirror::Kind;
use peerpull_mirror::{Client, Mirror, Pull};
use peerpull_routing::Router;
use peerpull_store::Store;
use tonic::{Request, Response, Status};

use crate::{preheat, Health};

pub mod locate;

/// The most keys one `ListAdvertised` page holds.
pub const MAX_PAGE: usize = 10_000;
/// The page size when the caller does not say.
const DEFAULT_PAGE: usize = 1_000;

/// The admin service of one node; cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    router: Router,
    mirror: Mirror,
    health: Health,
    locator: locate::Locator,
    mirror_addr: SocketAddr,
    private: bool,
    preheat: Option<preheat::Report>,
}

impl Service {
    pub(crate) fn new(
        router: Router,
        mirror: Mirror,
        store: Arc<dyn Store>,
        health: Health,
        mirror_addr: SocketAddr,
        private: bool,
    ) -> Self {
        let locator = locate::Locator { mirror: mirror.clone(), store, router: router.clone() };
        Self { router, mirror, health, locator, mirror_addr, private, preheat: None }
    }

    /// The same service, reporting the preheated images too.
    pub(crate) fn with_preheat(mut self, report: preheat::Report) -> Self {
        self.preheat = Some(report);
        self
    }

    /// The preheated images, as the preheater last saw them.
    pub(crate) fn preheat(&self) -> Vec<preheat::Image> {
        self.preheat.as_ref().map(preheat::Report::images).unwrap_or_default()
    }
}

fn preheat_message(image: preheat::Image) -> v1::Preheat {
    let strings = |peers: Vec<peerpull_routing::PeerId>| peers.iter().map(ToString::to_string).collect();
    v1::Preheat {
        reference: image.reference.to_string(),
        digest: image.digest.map(|d| d.to_string()).unwrap_or_default(),
        responsible: strings(image.responsible),
        holders: strings(image.holders),
        mine: image.mine,
        state: image.state.to_owned(),
        error: image.error.unwrap_or_default(),
        checked_at: image.checked.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs()),
    }
}

fn private_images_message(mirror: &peerpull_mirror::Mirror) -> v1::PrivateImages {
    let report = mirror.private_images();
    v1::PrivateImages {
        mode: report.mode.to_owned(),
        repositories: report.repositories.into_iter().map(|(registry, repo)| format!("{registry}/{repo}")).collect(),
        verifications: report
            .verifications
            .into_iter()
            .map(|v| v1::Verification {
                fingerprint: v.fingerprint,
                registry: v.registry,
                repository: v.repository,
                seconds_ago: v.ago.as_secs(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl peerpull_admin::Admin for Service {
    async fn status(&self, _: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        let checks = self.health.checks().await;
        let peers = self.router.peers().await.map_err(unavailable)?;
        let router_addrs = self.router.listen_addrs().await.map_err(unavailable)?;
        let advertised = self.router.advertised();
        let stats = self.mirror.stats();
        let transfers = stats
            .in_flight
            .iter()
            .map(|(kind, n)| v1::Transfers { source: Kind::as_str(*kind).to_owned(), in_flight: *n })
            .collect();
        let upstreams = self
            .mirror
            .upstream_health()
            .into_iter()
            .map(|h| v1::Upstream {
                registry: h.registry,
                last_outcome: h.last.as_str().to_owned(),
                paused_for_seconds: h.paused_for.map_or(0, |d| d.as_secs_f64().ceil() as u64),
            })
            .collect();
        Ok(Response::new(v1::StatusResponse {
            version: crate::VERSION.to_owned(),
            peer_id: self.router.local_peer_id().to_string(),
            mirror_addr: self.mirror_addr.to_string(),
            router_addr: router_addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            ready: checks.iter().all(|c| c.ok),
            checks: checks
                .into_iter()
                .map(|c| v1::Check { name: c.name.to_owned(), ok: c.ok, detail: c.detail })
                .collect(),
            peers: peers
                .into_iter()
                .map(|p| v1::Peer {
                    peer_id: p.peer.to_string(),
                    mirror_addr: p.mirror.map(|m| m.to_string()).unwrap_or_default(),
                    zone: p.zone.to_string(),
                })
                .collect(),
            advertised_digests: advertised.digests,
            advertised_tags: advertised.tags,
            transfers,
            transfers_shared: stats.transfers_shared,
            spool_bytes: stats.spool_bytes,
            upstreams,
            private_cluster: self.private,
            preheat: self.preheat().into_iter().map(preheat_message).collect(),
            private_images: Some(private_images_message(&self.mirror)),
        }))
    }

    async fn locate(&self, request: Request<v1::LocateRequest>) -> Result<Response<v1::LocateResponse>, Status> {
        let request = request.into_inner();
        self.locator.locate(&request.reference, request.limit).await.map(Response::new)
    }

    async fn recent_pulls(
        &self,
        request: Request<v1::RecentPullsRequest>,
    ) -> Result<Response<v1::RecentPullsResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let pulls = self.mirror.recent(limit).iter().map(pull_message).collect();
        Ok(Response::new(v1::RecentPullsResponse { pulls }))
    }

    async fn list_advertised(
        &self,
        request: Request<v1::ListAdvertisedRequest>,
    ) -> Result<Response<v1::ListAdvertisedResponse>, Status> {
        let request = request.into_inner();
        let size = match usize::try_from(request.page_size).unwrap_or(MAX_PAGE) {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let keys = self.router.advertised_page(&request.after, size).await.map_err(unavailable)?;
        let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
        let next = if keys.len() == size { keys.last().cloned().unwrap_or_default() } else { String::new() };
        Ok(Response::new(v1::ListAdvertisedResponse { keys, next }))
    }
}

/// A byte count for people: `512 B`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// A recorded request as the API spells it.
pub(crate) fn pull_message(pull: &Pull) -> v1::Pull {
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let since_epoch = pull.at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    v1::Pull {
        unix_millis: i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX),
        client: match pull.client {
            Client::Containerd => "containerd",
            Client::Peer => "peer",
            Client::Node => "node",
        }
        .to_owned(),
        registry: pull.registry.clone(),
        repository: pull.repository.clone(),
        reference: pull.reference.clone(),
        kind: if pull.manifest { "manifest" } else { "blob" }.to_owned(),
        head: pull.head,
        status: u32::from(pull.status),
        size: pull.size.unwrap_or(0),
        source: pull.source.map(|k| k.as_str().to_owned()).unwrap_or_default(),
        via_peer_id: pull.via.map(|p| p.peer.to_string()).unwrap_or_default(),
        via_mirror_addr: pull.via.map(|p| p.mirror.to_string()).unwrap_or_default(),
        bytes: pull.bytes,
        duration_millis: millis(pull.duration),
        complete: pull.complete(),
    }
}

fn unavailable(error: peerpull_routing::Error) -> Status {
    Status::unavailable(format!("router: {error}"))
}
