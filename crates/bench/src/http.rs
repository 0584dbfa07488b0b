//! A pooled HTTP/1 client for measurements: stream a blob and count its
//! bytes without holding it, or time one small request.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;

/// The manifest types a pull asks for.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// How long any one request may take.
const TIMEOUT: Duration = Duration::from_secs(300);

/// A client that keeps connections open between requests.
#[derive(Debug, Clone)]
pub(crate) struct Client(Hyper<HttpConnector, Empty<Bytes>>);

impl Client {
    /// A new client with its own connection pool.
    pub(crate) fn new() -> Self {
        Self(Hyper::builder(TokioExecutor::new()).build_http())
    }

    /// GETs `url`, reading the body as it comes; returns the bytes read.
    /// Anything but 200 is an error.
    pub(crate) async fn stream(&self, url: &str) -> anyhow::Result<u64> {
        let exchange = async {
            let (status, mut body) = self.send("GET", url).await?;
            if status != 200 {
                bail!("GET {url} answered {status}");
            }
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.with_context(|| format!("reading GET {url}"))?;
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                }
            }
            Ok(total)
        };
        tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| anyhow!("GET {url} took over {TIMEOUT:?}"))?
    }

    /// GETs `url` whole; returns the bytes read and their digest (`sha256:…`).
    pub(crate) async fn digest(&self, url: &str) -> anyhow::Result<(u64, String)> {
        use sha2::Digest as _;
        let exchange = async {
            let (status, mut body) = self.send("GET", url).await?;
            if status != 200 {
                bail!("GET {url} answered {status}");
            }
            let (mut total, mut hasher) = (0u64, sha2::Sha256::new());
            while let Some(frame) = body.frame().await {
                let frame = frame.with_context(|| format!("reading GET {url}"))?;
                if let Some(data) = frame.data_ref() {
                    total += data.len() as u64;
                    hasher.update(data);
                }
            }
            Ok((total, format!("sha256:{}", hex::encode(hasher.finalize()))))
        };
        tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| anyhow!("GET {url} took over {TIMEOUT:?}"))?
    }

    /// Sends `method` to `url` and reads the whole answer; returns the status
    /// and the time from sending to the last byte.
    pub(crate) async fn timed(&self, method: &str, url: &str) -> anyhow::Result<(u16, Duration)> {
        let start = Instant::now();
        let exchange = async {
            let (status, body) = self.send(method, url).await?;
            body.collect().await.with_context(|| format!("reading {method} {url}"))?;
            Ok::<_, anyhow::Error>(status)
        };
        let status = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow!("{method} {url} took over {TIMEOUT:?}"))??;
        Ok((status, start.elapsed()))
    }

    /// [`Client::digest`] from inside the network namespace `ns` (as a
    /// process there would: its own loopback, its own link), on a thread of
    /// its own; returns when it finished too.
    pub(crate) async fn digest_in(ns: &str, url: &str) -> anyhow::Result<(u64, String, Instant)> {
        let (ns, url) = (ns.to_owned(), url.to_owned());
        let thread = std::thread::spawn(move || {
            let file =
                std::fs::File::open(format!("/var/run/netns/{ns}")).with_context(|| format!("opening netns {ns}"))?;
            let space = Some(rustix::thread::LinkNameSpaceType::Network);
            rustix::thread::move_into_link_name_space(std::os::fd::AsFd::as_fd(&file), space)
                .with_context(|| format!("entering netns {ns}"))?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (size, digest) = runtime.block_on(Client::new().digest(&url))?;
            Ok::<_, anyhow::Error>((size, digest, Instant::now()))
        });
        tokio::task::spawn_blocking(move || thread.join().map_err(|_| anyhow!("the fetching thread panicked"))?).await?
    }

    async fn send(&self, method: &str, url: &str) -> anyhow::Result<(u16, hyper::body::Incoming)> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("accept", ACCEPT)
            .body(Empty::new())
            .with_context(|| format!("building {method} {url}"))?;
        let response = self.0.request(request).await.with_context(|| format!("{method} {url}"))?;
        Ok((response.status().as_u16(), response.into_body()))
    }
}
