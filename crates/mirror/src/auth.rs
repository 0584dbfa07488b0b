//! Who may use a mirror: proof of cluster membership on requests between
//! mirrors, and the client addresses allowed to use it as containerd does.
//!
//! A node sends every request to a peer with [`PROOF`](crate::wire::PROOF):
//! `<its peer id> <unix seconds> <hex HMAC-SHA256>` over the method, the
//! path and query, the time and the peer id, keyed from the cluster's
//! pre-shared key. A request that claims to come from a peer (the loop
//! guard) without a valid, recent proof gets 401. Any other request is a
//! client's, and only the allowed addresses (by default this node's own)
//! may send one; others get 403. A proof can be replayed within its
//! [`WINDOW`] for the same path, which gains nothing but what the path
//! already names.
//!
//! A node asking for private content on behalf of a pull it verified
//! (`private`) adds [`ACCESS`](crate::wire::ACCESS): `<unix seconds> <hex
//! HMAC-SHA256>` over the same request, keyed alike under another label, so
//! it cannot be made from a membership proof. [`Proofs::has_access`] checks it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use http::{HeaderValue, Method, Request, Response};
use ipnet::IpNet;
use peerpull_oci::ErrorCode;
use sha2::Sha256;

use crate::body::{self, Body};
use crate::wire;

/// How far a proof's time may be from ours.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// The address a request came from, as the server saw it (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Signs and checks proofs with a key every cluster node derives alike.
#[derive(Clone)]
pub(crate) struct Proofs {
    key: [u8; 32],
    /// This node's peer id, named in its proofs.
    local: String,
}

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("a request from a peer must carry a proof of cluster membership")]
    Missing,
    #[error("the proof of cluster membership is malformed")]
    Malformed,
    #[error("the proof of cluster membership is too old or from the future")]
    Stale,
    #[error("the proof of cluster membership does not check out")]
    Wrong,
}

impl std::fmt::Debug for Proofs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proofs").field("local", &self.local).finish_non_exhaustive()
    }
}

impl Proofs {
    pub(crate) fn new(key: [u8; 32], local: String) -> Self {
        Self { key, local }
    }

    /// The proof for a request this node sends.
    pub(crate) fn sign(&self, method: &Method, path_and_query: &str) -> Option<HeaderValue> {
        let now = unix_now();
        let mac = self.mac(method, path_and_query, now, &self.local)?;
        HeaderValue::from_str(&format!("{} {now} {}", self.local, hex(&mac))).ok()
    }

    /// Checks the proof a peer's request came with.
    pub(crate) fn check(
        &self,
        method: &Method,
        path_and_query: &str,
        proof: Option<&HeaderValue>,
    ) -> Result<(), Refused> {
        let text = proof.ok_or(Refused::Missing)?.to_str().map_err(|_| Refused::Malformed)?;
        let mut parts = text.split(' ');
        let (Some(peer), Some(time), Some(mac), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(Refused::Malformed);
        };
        let time: u64 = time.parse().map_err(|_| Refused::Malformed)?;
        let mac = unhex(mac).ok_or(Refused::Malformed)?;
        if unix_now().abs_diff(time) > WINDOW.as_secs() {
            return Err(Refused::Stale);
        }
        let mut expected = self.hmac().ok_or(Refused::Wrong)?;
        feed(&mut expected, method, path_and_query, time, peer);
        expected.verify_slice(&mac).map_err(|_| Refused::Wrong)
    }

    /// The access proof for a request this node sends for a verified pull.
    pub(crate) fn sign_access(&self, method: &Method, path_and_query: &str) -> Option<HeaderValue> {
        let now = unix_now();
        let mac = self.mac(method, &access_input(path_and_query), now, &self.local)?;
        HeaderValue::from_str(&format!("{now} {}", hex(&mac))).ok()
    }

    /// Whether a peer's request (its membership `proof` already checked)
    /// carries a valid access proof.
    pub(crate) fn has_access(
        &self,
        method: &Method,
        path_and_query: &str,
        proof: Option<&HeaderValue>,
        access: Option<&HeaderValue>,
    ) -> bool {
        let peer = proof.and_then(|p| p.to_str().ok()).and_then(|p| p.split(' ').next());
        let (Some(peer), Some(access)) = (peer, access.and_then(|a| a.to_str().ok())) else { return false };
        let Some((time, mac)) = access.split_once(' ') else { return false };
        let (Ok(time), Some(mac)) = (time.parse::<u64>(), unhex(mac)) else { return false };
        if unix_now().abs_diff(time) > WINDOW.as_secs() {
            return false;
        }
        let Some(mut expected) = self.hmac() else { return false };
        feed(&mut expected, method, &access_input(path_and_query), time, peer);
        expected.verify_slice(&mac).is_ok()
    }

