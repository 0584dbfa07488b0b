//! A peerpull node: the store, the router and the mirror wired together.
//!
//! [`Node::start`] connects the containerd store, starts the router, binds
//! the registry and metrics listeners and assembles the subsystems;
//! [`Node::run`] runs them until shutdown and reports a subsystem that ended
//! on its own. The parts that are a node's rather than the mirror's live
//! here too. The binary parses flags into a [`Config`] and handles signals,
//! logging and exit codes; nothing here does process-level work.
//!
//! The parts:
//! - [`advertise`]: [`Advertiser`], keeping the DHT in step with the store;
//! - [`health`]: [`Health`], what `/readyz` checks, one [`Check`] each;
//! - `http`: what the registry and metrics ports answer besides `/v2`;
//! - [`admin`]: the admin gRPC service (`Status`, `Locate`,
//!   `ListAdvertised`, `RecentPulls`) on a Unix socket and, when asked, on TCP;
//! - `debug`: the debug page (`/debug` on the metrics port), when asked;
//! - [`preheat`]: [`Preheater`], keeping listed images on the nodes responsible for them.
//!
//! `Locate` and the debug page's test pull ask the mirror in process
//! ([`Mirror::resolve`], [`Mirror::probe`]): the node never builds `/v2`
//! requests to its own mirror.
//!
//! Shutdown is two-phase: every subsystem is told to stop (the mirror stops
//! accepting and lets in-flight transfers finish within its grace period),
//! then [`Node::run`] waits for them, bounded by the grace plus a little.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use peerpull_mirror::{Identity, Limits, Membership, Metrics, Mirror, Server};
use peerpull_routing::{EventLoop, PeerId, Provider, Router};
use peerpull_store::containerd::{Config as StoreConfig, Containerd};
use peerpull_store::{Store, StoreError};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub mod admin;
pub mod advertise;
mod debug;
pub mod health;
mod http;
pub mod preheat;

pub use advertise::Advertiser;
pub use health::{Check, Health};
pub use preheat::Preheater;

/// This build: the version and the commit it was built from, e.g. `0.1.0 (commit 5250d95)` (see `build.rs`).
pub const VERSION: &str = env!("PEERPULL_VERSION");

/// Extra time, beyond the mirror's grace, for subsystems to wind down.
const STOP_SLACK: Duration = Duration::from_secs(5);

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// How to reach containerd.
    pub containerd: StoreConfig,
    /// The router; its `mirror_addr` is set to where the registry listener is bound.
    pub routing: peerpull_routing::Config,
    /// How the mirror serves.
    pub mirror: peerpull_mirror::Config,
    /// Connection limits and grace of both listeners.
    pub limits: Limits,
    /// Where the `/v2` mirror listens (also `/readyz` and `/livez`).
    pub registry_addr: SocketAddr,
    /// Where `/metrics`, `/readyz` and `/livez` are served.
    pub metrics_addr: SocketAddr,
    /// The Unix socket of the admin API (mode 0600), if any.
    pub admin_socket: Option<PathBuf>,
    /// A TCP address of the admin API too, if any (off by default: it has no authentication).
    pub admin_addr: Option<SocketAddr>,
    /// Serve the debug page, `/debug` on the metrics port.
    pub debug_web: bool,
    /// The images to preheat (none by default).
    pub preheat: preheat::Config,
}

/// Which listener an address was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The `/v2` mirror.
    Registry,
    /// Metrics and health.
    Metrics,
    /// The admin API over TCP.
    Admin,
}

