//! What containerd's CRI plugin is configured with, as far as peerpull cares:
//! the registry `config_path` (without it containerd ignores `hosts.toml`,
//! so the mirror is never asked), `discard_unpacked_layers` (with it a
//! node holds no layers to share), containerd's version and how CRI pulls
//! ([`pull`]: containerd 2.1's transfer service reads a `config_path` list
//! as one directory).
//!
//! First choice is what the running containerd says: CRI `Status` with
//! `verbose = true` returns its whole configuration as JSON under the
//! `config` key, which in containerd 1.6 and 1.7 holds `registry.configPath`
//! and `containerd.discardUnpackedLayers`. In containerd 2 that JSON is the
//! CRI runtime plugin's configuration only (`containerd`, `cni`, the root
//! and state directories): the image settings moved to the
//! `io.containerd.cri.v1.images` plugin, which reports none of them, so they
//! come from the file. (The introspection service exports nothing about
//! them either, up to 2.2.) A setting the running containerd does not report
//! is read from its TOML configuration file when its path is given (config
//! versions 1, 2 and 3, a version 1 or 2 file read the way containerd 2
//! migrates it). `imports` of other files are not followed. The version
//! comes from containerd's Version service.

use std::path::{Path, PathBuf};

use containerd_client::services::v1::version_client::VersionClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::StatusRequest;
use toml_edit::{DocumentMut, Item};

use super::Containerd;

pub mod pull;

pub use pull::{config_path_dirs, Fallback, Local, PullOptions, PullPath, Version, DEFAULT_CONFIG_PATH};

/// What is known about containerd's CRI configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigReport {
    /// CRI's registry `config_path`; a known `None` means it is not set.
    pub config_path: Setting<Option<String>>,
    /// CRI's `discard_unpacked_layers`.
    pub discard_unpacked_layers: Setting<bool>,
    /// containerd's version, or why it is unknown.
    pub version: Result<Version, String>,
    /// The configuration file's `version` (1, 2 or 3), when it was read.
    pub file_version: Option<i64>,
    /// What the configuration file says about CRI's pull path.
    pub pull: Setting<PullOptions>,
}

/// One setting: its value and where it was read, or why it is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting<T> {
    /// Read from `source`.
    Known {
        /// The value.
        value: T,
        /// Where it was read.
        source: ConfigSource,
    },
    /// Neither source told; each reason says why.
    Unknown(Vec<String>),
}

/// Where a setting was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The running containerd, through CRI `Status` (verbose).
    CriStatus,
    /// containerd's configuration file.
    ConfigFile(PathBuf),
    /// Not set in the file, so containerd's own default ([`DEFAULT_CONFIG_PATH`] in 2.2 and later).
    Default,
}

impl<T> Setting<T> {
    /// The value, if known.
    pub fn value(&self) -> Option<&T> {
        match self {
            Setting::Known { value, .. } => Some(value),
            Setting::Unknown(_) => None,
        }
    }
}

