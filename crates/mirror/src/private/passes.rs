//! Verified pulls: which credentials the upstream accepted for which
//! repository, and when, and which digests a repository's verified
//! manifests name.
//!
//! Credentials are never kept: a [`Fingerprint`] is an HMAC-SHA256 of them
//! under a key made at start, so it cannot be turned back into them nor
//! compared across nodes or restarts. Everything here is bounded and
//! forgets what is older than the grace.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use peerpull_oci::Digest;
use peerpull_upstream::Credentials;
use sha2::Sha256;
use tokio::time::Instant;

use super::known::Repo;

/// The most verifications remembered.
const MAX_VERIFIED: usize = 10_000;
/// The most repositories whose manifests' digests are remembered, and digests per repository.
const MAX_NAMED: usize = 1_000;
const MAX_DIGESTS: usize = 10_000;

/// A fingerprint of a pull's credentials (hex, 16 bytes of an HMAC).
pub(crate) type Fingerprint = String;

/// The verifications and named digests of one mirror.
pub(crate) struct Passes {
    key: [u8; 32],
    grace: Duration,
    verified: Mutex<HashMap<(Fingerprint, Repo), Instant>>,
    named: Mutex<HashMap<Repo, HashMap<Digest, Instant>>>,
}

impl std::fmt::Debug for Passes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passes").field("grace", &self.grace).finish_non_exhaustive()
    }
}

impl Passes {
    /// Passes kept for `grace`, fingerprinted under a fresh random key.
    pub(crate) fn new(grace: Duration) -> Self {
        let mut key = [0u8; 32];
        if let Err(error) = getrandom::fill(&mut key) {
            // Without randomness the fingerprints are still one-way, only predictable.
            tracing::warn!(%error, "no random key for credential fingerprints");
        }
        Self { key, grace, verified: Mutex::default(), named: Mutex::default() }
    }

    /// The fingerprint of `credentials`.
    pub(crate) fn fingerprint(&self, credentials: &Credentials) -> Fingerprint {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else { return String::new() };
        match credentials {
            Credentials::Basic { username, password } => {
                mac.update(b"basic\n");
                mac.update(username.as_bytes());
                mac.update(b"\n");
                mac.update(password.as_bytes());
            }
            Credentials::IdentityToken(token) => {
                mac.update(b"token\n");
                mac.update(token.as_bytes());
            }
        }
        mac.finalize().into_bytes().iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// How long ago the upstream last accepted `fingerprint` for `repo`, within the grace.
    pub(crate) fn verified_ago(&self, fingerprint: &str, repo: &Repo) -> Option<Duration> {
        let verified = self.verified.lock();
        let at = verified.get(&(fingerprint.to_owned(), repo.clone()))?;
        Some(at.elapsed()).filter(|ago| *ago < self.grace)
    }

    /// The upstream accepted `fingerprint` for `repo` just now.
    pub(crate) fn verify(&self, fingerprint: &str, repo: &Repo) {
        let mut verified = self.verified.lock();
        if verified.len() >= MAX_VERIFIED {
            let grace = self.grace;
            verified.retain(|_, at| at.elapsed() < grace);
            if verified.len() >= MAX_VERIFIED {
                let oldest = verified.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    verified.remove(&oldest);
                }
            }
        }
        verified.insert((fingerprint.to_owned(), repo.clone()), Instant::now());
    }

    /// Whether a manifest served to a verified pull of `repo` within the grace named `digest`.
    pub(crate) fn names(&self, repo: &Repo, digest: &Digest) -> bool {
        let named = self.named.lock();
        named.get(repo).and_then(|digests| digests.get(digest)).is_some_and(|at| at.elapsed() < self.grace)
    }

    /// Remembers that a verified manifest of `repo` names `digests`.
    pub(crate) fn name(&self, repo: &Repo, digests: impl IntoIterator<Item = Digest>) {
        let mut named = self.named.lock();
        if !named.contains_key(repo) && named.len() >= MAX_NAMED {
            let grace = self.grace;
            named.retain(|_, digests| digests.values().any(|at| at.elapsed() < grace));
            if named.len() >= MAX_NAMED {
                return;
            }
        }
        let digests_of = named.entry(repo.clone()).or_default();
        let now = Instant::now();
        for digest in digests {
            if digests_of.len() >= MAX_DIGESTS && !digests_of.contains_key(&digest) {
                let grace = self.grace;
                digests_of.retain(|_, at| at.elapsed() < grace);
                if digests_of.len() >= MAX_DIGESTS {
                    break;
                }
            }
            digests_of.insert(digest, now);
        }
    }

    /// Every verification within the grace: fingerprint, repository, how long ago; newest first.
    pub(crate) fn list(&self) -> Vec<(Fingerprint, Repo, Duration)> {
        let verified = self.verified.lock();
        let mut out: Vec<_> = verified
            .iter()
            .map(|((fingerprint, repo), at)| (fingerprint.clone(), repo.clone(), at.elapsed()))
            .filter(|(_, _, ago)| *ago < self.grace)
            .collect();
        out.sort_by_key(|(_, _, ago)| *ago);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> Credentials {
        Credentials::Basic { username: user.into(), password: password.into() }
    }

    #[test]
    fn fingerprints_tell_credentials_apart_and_hide_them() {
        let passes = Passes::new(Duration::from_secs(60));
        let a = passes.fingerprint(&basic("team-a", "secret"));
        assert_eq!(a, passes.fingerprint(&basic("team-a", "secret")));
        assert_ne!(a, passes.fingerprint(&basic("team-a", "secreT")));
        assert_ne!(a, passes.fingerprint(&basic("team-a\nsecret", "")));
        assert_ne!(a, Passes::new(Duration::from_secs(60)).fingerprint(&basic("team-a", "secret")), "keyed per start");
        assert!(!a.contains("secret") && a.len() == 32);
    }

    #[tokio::test(start_paused = true)]
    async fn a_verification_holds_for_its_repository_within_the_grace() {
        let passes = Passes::new(Duration::from_secs(60));
        let (app, other) = (("r".to_owned(), "team/app".to_owned()), ("r".to_owned(), "team/other".to_owned()));
        let digest = Digest::sha256_of(b"layer");
        passes.verify("f1", &app);
        passes.name(&app, [digest.clone()]);
        assert!(passes.verified_ago("f1", &app).is_some());
        assert!(passes.verified_ago("f2", &app).is_none(), "other credentials");
        assert!(passes.verified_ago("f1", &other).is_none(), "another repository");
        assert!(passes.names(&app, &digest) && !passes.names(&other, &digest));
        assert_eq!(passes.list().len(), 1);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(passes.verified_ago("f1", &app).is_none(), "past the grace");
        assert!(!passes.names(&app, &digest));
        assert!(passes.list().is_empty());
    }
}
