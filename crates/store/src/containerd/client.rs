//! The gRPC connection to containerd: one lazily (re)made channel, the
//! namespace header, deadlines, and the mapping of gRPC failures to
//! [`StoreError`].
//!
//! It does not know what the calls mean; [`catalog`](super::catalog),
//! [`read`](super::read) and [`watch`](super::watch) make them.
//!
//! Implementation notes: tonic's channel reconnects on its own after the
//! connection breaks, but a channel whose first connect failed never comes
//! back, so the channel is dropped after any failure that says containerd is
//! unreachable and made again on the next call.

use parking_lot::{Mutex, MutexGuard};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{Info, InfoRequest, ListNamespacesRequest};
use hyper_util::rt::TokioIo;
use peerpull_oci::Digest;
use tokio::net::UnixStream;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::error::cause;
use crate::StoreError;

/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 flow-control windows: the defaults (64 KiB) cap a content read at
/// about a fifth of what these allow, and they bound what one read buffers.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// How long one unary call may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The header containerd reads the namespace from.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// A channel over the unix socket at `path`, like `containerd_client::connect`
/// but with larger flow-control windows.
async fn connect(path: PathBuf) -> Result<Channel, tonic::transport::Error> {
    // The URI is not used: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://[::]")
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// A connection to one containerd namespace.
#[derive(Debug)]
pub(crate) struct Client {
    socket: PathBuf,
    namespace: String,
    header: AsciiMetadataValue,
    channel: Mutex<Option<Channel>>,
}

impl Client {
    /// A client for `namespace` on `socket`; nothing is connected yet.
    pub(crate) fn new(socket: PathBuf, namespace: String) -> Result<Self, StoreError> {
        let header = MetadataValue::try_from(namespace.as_str())
            .ok()
            .filter(|_| !namespace.is_empty())
            .ok_or_else(|| StoreError::NamespaceMissing(namespace.clone()))?;
        Ok(Self { socket, namespace, header, channel: Mutex::new(None) })
    }

    /// The socket path.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The namespace name.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    fn slot(&self) -> MutexGuard<'_, Option<Channel>> {
        self.channel.lock()
    }

    /// The channel, connecting first when there is none.
    pub(crate) async fn channel(&self) -> Result<Channel, StoreError> {
        if let Some(channel) = self.slot().clone() {
            return Ok(channel);
        }
        let channel = match tokio::time::timeout(CONNECT_TIMEOUT, connect(self.socket.clone())).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(self.unreachable(e)),
            Err(_) => return Err(self.unreachable(format!("connect: no answer within {CONNECT_TIMEOUT:?}"))),
        };
        *self.slot() = Some(channel.clone());
        Ok(channel)
    }

    /// `message` as a request in this client's namespace.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(NAMESPACE_HEADER, self.header.clone());
        request
    }

    /// An [`StoreError::Unreachable`], forgetting the channel.
    pub(crate) fn unreachable(&self, why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        *self.slot() = None;
        StoreError::Unreachable { socket: self.socket.display().to_string(), cause: cause(why) }
    }

    /// Maps a failed call; `subject` names what `NotFound` is about.
    pub(crate) fn error(&self, call: &'static str, subject: &str, status: Status) -> StoreError {
        match status.code() {
            Code::NotFound => StoreError::NotFound(subject.to_owned()),
            Code::Unavailable | Code::Cancelled => self.unreachable(Failed { call, status }),
            Code::Unknown if status.message().contains("transport") => self.unreachable(Failed { call, status }),
            _ => StoreError::Backend { call, cause: cause(status) },
        }
    }

    /// Runs one unary call with a deadline and maps its failure.
    pub(crate) async fn call<R, F>(&self, call: &'static str, subject: &str, future: F) -> Result<R, StoreError>
    where
        F: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        match tokio::time::timeout(CALL_TIMEOUT, future).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.error(call, subject, status)),
            Err(_) => Err(self.unreachable(format!("{call}: no answer within {CALL_TIMEOUT:?}"))),
        }
    }

    /// containerd's content Info for `digest` in this namespace.
    pub(crate) async fn info(&self, digest: &Digest) -> Result<Info, StoreError> {
        let mut client = ContentClient::new(self.channel().await?);
        let request = self.request(InfoRequest { digest: digest.to_string() });
        let reply = self.call("content info", digest.as_str(), client.info(request)).await?;
        reply.info.ok_or_else(|| StoreError::Backend { call: "content info", cause: cause("answer without info") })
    }

    /// The images client.
    pub(crate) async fn images(&self) -> Result<ImagesClient<Channel>, StoreError> {
        Ok(ImagesClient::new(self.channel().await?))
    }

    /// The content client.
    pub(crate) async fn content(&self) -> Result<ContentClient<Channel>, StoreError> {
        Ok(ContentClient::new(self.channel().await?))
    }

    /// Whether containerd answers a `Version` call.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let mut client = VersionClient::new(self.channel().await?);
        self.call("version", "version", client.version(())).await.map(drop)
    }

    /// Whether the namespace exists ([`StoreError::NamespaceMissing`] if not).
    ///
    /// Namespaces are listed because containerd 1.6 answers `Get` of an absent one with empty labels.
    pub(crate) async fn check_namespace(&self) -> Result<(), StoreError> {
        let mut client = NamespacesClient::new(self.channel().await?);
        let reply = self.call("namespace list", "namespaces", client.list(ListNamespacesRequest::default())).await?;
        if reply.namespaces.iter().any(|n| n.name == self.namespace) {
            Ok(())
        } else {
            Err(StoreError::NamespaceMissing(self.namespace.clone()))
        }
    }
}

/// A call that failed because containerd went away, keeping its status.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {}", status.message())]
struct Failed {
    call: &'static str,
    #[source]
    status: Status,
}