impl ConfigReport {
    /// What containerd's `version`, the `config` JSON of its CRI `Status` (verbose) and the file at
    /// `config_file` say; [`Containerd::config_check`] asks containerd for the first two.
    pub fn from_sources(
        version: Result<Version, String>,
        status: Result<serde_json::Value, String>,
        config_file: Option<&Path>,
    ) -> Self {
        let mut why = Vec::new();
        let status = status.map_err(|e| why.push(format!("CRI status: {e}"))).ok();
        let file = match config_file {
            Some(path) => read_file(path).map(|doc| (path.to_owned(), doc)),
            None => Err("no containerd config file given".to_owned()),
        };
        let pull = match &file {
            Ok((path, doc)) => known(pull::from_file(&Images::of(doc)), ConfigSource::ConfigFile(path.clone())),
            Err(e) => Setting::Unknown(vec![e.clone()]),
        };
        let file = file.map_err(|e| why.push(e)).ok();

        let from_status = status.as_ref().map(|json| {
            let path = json.pointer("/registry/configPath").and_then(|v| v.as_str()).map(str::to_owned);
            let discard = json.pointer("/containerd/discardUnpackedLayers").and_then(serde_json::Value::as_bool);
            (path, discard)
        });
        let config_path = match (&from_status, &file) {
            (Some((Some(path), _)), _) => known(non_empty(path), ConfigSource::CriStatus),
            (_, Some((file, doc))) => match file_config_path(doc) {
                None if defaults_config_path(&version, &pull) => {
                    known(Some(DEFAULT_CONFIG_PATH.to_owned()), ConfigSource::Default)
                }
                path => known(path, ConfigSource::ConfigFile(file.clone())),
            },
            _ => Setting::Unknown(with(&why, status.is_some(), "registry.configPath")),
        };
        let discard_unpacked_layers = match (&from_status, &file) {
            (Some((_, Some(discard))), _) => known(*discard, ConfigSource::CriStatus),
            (_, Some((file, doc))) => known(file_discard(doc), ConfigSource::ConfigFile(file.clone())),
            _ => Setting::Unknown(with(&why, status.is_some(), "containerd.discardUnpackedLayers")),
        };
        let file_version = file.as_ref().map(|(_, doc)| Images::of(doc).version);
        ConfigReport { config_path, discard_unpacked_layers, version, file_version, pull }
    }

    /// How CRI pulls, when containerd's version and (for 2.1 and later) the file's options are known.
    pub fn pull_path(&self) -> Option<PullPath> {
        let version = *self.version.as_ref().ok()?;
        if !version.has_transfer_pull() {
            return Some(PullPath::Local(Local::Only));
        }
        self.pull.value().map(|options| options.path(version))
    }

    /// Whether the file is (or, unread, containerd 2 would want) a version 3 file.
    fn version_3(&self) -> bool {
        match self.file_version {
            Some(version) => version >= 3,
            None => self.version.as_ref().is_ok_and(|v| v.major >= 2),
        }
    }

    /// The table header `config_path` goes under, for this file.
    pub fn registry_table(&self) -> &'static str {
        if self.version_3() {
            "[plugins.'io.containerd.cri.v1.images'.registry]"
        } else {
            "[plugins.\"io.containerd.grpc.v1.cri\".registry]"
        }
    }

    /// The table header `discard_unpacked_layers` goes under, for this file.
    pub fn discard_table(&self) -> &'static str {
        if self.version_3() {
            "[plugins.'io.containerd.cri.v1.images']"
        } else {
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd]"
        }
    }

    /// The table header `use_local_image_pull` goes under (the images plugin's, whatever the file's version).
    pub fn images_table(&self) -> &'static str {
        if self.version_3() {
            "[plugins.'io.containerd.cri.v1.images']"
        } else {
            "[plugins.\"io.containerd.cri.v1.images\"]"
        }
    }
}

impl Containerd {
    /// Reads containerd's version, CRI's registry `config_path`,
    /// `discard_unpacked_layers` and pull options, from the running
    /// containerd, else from `config_file`.
    pub async fn config_check(&self, config_file: Option<&Path>) -> ConfigReport {
        let version = self.version().await;
        ConfigReport::from_sources(version, self.cri_config().await, config_file)
    }

    /// containerd's version, from its Version service.
    pub async fn version(&self) -> Result<Version, String> {
        let client = &self.inner.client;
        let mut service = VersionClient::new(client.channel().await.map_err(|e| e.to_string())?);
        let reply = client.call("version", "version", service.version(())).await.map_err(|e| e.to_string())?;
        Version::parse(&reply.version).ok_or_else(|| format!("cannot read its version {:?}", reply.version))
    }

