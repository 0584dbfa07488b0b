//! `peerpull run`: the node daemon.
//!
//! Wires the containerd store, the router, the mirror's two listeners and
//! the advertiser, then waits for SIGTERM or SIGINT. Shutdown is two-phase:
//! every subsystem is told to stop (the mirror stops accepting and lets
//! in-flight transfers finish within its grace period), then the daemon
//! waits for them and exits 0. If a subsystem ends on its own, the others
//! are stopped the same way and the daemon exits 1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use peerpull_hosts::{RegistriesYaml, Target};
use peerpull_mirror::{Advertiser, Health, Metrics, Role, Server};
use peerpull_oci::Registry;
use peerpull_routing::Router;
use peerpull_store::containerd::{Config as StoreConfig, Containerd};
use peerpull_store::Store;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::exit::Failure;
use crate::logging;

/// Extra time, beyond the mirror's grace, for subsystems to wind down.
const STOP_SLACK: Duration = Duration::from_secs(5);

/// How often the routing table's size is published.
const PEER_COUNT_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the daemon until a signal stops it.
pub(crate) fn run(args: RunArgs) -> Result<(), Failure> {
    logging::init(&args.log_level, args.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow!("starting the runtime: {e}")))?;
    runtime.block_on(daemon(args))
}

async fn daemon(args: RunArgs) -> Result<(), Failure> {
    let mirrored = mirrored_registries(&args)?;
    let store = Containerd::new(StoreConfig {
        socket: args.containerd.containerd_socket.clone(),
        namespace: args.containerd.containerd_namespace.clone(),
        content_path: args.containerd.containerd_content_path.clone(),
    })
    .map_err(Failure::usage)?;
    let store: Arc<dyn Store> = Arc::new(store);

    let routing = peerpull_routing::Config {
        listen: args.listen.router_addr,
        mirror_addr: args.listen.registry_addr,
        bootstrap: args.bootstrap.clone(),
        data_dir: args.data_dir.clone(),
        ..Default::default()
    };
    let (router, event_loop) = Router::start(routing)
        .map_err(|e| Failure::Runtime(anyhow!("starting the router on {}: {e}", args.listen.router_addr)))?;
    let registry_listener = bind(args.listen.registry_addr, "--registry-addr").await?;
    let metrics_listener = bind(args.listen.metrics_addr, "--metrics-addr").await?;

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    let health = Health::new(Some(router.ready()));
    let config = peerpull_mirror::Config {
        mirrored: mirrored.clone(),
        resolve_tags: args.tags.resolve_tags,
        ..Default::default()
    };
    let grace = config.shutdown_grace;
    let server =
        Server::new(config, store.clone(), Arc::new(router.clone()), metrics.clone(), registry, health.clone());
    let advertiser = Advertiser::new(store, router.clone(), mirrored.clone(), metrics.clone(), health);

    tracing::info!(
        peer = %router.local_peer_id(),
        registry = %args.listen.registry_addr,
        router = %args.listen.router_addr,
        metrics = %args.listen.metrics_addr,
        mirrored = ?mirrored.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "peerpull started"
    );

    let shutdown = CancellationToken::new();
    let mut tasks: JoinSet<&'static str> = JoinSet::new();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        event_loop.run(stop).await;
        "router"
    });
    let (stop, mirror) = (shutdown.clone(), server.clone());
    tasks.spawn(async move {
        mirror.serve(registry_listener, Role::Registry, stop).await;
        "mirror"
    });
    let stop = shutdown.clone();
    tasks.spawn(async move {
        server.serve(metrics_listener, Role::Metrics, stop).await;
        "metrics server"
    });
    let stop = shutdown.clone();
    tasks.spawn(async move {
        advertiser.run(stop).await;
        "advertiser"
    });
    let (stop, peers) = (shutdown.clone(), router.clone());
    tasks.spawn(async move {
        count_peers(peers, metrics, stop).await;
        "peer counter"
    });

    let unexpected = tokio::select! {
        name = stop_signal() => {
            tracing::info!(signal = name, "shutting down");
            None
        }
        Some(ended) = tasks.join_next() => Some(ended.unwrap_or("a task")),
    };
    shutdown.cancel();
    let drained = tokio::time::timeout(grace + STOP_SLACK, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("subsystems did not stop in time");
    }
    match unexpected {
        None => {
            tracing::info!("stopped");
            Ok(())
        }
        Some(name) => Err(Failure::Runtime(anyhow!("{name} stopped unexpectedly"))),
    }
}

/// Keeps `peerpull_routing_peers` current until `shutdown`.
async fn count_peers(router: Router, metrics: Metrics, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PEER_COUNT_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Ok(count) = router.peer_count().await {
            metrics.routing_peers.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}

/// The registries to mirror, from `--mirrored-registry` or `--registries-yaml`.
fn mirrored_registries(args: &RunArgs) -> Result<Vec<Registry>, Failure> {
    let Some(path) = &args.yaml.registries_yaml else { return Ok(args.mirrored_registries.clone()) };
    let yaml = RegistriesYaml::from_path(path).map_err(Failure::usage)?;
    let targets = yaml.targets().map_err(|e| Failure::usage(anyhow!("{}: {e}", path.display())))?;
    if targets.iter().any(|t| matches!(t, Target::All)) {
        return Ok(Vec::new());
    }
    Ok(targets
        .into_iter()
        .filter_map(|t| match t {
            Target::Registry(registry) => Some(registry),
            Target::All => None,
        })
        .collect())
}

async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|e| Failure::Runtime(anyhow!("{flag} {addr}: cannot listen: {e}")))
}

/// Waits for SIGTERM or SIGINT and names it.
async fn stop_signal() -> &'static str {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