    fn mac(&self, method: &Method, path_and_query: &str, time: u64, peer: &str) -> Option<Vec<u8>> {
        let mut mac = self.hmac()?;
        feed(&mut mac, method, path_and_query, time, peer);
        Some(mac.finalize().into_bytes().to_vec())
    }

    fn hmac(&self) -> Option<Hmac<Sha256>> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).ok()
    }
}

/// Who may use the mirror: the first layer a request meets.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    /// Checks peers' proofs, in a keyed cluster.
    proofs: Option<Proofs>,
    /// The client networks allowed besides loopback (`None`: anyone).
    clients: Option<Vec<IpNet>>,
}

impl Admission {
    pub(crate) fn new(proofs: Option<Proofs>, clients: Option<Vec<IpNet>>) -> Self {
        Self { proofs, clients }
    }

    /// The refusal for a request that may not be served: a peer's must prove
    /// membership (401), anyone else must be an allowed client (403).
    pub(crate) fn refuse<B>(&self, request: &Request<B>) -> Option<Response<Body>> {
        let headers = request.headers();
        let remote = request.extensions().get::<RemoteAddr>().map(|r| r.0.ip());
        if wire::claims_peer(headers) {
            let proofs = self.proofs.as_ref()?;
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let refused = proofs.check(request.method(), path, headers.get(wire::PROOF)).err()?;
            tracing::info!(%refused, ?remote, "refused a peer request");
            return Some(body::error(ErrorCode::Unauthorized, refused.to_string()));
        }
        if allowed(self.clients.as_deref(), remote) {
            return None;
        }
        tracing::debug!(?remote, "refused a client outside the allowed networks");
        Some(body::error(ErrorCode::Denied, "this mirror serves its own node's containerd only"))
    }
}

impl Admission {
    /// Whether a peer's request says, provably, that the pull it is for was
    /// verified to read its repository (any peer is trusted without a key).
    pub(crate) fn peer_access<B>(&self, request: &Request<B>) -> bool {
        let headers = request.headers();
        let access = headers.get(wire::ACCESS);
        match &self.proofs {
            Some(proofs) => {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                proofs.has_access(request.method(), path, headers.get(wire::PROOF), access)
            }
            None => access.is_some(),
        }
    }
}

/// Whether `addr` may use the mirror as a client, given the allowed `clients` (`None`: anyone).
pub(crate) fn allowed(clients: Option<&[IpNet]>, addr: Option<IpAddr>) -> bool {
    let Some(clients) = clients else { return true };
    let Some(addr) = addr else { return false };
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    addr.is_loopback() || clients.iter().any(|net| net.contains(&addr))
}

/// What an access proof signs in place of the path: the path, marked, so
/// that no membership proof is also an access proof.
fn access_input(path_and_query: &str) -> String {
    format!("access {path_and_query}")
}

