//! `peerpull` processes for test nodes.
//!
//! [`Peerpull`] runs the real `peerpull run` binary next to a testbed
//! [`Containerd`], with its own data directory and log, on a loopback
//! address of the test's choosing. [`configure`] runs `peerpull configure`
//! on a node's `config_path` as a cluster's init container does. The binary
//! is `$PEERPULL_BIN`, or `peerpull` in the cargo target directory the test
//! runs from (`cargo build -p peerpull` puts it there); a binary there that
//! is older than any of its sources is refused, so no test runs an old build.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use peerpull_admin::v1;
use tempfile::TempDir;

use crate::containerd::Containerd;
use crate::process::{tail, Service};
use crate::{http, Error};

/// How long a node may take to answer `/livez` after starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How a peerpull node is started.
#[derive(Debug, Clone)]
pub struct PeerpullOptions {
    /// The node's address; the registry, router and metrics ports are on it.
    pub ip: IpAddr,
    /// `--registry-addr` port.
    pub registry_port: u16,
    /// `--router-addr` port.
    pub router_port: u16,
    /// `--metrics-addr` port.
    pub metrics_port: u16,
    /// `--bootstrap` values.
    pub bootstrap: Vec<String>,
    /// `--mirrored-registry` values.
    pub mirrored: Vec<String>,
    /// Read content directly from containerd's content directory.
    pub direct_read: bool,
    /// The cluster's pre-shared key (64 hex characters), written to the node's
    /// data directory and passed as `--psk-file`.
    pub psk: Option<String>,
    /// More arguments for `peerpull run`.
    pub extra: Vec<String>,
    /// A network namespace to run it in (`ip netns exec`), e.g. behind a shaped link.
    pub netns: Option<String>,
}

impl PeerpullOptions {
    /// A node on `ip` with the cluster's usual ports (5000, 5001, 9090).
    pub fn on(ip: IpAddr) -> Self {
        Self {
            ip,
            registry_port: 5000,
            router_port: 5001,
            metrics_port: 9090,
            bootstrap: Vec::new(),
            mirrored: Vec::new(),
            direct_read: false,
            psk: None,
            extra: Vec::new(),
            netns: None,
        }
    }

    /// Where the node's router listens, as another node bootstraps to it.
    pub fn router_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.router_port)
    }

    /// The node's mirror URL.
    pub fn mirror_url(&self) -> String {
        format!("http://{}", SocketAddr::new(self.ip, self.registry_port))
    }
}

/// A running (or stopped) `peerpull run`.
#[derive(Debug)]
pub struct Peerpull {
    service: Service,
    options: PeerpullOptions,
    socket: PathBuf,
    content_path: PathBuf,
    log: PathBuf,
    data: TempDir,
}

/// The `peerpull` binary tests run.
pub fn binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("PEERPULL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(Error::io("locating the test binary"))?;
    // A binary in target/<profile>/ has it beside itself; a test in
    // target/<profile>/deps/ one folder up.
    let beside = exe.parent().map(|dir| dir.join("peerpull"));
    let above = exe.parent().and_then(|deps| deps.parent()).map(|dir| dir.join("peerpull"));
    let Some(path) = [beside, above].into_iter().flatten().find(|path| path.is_file()) else {
        return Err(Error::Io {
            what: "finding the peerpull binary (run `cargo build -p peerpull` or set PEERPULL_BIN)".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    if let Some(newer) = newer_source(&path) {
        return Err(Error::Io {
            what: format!(
                "{} is older than {}: run `cargo build -p peerpull` (or set PEERPULL_BIN)",
                path.display(),
                newer.display()
            ),
            source: std::io::ErrorKind::InvalidData.into(),
        });
    }
    Ok(path)
}

/// The crates the `peerpull` binary is built from, beside this one.
const BINARY_CRATES: [&str; 9] =
    ["admin", "hosts", "mirror", "node", "oci", "peerpull", "routing", "store", "upstream"];

/// A source file of the binary changed after `binary` was built, if any: a
/// test must not quietly run an old build. Sources that are not there (an
/// installed testbed) are not checked.
fn newer_source(binary: &std::path::Path) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let mut stack: Vec<PathBuf> = BINARY_CRATES.iter().map(|c| crates.join(c)).collect();
    stack.push(crates.parent()?.join("proto"));
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).into_iter().flatten().flatten();
            stack.extend(entries.map(|e| e.path()).filter(|p| !p.ends_with("tests")));
        } else if meta.modified().is_ok_and(|modified| modified > built) {
            return Some(path);
        }
    }
    None
}

/// Runs `peerpull configure` on `node`'s `config_path`: containerd then
/// tries `mirror` before each of `registries` (their base URLs). It is given
/// the node's socket, as the chart's init container is, so it writes an
/// IPv6 mirror in the form that node's containerd release reads.
pub async fn configure(node: &Containerd, mirror: &str, registries: &[String]) -> Result<(), Error> {
    let mut command = tokio::process::Command::new(binary()?);
    command.arg("configure").arg("--config-path").arg(node.config_path()).args(["--mirror", mirror]);
    command.arg("--containerd-socket").arg(node.socket());
    for registry in registries {
        command.args(["--mirrored-registry", registry]);
    }
    crate::cri::run(command).await
}

impl Peerpull {
    /// Starts `peerpull run` for `node` and waits until it answers `/livez`.
    pub async fn start(node: &Containerd, options: PeerpullOptions) -> Result<Self, Error> {
        let data = tempfile::Builder::new().prefix("pp-node-").tempdir().map_err(Error::io("creating a temp dir"))?;
        let log = data.path().join("peerpull.log");
        let mut peerpull = Self {
            service: Service::new("peerpull", &log),
            options,
            socket: node.socket().to_owned(),
            content_path: node.content_path(),
            log,
            data,
        };
        peerpull.launch().await?;
        Ok(peerpull)
    }

