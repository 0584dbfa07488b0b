//! What containerd sends a mirror that challenges, when kubelet pulls
//! through CRI `PullImage` with a pod's imagePullSecret (`AuthConfig` user
//! and password, `ServerAddress` empty) and `hosts.toml` puts the mirror
//! before the upstream. Found the same on containerd 1.6, 1.7 and 2.1:
//!
//! - `401` + `Basic`: the tag's `HEAD` and the manifest's `GET` are each
//!   sent again with `Basic base64(user:pass)`, exactly the AuthConfig's;
//!   the blob `GET`s carry it at once.
//! - `401` + `Bearer`: the token endpoint gets a `POST` form (`grant_type=
//!   password`, `client_id=containerd-client`, the AuthConfig's `username`
//!   and `password`, `scope`, `service`), no `Authorization` header, once
//!   before each manifest retry; the retries and the blob `GET`s carry
//!   `Bearer <the token issued>`.
//! - No AuthConfig: nothing more after a `Basic` challenge; an anonymous
//!   `GET /token?scope=…&service=…` after a `Bearer` one, then its token.
//! - `ServerAddress` naming the upstream (`http://host:port`): as with no
//!   AuthConfig. A bare `host:port` (the upstream's or the mirror's) gets
//!   the mirror nothing, not even an anonymous token request; only
//!   `http://<mirror>` sends the mirror the credentials.
//!
//! The mirror answers 404 once a request carries `Authorization`, and every
//! pull completes from the upstream.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerpull_testbed::{Containerd, Image, ImageBuilder, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The credentials kubelet gives CRI `PullImage` (a pod's imagePullSecret).
const SECRET: (&str, &str) = ("puller", "s3cret:with@odd chars");
/// The token the mirror's token endpoint issues.
const TOKEN: &str = "mirror-issued-token";
/// The `service` of the mirror's Bearer challenge.
const SERVICE: &str = "peerpull";
/// How long the mirror waits for one request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How the mirror challenges a `/v2/` request without `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer,
}

/// One request the mirror received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    /// The request target, query included.
    target: String,
    authorization: Option<String>,
    body: String,
}

impl Seen {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    fn is_blob(&self) -> bool {
        self.path().contains("/blobs/")
    }

    /// One line: method, path and Authorization (Basic decoded); for the
    /// token endpoint its query and form too, their fields sorted.
    fn describe(&self) -> String {
        let authorization = match self.authorization.as_deref() {
            None => "-".to_owned(),
            Some(value) => match value.strip_prefix("Basic ").and_then(base64_decode) {
                Some(decoded) => format!("Basic {}", String::from_utf8_lossy(&decoded)),
                None => value.to_owned(),
            },
        };
        let mut line = format!("{} {} {authorization}", self.method, self.path());
        if self.path() == "/token" {
            line.push_str(&format!(" query={:?} form={:?}", form(self.query()), form(&self.body)));
        }
        line
    }
}

