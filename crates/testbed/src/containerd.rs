//! A real containerd per test node, of the release the test run chose.
//!
//! Each [`Containerd`] runs its own `containerd` process with its own root,
//! state directory, gRPC socket and CRI registry `config_path` (where
//! `hosts.toml` files go), all inside one temporary directory. The CRI plugin
//! is on, its TCP service off. It is ready when its socket answers a
//! `Version` call and CRI's image service answers (CRI initialises after the
//! socket is up). Dropping it stops the process, unmounts anything left
//! mounted under its root and removes the directory.
//!
//! Which containerd runs is a [`Release`] ([`crate::release`]): the one
//! `$PEERPULL_CONTAINERD` picks for the test run, or one a test names. Its
//! own `containerd-shim-runc-v2` comes first on the process's `PATH`, and
//! the node's `ctr` is the release's too. containerd 1.x gets a `version =
//! 2` configuration, 2.x its own `version = 3` one, each with the plugin ids
//! that release's `containerd config default` prints.

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
use crate::release::Release;
use crate::Error;

/// The containerd namespace CRI (and so kubelet) uses.
pub const NAMESPACE: &str = "k8s.io";

/// How long containerd may take to answer on its socket after starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How a node's CRI reads `hosts.toml` files and pulls, beyond [`ContainerdOptions`]:
/// the settings behind containerd 2's `config_path` list trap.
#[derive(Debug, Clone, Default)]
pub struct PullSettings {
    /// `config_path` as a list, `<config_path>:<a second, empty directory>`,
    /// as containerd 2.2 defaults to; `peerpull configure` writes into the first.
    pub config_path_list: bool,
    /// containerd 2's CRI `use_local_image_pull` (`None`: not written, so
    /// containerd ≥ 2.1 pulls through its transfer service). An error on 1.x.
    pub use_local_image_pull: Option<bool>,
}

/// Starts a [`Containerd`] with a release and settings other than the run's defaults.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    release: Option<Release>,
    options: ContainerdOptions,
    pull: PullSettings,
}

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
    release: Release,
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
        Self::builder().options(options).start().await
    }

    /// A containerd of another release, or with [`PullSettings`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The release it runs.
    pub fn release(&self) -> &Release {
        &self.release
    }

    /// The version the running containerd reports (its `Version` call), e.g. `2.1.9+unknown`.
    pub async fn version(&self) -> Result<String, Error> {
        let reply = VersionClient::new(self.channel().await?).version(()).await;
        Ok(reply.map_err(Error::grpc("containerd Version"))?.into_inner().version)
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
        let mut command = Command::new(self.release.containerd());
        command.arg("--config").arg(&self.config_file);
        if let Some(path) = self.release.path_env() {
            // containerd finds its shim on PATH: this release's, not the system's.
            command.env("PATH", path);
        }
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

impl Builder {
    /// Runs `release` instead of the test run's choice.
    pub fn release(mut self, release: Release) -> Self {
        self.release = Some(release);
        self
    }

    /// The node's [`ContainerdOptions`].
    pub fn options(mut self, options: ContainerdOptions) -> Self {
        self.options = options;
        self
    }

    /// How its CRI reads `hosts.toml` and pulls.
    pub fn pull(mut self, pull: PullSettings) -> Self {
        self.pull = pull;
        self
    }

    /// Starts it and waits until it answers.
    pub async fn start(self) -> Result<Containerd, Error> {
        let release = match self.release {
            Some(release) => release,
            None => Release::chosen()?,
        };
        if self.pull.use_local_image_pull.is_some() && release.major_minor().0 < 2 {
            return Err(Error::Io {
                what: format!("use_local_image_pull is a containerd 2 setting; this node runs {}", release.version()),
                source: std::io::ErrorKind::InvalidInput.into(),
            });
        }
        let dir = tempfile::Builder::new().prefix("pp-ctd-").tempdir().map_err(Error::io("creating a temp dir"))?;
        let root = dir.path();
        let config_path = root.join("certs.d");
        std::fs::create_dir_all(&config_path).map_err(Error::io("creating certs.d"))?;
        let mut dirs = vec![config_path.clone()];
        if self.pull.config_path_list {
            let second = root.join("docker-certs.d");
            std::fs::create_dir_all(&second).map_err(Error::io("creating docker-certs.d"))?;
            dirs.push(second);
        }
        let socket = root.join("containerd.sock");
        let config_file = root.join("config.toml");
        let layout = Layout { root, socket: &socket, config_path: &dirs };
        let config = if release.major_minor().0 >= 2 {
            render_v3(&layout, &self.options, &self.pull)
        } else {
            render_v2(&layout, &self.options)
        };
        std::fs::write(&config_file, config).map_err(Error::io("writing containerd config"))?;
        let service = Service::new("containerd", &root.join("containerd.log"));
        let mut node = Containerd { release, service, socket, config_file, config_path, dir };
        node.launch().await?;
        Ok(node)
    }
}

/// Where a node's files are.
struct Layout<'a> {
    root: &'a Path,
    socket: &'a Path,
    /// CRI's registry `config_path`: one directory, or a list.
    config_path: &'a [PathBuf],
}

