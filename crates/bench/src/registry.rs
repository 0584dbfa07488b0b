//! `docker-registry` processes the benchmark runs itself: the shaped upstream
//! inside a [`Link`](crate::shaped::Link)'s namespace, serving the storage of
//! a testbed registry images were pushed to, and a pull-through cache
//! (`proxy: remoteurl:`), the Harbor-style alternative to peerpull.
//!
//! Each process is killed when its handle drops. Its access log tells the
//! blob bytes it served.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tempfile::TempDir;

/// How long a registry may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `docker-registry`.
#[derive(Debug)]
pub(crate) struct Registry {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

/// What a registry serves.
#[derive(Debug)]
pub(crate) enum Mode<'a> {
    /// Images in this storage directory.
    Storage(&'a Path),
    /// A pull-through cache of the registry at this URL, with fresh storage.
    Proxy(&'a str),
}

impl Registry {
    /// Starts a registry on `ip:port`, inside network namespace `netns` when given.
    pub(crate) async fn start(netns: Option<&str>, ip: IpAddr, port: u16, mode: Mode<'_>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("pp-bench-reg-").tempdir().context("creating a temp dir")?;
        let addr = SocketAddr::new(ip, port);
        let (storage, proxy) = match mode {
            Mode::Storage(path) => (path.to_owned(), String::new()),
            Mode::Proxy(url) => (dir.path().join("data"), format!("proxy:\n  remoteurl: {url}\n")),
        };
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{proxy}",
            storage.display()
        );
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).context("writing a registry config")?;
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).context("creating a registry log")?;
        let err = out.try_clone().context("duplicating a log handle")?;
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "docker-registry"]);
                c
            }
            None => Command::new("docker-registry"),
        };
        command.arg("serve").arg(&config).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = command.spawn().context("starting docker-registry")?;
        let mut registry = Self { child, addr, log, _dir: dir };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = registry.child.try_wait().context("waiting for docker-registry")? {
                bail!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(&registry.log).unwrap_or_default()
                );
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(registry);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("docker-registry on {addr} did not start within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `host:port`, as image references name it.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Body bytes served on successful GETs of blobs so far.
    pub(crate) fn blob_bytes_served(&self) -> anyhow::Result<u64> {
        let text = std::fs::read_to_string(&self.log).context("reading a registry log")?;
        Ok(text.lines().filter_map(blob_bytes).sum())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body bytes of a combined-log-format line for a 2xx GET of a blob:
/// `ip - - [date] "GET /v2/x/blobs/sha256:… HTTP/1.1" 200 1234 "" "agent"`.
fn blob_bytes(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once('"')?;
    let mut request = request.split(' ');
    let (method, path) = (request.next()?, request.next()?);
    let mut fields = rest.split_whitespace();
    let status: u16 = fields.next()?.parse().ok()?;
    let bytes: u64 = fields.next()?.parse().unwrap_or(0);
    (method == "GET" && (200..300).contains(&status) && path.contains("/blobs/")).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_successful_blob_gets_only() {
        let get = r#"10.0.0.1 - - [26/Nov/2026:02:40:43 +0000] "GET /v2/a/blobs/sha256:ab HTTP/1.1" 200 1234 "" "x""#;
        let head = r#"10.0.0.1 - - [26/Nov/2026:02:40:43 +0000] "HEAD /v2/a/blobs/sha256:ab HTTP/1.1" 200 0 "" "x""#;
        let miss = r#"10.0.0.1 - - [26/Nov/2026:02:40:43 +0000] "GET /v2/a/blobs/sha256:ab HTTP/1.1" 404 19 "" "x""#;
        let manifest = r#"1 - - [26/Nov/2026:02:40:43 +0000] "GET /v2/a/manifests/v1 HTTP/1.1" 200 500 "" "x""#;
        assert_eq!(blob_bytes(get), Some(1234));
        assert_eq!(blob_bytes(head), None);
        assert_eq!(blob_bytes(miss), None);
        assert_eq!(blob_bytes(manifest), None);
        assert_eq!(blob_bytes("time=x level=info"), None);
    }
}
