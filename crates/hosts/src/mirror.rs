//! A mirror that containerd should try before the upstream: normally this
//! node's peerpull `/v2` endpoint, e.g. `http://10.0.0.7:5000`.
//!
//! A mirror is always a full URL with an explicit scheme. peerpull serves
//! plain HTTP, so guessing HTTPS for a bare `host:port` (as a registry name
//! does) would silently produce a mirror containerd can never reach.
//!
//! An IPv6 literal may come without its brackets when a port follows,
//! `http://fd00::7:5000`, since that is what `http://$(NODE_IP):5000`
//! becomes on an IPv6 node (Kubernetes cannot bracket a variable); it is
//! read as `http://[fd00::7]:5000`, the last `:` starting the port.

use std::fmt;
use std::str::FromStr;

use peerpull_oci::Registry;

/// A mirror URL, `http(s)://host[:port]`, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mirror {
    url: String,
}

/// Why a mirror URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    /// No `http://` or `https://` in front of the host.
    #[error("mirror {input:?}: must be a URL starting with http:// or https://")]
    NoScheme { input: String },
    /// The rest did not parse as `scheme://host[:port]`.
    #[error("mirror {input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

impl Mirror {
    /// The URL as containerd's `[host."…"]` key spells it.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl FromStr for Mirror {
    type Err = MirrorError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(MirrorError::NoScheme { input: input.to_owned() });
        };
        let bracketed = bracket_ipv6(rest);
        let rest = bracketed.as_deref().unwrap_or(rest);
        let trimmed = format!("{scheme}://{rest}");
        // The registry parser checks scheme, host and port and refuses a path.
        Registry::from_str(&trimmed)
            .map_err(|e| MirrorError::Invalid { input: input.to_owned(), reason: reason_of(&e.to_string()) })?;
        let host = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
        Ok(Self { url: format!("{}://{}", scheme.to_ascii_lowercase(), host) })
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// `fd00::7:5000` as `[fd00::7]:5000`: an unbracketed IPv6 literal followed by a port.
fn bracket_ipv6(authority: &str) -> Option<String> {
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains('[') || authority.matches(':').count() < 2 {
        return None;
    }
    let (host, port) = authority.rsplit_once(':')?;
    let ip: std::net::Ipv6Addr = host.parse().ok()?;
    let port: u16 = port.parse().ok()?;
    Some(format!("[{ip}]:{port}"))
}

/// The registry error repeats the input; keep only what went wrong.
fn reason_of(message: &str) -> String {
    match message.split_once(": ") {
        Some((_, reason)) => reason.to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let m: Mirror = "HTTP://10.0.0.7:5000/".parse().unwrap();
        assert_eq!(m.as_str(), "http://10.0.0.7:5000");
        assert_eq!("https://[::1]:5000".parse::<Mirror>().unwrap().to_string(), "https://[::1]:5000");
        // What `http://$(NODE_IP):5000` becomes on an IPv6 node.
        assert_eq!("http://fd00::7:5000".parse::<Mirror>().unwrap().to_string(), "http://[fd00::7]:5000");
        assert_eq!("http://FD00:0::7:5000/".parse::<Mirror>().unwrap().to_string(), "http://[fd00::7]:5000");
    }

    #[test]
    fn rejects() {
        assert!(matches!("10.0.0.7:5000".parse::<Mirror>(), Err(MirrorError::NoScheme { .. })));
        for bad in ["ftp://x:5000", "http://x:5000/v2", "http://", "http://x:99999", "http://a b"] {
            let err = bad.parse::<Mirror>().unwrap_err();
            assert!(matches!(err, MirrorError::Invalid { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains('\n'));
        }
    }
}
