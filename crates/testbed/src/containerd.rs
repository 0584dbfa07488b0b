//! A real containerd per test node.
//!
//! Each [`Containerd`] runs its own `containerd` process with its own root,
//! state directory, gRPC socket and CRI registry `config_path` (where
//! `hosts.toml` files go), all inside one temporary directory. The CRI plugin
//! is on, its TCP service off. It is ready when its socket answers a
//! `Version` call and CRI's image service answers (CRI initialises after the
//! socket is up). Dropping it stops the process, unmounts anything left
//! mounted under its root and removes the directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use containerd_client::services::v1::version_client::VersionClient;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::ImageFsInfoRequest;
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::process::Service;
use crate::registry::Upstream;
use crate::Error;

/// The containerd namespace CRI (and so kubelet) uses.
pub const NAMESPACE: &str = "k8s.io";

/// How long containerd may take to answer on its socket after starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a test node's containerd.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// CRI `discard_unpacked_layers`: drop compressed layers after unpacking.
    pub discard_unpacked_layers: bool,
    /// Whether CRI's registry `config_path` is set (a node that ignores hosts.toml when not).
    pub set_config_path: bool,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        Self { discard_unpacked_layers: false, set_config_path: true }
    }
}

/// A running containerd in a temporary directory.
#[derive(Debug)]
pub struct Containerd {
    service: Service,
    socket: PathBuf,
    config_file: PathBuf,
    config_path: PathBuf,
    dir: TempDir,
}

impl Containerd {
    /// Starts a containerd with default options and waits until it answers.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(ContainerdOptions::default()).await
    }

    /// Starts a containerd with `options` and waits until it answers.
    pub async fn start_with(options: ContainerdOptions) -> Result<Self, Error> {
        let dir = tempfile::Builder::new().prefix("pp-ctd-").tempdir().map_err(Error::io("creating a temp dir"))?;
        let root = dir.path();
        let config_path = root.join("certs.d");
        std::fs::create_dir_all(&config_path).map_err(Error::io("creating certs.d"))?;
        let socket = root.join("containerd.sock");
        let config_file = root.join("config.toml");
        let config = render_config(root, &socket, &config_path, &options);
        std::fs::write(&config_file, config).map_err(Error::io("writing containerd config"))?;
        let service = Service::new("containerd", &root.join("containerd.log"));
        let mut node = Self { service, socket, config_file, config_path, dir };
        node.launch().await?;
        Ok(node)
    }

    /// The containerd gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// CRI's registry `config_path`: the folder of per-registry `hosts.toml` files.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// containerd's own configuration file.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// The content store's directory (`…/io.containerd.content.v1.content`).
    pub fn content_path(&self) -> PathBuf {
        self.dir.path().join("root/io.containerd.content.v1.content")
    }

    /// The temporary directory holding everything of this node.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The containerd process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    /// Stops containerd gracefully; its content stays on disk.
    pub fn stop(&mut self) {
        self.service.stop();
    }

    /// Kills containerd at once (SIGKILL), as a crash would.
    pub fn crash(&mut self) {
        self.service.kill();
    }

    /// Starts containerd again after [`Containerd::stop`], with the same content.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.launch().await
    }

    /// A gRPC channel to this containerd.
    pub async fn channel(&self) -> Result<Channel, Error> {
        connect(&self.socket).await
    }

    /// Writes the `hosts.toml` a node without peerpull has for `upstream`:
    /// plain HTTP straight to the registry.
    pub fn trust_registry(&self, upstream: &Upstream) -> Result<(), Error> {
        let dir = self.config_path.join(upstream.host());
        std::fs::create_dir_all(&dir).map_err(Error::io("creating a hosts.toml folder"))?;
        let url = upstream.url();
        let toml = format!("server = \"{url}\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
        std::fs::write(dir.join("hosts.toml"), toml).map_err(Error::io("writing hosts.toml"))
    }

    async fn launch(&mut self) -> Result<(), Error> {
        self.service.stop();
        let _ = std::fs::remove_file(&self.socket);
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&self.config_file);
        let socket = &self.socket;
        self.service.start(&mut command, || ready(socket), START_TIMEOUT).await
    }
}

async fn connect(socket: &Path) -> Result<Channel, Error> {
    containerd_client::connect(socket).await.map_err(|source| Error::Connect { socket: socket.to_owned(), source })
}

/// Whether the containerd on `socket` answers `Version`, and CRI's image
/// service answers too (it says "server is not initialized yet" for a moment
/// after the socket is up).
async fn ready(socket: &Path) -> bool {
    let Ok(channel) = connect(socket).await else { return false };
    let version = VersionClient::new(channel.clone()).version(()).await.is_ok();
    version && ImageServiceClient::new(channel).image_fs_info(ImageFsInfoRequest {}).await.is_ok()
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
        unmount_under(self.dir.path());
    }
}

fn render_config(root: &Path, socket: &Path, config_path: &Path, options: &ContainerdOptions) -> String {
    let root_dir = root.join("root");
    let state_dir = root.join("state");
    let registry = if options.set_config_path {
        format!("  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = \"{}\"\n", config_path.display())
    } else {
        String::new()
    };
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    discard_unpacked_layers = {discard}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{root}/cni/bin"
    conf_dir = "{root}/cni/conf"
{registry}"#,
        root = root_dir.display(),
        state = state_dir.display(),
        socket = socket.display(),
        discard = options.discard_unpacked_layers,
    )
}

/// Unmounts, deepest first, every mount point at or below `dir`.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}
