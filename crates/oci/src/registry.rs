//! Registries: the hosts images come from, and where their API really lives.
//!
//! A registry is named the way image references and containerd's `?ns=`
//! parameter name it (`docker.io`, `ghcr.io`, `127.0.0.1:5000`) and reached
//! over a scheme. A bare host means HTTPS; a URL keeps its scheme, so
//! `http://127.0.0.1:5000` is plain HTTP. Docker Hub is named `docker.io` but
//! served from `registry-1.docker.io`.

use std::fmt;
use std::str::FromStr;

/// The name Docker Hub goes by in image references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that really serves Docker Hub's registry API.
pub const DOCKER_HUB_UPSTREAM: &str = "registry-1.docker.io";

/// Other names that mean Docker Hub.
const DOCKER_HUB_ALIASES: [&str; 3] = ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];

/// How a registry is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// A registry: its canonical host name and the scheme it is reached over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registry {
    scheme: Scheme,
    host: String,
}

/// Why a registry could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Nothing was given.
    #[error("registry is empty")]
    Empty,
    /// The scheme was neither `http` nor `https`.
    #[error("registry {input:?}: unsupported scheme {scheme:?} (use http or https)")]
    Scheme { input: String, scheme: String },
    /// The host part is not a valid `host[:port]`.
    #[error("registry {input:?}: invalid host {host:?}")]
    Host { input: String, host: String },
    /// A path, query or fragment followed the host.
    #[error("registry {input:?}: must be a host or a URL without a path")]
    Path { input: String },
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl Registry {
    /// A registry reached over `scheme` at `host` (`host[:port]`).
    pub fn new(scheme: Scheme, host: &str) -> Result<Self, RegistryError> {
        let host = host.to_ascii_lowercase();
        if !valid_host(&host) {
            return Err(RegistryError::Host { input: host.clone(), host });
        }
        let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) { DOCKER_HUB.to_owned() } else { host };
        Ok(Self { scheme, host })
    }

    /// Docker Hub over HTTPS.
    pub fn docker_hub() -> Self {
        Self { scheme: Scheme::Https, host: DOCKER_HUB.to_owned() }
    }

    /// The registry's name as image references and `?ns=` spell it, e.g. `docker.io`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The scheme the registry is reached over.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host that really serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn upstream_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_UPSTREAM
        } else {
            &self.host
        }
    }

    /// The base URL of the registry API, without a trailing slash.
    pub fn upstream_url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.upstream_host())
    }
}

impl FromStr for Registry {
    type Err = RegistryError;

    /// Parses `docker.io`, `ghcr.io`, `https://ghcr.io`, `http://127.0.0.1:5000`;
    /// a bare host means HTTPS and one trailing `/` is allowed.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(RegistryError::Empty);
        }
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => {
                let parsed = match scheme.to_ascii_lowercase().as_str() {
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    _ => return Err(RegistryError::Scheme { input: input.to_owned(), scheme: scheme.to_owned() }),
                };
                (parsed, rest)
            }
            None => (Scheme::Https, trimmed),
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.contains(['/', '?', '#']) {
            return Err(RegistryError::Path { input: input.to_owned() });
        }
        Self::new(scheme, host).map_err(|_| RegistryError::Host { input: input.to_owned(), host: host.to_owned() })
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)
    }
}

/// `host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else { return false };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        if port.parse::<u16>().is_err() {
            return false;
        }
    }
    if name.is_empty() {
        return host.starts_with('[');
    }
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> Registry {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn bare_host_means_https() {
        let r = reg("ghcr.io");
        assert_eq!(r.scheme(), Scheme::Https);
        assert_eq!(r.host(), "ghcr.io");
        assert_eq!(r.upstream_url(), "https://ghcr.io");
    }

    #[test]
    fn url_keeps_its_scheme_and_port() {
        let r = reg("http://127.0.0.1:5000/");
        assert_eq!(r.scheme(), Scheme::Http);
        assert_eq!(r.host(), "127.0.0.1:5000");
        assert_eq!(r.upstream_url(), "http://127.0.0.1:5000");
        assert_eq!(r.to_string(), "http://127.0.0.1:5000");
    }

    #[test]
    fn docker_hub_names_map_to_its_real_upstream() {
        for name in ["docker.io", "https://docker.io", "index.docker.io", "registry-1.docker.io"] {
            let r = reg(name);
            assert_eq!(r.host(), DOCKER_HUB, "{name}");
            assert_eq!(r.upstream_url(), "https://registry-1.docker.io", "{name}");
        }
        assert_eq!(Registry::docker_hub(), reg("docker.io"));
    }

    #[test]
    fn ipv6_hosts() {
        assert_eq!(reg("http://[::1]:5000").host(), "[::1]:5000");
        assert_eq!(reg("[::1]").host(), "[::1]");
    }

    #[test]
    fn rejects() {
        assert_eq!("".parse::<Registry>(), Err(RegistryError::Empty));
        assert!(matches!("ftp://x.io".parse::<Registry>(), Err(RegistryError::Scheme { .. })));
        assert!(matches!("https://x.io/v2".parse::<Registry>(), Err(RegistryError::Path { .. })));
        for bad in ["x.io:", "x.io:99999", "x..io", "-x.io", "x_y.io", "[::1", "[zz]:5", "https://"] {
            assert!(bad.parse::<Registry>().is_err(), "{bad} accepted");
        }
    }
}
