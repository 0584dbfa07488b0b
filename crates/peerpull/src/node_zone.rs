//! `--zone-from-node`: this node's zone, as Kubernetes labels the Node.
//!
//! [`zone_of_node`] reads the Node object once through the API server, the
//! way every in-cluster client finds it: the address from
//! `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`, the pod's
//! service account token and the cluster's CA certificate from
//! `/var/run/secrets/kubernetes.io/serviceaccount`. It returns the Node's
//! `topology.kubernetes.io/zone` label. The pod needs `get` on `nodes`
//! (the Helm chart grants that one rule); the downward API cannot give a
//! pod its node's labels, which is why this asks the API server at all.
//!
//! This module owns that one request and nothing about what a zone
//! changes. It does not watch the Node: a node relabelled later keeps the
//! zone it started with until the pod restarts. [`Api`] holds what the
//! request needs, so tests point it at a server of their own.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

/// The Node label that names its zone.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Where Kubernetes mounts a pod's service account token and CA certificate.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The longest the whole request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest Node object read (its status lists images; a few hundred KiB at most).
const MAX_NODE_BYTES: usize = 4 << 20;
/// How much of an error body goes into the error.
const MAX_ERROR_CHARS: usize = 300;

/// The API server and how to talk to it.
#[derive(Clone)]
pub(crate) struct Api {
    /// `https://host:port`, without a trailing slash.
    pub(crate) base_url: String,
    /// The bearer token.
    pub(crate) token: String,
    /// The CA certificates (PEM) the API server's certificate must chain to.
    pub(crate) ca_pem: Vec<u8>,
}

/// The part of a Node this reads.
#[derive(Deserialize)]
struct Node {
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The part of an API error (`kind: Status`) this reads.
#[derive(Deserialize)]
struct Status {
    message: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl Api {
    /// The API server of the cluster this pod runs in.
    pub(crate) fn in_cluster() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                anyhow!("{name} is not set: --zone-from-node works in a Kubernetes pod only (or set --zone)")
            })
        };
        Self::read(&var("KUBERNETES_SERVICE_HOST")?, &var("KUBERNETES_SERVICE_PORT")?, Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// The API server at `host`:`port`, with the token and `ca.crt` from `dir`.
    fn read(host: &str, port: &str, dir: &Path) -> anyhow::Result<Self> {
        let file = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).with_context(|| {
                format!("reading {} (is the service account token mounted in the pod?)", path.display())
            })
        };
        let token = String::from_utf8(file("token")?)
            .map_err(|_| anyhow!("{}: the token is not text", dir.join("token").display()))?
            .trim()
            .to_owned();
        if token.is_empty() {
            bail!("{}: the token is empty", dir.join("token").display());
        }
        let ca_pem = file("ca.crt")?;
        // An IPv6 address is bracketed in a URL.
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        Ok(Self { base_url: format!("https://{host}:{port}"), token, ca_pem })
    }
}

/// The zone label of the Node named `node`, read from the API server of the
/// cluster this pod runs in; `None` when the Node has no such label (or an
/// empty one).
pub(crate) async fn zone_of_node(node: &str) -> anyhow::Result<Option<String>> {
    let api = Api::in_cluster()?;
    zone_of_node_at(&api, node).await
}

/// [`zone_of_node`] against `api`.
pub(crate) async fn zone_of_node_at(api: &Api, node: &str) -> anyhow::Result<Option<String>> {
    check_node_name(node)?;
    let url = format!("{}/api/v1/nodes/{node}", api.base_url.trim_end_matches('/'));
    let what = || format!("reading the zone of node {node}: GET {url}");
    let body = tokio::time::timeout(TIMEOUT, get(api, &url))
        .await
        .map_err(|_| anyhow!("no answer within {} s", TIMEOUT.as_secs()))
        .and_then(|answer| answer)
        .with_context(what)?;
    let node: Node = serde_json::from_slice(&body).context("the answer is not a Node object").with_context(what)?;
    Ok(node.metadata.labels.get(ZONE_LABEL).filter(|zone| !zone.is_empty()).cloned())
}

/// A Node's name is a DNS subdomain; anything else (such as an unexpanded
/// `$(NODE_NAME)`) would make another URL.
fn check_node_name(node: &str) -> anyhow::Result<()> {
    let valid = !node.is_empty()
        && node.len() <= 253
        && node.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        bail!("{node:?} is not a Kubernetes node name (lowercase letters, digits, '-' and '.')");
    }
    Ok(())
}