fn feed(mac: &mut Hmac<Sha256>, method: &Method, path_and_query: &str, time: u64, peer: &str) {
    for part in [method.as_str(), path_and_query, &time.to_string(), peer] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_out_only_for_the_same_key_request_and_time() {
        let ours = Proofs::new([7; 32], "12D3KooWA".into());
        let path = "/v2/a/blobs/sha256:x?ns=docker.io";
        let proof = ours.sign(&Method::GET, path);
        assert_eq!(ours.check(&Method::GET, path, proof.as_ref()), Ok(()));
        assert_eq!(ours.check(&Method::HEAD, path, proof.as_ref()), Err(Refused::Wrong));
        assert_eq!(ours.check(&Method::GET, "/v2/a/blobs/sha256:y?ns=docker.io", proof.as_ref()), Err(Refused::Wrong));
        let theirs = Proofs::new([8; 32], "12D3KooWB".into());
        assert_eq!(ours.check(&Method::GET, path, theirs.sign(&Method::GET, path).as_ref()), Err(Refused::Wrong));
        assert_eq!(ours.check(&Method::GET, path, None), Err(Refused::Missing));
        let old = format!("12D3KooWA {} {}", unix_now() - 3600, hex(&[0; 32]));
        assert_eq!(ours.check(&Method::GET, path, HeaderValue::from_str(&old).ok().as_ref()), Err(Refused::Stale));
        for bad in ["", "a b", "a b c d", "a x 00", "a 1 zz"] {
            assert_eq!(
                ours.check(&Method::GET, path, Some(&HeaderValue::from_static(bad))),
                Err(Refused::Malformed),
                "{bad}"
            );
        }
        // A proof names its sender; claiming another id breaks it.
        let text = proof.and_then(|p| p.to_str().ok().map(str::to_owned)).unwrap_or_default();
        let forged = text.replacen("12D3KooWA", "12D3KooWZ", 1);
        assert_eq!(ours.check(&Method::GET, path, HeaderValue::from_str(&forged).ok().as_ref()), Err(Refused::Wrong));
    }

    #[test]
    fn an_access_proof_is_its_own_and_bound_to_the_request() {
        let ours = Proofs::new([7; 32], "12D3KooWA".into());
        let path = "/v2/private/app/blobs/sha256:x?ns=r.example";
        let proof = ours.sign(&Method::GET, path);
        let access = ours.sign_access(&Method::GET, path);
        assert!(ours.has_access(&Method::GET, path, proof.as_ref(), access.as_ref()));
        assert!(!ours.has_access(&Method::GET, path, proof.as_ref(), None), "none");
        assert!(!ours.has_access(
            &Method::GET,
            "/v2/private/b/blobs/sha256:x?ns=r.example",
            proof.as_ref(),
            access.as_ref()
        ));
        assert!(!ours.has_access(&Method::HEAD, path, proof.as_ref(), access.as_ref()));
        // A membership proof's time and MAC are not an access proof.
        let text = proof.as_ref().and_then(|p| p.to_str().ok()).unwrap_or_default();
        let borrowed = text.split_once(' ').map(|(_, rest)| rest).unwrap_or_default();
        assert!(!ours.has_access(&Method::GET, path, proof.as_ref(), HeaderValue::from_str(borrowed).ok().as_ref()));
        // Signed by another node for itself: the sender named in the proof must match.
        let other = Proofs::new([7; 32], "12D3KooWB".into());
        assert!(!ours.has_access(&Method::GET, path, proof.as_ref(), other.sign_access(&Method::GET, path).as_ref()));
        let theirs = Proofs::new([8; 32], "12D3KooWA".into());
        assert!(!ours.has_access(&Method::GET, path, proof.as_ref(), theirs.sign_access(&Method::GET, path).as_ref()));
    }

    fn request(from: [u8; 4], peer: bool, proof: Option<HeaderValue>) -> Request<()> {
        let path = "/v2/a/blobs/sha256:x?ns=docker.io";
        let mut request = Request::get(path).body(()).unwrap_or_else(|e| panic!("{e}"));
        request.extensions_mut().insert(RemoteAddr(SocketAddr::from((from, 40000))));
        if peer {
            request.headers_mut().insert(wire::PEER, HeaderValue::from_static("1"));
        }
        if let Some(proof) = proof {
            request.headers_mut().insert(wire::PROOF, proof);
        }
        request
    }

    #[test]
    fn admission_asks_peers_for_proof_and_clients_for_an_allowed_address() {
        let proofs = Proofs::new([7; 32], "12D3KooWA".into());
        let proof = proofs.sign(&Method::GET, "/v2/a/blobs/sha256:x?ns=docker.io");
        let nets: Vec<IpNet> = vec!["10.0.0.7/32".parse().unwrap_or_else(|e| panic!("{e}"))];
        let keyed = Admission::new(Some(proofs), Some(nets));
        let status = |r: Option<Response<Body>>| r.map(|r| r.status().as_u16());
        assert_eq!(
            status(keyed.refuse(&request([10, 0, 0, 9], true, proof.clone()))),
            None,
            "a proven peer, any address"
        );
        assert_eq!(status(keyed.refuse(&request([10, 0, 0, 9], true, None))), Some(401));
        assert_eq!(status(keyed.refuse(&request([10, 0, 0, 7], false, None))), None, "an allowed client");
        assert_eq!(status(keyed.refuse(&request([127, 0, 0, 1], false, None))), None, "loopback");
        assert_eq!(status(keyed.refuse(&request([10, 0, 0, 9], false, None))), Some(403));
        let open = Admission::new(None, Some(Vec::new()));
        assert_eq!(status(open.refuse(&request([10, 0, 0, 9], true, None))), None, "no key: a peer needs no proof");
        assert_eq!(status(open.refuse(&request([10, 0, 0, 9], false, None))), Some(403), "but a client still does");
    }

    #[test]
    fn clients_are_loopback_and_the_allowed_networks() {
        let nets: Vec<IpNet> = vec!["10.0.0.7/32".parse().unwrap_or_else(|e| panic!("{e}"))];
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert!(allowed(Some(&nets), ip("127.0.0.1")));
        assert!(allowed(Some(&nets), ip("::1")));
        assert!(allowed(Some(&nets), ip("10.0.0.7")));
        assert!(allowed(Some(&nets), ip("::ffff:10.0.0.7")));
        assert!(!allowed(Some(&nets), ip("10.0.0.8")));
        assert!(!allowed(Some(&nets), None));
        assert!(allowed(None, ip("192.0.2.1")));
    }
}