    /// The options it runs with.
    pub fn options(&self) -> &PeerpullOptions {
        &self.options
    }

    /// Its mirror URL, e.g. `http://127.20.1.11:5000`.
    pub fn mirror_url(&self) -> String {
        self.options.mirror_url()
    }

    /// Its metrics URL base.
    pub fn metrics_url(&self) -> String {
        format!("http://{}", SocketAddr::new(self.options.ip, self.options.metrics_port))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    /// Its data directory (node identity).
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.service.is_running()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        tail(&self.log, 1 << 20)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let url = format!("{}/readyz", self.metrics_url());
        crate::eventually(&format!("{url} to be ready"), timeout, || async {
            http::get(&url).await.ok().filter(|r| r.status == 200).map(|_| ())
        })
        .await
    }

    /// The value of the metric line starting with `prefix` (e.g.
    /// `peerpull_mirror_requests_total{registry="…",cache="hit",source="peer"}`), 0 if absent.
    pub async fn metric(&self, prefix: &str) -> Result<f64, Error> {
        let reply = http::get(&format!("{}/metrics", self.metrics_url())).await?;
        let text = String::from_utf8_lossy(&reply.body);
        Ok(text
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |sum, value| sum + value))
    }

    /// Its admin API's Unix socket (in its data directory).
    pub fn admin_socket(&self) -> PathBuf {
        self.data.path().join("admin.sock")
    }

    /// Its admin API's `Status`.
    pub async fn status(&self) -> Result<v1::StatusResponse, Error> {
        let mut client = self.admin().await?;
        let answer = client.status(v1::StatusRequest {}).await;
        answer.map(tonic::Response::into_inner).map_err(|status| Error::Grpc { what: "Status".into(), status })
    }

    /// Its admin API's `Locate` of `reference` (an image reference or a digest).
    pub async fn locate(&self, reference: &str) -> Result<v1::LocateResponse, Error> {
        self.locate_with(reference, 0).await
    }

    /// The same, asking the DHT for at most `limit` providers per blob (0:
    /// the node's default); 1 answers at the first provider found.
    pub async fn locate_with(&self, reference: &str, limit: u32) -> Result<v1::LocateResponse, Error> {
        let mut client = self.admin().await?;
        let request = v1::LocateRequest { reference: reference.to_owned(), limit };
        let answer = client.locate(request).await;
        answer.map(tonic::Response::into_inner).map_err(|status| Error::Grpc { what: "Locate".into(), status })
    }

    /// Runs `peerpull ARGS --admin-socket <its socket>`, as an operator on the node would.
    pub async fn cli(&self, args: &[&str]) -> Result<std::process::Output, Error> {
        let mut command = tokio::process::Command::new(binary()?);
        command.args(args).arg("--admin-socket").arg(self.admin_socket());
        command.output().await.map_err(Error::io("running the peerpull CLI"))
    }

    async fn admin(&self) -> Result<peerpull_admin::AdminClient<tonic::transport::Channel>, Error> {
        peerpull_admin::connect(&self.admin_socket())
            .await
            .map_err(|e| Error::Io { what: "the admin API".into(), source: std::io::Error::other(e) })
    }

    /// Stops it with SIGTERM (graceful).
    pub fn stop(&mut self) {
        self.service.stop();
    }

    /// Sends it SIGTERM and returns at once, so a test can watch what it
    /// does while it drains; [`Peerpull::exited`] waits for the exit.
    pub fn terminate(&self) {
        self.service.terminate();
    }

    /// Waits up to `timeout` for it to exit and gives its exit status.
    pub async fn exited(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, Error> {
        self.service.exited(timeout).await
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.service.kill();
    }

    /// Starts it again with the same identity and options.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.launch().await
    }

    /// Stops it and starts it again with the same identity and `options`.
    pub async fn restart_with(&mut self, options: PeerpullOptions) -> Result<(), Error> {
        self.stop();
        self.options = options;
        self.launch().await
    }

    async fn launch(&mut self) -> Result<(), Error> {
        let o = &self.options;
        let mut command = match &o.netns {
            // `ip netns exec` execs the binary: the pid stays the daemon's.
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(binary()?);
                command
            }
            None => Command::new(binary()?),
        };
        command
            .arg("run")
            .arg("--containerd-socket")
            .arg(&self.socket)
            .arg("--registry-addr")
            .arg(SocketAddr::new(o.ip, o.registry_port).to_string())
            .arg("--router-addr")
            .arg(o.router_addr().to_string())
            .arg("--metrics-addr")
            .arg(SocketAddr::new(o.ip, o.metrics_port).to_string())
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--admin-socket")
            .arg(self.admin_socket())
            .args(["--log-level", "info,peerpull_mirror=debug,peerpull_store=debug"]);
        if o.direct_read {
            command.arg("--containerd-content-path").arg(&self.content_path);
        }
        for peer in &o.bootstrap {
            command.args(["--bootstrap", peer]);
        }
        for registry in &o.mirrored {
            command.args(["--mirrored-registry", registry]);
        }
        if let Some(psk) = &o.psk {
            let path = self.data.path().join("psk");
            std::fs::write(&path, format!("{psk}\n")).map_err(Error::io("writing the pre-shared key"))?;
            command.arg("--psk-file").arg(path);
        }
        command.args(&o.extra);
        let url = format!("{}/livez", self.metrics_url());
        let live = || async { http::get(&url).await.is_ok_and(|r| r.status == 200) };
        self.service.start(&mut command, live, START_TIMEOUT).await
    }
}