/// `GET url` with the token; the body of a `200 OK`.
async fn get(api: &Api, url: &str) -> anyhow::Result<Bytes> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls(&api.ca_pem)?)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = Request::get(url)
        .header(AUTHORIZATION, format!("Bearer {}", api.token))
        .header(ACCEPT, "application/json")
        .body(Empty::new())
        .context("building the request")?;
    let response = client.request(request).await.context("no connection to the API server")?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_NODE_BYTES)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer ({status}): {e}"))?
        .to_bytes();
    if status != StatusCode::OK {
        bail!("the API server answered {status}{}", explanation(status, &body));
    }
    Ok(body)
}

/// The client TLS settings: only `ca_pem` is trusted.
fn tls(ca_pem: &[u8]) -> anyhow::Result<ClientConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the API server's CA certificate is not PEM: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("the API server's CA certificate holds no usable certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS settings")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What the API server said besides the status: its `Status` message, and
/// what the usual refusals mean here.
fn explanation(status: StatusCode, body: &[u8]) -> String {
    let said = match serde_json::from_slice::<Status>(body) {
        Ok(answer) => answer.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let said: String = said.chars().take(MAX_ERROR_CHARS).collect();
    let hint = match status {
        StatusCode::UNAUTHORIZED => " (the service account token was not accepted)",
        StatusCode::FORBIDDEN => " (the pod's service account needs `get` on `nodes`: a ClusterRole and binding)",
        _ => "",
    };
    if said.is_empty() {
        hint.to_owned()
    } else {
        format!(": {said}{hint}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::{BufRead, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use rustls::{ServerConfig, ServerConnection, StreamOwned};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;

    const TOKEN: &str = "the-service-account-token";

    /// What the API server of a test answers to its one request.
    enum Answer {
        Status(u16, String),
        /// Reads the request and says nothing.
        Nothing,
    }

    /// What the API server of a test was sent; empty when no request arrived.
    #[derive(Debug, Default)]
    struct Seen {
        request_line: String,
        headers: Vec<(String, String)>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// A self-signed certificate for 127.0.0.1.
    fn certificate() -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert, key)
    }

    /// An HTTPS server on 127.0.0.1 that answers one request; the [`Api`]
    /// that trusts its certificate, and what it was sent.
    fn api_server(answer: Answer) -> (Api, JoinHandle<Seen>) {
        let (cert, key) = certificate();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(StreamOwned::new(ServerConnection::new(Arc::new(config)).unwrap(), tcp));
            let seen = read_request(&mut reader);
            let mut tls = reader.into_inner();
            match answer {
                Answer::Status(code, body) if !seen.request_line.is_empty() => {
                    let head = format!(
                        "HTTP/1.1 {code} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n",
                        body.len()
                    );
                    tls.write_all(head.as_bytes()).unwrap();
                    tls.write_all(body.as_bytes()).unwrap();
                    tls.conn.send_close_notify();
                    tls.flush().unwrap();
                }
                // Until the client gives up and closes.
                _ => while tls.read(&mut [0; 64]).is_ok_and(|n| n > 0) {},
            }
            seen
        });
        let base_url = format!("https://127.0.0.1:{port}");
        (Api { base_url, token: TOKEN.to_owned(), ca_pem: cert.pem().into_bytes() }, server)
    }

    /// The request line and headers; as far as they arrived when the
    /// handshake or the connection failed.
    fn read_request(reader: &mut impl BufRead) -> Seen {
        let mut seen = Seen::default();
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return seen;
        }
        seen.request_line = line.trim_end().to_owned();
        loop {
            line.clear();
            if reader.read_line(&mut line).is_err() {
                return seen;
            }
            let Some((name, value)) = line.trim_end().split_once(": ") else { return seen };
            seen.headers.push((name.to_owned(), value.to_owned()));
        }
    }

    fn node(labels: Option<&str>) -> String {
        let labels = labels.map(|l| format!(r#","labels":{l}"#)).unwrap_or_default();
        format!(
            r#"{{"kind":"Node","apiVersion":"v1","metadata":{{"name":"node-a"{labels}}},
               "status":{{"nodeInfo":{{"kubeletVersion":"v1.33.1"}}}}}}"#
        )
    }

    #[tokio::test]
    async fn the_zone_label_of_the_node_is_read_with_the_token() {
        let labels = r#"{"kubernetes.io/hostname":"node-a","topology.kubernetes.io/zone":"eu-west-1b"}"#;
        let (api, server) = api_server(Answer::Status(200, node(Some(labels))));
        let zone = zone_of_node_at(&api, "node-a").await.unwrap();
        assert_eq!(zone.as_deref(), Some("eu-west-1b"));
        let seen = server.join().unwrap();
        assert_eq!(seen.request_line, "GET /api/v1/nodes/node-a HTTP/1.1");
        assert_eq!(seen.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(seen.header("accept"), Some("application/json"));
    }

    #[tokio::test]
    async fn a_node_without_the_label_has_no_zone() {
        for labels in
            [Some(r#"{"kubernetes.io/hostname":"node-a"}"#), Some(r#"{"topology.kubernetes.io/zone":""}"#), None]
        {
            let (api, server) = api_server(Answer::Status(200, node(labels)));
            assert_eq!(zone_of_node_at(&api, "node-a").await.unwrap(), None, "{labels:?}");
            server.join().unwrap();
        }
    }

    #[tokio::test]
    async fn a_refusal_names_the_status_and_what_is_missing() {
        let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,
            "message":"nodes \"node-a\" is forbidden: User \"system:serviceaccount:peerpull-system:peerpull\" cannot get resource \"nodes\""}"#;
        let (api, server) = api_server(Answer::Status(403, status.to_owned()));
        let error = format!("{:#}", zone_of_node_at(&api, "node-a").await.unwrap_err());
        assert!(error.contains("/api/v1/nodes/node-a"), "{error}");
        assert!(error.contains("403 Forbidden"), "{error}");
        assert!(error.contains("cannot get resource \"nodes\""), "{error}");
        assert!(error.contains("`get` on `nodes`"), "{error}");
        server.join().unwrap();
    }

    #[tokio::test]
    async fn a_server_the_ca_does_not_vouch_for_is_not_sent_the_token() {
        let (mut api, server) = api_server(Answer::Status(200, node(None)));
        api.ca_pem = certificate().0.pem().into_bytes();
        let error = format!("{:#}", zone_of_node_at(&api, "node-a").await.unwrap_err());
        assert!(error.contains("no connection to the API server"), "{error}");
        let seen = server.join().unwrap();
        assert!(seen.request_line.is_empty() && seen.headers.is_empty(), "the server was sent {seen:?}");
    }

    #[tokio::test]
    async fn a_silent_api_server_is_given_up_on() {
        tokio::time::pause();
        let (api, server) = api_server(Answer::Nothing);
        let error = format!("{:#}", zone_of_node_at(&api, "node-a").await.unwrap_err());
        assert!(error.contains("no answer within 5 s"), "{error}");
        // Not joined: with the clock paused the client may give up before it even connects,
        // leaving the server waiting for a connection that never comes.
        drop(server);
    }

    #[tokio::test]
    async fn a_name_that_is_no_node_name_is_refused_before_asking() {
        let api = Api { base_url: "https://127.0.0.1:1".to_owned(), token: TOKEN.to_owned(), ca_pem: Vec::new() };
        for name in ["", "$(NODE_NAME)", "node-a/../../secrets", "Node-A"] {
            let error = zone_of_node_at(&api, name).await.unwrap_err().to_string();
            assert!(error.contains("is not a Kubernetes node name"), "{name}: {error}");
        }
    }

    #[test]
    fn the_service_account_files_are_read_and_named_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let error = format!("{:#}", Api::read("10.96.0.1", "443", dir.path()).unwrap_err());
        assert!(error.contains(&dir.path().join("token").display().to_string()), "{error}");
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let error = format!("{:#}", Api::read("10.96.0.1", "443", dir.path()).unwrap_err());
        assert!(error.contains(&dir.path().join("ca.crt").display().to_string()), "{error}");
        std::fs::write(dir.path().join("ca.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let api = Api::read("10.96.0.1", "443", dir.path()).unwrap();
        assert_eq!((api.base_url.as_str(), api.token.as_str()), ("https://10.96.0.1:443", TOKEN));
        let api = Api::read("fd00::1", "6443", dir.path()).unwrap();
        assert_eq!(api.base_url, "https://[fd00::1]:6443");
    }
}
