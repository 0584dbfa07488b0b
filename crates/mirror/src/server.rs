//! The accept loop: bounded connections, header timeouts, graceful shutdown.
//!
//! [`Server::serve`] accepts HTTP/1.1 connections on a listener until its
//! shutdown token fires, holding a semaphore permit per connection so at
//! most `Config::max_connections` are served at once. On shutdown it stops
//! accepting, lets in-flight requests finish within `Config::shutdown_grace`
//! and then returns.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use peerpull_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::fetch::{self, Fetcher};
use crate::handler::{self, State};
use crate::{Config, Health, Metrics, Peers, Role};

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The mirror's HTTP server; clone it to serve several listeners.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("config", &self.state.config).finish_non_exhaustive()
    }
}

impl Server {
    /// A server over `store` and `peers`; metrics are registered in `registry`
    /// by the caller and served from it.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        peers: Arc<dyn Peers>,
        metrics: Metrics,
        registry: prometheus_client::registry::Registry,
        health: Health,
    ) -> Self {
        let config = Arc::new(config);
        let fetcher =
            Fetcher { client: fetch::client(&config), config: config.clone(), metrics: metrics.clone(), peers };
        let state = State { config, store, fetcher, metrics, registry: Arc::new(registry), health };
        Self { state: Arc::new(state) }
    }

    /// Serves `listener` in `role` until `shutdown` fires, then drains.
    pub async fn serve(&self, listener: TcpListener, role: Role, shutdown: CancellationToken) {
        let limit = Arc::new(Semaphore::new(self.state.config.max_connections));
        let graceful = GracefulShutdown::new();
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = limit.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handler::handle(state, role, request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        let grace = self.state.config.shutdown_grace;
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
        }
    }
}
