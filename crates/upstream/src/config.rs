//! How to reach registries: time-outs, and per registry its credentials and TLS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The client's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Upper bound on connecting (TCP and TLS) to a registry.
    pub connect_timeout: Duration,
    /// Upper bound on waiting for a response's headers, per request and redirect.
    pub response_timeout: Duration,
    /// Settings by registry host as `?ns=` names it (`docker.io`,
    /// `registry.example:5000`). A host without an entry gets none: no
    /// credentials, the system's roots. (There is no wildcard on purpose: a
    /// mirror's clients name the host, and credentials must not follow.)
    pub registries: BTreeMap<String, RegistrySettings>,
}

/// What one registry needs beyond its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Credentials to log in with, when the registry asks.
    pub credentials: Option<Credentials>,
    /// How to verify (and present) certificates.
    pub tls: Tls,
}

/// Credentials for a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (Basic, or to obtain a token).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// An identity (refresh) token, exchanged for access tokens.
    IdentityToken(String),
}

/// TLS settings of a registry, as k3s's `registries.yaml` spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// A CA bundle (PEM) to verify the registry with, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key_file: Option<PathBuf>,
    /// Accept any certificate (never in production).
    pub insecure_skip_verify: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(15),
            registries: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The settings for `host`, if it has any.
    pub fn settings(&self, host: &str) -> Option<&RegistrySettings> {
        self.registries.get(host)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"…").finish()
            }
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(…)"),
        }
    }
}
