//! The accept loop: bounded connections, header timeouts, graceful shutdown.
//!
//! [`Server::serve`] accepts HTTP/1.1 connections on a listener until its
//! shutdown token fires and hands each request, with the client's address
//! as a [`RemoteAddr`] extension, to a handler: the
//! [`Mirror`](crate::Mirror) for the `/v2` port, or whatever the daemon
//! routes to it (health and metrics endpoints). It holds a semaphore permit
//! per connection, so at most [`Limits::max_connections`] are served at once.
//! On shutdown it stops accepting, lets in-flight requests finish within
//! [`Limits::shutdown_grace`] and then returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::RemoteAddr;
use crate::body::Body;

/// How many connections a server takes and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_connections: 1024, header_timeout: Duration::from_secs(30), shutdown_grace: Duration::from_secs(20) }
    }
}

/// An HTTP/1.1 server with bounded connections; one per listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct Server {
    limits: Limits,
}

impl Server {
    /// A server within `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }

    /// The limits it serves within.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Serves `listener` with `handler` until `shutdown` fires, then drains.
    pub async fn serve<H, F>(self, listener: TcpListener, handler: H, shutdown: CancellationToken)
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let limit = Arc::new(Semaphore::new(self.limits.max_connections));
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
            let handler = handler.clone();
            let service = service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(RemoteAddr(peer));
                let answer = handler(request);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.limits.header_timeout)
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
        let grace = self.limits.shutdown_grace;
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
        }
    }
}