    /// The `config` JSON of CRI `Status` (verbose).
    async fn cri_config(&self) -> Result<serde_json::Value, String> {
        let client = &self.inner.client;
        let mut runtime = RuntimeServiceClient::new(client.channel().await.map_err(|e| e.to_string())?);
        let reply = client
            .call("CRI status", "CRI", runtime.status(StatusRequest { verbose: true }))
            .await
            .map_err(|e| e.to_string())?;
        let config = reply.info.get("config").ok_or("no `config` in its verbose info")?;
        serde_json::from_str(config).map_err(|e| format!("its `config` is not JSON: {e}"))
    }
}

fn known<T>(value: T, source: ConfigSource) -> Setting<T> {
    Setting::Known { value, source }
}

/// Whether an unset `config_path` means containerd's default list: 2.2 and
/// later on Linux fill it in unless the deprecated `registry.mirrors` is set.
fn defaults_config_path(version: &Result<Version, String>, pull: &Setting<PullOptions>) -> bool {
    let mirrors = pull.value().is_some_and(|p| p.registry_mirrors);
    cfg!(target_os = "linux") && version.as_ref().is_ok_and(Version::defaults_config_path) && !mirrors
}

fn non_empty(path: &str) -> Option<String> {
    (!path.is_empty()).then(|| path.to_owned())
}

/// The reasons so far, plus that CRI's config lacked `field` when it answered.
fn with(why: &[String], answered: bool, field: &str) -> Vec<String> {
    let mut all = why.to_vec();
    if answered {
        all.push(format!("CRI status config has no {field}"));
    }
    all
}

fn read_file(path: &Path) -> Result<DocumentMut, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.parse::<DocumentMut>().map_err(|e| format!("parsing {}: {e}", path.display()))
}

/// CRI's image settings in a configuration file, where containerd 2 finds
/// them: in a version 3 file the images plugin's table; in a version 1 or 2
/// file the CRI plugin's keys, which containerd's migration copies over the
/// images plugin's table (`configMigration` in `plugins/cri/images/plugin.go`),
/// so they win. containerd 1.x reads only the CRI plugin's keys.
struct Images<'a> {
    version: i64,
    cri: Option<&'a Item>,
    images: Option<&'a Item>,
}

impl<'a> Images<'a> {
    fn of(doc: &'a DocumentMut) -> Self {
        let plugins = doc.get("plugins");
        let version = doc.get("version").and_then(Item::as_integer).unwrap_or(1);
        let plugin = |name: &str| plugins.and_then(|p| p.get(name));
        let cri = match version {
            1 => plugin("cri"),
            2 => plugin("io.containerd.grpc.v1.cri"),
            _ => None,
        };
        Self { version, cri, images: plugin("io.containerd.cri.v1.images") }
    }

    /// A key at the CRI plugin's top level in version 1 and 2 (`registry`, `max_concurrent_downloads`).
    fn top(&self, key: &str) -> Option<&'a Item> {
        self.cri.and_then(|c| c.get(key)).or_else(|| self.own(key))
    }

    /// A key under the CRI plugin's `containerd` table in version 1 and 2 (`discard_unpacked_layers`).
    fn containerd(&self, key: &str) -> Option<&'a Item> {
        self.cri.and_then(|c| c.get("containerd")).and_then(|c| c.get(key)).or_else(|| self.own(key))
    }

    /// A key only the images plugin has (`use_local_image_pull`).
    fn own(&self, key: &str) -> Option<&'a Item> {
        self.images.and_then(|i| i.get(key))
    }
}

/// `config_path` as the file sets it (`None`: unset or empty).
fn file_config_path(doc: &DocumentMut) -> Option<String> {
    let path = Images::of(doc).top("registry")?.get("config_path")?.as_str()?;
    non_empty(path)
}

