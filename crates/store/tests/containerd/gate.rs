//! A gate in front of containerd's socket, so a test decides when the store
//! can reach containerd.
//!
//! The store under test connects to the gate's socket; every connection is
//! forwarded byte for byte to containerd's. Shut, the gate closes what it
//! forwards and refuses (accepts and drops) new connections, counting them:
//! the store is then certainly cut off, however fast it retries, while the
//! test keeps changing containerd over its own socket.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long closing the forwarded connections may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The gate; dropping it stops it.
pub(crate) struct Gate {
    path: PathBuf,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

struct Shared {
    upstream: PathBuf,
    /// While open: the token that ends every connection forwarded since.
    open: Mutex<Option<CancellationToken>>,
    /// How many connections are being forwarded.
    forwarding: watch::Sender<usize>,
    /// How many connections were refused since the gate was last shut.
    refused: watch::Sender<usize>,
}

impl Gate {
    /// An open gate to the socket at `upstream`.
    pub(crate) fn open(upstream: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            open: Mutex::new(Some(CancellationToken::new())),
            forwarding: watch::channel(0).0,
            refused: watch::channel(0).0,
        });
        let accept = tokio::spawn(accept(listener, shared.clone()));
        Self { path, shared, accept, _dir: dir }
    }

    /// The socket to connect to instead of containerd's.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every forwarded connection and refuses new ones; returns once all are closed.
    pub(crate) async fn shut(&self) {
        if let Some(cut) = self.shared.open.lock().unwrap().take() {
            cut.cancel();
        }
        self.shared.refused.send_replace(0);
        let mut forwarding = self.shared.forwarding.subscribe();
        let closed = tokio::time::timeout(CLOSE_TIMEOUT, forwarding.wait_for(|n| *n == 0)).await;
        assert!(closed.is_ok(), "forwarded connections still open {CLOSE_TIMEOUT:?} after shutting the gate");
    }

    /// Forwards new connections again.
    pub(crate) fn reopen(&self) {
        self.shared.open.lock().unwrap().get_or_insert_with(CancellationToken::new);
    }

    /// Waits until a connection was refused since the gate was shut; `what` names who should have tried.
    pub(crate) async fn refused_within(&self, bound: Duration, what: &str) {
        let mut refused = self.shared.refused.subscribe();
        let waited = tokio::time::timeout(bound, refused.wait_for(|n| *n > 0)).await;
        assert!(waited.is_ok(), "{what}: no connection attempt at the shut gate within {bound:?}");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
        if let Some(cut) = self.shared.open.lock().unwrap().take() {
            cut.cancel();
        }
    }
}

async fn accept(listener: UnixListener, shared: Arc<Shared>) {
    while let Ok((conn, _)) = listener.accept().await {
        // Counted under the lock, so `shut` cannot miss a connection it lets through.
        let cut = {
            let open = shared.open.lock().unwrap();
            open.as_ref().map(|cut| {
                shared.forwarding.send_modify(|n| *n += 1);
                cut.clone()
            })
        };
        match cut {
            Some(cut) => drop(tokio::spawn(forward(conn, shared.clone(), cut))),
            None => {
                drop(conn);
                shared.refused.send_modify(|n| *n += 1);
            }
        }
    }
}

/// Copies both ways between `down` and a new connection to containerd until either ends or `cut`.
async fn forward(mut down: UnixStream, shared: Arc<Shared>, cut: CancellationToken) {
    if let Ok(mut up) = UnixStream::connect(&shared.upstream).await {
        tokio::select! {
            () = cut.cancelled() => {}
            _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
        }
    }
    drop(down);
    shared.forwarding.send_modify(|n| *n -= 1);
}
