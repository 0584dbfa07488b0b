//! A real upstream registry: the CNCF distribution registry (`docker-registry`).
//!
//! [`Upstream`] serves plain HTTP on a loopback address (or another address
//! of this host, e.g. a [`zones`](crate::zones) network's) with its storage in
//! a temporary directory. A test can stop it (the outage) and restart it on
//! the same address with the same content. Its access log, kept across
//! restarts, tells how many times each blob was served.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::Service;
use crate::token::TokenServer;
use crate::{free_port, Error};

/// How long the registry may take to answer after starting.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) upstream registry.
#[derive(Debug)]
pub struct Upstream {
    service: Service,
    addr: SocketAddr,
    log: PathBuf,
    config: PathBuf,
    dir: TempDir,
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The HTTP method.
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// The response status.
    pub status: u16,
    /// The response body bytes written.
    pub bytes: u64,
}

/// How a registry is started.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamOptions<'a> {
    /// The address it listens on: a loopback address, or another of this
    /// host's, e.g. [`Network::upstream_ip`](crate::zones::Network::upstream_ip)
    /// for nodes in network namespaces.
    pub ip: IpAddr,
    /// Token auth by this server (Docker Hub's scheme), instead of none.
    pub token: Option<&'a TokenServer>,
}

impl Default for UpstreamOptions<'_> {
    fn default() -> Self {
        Self { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), token: None }
    }
}

impl Upstream {
    /// Starts a registry on a free port of 127.0.0.1.
    pub async fn start() -> Result<Self, Error> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Starts a registry on a free port of `ip` (an address of this host).
    pub async fn start_on(ip: IpAddr) -> Result<Self, Error> {
        Self::start_with(UpstreamOptions { ip, ..UpstreamOptions::default() }).await
    }

    /// Starts a registry as `options` say.
    pub async fn start_with(options: UpstreamOptions<'_>) -> Result<Self, Error> {
        let dir = tempfile::Builder::new().prefix("pp-reg-").tempdir().map_err(Error::io("creating a temp dir"))?;
        let ip = options.ip;
        let addr = SocketAddr::new(ip, free_port(ip)?);
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(Error::io("creating registry storage"))?;
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            data.display()
        );
        if let Some(tokens) = options.token {
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                tokens.realm(),
                crate::token::SERVICE,
                crate::token::ISSUER,
                tokens.certificate().display()
            ));
        }
        std::fs::write(&config, yaml).map_err(Error::io("writing registry config"))?;
        let log = dir.path().join("registry.log");
        let service = Service::new("docker-registry", &log);
        let mut upstream = Self { service, addr, log, config, dir };
        upstream.launch().await?;
        Ok(upstream)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port`, as image references name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Its base URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    /// The temporary directory holding its storage, config and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.service.is_running()
    }

    /// Stops it (the outage). Content stays on disk.
    pub fn stop(&mut self) {
        self.service.stop();
    }

    /// Starts it again on the same address with the same content.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.launch().await
    }

    /// Every request it has logged, across restarts.
    pub fn access_log(&self) -> Result<Vec<AccessEntry>, Error> {
        let text = std::fs::read_to_string(&self.log).map_err(Error::io("reading the registry log"))?;
        Ok(text.lines().filter_map(parse_access_line).collect())
    }

    /// How many times each blob (by digest) was served in full or in part (GET, 2xx).
    pub fn blob_downloads(&self) -> Result<HashMap<String, usize>, Error> {
        let mut counts = HashMap::new();
        for entry in self.access_log()? {
            if entry.method != "GET" || !(200..300).contains(&entry.status) {
                continue;
            }
            if let Some((_, digest)) = entry.path.rsplit_once("/blobs/") {
                *counts.entry(digest.to_owned()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Body bytes it has served on successful GETs of blobs.
    pub fn blob_bytes_served(&self) -> Result<u64, Error> {
        Ok(self
            .access_log()?
            .iter()
            .filter(|e| e.method == "GET" && (200..300).contains(&e.status) && e.path.contains("/blobs/"))
            .map(|e| e.bytes)
            .sum())
    }

    async fn launch(&mut self) -> Result<(), Error> {
        let mut command = Command::new("docker-registry");
        command.arg("serve").arg(&self.config);
        let addr = self.addr;
        let listening = || async move { tokio::net::TcpStream::connect(addr).await.is_ok() };
        self.service.start(&mut command, listening, START_TIMEOUT).await
    }

    /// Where its storage is, for tests that inspect it.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Parses a combined-log-format line:
/// `127.0.0.1 - - [date] "GET /v2/x/blobs/sha256:… HTTP/1.1" 200 1234 "" "agent"`.
fn parse_access_line(line: &str) -> Option<AccessEntry> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once('"')?;
    let mut request = request.split(' ');
    let method = request.next()?.to_owned();
    let target = request.next()?;
    let path = target.split('?').next()?.to_owned();
    let mut fields = rest.split_whitespace();
    let status = fields.next()?.parse().ok()?;
    let bytes = fields.next()?.parse().unwrap_or(0);
    Some(AccessEntry { method, path, status, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_access_lines() {
        let line = r#"127.0.0.1 - - [26/Nov/2026:02:40:43 +0000] "GET /v2/a/b/blobs/sha256:ab?x=1 HTTP/1.1" 200 1234 "" "containerd/1.6""#;
        assert_eq!(
            parse_access_line(line),
            Some(AccessEntry {
                method: "GET".into(),
                path: "/v2/a/b/blobs/sha256:ab".into(),
                status: 200,
                bytes: 1234
            })
        );
        assert_eq!(parse_access_line(r#"time="x" level=info msg="response completed""#), None);
    }
}