/// `discard_unpacked_layers` as the file sets it (containerd's default is off).
fn file_discard(doc: &DocumentMut) -> bool {
    Images::of(doc).containerd("discard_unpacked_layers").and_then(Item::as_bool).unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn doc(text: &str) -> DocumentMut {
        text.parse().unwrap()
    }

    #[test]
    fn config_versions() {
        let v2 = doc(r#"version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
[plugins."io.containerd.grpc.v1.cri".containerd]
  discard_unpacked_layers = true
"#);
        assert_eq!(file_config_path(&v2).as_deref(), Some("/etc/containerd/certs.d"));
        assert!(file_discard(&v2));

        let v3 = doc(r#"version = 3
[plugins."io.containerd.cri.v1.images"]
  discard_unpacked_layers = true
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
"#);
        assert_eq!(file_config_path(&v3).as_deref(), Some("/etc/containerd/certs.d:/etc/docker/certs.d"));
        assert!(file_discard(&v3));

        let v1 = doc("[plugins.cri.registry]\n  config_path = \"/x\"\n");
        assert_eq!(file_config_path(&v1).as_deref(), Some("/x"));
        assert!(!file_discard(&v1));

        let empty = doc("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\"\n");
        assert_eq!(file_config_path(&empty), None);
        assert_eq!(file_config_path(&doc("")), None);
        assert!(!file_discard(&doc("version = 2")));
    }

    #[test]
    fn containerd_2_reports_its_image_settings_only_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        let v = |text: &str| Version::parse(text).ok_or_else(String::new);
        // containerd 2's CRI status: the runtime plugin's settings, no registry.
        let status = || Ok(serde_json::json!({ "containerd": { "defaultRuntimeName": "runc" } }));
        let source = ConfigSource::ConfigFile(file.clone());

        std::fs::write(&file, "version = 3\n[plugins.'io.containerd.cri.v1.images']\nuse_local_image_pull = true\n")
            .unwrap();
        let report = ConfigReport::from_sources(v("2.1.9"), status(), Some(&file));
        assert_eq!(report.config_path, Setting::Known { value: None, source: source.clone() });
        assert_eq!(report.discard_unpacked_layers, Setting::Known { value: false, source: source.clone() });
        assert_eq!(report.file_version, Some(3));
        assert_eq!(report.pull_path(), Some(PullPath::Local(Local::UseLocalImagePull)));
        assert_eq!(report.registry_table(), "[plugins.'io.containerd.cri.v1.images'.registry]");

        // 2.2 fills an unset config_path with its default list, unless registry.mirrors is set.
        let report = ConfigReport::from_sources(v("2.2.1"), status(), Some(&file));
        assert_eq!(
            report.config_path,
            Setting::Known { value: Some(DEFAULT_CONFIG_PATH.to_owned()), source: ConfigSource::Default }
        );
        std::fs::write(&file, "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry.mirrors.'docker.io']\nendpoint = ['http://m']\n").unwrap();
        let report = ConfigReport::from_sources(v("2.2.1"), status(), Some(&file));
        assert_eq!(report.config_path, Setting::Known { value: None, source: source.clone() });
        assert_eq!(report.pull_path(), Some(PullPath::Local(Local::Fallback(Fallback::RegistryMirrors))));

        // Without the file, nothing about the pull path is known from 2.1 on; before, it is always local.
        let gone = dir.path().join("gone.toml");
        let report = ConfigReport::from_sources(v("2.1.9"), status(), Some(&gone));
        assert!(
            matches!(&report.pull, Setting::Unknown(why) if why.len() == 1 && why[0].starts_with("reading ")),
            "{report:?}"
        );
        assert_eq!(report.pull_path(), None);
        assert_eq!(report.registry_table(), "[plugins.'io.containerd.cri.v1.images'.registry]");
        let report = ConfigReport::from_sources(v("1.6.20"), Err("down".into()), Some(&gone));
        assert_eq!(report.pull_path(), Some(PullPath::Local(Local::Only)));
        assert_eq!(report.registry_table(), "[plugins.\"io.containerd.grpc.v1.cri\".registry]");
        assert!(matches!(&report.config_path, Setting::Unknown(why) if why.len() == 2), "{report:?}");
    }
}
