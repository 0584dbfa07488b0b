//! The admin API of a peerpull node.
//!
//! The protobuf service `peerpull.admin.v1.Admin`
//! (`proto/peerpull/admin/v1/admin.proto`): `Status`, `Locate` and
//! `ListAdvertised`. This crate owns the generated types and the plumbing
//! of its Unix socket: [`serve_unix`] serves an implementation (the node's,
//! in `peerpull-node`) on a socket only its owner may use, [`serve_tcp`]
//! on a TCP listener when an operator asks for one; [`connect`] is
//! the client `peerpull status` and `peerpull locate` use.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::{Channel, Endpoint};

/// The generated types of `peerpull.admin.v1`.
#[allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("peerpull.admin.v1");
}

pub use v1::admin_client::AdminClient;
pub use v1::admin_server::{Admin, AdminServer};

/// The admin socket `peerpull run` serves on unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/peerpull/admin.sock";

/// Why the admin socket could not be served or reached.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket (or its directory) could not be set up.
    #[error("admin socket {}: {source}", path.display())]
    Socket {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("admin API on {}: {source}", path.display())]
    Serve {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: tonic::transport::Error,
    },
    /// No daemon answers on the socket.
    #[error("no peerpull daemon answers on {} ({reason}); is `peerpull run` running, with this --admin-socket?", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why, down to the root cause (e.g. no such file).
        reason: String,
    },
}

/// Binds the Unix socket `path` (replacing a stale one, creating its
/// directory, mode 0600: only its owner may use it).
pub fn bind(path: &Path) -> Result<UnixListener, Error> {
    let failed = |source| Error::Socket { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let listener = UnixListener::bind(path).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    Ok(listener)
}

/// Serves `service` on `listener` (bound to `path`) until `shutdown`.
pub async fn serve_unix<S: Admin>(
    path: &Path,
    listener: UnixListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let served = tonic::transport::Server::builder()
        .add_service(AdminServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    served.map_err(|source| Error::Serve { path: path.to_owned(), source })
}

/// Serves `service` on the TCP `listener` until `shutdown`.
pub async fn serve_tcp<S: Admin>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(AdminServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// A client of the daemon answering on the Unix socket `path`.
pub async fn connect(path: &Path) -> Result<AdminClient<Channel>, Error> {
    let socket = path.to_owned();
    // The URI is required by the API and unused: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://peerpull.invalid");
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|error| Error::Connect { path: path.to_owned(), reason: root_cause(&error) })?;
    Ok(AdminClient::new(channel))
}

/// The innermost error's message: tonic's own says only "transport error".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
