//! k3s / RKE2 `registries.yaml`: which registries to mirror, and how to reach them.
//!
//! ```yaml
//! mirrors:
//!   docker.io:            # mirror Docker Hub
//!   "*":                  # mirror every registry (containerd's `_default`)
//! configs:
//!   registry.example.com:5000:
//!     auth: { username: me, password: secret }   # or auth: <base64 user:pass>, identitytoken
//!     tls: { ca_file: /etc/ssl/ca.pem, cert_file: …, key_file: …, insecure_skip_verify: false }
//! ```
//!
//! As in k3s's embedded registry, the keys of `mirrors` are the registries to
//! mirror; their `endpoint` lists stay k3s's business (k3s writes them into
//! its own `hosts.toml`, which `configure --prepend-existing` keeps). `configs`
//! holds the upstream credentials and TLS settings for the daemon's own
//! upstream requests. Unknown fields are ignored, as k3s ignores them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use peerpull_oci::{Registry, Scheme};
use serde::Deserialize;

use crate::target::Target;

/// A parsed `registries.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RegistriesYaml {
    /// Registry name (or `*`) → mirror settings.
    #[serde(default, deserialize_with = "map_of_nullable")]
    pub mirrors: BTreeMap<String, MirrorConfig>,
    /// Registry host (or `*`) → credentials and TLS settings.
    #[serde(default, deserialize_with = "map_of_nullable")]
    pub configs: BTreeMap<String, RegistryConfig>,
}

/// One `mirrors:` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MirrorConfig {
    /// The endpoints k3s tries for this registry, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoint: Vec<String>,
    /// Repository rewrites (regular expression → replacement).
    #[serde(default, deserialize_with = "null_as_default")]
    pub rewrite: BTreeMap<String, String>,
}

/// One `configs:` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RegistryConfig {
    /// Credentials for the registry.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// TLS settings for the registry.
    #[serde(default)]
    pub tls: Option<Tls>,
}

/// Upstream credentials, as k3s spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Auth {
    /// User name for basic authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for basic authentication.
    #[serde(default)]
    pub password: Option<String>,
    /// `base64(username:password)`, an alternative to the two above.
    #[serde(default)]
    pub auth: Option<String>,
    /// A bearer identity token.
    #[serde(default)]
    pub identitytoken: Option<String>,
}

/// Upstream TLS settings, as k3s spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Tls {
    /// Client certificate.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// CA bundle to verify the registry with.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Why a `registries.yaml` was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesYamlError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The YAML is malformed or has the wrong shape.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A `mirrors:` key is not a registry name.
    #[error("{}: mirrors: {source}", path.display())]
    Registry { path: PathBuf, source: peerpull_oci::RegistryError },
    /// An `auth` value is not base64 of `user:password`.
    #[error("{}: configs.{registry}.auth.auth is not base64 of user:password", path.display())]
    AuthField { path: PathBuf, registry: String },
}

impl RegistriesYaml {
    /// Reads and checks `path`.
    pub fn from_path(path: &Path) -> Result<Self, RegistriesYamlError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RegistriesYamlError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and checks `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, RegistriesYamlError> {
        let parsed: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_norway::from_str(text).map_err(|e| RegistriesYamlError::Parse {
                path: path.to_owned(),
                message: e.to_string().replace('\n', " "),
            })?
        };
        parsed.targets().map_err(|source| RegistriesYamlError::Registry { path: path.to_owned(), source })?;
        for (registry, config) in &parsed.configs {
            if let Some(auth) = &config.auth {
                if auth.auth.is_some() && auth.credentials().is_none() {
                    return Err(RegistriesYamlError::AuthField { path: path.to_owned(), registry: registry.clone() });
                }
            }
        }
        Ok(parsed)
    }

    /// The registries to mirror: `*` (or no mirrors at all) means `_default`.
    ///
    /// A registry is reached over HTTPS unless one of its endpoints is the
    /// registry itself over plain HTTP, as k3s users write for an HTTP registry.
    pub fn targets(&self) -> Result<Vec<Target>, peerpull_oci::RegistryError> {
        let mut targets = Vec::new();
        for (name, mirror) in &self.mirrors {
            if name == "*" {
                targets.push(Target::All);
                continue;
            }
            let registry: Registry = name.parse()?;
            let plain_http = !name.contains("://")
                && mirror.endpoint.iter().any(|e| {
                    e.parse::<Registry>().is_ok_and(|r| r.scheme() == Scheme::Http && r.host() == registry.host())
                });
            targets.push(Target::Registry(if plain_http {
                Registry::new(Scheme::Http, registry.host())?
            } else {
                registry
            }));
        }
        if targets.is_empty() {
            targets.push(Target::All);
        }
        Ok(targets)
    }

    /// The `configs` entry for a registry host, falling back to `*`.
    pub fn config_for(&self, host: &str) -> Option<&RegistryConfig> {
        self.configs.get(host).or_else(|| self.configs.get("*"))
    }
}

impl Auth {
    /// User name and password, from `username`/`password` or else decoded from `auth`.
    pub fn credentials(&self) -> Option<(String, String)> {
        if self.username.is_some() || self.password.is_some() {
            return Some((self.username.clone().unwrap_or_default(), self.password.clone().unwrap_or_default()));
        }
        let decoded = base64_decode(self.auth.as_deref()?.trim())?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((user.to_owned(), password.to_owned()))
    }
}

/// `null` in YAML (`docker.io:` with nothing after it) means an empty value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A map whose values may be `null` (`docker.io:` alone on its line).
fn map_of_nullable<'de, D, T>(deserializer: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    let map = Option::<BTreeMap<String, Option<T>>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(map.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

/// Standard base64 with optional padding; `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG86d29ybGQ="), Some(b"hello:world".to_vec()));
        assert_eq!(base64_decode("YQ"), Some(b"a".to_vec()));
        assert_eq!(base64_decode("a$"), None);
    }
}
