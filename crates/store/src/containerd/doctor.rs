//! What containerd's CRI plugin is configured with, as far as peerpull cares:
//! the registry `config_path` (without it containerd ignores `hosts.toml`,
//! so the mirror is never asked) and `discard_unpacked_layers` (with it a
//! node holds no layers to share).
//!
//! First choice is what the running containerd says: CRI `Status` with
//! `verbose = true` returns its whole configuration as JSON under the
//! `config` key, which in containerd 1.6 holds `registry.configPath` and
//! `containerd.discardUnpackedLayers`. (The introspection service exports
//! nothing about either: the CRI plugin exports only its CRI versions.)
//! A setting the running containerd does not report is read from its TOML
//! configuration file when its path is given (config versions 1, 2 and 3).
//! `imports` of other files are not followed.

use std::path::{Path, PathBuf};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::StatusRequest;
use toml_edit::{DocumentMut, Item};

use super::Containerd;

/// What is known about containerd's CRI configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigReport {
    /// CRI's registry `config_path`; a known `None` means it is not set.
    pub config_path: Setting<Option<String>>,
    /// CRI's `discard_unpacked_layers`.
    pub discard_unpacked_layers: Setting<bool>,
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

impl Containerd {
    /// Reads CRI's registry `config_path` and `discard_unpacked_layers`,
    /// from the running containerd, else from `config_file`.
    pub async fn config_check(&self, config_file: Option<&Path>) -> ConfigReport {
        let mut why = Vec::new();
        let status = match self.cri_config().await {
            Ok(json) => Some(json),
            Err(e) => {
                why.push(format!("CRI status: {e}"));
                None
            }
        };
        let file = match config_file {
            Some(path) => match read_file(path) {
                Ok(doc) => Some((path.to_owned(), doc)),
                Err(e) => {
                    why.push(e);
                    None
                }
            },
            None => {
                why.push("no containerd config file given".to_owned());
                None
            }
        };

        let from_status = status.as_ref().map(|json| {
            let path = json.pointer("/registry/configPath").and_then(|v| v.as_str()).map(str::to_owned);
            let discard = json.pointer("/containerd/discardUnpackedLayers").and_then(serde_json::Value::as_bool);
            (path, discard)
        });
        let config_path = match (&from_status, &file) {
            (Some((Some(path), _)), _) => known(non_empty(path), ConfigSource::CriStatus),
            (_, Some((file, doc))) => known(file_config_path(doc), ConfigSource::ConfigFile(file.clone())),
            _ => Setting::Unknown(with(&why, status.is_some(), "registry.configPath")),
        };
        let discard_unpacked_layers = match (&from_status, &file) {
            (Some((_, Some(discard))), _) => known(*discard, ConfigSource::CriStatus),
            (_, Some((file, doc))) => known(file_discard(doc), ConfigSource::ConfigFile(file.clone())),
            _ => Setting::Unknown(with(&why, status.is_some(), "containerd.discardUnpackedLayers")),
        };
        ConfigReport { config_path, discard_unpacked_layers }
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

/// The CRI plugin's table names for config versions 1, 2 and 3 (containerd 2: the images plugin).
fn cri_tables(doc: &DocumentMut) -> (Option<&Item>, Option<&Item>) {
    let plugins = doc.get("plugins");
    let version = doc.get("version").and_then(Item::as_integer).unwrap_or(1);
    let plugin = |name: &str| plugins.and_then(|p| p.get(name));
    match version {
        1 => (plugin("cri"), plugin("cri").and_then(|c| c.get("containerd"))),
        2 => {
            let cri = plugin("io.containerd.grpc.v1.cri");
            (cri, cri.and_then(|c| c.get("containerd")))
        }
        _ => (plugin("io.containerd.cri.v1.images"), plugin("io.containerd.cri.v1.images")),
    }
}

/// `config_path` as the file sets it (`None`: unset or empty).
fn file_config_path(doc: &DocumentMut) -> Option<String> {
    let (registry_parent, _) = cri_tables(doc);
    let path = registry_parent?.get("registry")?.get("config_path")?.as_str()?;
    non_empty(path)
}

/// `discard_unpacked_layers` as the file sets it (containerd's default is off).
fn file_discard(doc: &DocumentMut) -> bool {
    let (_, parent) = cri_tables(doc);
    parent.and_then(|p| p.get("discard_unpacked_layers")).and_then(Item::as_bool).unwrap_or(false)
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
}