/// A stand-in mirror on 127.0.0.1 that challenges, records every request
/// and answers 404 to any `/v2/` request that carries `Authorization`.
struct Mirror {
    url: String,
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mirror {
    async fn start(challenge: Challenge) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, realm) = (seen.clone(), format!("http://{host}/token"));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, realm) = (log.clone(), realm.clone());
                tokio::spawn(async move { serve(stream, challenge, &realm, &log).await });
            }
        });
        Self { url: format!("http://{host}"), host, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers the one request on `stream`; every answer closes the connection.
async fn serve(mut stream: TcpStream, challenge: Challenge, realm: &str, log: &Mutex<Vec<Seen>>) {
    let Ok(Some(request)) = tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await else { return };
    log.lock().unwrap().push(request.clone());
    let json = ("Content-Type", "application/json".to_owned());
    let (status, headers, body) = if request.path() == "/token" {
        ("200 OK", vec![json], format!(r#"{{"token":"{TOKEN}","access_token":"{TOKEN}","expires_in":300}}"#))
    } else if request.authorization.is_some() {
        ("404 Not Found", vec![json], r#"{"errors":[{"code":"NOT_FOUND","message":"not here"}]}"#.to_owned())
    } else {
        let value = match challenge {
            Challenge::Basic => r#"Basic realm="peerpull""#.to_owned(),
            Challenge::Bearer => {
                let name = repository(request.path()).unwrap_or_default();
                format!(r#"Bearer realm="{realm}",service="{SERVICE}",scope="repository:{name}:pull""#)
            }
        };
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_owned();
        ("401 Unauthorized", vec![("WWW-Authenticate", value), json], body)
    };
    let body = if request.method == "HEAD" { String::new() } else { body };
    let mut reply = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        reply.push_str(&format!("{name}: {value}\r\n"));
    }
    reply.push_str("\r\n");
    reply.push_str(&body);
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads one HTTP/1.1 request: its head and a `Content-Length` body.
async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut words = head.split("\r\n").next()?.split(' ');
    let (method, target) = (words.next()?.to_owned(), words.next()?.to_owned());
    let header = |name: &str| {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    Some(Seen { method, target, authorization: header("authorization"), body })
}

/// The repository of a `/v2/<name>/manifests/…` or `/v2/<name>/blobs/…` path.
fn repository(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    rest.rsplit_once("/manifests/").or_else(|| rest.rsplit_once("/blobs/")).map(|(name, _)| name)
}

/// Standard base64, padded or not, decoded.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        acc = (acc << 6) | ALPHABET.iter().position(|&a| a == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The fields of a URL-encoded query or form, decoded and sorted.
fn form(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match s.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut fields: Vec<(String, String)> = text
        .split('&')
        .filter(|f| !f.is_empty())
        .map(|f| f.split_once('=').unwrap_or((f, "")))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    fields.sort();
    fields
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    fields.sort();
    fields
}

/// What a pull gives CRI as `AuthConfig`.
#[derive(Debug, Clone, Copy)]
enum Auth {
    /// None at all.
    None,
    /// [`SECRET`], `ServerAddress` empty, as kubelet sends a pull secret.
    Secret,
    /// [`SECRET`] with `ServerAddress` the upstream's `host:port`.
    ForUpstreamHost,
    /// [`SECRET`] with `ServerAddress` `http://<upstream host:port>`.
    ForUpstreamUrl,
    /// [`SECRET`] with `ServerAddress` the mirror's `host:port`.
    ForMirrorHost,
    /// [`SECRET`] with `ServerAddress` `http://<mirror host:port>`.
    ForMirrorUrl,
}

/// What the mirror got after its challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing: no request came again.
    Nothing,
    /// Each request again with Basic [`SECRET`]; blobs with it at once.
    Basic,
    /// A token request with the password grant of [`SECRET`], then [`TOKEN`].
    PasswordGrant,
    /// An anonymous token request, then [`TOKEN`].
    AnonymousToken,
}

/// Pulls a fresh image from an upstream behind a mirror challenging as
/// `challenge`, and checks the pull and what the mirror received.
async fn pull(challenge: Challenge, auth: Auth, name: &str, outcome: Outcome) {
    let upstream = Upstream::start().await.unwrap();
    let image = ImageBuilder::new(name).layers(&[10_000]).build().unwrap();
    let repo = format!("e2e/{name}");
    let reference = image.push(&upstream, &format!("{repo}:v1")).await.unwrap();
    let mirror = Mirror::start(challenge).await;
    let node = node_behind(&upstream, &mirror).await;
    let case = format!("{} {challenge:?} challenge, AuthConfig {auth:?}", node.release());

    let pulled = match auth {
        Auth::None => node.cri_pull(&reference).await,
        Auth::Secret => node.cri_pull_as(&reference, Some(SECRET)).await,
        Auth::ForUpstreamHost => node.cri_pull_as_for(&reference, SECRET, &upstream.host()).await,
        Auth::ForUpstreamUrl => node.cri_pull_as_for(&reference, SECRET, &upstream.url()).await,
        Auth::ForMirrorHost => node.cri_pull_as_for(&reference, SECRET, &mirror.host).await,
        Auth::ForMirrorUrl => node.cri_pull_as_for(&reference, SECRET, &mirror.url).await,
    };
    assert_eq!(pulled.unwrap().manifest_digest(), Some(image.digest()), "{case}");
    let downloads = upstream.blob_downloads().unwrap();
    for blob in blobs(&image) {
        assert_eq!(downloads.get(blob), Some(&1), "{case}: {blob} from the upstream");
    }

    let seen = mirror.seen();
    let all: Vec<String> = seen.iter().map(Seen::describe).collect();
    let ns = format!("ns={}", upstream.host().replace(':', "%3A"));
    for request in seen.iter().filter(|s| s.path().starts_with("/v2/")) {
        assert_eq!(request.query(), ns, "{case}: {all:#?}");
    }
    let got: Vec<String> = seen.iter().filter(|s| !s.is_blob()).map(Seen::describe).collect();
    let mut got_blobs: Vec<String> = seen.iter().filter(|s| s.is_blob()).map(Seen::describe).collect();
    got_blobs.sort();
    let (expected, mut expected_blobs) = expected(&image, &repo, outcome);
    expected_blobs.sort();
    assert_eq!(got, expected, "{case}: all requests {all:#?}");
    assert_eq!(got_blobs, expected_blobs, "{case}: all requests {all:#?}");
}

/// The config and layer digests of a one-platform image.
fn blobs(image: &Image) -> Vec<&String> {
    let platform = &image.platforms()[0];
    std::iter::once(&platform.config.digest).chain(platform.layers.iter().map(|l| &l.digest)).collect()
}

/// The requests the mirror should see for `outcome`, described: those for
/// manifests and tokens in order, and those for blobs.
fn expected(image: &Image, repo: &str, outcome: Outcome) -> (Vec<String>, Vec<String>) {
    let tag = format!("/v2/{repo}/manifests/v1");
    let digest = format!("/v2/{repo}/manifests/{}", image.digest());
    let scope = format!("repository:{repo}:pull");
    let again = match outcome {
        Outcome::Nothing => None,
        Outcome::Basic => Some(format!("Basic {}:{}", SECRET.0, SECRET.1)),
        Outcome::PasswordGrant | Outcome::AnonymousToken => Some(format!("Bearer {TOKEN}")),
    };
    let token = match outcome {
        Outcome::PasswordGrant => {
            let form = fields(&[
                ("client_id", "containerd-client"),
                ("grant_type", "password"),
                ("password", SECRET.1),
                ("scope", &scope),
                ("service", SERVICE),
                ("username", SECRET.0),
            ]);
            Some(format!("POST /token - query={:?} form={form:?}", Vec::<(String, String)>::new()))
        }
        Outcome::AnonymousToken => {
            let query = fields(&[("scope", &scope), ("service", SERVICE)]);
            Some(format!("GET /token - query={query:?} form={:?}", Vec::<(String, String)>::new()))
        }
        Outcome::Nothing | Outcome::Basic => None,
    };
    let mut ordered = Vec::new();
    for (method, path) in [("HEAD", &tag), ("GET", &digest)] {
        ordered.push(format!("{method} {path} -"));
        ordered.extend(token.clone());
        ordered.extend(again.iter().map(|a| format!("{method} {path} {a}")));
    }
    let blob_auth = again.unwrap_or_else(|| "-".to_owned());
    let blobs = blobs(image).into_iter().map(|d| format!("GET /v2/{repo}/blobs/{d} {blob_auth}")).collect();
    (ordered, blobs)
}

/// A node whose `hosts.toml` sends pulls of `upstream` to `mirror` first.
async fn node_behind(upstream: &Upstream, mirror: &Mirror) -> Containerd {
    let node = Containerd::start().await.unwrap();
    let dir = node.config_path().join(upstream.host());
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        "server = \"{}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        upstream.url(),
        mirror.url
    );
    std::fs::write(dir.join("hosts.toml"), toml).unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_challenge_gets_the_pull_secret() {
    pull(Challenge::Basic, Auth::Secret, "cred-basic", Outcome::Basic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_challenge_gets_a_password_grant_then_the_token() {
    pull(Challenge::Bearer, Auth::Secret, "cred-bearer", Outcome::PasswordGrant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pull_secret_nothing_or_an_anonymous_token() {
    pull(Challenge::Basic, Auth::None, "cred-none-basic", Outcome::Nothing).await;
    pull(Challenge::Bearer, Auth::None, "cred-none-bearer", Outcome::AnonymousToken).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_secret_for_another_server_is_not_sent_to_the_mirror() {
    for (auth, bearer) in [(Auth::ForUpstreamHost, Outcome::Nothing), (Auth::ForUpstreamUrl, Outcome::AnonymousToken)] {
        let name = format!("cred-{auth:?}").to_lowercase();
        pull(Challenge::Basic, auth, &format!("{name}-basic"), Outcome::Nothing).await;
        pull(Challenge::Bearer, auth, &format!("{name}-bearer"), bearer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_secret_for_the_mirror_needs_its_url() {
    pull(Challenge::Basic, Auth::ForMirrorHost, "cred-mirror-host-basic", Outcome::Nothing).await;
    pull(Challenge::Bearer, Auth::ForMirrorHost, "cred-mirror-host-bearer", Outcome::Nothing).await;
    pull(Challenge::Basic, Auth::ForMirrorUrl, "cred-mirror-url-basic", Outcome::Basic).await;
    pull(Challenge::Bearer, Auth::ForMirrorUrl, "cred-mirror-url-bearer", Outcome::PasswordGrant).await;
}