impl Layout<'_> {
    fn config_path(&self) -> String {
        let dirs: Vec<String> = self.config_path.iter().map(|d| d.display().to_string()).collect();
        dirs.join(":")
    }
}

/// containerd 1.x's configuration (`version = 2`).
fn render_v2(layout: &Layout<'_>, options: &ContainerdOptions) -> String {
    let root = layout.root;
    let registry = if options.set_config_path {
        format!("  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = \"{}\"\n", layout.config_path())
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
        root = root.join("root").display(),
        state = root.join("state").display(),
        socket = layout.socket.display(),
        discard = options.discard_unpacked_layers,
    )
}

/// containerd 2's own configuration (`version = 3`): CRI is three plugins,
/// the image service holding the snapshotter, `discard_unpacked_layers`,
/// the pull path and the registry's `config_path`. NRI, on by default in 2.x,
/// is off: every node would take the one system-wide NRI socket.
fn render_v3(layout: &Layout<'_>, options: &ContainerdOptions, pull: &PullSettings) -> String {
    let root = layout.root;
    let images = "plugins.'io.containerd.cri.v1.images'";
    let local = match pull.use_local_image_pull {
        Some(on) => format!("    use_local_image_pull = {on}\n"),
        None => String::new(),
    };
    let registry = if options.set_config_path {
        format!("    [{images}.registry]\n      config_path = '{}'\n", layout.config_path())
    } else {
        String::new()
    };
    format!(
        r#"version = 3
root = '{root}'
state = '{state}'

[grpc]
  address = '{socket}'

[ttrpc]
  address = '{socket}.ttrpc'

[debug]
  address = ''

[metrics]
  address = ''

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = '{root}/opt'

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'

  [plugins.'io.containerd.cri.v1.runtime']
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{root}/cni/bin']
      conf_dir = '{root}/cni/conf'

  [{images}]
    snapshotter = 'overlayfs'
    discard_unpacked_layers = {discard}
{local}{registry}"#,
        root = root.join("root").display(),
        state = root.join("state").display(),
        socket = layout.socket.display(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn containerd_2_gets_its_own_config_with_a_config_path_list() {
        let dirs = [PathBuf::from("/n/certs.d"), PathBuf::from("/n/docker-certs.d")];
        let layout = Layout { root: Path::new("/n"), socket: Path::new("/n/c.sock"), config_path: &dirs };
        let pull = PullSettings { config_path_list: true, use_local_image_pull: Some(true) };
        let v3 = render_v3(&layout, &ContainerdOptions::default(), &pull);
        assert!(v3.starts_with("version = 3\n"), "{v3}");
        for line in [
            "  [plugins.'io.containerd.cri.v1.images']\n    snapshotter = 'overlayfs'\n    discard_unpacked_layers = false\n    use_local_image_pull = true\n",
            "    [plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = '/n/certs.d:/n/docker-certs.d'\n",
        ] {
            assert!(v3.contains(line), "missing {line:?} in\n{v3}");
        }
        let v2 = render_v2(&layout, &ContainerdOptions { discard_unpacked_layers: true, set_config_path: false });
        assert!(v2.starts_with("version = 2\n") && v2.contains("discard_unpacked_layers = true"), "{v2}");
        assert!(!v2.contains("config_path"), "{v2}");
    }
}