/// Why a node could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The containerd settings are unusable.
    #[error(transparent)]
    Store(StoreError),
    /// The router could not start.
    #[error("starting the router on {addr}: {source}")]
    Router {
        /// Its listen address.
        addr: SocketAddr,
        /// Why.
        source: peerpull_routing::Error,
    },
    /// A listener could not be bound.
    #[error("{addr}: cannot listen: {source}")]
    Listen {
        /// Which listener.
        listener: Listener,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The mirror could not be set up (upstream TLS files, the spool directory).
    #[error(transparent)]
    Mirror(#[from] peerpull_mirror::Error),
    /// The admin socket could not be set up.
    #[error(transparent)]
    Admin(#[from] peerpull_admin::Error),
    /// A subsystem ended on its own.
    #[error("{0} stopped unexpectedly")]
    Stopped(&'static str),
}

/// A started node, ready to run.
#[derive(Debug)]
pub struct Node {
    router: Router,
    event_loop: EventLoop,
    mirror: Mirror,
    registry: Arc<Registry>,
    health: Health,
    advertiser: Advertiser,
    server: Server,
    registry_listener: TcpListener,
    metrics_listener: TcpListener,
    admin: admin::Service,
    debug: Option<debug::Debug>,
    admin_socket: Option<(PathBuf, UnixListener)>,
    admin_listener: Option<TcpListener>,
    preheater: Option<Preheater>,
}

impl Node {
    /// Starts a node over the containerd `config` names. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> Result<Self, Error> {
        let store = Containerd::new(config.containerd.clone()).map_err(Error::Store)?;
        Self::assemble(config, Arc::new(store.clone()), Some(store)).await
    }

    /// Starts a node over `store` (tests pass an in-memory one); it preheats nothing.
    pub async fn with_store(config: Config, store: Arc<dyn Store>) -> Result<Self, Error> {
        Self::assemble(config, store, None).await
    }

    /// Starts a node over `store`; `containerd`, when given, also preheats.
    async fn assemble(config: Config, store: Arc<dyn Store>, containerd: Option<Containerd>) -> Result<Self, Error> {
        let registry_listener = bind(Listener::Registry, config.registry_addr).await?;
        let metrics_listener = bind(Listener::Metrics, config.metrics_addr).await?;
        let admin_listener = match config.admin_addr {
            Some(addr) => Some(bind(Listener::Admin, addr).await?),
            None => None,
        };
        let admin_socket = match config.admin_socket {
            Some(path) => Some((path.clone(), peerpull_admin::bind(&path)?)),
            None => None,
        };
        let mut routing = config.routing;
        routing.mirror_addr = local_addr(&registry_listener, config.registry_addr);
        let addr = routing.listen;
        let psk = routing.psk.clone();
        let (router, event_loop) = Router::start(routing).map_err(|source| Error::Router { addr, source })?;
        let mirror_config = config.mirror;
        let mirror_addr = local_addr(&registry_listener, config.registry_addr);
        // Named when following another node's upstream fetch, so others may stream from this one.
        let this = Provider { peer: router.local_peer_id(), mirror: mirror_addr, zone: mirror_config.zone };
        let mut identity = Identity { node: Some(this), membership: None };
        match &psk {
            Some(psk) => {
                let key = psk.derive(peerpull_mirror::wire::PROOF_LABEL);
                identity.membership = Some(Membership { key, peer_id: router.local_peer_id().to_string() });
                tracing::info!(key = %psk.fingerprint(), "private cluster: only nodes with the same pre-shared key join");
            }
            None => tracing::warn!(
                "no pre-shared key (--psk-file): any host that reaches the router port can join the DHT, \
                 announce content and be sent requests; peer requests carry no proof"
            ),
        }

        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        router.register_metrics(&mut registry);
        let private = psk.is_some();
        let health = Health::new(store.clone(), router.clone(), psk.map(|p| p.fingerprint()));
        let mirrored = mirror_config.mirrored.clone();
        let mirror = Mirror::new(mirror_config, identity, store.clone(), Arc::new(router.clone()), metrics)?;
        let mut admin =
            admin::Service::new(router.clone(), mirror.clone(), store.clone(), health.clone(), mirror_addr, private);
        let preheater = match (config.preheat.enabled(), containerd) {
            (true, Some(containerd)) => {
                let preheater =
                    Preheater::new(config.preheat, containerd, router.clone(), mirror.clone(), &mut registry);
                admin = admin.with_preheat(preheater.report());
                Some(preheater)
            }
            (true, None) => {
                tracing::warn!(
                    "preheating needs containerd; this node's store is not containerd, so it preheats nothing"
                );
                None
            }
            (false, _) => None,
        };
        let debug = config.debug_web.then(|| debug::Debug::new(admin.clone(), mirror.clone(), router.clone()));
        let advertiser = Advertiser::new(store, router.clone(), mirrored, health.clone());
        Ok(Self {
            router,
            event_loop,
            mirror,
            registry: Arc::new(registry),
            health,
            advertiser,
            server: Server::new(config.limits),
            registry_listener,
            metrics_listener,
            admin,
            debug,
            admin_socket,
            admin_listener,
            preheater,
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.router.local_peer_id()
    }

    /// Where the `/v2` mirror listens.
    pub fn registry_addr(&self) -> SocketAddr {
        local_addr(&self.registry_listener, SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where metrics and health are served.
    pub fn metrics_addr(&self) -> SocketAddr {
        local_addr(&self.metrics_listener, SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the admin API listens over TCP, when it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The router, to look things up or wait for readiness.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Runs every subsystem until `shutdown`; `Err` if one ended on its own
    /// (the others are then stopped the same way).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Node {
            event_loop,
            mirror,
            registry,
            health,
            advertiser,
            server,
            admin,
            debug,
            admin_socket,
            admin_listener,
            preheater,
            ..
        } = self;
        let sweeper = mirror.clone();
        let stop = shutdown.child_token();
        let mut tasks: JoinSet<&'static str> = JoinSet::new();
        let token = stop.clone();
        tasks.spawn(async move {
            event_loop.run(token).await;
            "router"
        });
        let (token, ready) = (stop.clone(), health.clone());
        let listener = self.registry_listener;
        tasks.spawn(async move {
            let handler = move |request| http::registry_port(mirror.clone(), ready.clone(), request);
            server.serve(listener, handler, token).await;
            "mirror"
        });
        let (token, ready) = (stop.clone(), health);
        let listener = self.metrics_listener;
        tasks.spawn(async move {
            let handler = move |request| http::metrics_port(registry.clone(), ready.clone(), debug.clone(), request);
            server.serve(listener, handler, token).await;
            "metrics server"
        });
        let token = stop.clone();
        tasks.spawn(async move {
            advertiser.run(token).await;
            "advertiser"
        });
        let token = stop.clone();
        tasks.spawn(async move {
            sweeper.maintain(token).await;
            "spool sweeper"
        });
        if let Some(preheater) = preheater {
            let token = stop.clone();
            tasks.spawn(async move {
                preheater.run(token).await;
                "preheater"
            });
        }
        if let Some((path, listener)) = admin_socket {
            let (token, service) = (stop.clone(), admin.clone());
            tasks.spawn(async move {
                if let Err(error) = peerpull_admin::serve_unix(&path, listener, service, token.cancelled()).await {
                    tracing::error!(%error, "admin API stopped");
                }
                "admin API"
            });
        }
        if let Some(listener) = admin_listener {
            let token = stop.clone();
            tasks.spawn(async move {
                if let Err(error) = peerpull_admin::serve_tcp(listener, admin, token.cancelled()).await {
                    tracing::error!(%error, "admin API over TCP stopped");
                }
                "admin API over TCP"
            });
        }

        // `stop` is cancelled with `shutdown`, and a subsystem may end at
        // once: asked to stop, none counts as having ended on its own.
        let unexpected = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            Some(ended) = tasks.join_next() => Some(ended.unwrap_or("a task")),
        };
        stop.cancel();
        let grace = server.limits().shutdown_grace + STOP_SLACK;
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!("subsystems did not stop in time");
        }
        match unexpected {
            None => Ok(()),
            Some(name) => Err(Error::Stopped(name)),
        }
    }
}

async fn bind(listener: Listener, addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Listen { listener, addr, source })
}

fn local_addr(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}
