//! Test support for peerpull: real services in temporary directories.
//!
//! Starts real containerd instances (one per test node, see [`containerd`];
//! `$PEERPULL_CONTAINERD` picks the [`Release`], 1.6, 1.7 or 2.1, for a test
//! run) and a real upstream registry ([`registry`]), generates deterministic OCI
//! images and pushes them with `skopeo` ([`image`]) or imports many small
//! ones straight into a node ([`archive`]), pulls into a node like
//! kubelet does through CRI `PullImage` ([`cri`]), inspects what a node
//! holds, and runs `peerpull` itself next to each node ([`peerpull`]), asking
//! its admin API ([`admin`]) what it holds and sees; a
//! [`throttle`] slows the road to a service; a [`token`] server gives the
//! registry Docker Hub's token auth; a headless [`browser`] loads the
//! pages people look at. Every service is stopped and
//! every temporary directory removed when
//! its handle is dropped, also when a test panics. Nothing outside tests and
//! benchmarks depends on this crate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), peerpull_testbed::Error> {
//! use peerpull_testbed::{Containerd, ImageBuilder, Upstream};
//! let upstream = Upstream::start().await?;
//! let image = ImageBuilder::new("demo").layers(&[1 << 20, 4096]).build()?;
//! let reference = image.push(&upstream, "demo/app:v1").await?;
//! let node = Containerd::start().await?;
//! node.trust_registry(&upstream)?;
//! let pulled = node.cri_pull(&reference).await?;
//! assert_eq!(pulled.manifest_digest(), Some(image.digest()));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

pub mod archive;
pub mod browser;
pub mod containerd;
pub mod cri;
mod error;
pub mod http;
pub mod image;
mod inspect;
mod net;
pub mod peerpull;
mod process;
pub mod registry;
pub mod release;
pub mod throttle;
pub mod token;
pub mod zones;

pub use archive::{Archive, ArchivedImage};
pub use browser::Browser;
pub use containerd::{Containerd, ContainerdOptions, PullSettings, NAMESPACE};
pub use cri::PulledImage;
pub use error::Error;
pub use image::{Blob, Image, ImageBuilder, Platform, PlatformImage};
pub use inspect::ImageRecord;
pub use net::{free_port, loopback_subnet, LoopbackSubnet};
pub use peerpull::{Peerpull, PeerpullOptions};
/// The admin API's messages, as [`Peerpull::status`] and [`Peerpull::locate`] return them.
pub use peerpull_admin::v1 as admin;
pub use registry::{AccessEntry, Upstream, UpstreamOptions};
pub use release::Release;
pub use throttle::Throttle;
pub use token::TokenServer;

/// Polls `check` every 50 ms until it yields `Some`, or fails after `timeout`.
///
/// This is how tests wait for a condition; they never sleep for a guessed time.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout { what: what.to_owned(), after: timeout });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh pre-shared key for a test cluster: 64 hex characters.
pub fn new_psk() -> String {
    use sha2::Digest as _;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let seed = format!("{}/{nanos}/{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))
}
