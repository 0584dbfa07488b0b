//! The accept loop: bounded connections, shedding past the bounds,
//! timeouts for slow clients, graceful shutdown.
//!
//! [`Server::serve`] accepts HTTP/1.1 connections on a listener until its
//! shutdown token fires and hands each request, with the client's address
//! as a [`RemoteAddr`] extension, to a handler: the
//! [`Mirror`](crate::Mirror) for the `/v2` port, or whatever the daemon
//! routes to it (health and metrics endpoints).
//!
//! Every connection is accepted at once. Past [`Limits::max_connections`]
//! in all, or [`Limits::max_connections_per_ip`] from one address, it is
//! shed: answered `503` with `Retry-After` and closed, so a client (and
//! containerd, which then tries its next host) learns at once rather than
//! waiting in the listen backlog while a flood holds every slot. A client
//! must send its request headers within [`Limits::header_timeout`], which
//! also bounds how long an idle keep-alive connection is kept, and must
//! take the response's bytes: one that leaves them unacknowledged for
//! [`Limits::send_timeout`] is dropped by the kernel (`TCP_USER_TIMEOUT`,
//! zero-window included). On shutdown the server stops accepting, lets
//! in-flight requests finish within [`Limits::shutdown_grace`] and returns.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use peerpull_oci::{ErrorBody, ErrorCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::auth::RemoteAddr;
use crate::body::Body;

/// How many shed connections may be answered at once; past that they are just closed.
const MAX_SHEDDING: usize = 64;
/// How long answering a shed connection may take.
const SHED_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest request bytes read (and dropped) from a shed connection before closing it.
const SHED_DRAIN: usize = 16 * 1024;
/// Response bytes hyper buffers per connection before it stops polling the body
/// (its floor is 8 KiB); a client that reads nothing holds at most this much here.
const MAX_BUFFER: usize = 64 * 1024;

/// How many connections a server takes and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are shed.
    pub max_connections: usize,
    /// Connections served at once from one address; more are shed.
    pub max_connections_per_ip: usize,
    /// How long a client may take to send its request headers, and how long
    /// an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// How long response bytes may stay unacknowledged (a client that stopped
    /// reading) before the connection is dropped.
    pub send_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// An HTTP/1.1 server with bounded connections; one per listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct Server {
    limits: Limits,
}

/// Connections being served, in all and per address.
#[derive(Debug)]
struct Admission {
    all: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
struct Place {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    admission: Arc<Admission>,
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Place> {
        let permit = self.all.clone().try_acquire_owned().ok()?;
        let mut per_ip = self.per_ip.lock();
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return None;
        }
        *count += 1;
        Some(Place { _permit: permit, ip, admission: self.clone() })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut per_ip = self.admission.per_ip.lock();
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
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
        let admission = Arc::new(Admission {
            all: Arc::new(Semaphore::new(self.limits.max_connections)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: self.limits.max_connections_per_ip.max(1),
        });
        let shedding = Arc::new(Semaphore::new(MAX_SHEDDING));
        let graceful = GracefulShutdown::new();
        loop {
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
            let Some(place) = admission.admit(peer.ip()) else {
                tracing::debug!(%peer, "connection limit reached; shedding");
                if let Ok(permit) = shedding.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        shed(stream).await;
                        drop(permit);
                    });
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(self.limits.send_timeout));
            let handler = handler.clone();
            let service = service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(RemoteAddr(peer));
                let answer = handler(request);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.limits.header_timeout)
                .max_buf_size(MAX_BUFFER)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                drop(place);
            });
        }
        drop(listener);
        let grace = self.limits.shutdown_grace;
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
        }
    }
}

/// Answers a connection past the limits with `503` and `Retry-After`, then
/// closes it, bounded by [`SHED_TIMEOUT`].
async fn shed(mut stream: TcpStream) {
    let body = ErrorBody::new(ErrorCode::TooManyRequests, "this mirror is at its connection limit", None).to_json();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the connection under its answer.
        let mut sink = vec![0u8; SHED_DRAIN];
        let mut drained = 0;
        while drained < SHED_DRAIN {
            match stream.read(&mut sink[drained..]).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(SHED_TIMEOUT, answer).await;
}
