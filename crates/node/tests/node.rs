//! Nodes over in-memory stores with real routers on 127.0.0.1: what the two
//! ports answer, readiness, what gets advertised, and a blob served from a peer.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use peerpull_admin::v1::{ListAdvertisedRequest, LocateRequest, StatusRequest};
use peerpull_node::{Config, Node};
use peerpull_oci::{media, Digest, Mirrored, Reference, Registry};
use peerpull_routing::Bootstrap;
use peerpull_store::Memory;
use tokio_util::sync::CancellationToken;

const NS: &str = "?ns=registry.example:5000";

/// A running node.
struct Running {
    registry: SocketAddr,
    metrics: SocketAddr,
    router: SocketAddr,
    admin: std::path::PathBuf,
    store: Memory,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(store: Memory, mirrored: Mirrored, bootstrap: Option<SocketAddr>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.routing.bootstrap = bootstrap.map(|a| Bootstrap::parse(&a.to_string()).unwrap()).into_iter().collect();
        config.mirror.mirrored = mirrored;
        let node = Node::with_store(config, Arc::new(store.clone())).await.unwrap();
        let (registry, metrics) = (node.registry_addr(), node.metrics_addr());
        let router = node.router().clone();
        let stop = CancellationToken::new();
        tokio::spawn(node.run(stop.clone()));
        let router = router.listen_addrs().await.unwrap()[0];
        let admin = dir.path().join("admin.sock");
        Self { registry, metrics, router, admin, store, stop, _dir: dir }
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> (u16, String) {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let response = client.get(format!("http://{addr}{path}").parse().unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn metric(&self, line: &str) -> bool {
        self.get(self.metrics, "/metrics").await.1.lines().any(|l| l == line)
    }
}

/// A node on 127.0.0.1 with ports the system picks, its data and admin socket in `dir`.
fn config(dir: &std::path::Path) -> Config {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Config {
        containerd: peerpull_store::containerd::Config {
            socket: dir.join("unused.sock"),
            namespace: "k8s.io".into(),
            content_path: None,
        },
        routing: peerpull_routing::Config { listen: any, data_dir: dir.to_owned(), ..Default::default() },
        mirror: peerpull_mirror::Config {
            // No upstream here: tags come from the store and peers.
            tag_resolution: peerpull_mirror::TagResolution::PeersFirst,
            ..Default::default()
        },
        limits: peerpull_mirror::Limits::default(),
        registry_addr: any,
        metrics_addr: any,
        admin_socket: Some(dir.join("admin.sock")),
        admin_addr: None,
        debug_web: true,
        preheat: Default::default(),
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits up to 20 s for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let held = peerpull_testbed::eventually(what, Duration::from_secs(20), || {
        let check = check();
        async move { check.await.then_some(()) }
    });
    held.await.unwrap_or_else(|e| panic!("{e}"));
}

/// A store with a blob and a manifest tagged `registry.example:5000/team/app:v1`.
fn store_with_image() -> (Memory, Digest, Digest) {
    let store = Memory::new();
    let blob = store.insert(media::OCI_LAYER_GZIP, vec![7u8; 100_000]).digest;
    let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"{}","layers":[]}}"#, media::OCI_MANIFEST);
    let manifest = store.insert(media::OCI_MANIFEST, manifest.into_bytes()).digest;
    store.tag(&"registry.example:5000/team/app:v1".parse::<Reference>().unwrap(), &manifest);
    (store, blob, manifest)
}

/// A store with an image (manifest, config, layer) tagged `registry.example:5000/team/app:v2`.
fn store_with_full_image() -> (Memory, [peerpull_oci::Descriptor; 3]) {
    let store = Memory::new();
    let config = store.insert(media::OCI_CONFIG, br#"{"architecture":"amd64","os":"linux"}"#.to_vec());
    let layer = store.insert(media::OCI_LAYER_GZIP, vec![9u8; 50_000]);
    let document = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
        media::OCI_MANIFEST,
        serde_json::to_string(&config).unwrap(),
        serde_json::to_string(&layer).unwrap()
    );
    let manifest = store.insert(media::OCI_MANIFEST, document.into_bytes());
    store.tag(&"registry.example:5000/team/app:v2".parse::<Reference>().unwrap(), &manifest.digest);
    (store, [manifest, config, layer])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_answer_health_and_readiness_says_why_not() {
    let (store, ..) = store_with_image();
    let node = Running::start(store, Mirrored::All, None).await;
    for addr in [node.registry, node.metrics] {
        assert_eq!(node.get(addr, "/livez").await, (200, "ok\n".into()));
        eventually("ready", || async { node.get(addr, "/readyz").await == (200, "ok\n".into()) }).await;
    }
    let (status, verbose) = node.get(node.metrics, "/readyz?verbose").await;
    assert_eq!(status, 200, "{verbose}");
    assert_eq!(
        verbose,
        "[+]containerd ok: answers\n[+]advertisement ok: initial advertisement done\n\
         [+]routing ok: 0 peers in the routing table\n\
         [+]membership ok: OPEN: no pre-shared key, any host that reaches the router port can join\n\
         readyz check passed\n"
    );
    assert_eq!(node.get(node.metrics, "/v2/").await.0, 404, "the metrics port does not serve /v2");
    assert_eq!(node.get(node.registry, "/v2/").await.0, 200);

    node.store.set_available(false);
    assert_eq!(node.get(node.registry, "/readyz").await, (503, "containerd does not answer\n".into()));
    let (status, verbose) = node.get(node.metrics, "/readyz?verbose").await;
    assert_eq!(status, 503);
    assert!(verbose.starts_with("[-]containerd failed: containerd does not answer\n"), "{verbose}");
    assert!(verbose.ends_with("readyz check failed\n"), "{verbose}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertises_what_it_mirrors_and_withdraws_what_goes() {
    let (store, blob, _) = store_with_image();
    let other: Reference = "ghcr.io/team/other:v2".parse().unwrap();
    let only_other = store.insert(media::OCI_MANIFEST, br#"{"schemaVersion":2,"layers":[]}"#.to_vec()).digest;
    store.tag(&other, &only_other);
    let mirrored = Mirrored::Only(vec!["http://registry.example:5000".parse::<Registry>().unwrap()]);
    let node = Running::start(store, mirrored, None).await;
    // The memory store lists every digest with every registry it has seen, so all
    // three digests count as mirrored; of the tags, only registry.example's.
    eventually("3 digests and 1 tag advertised", || async {
        node.metric(r#"peerpull_advertised_keys{kind="digest"} 3"#).await
            && node.metric(r#"peerpull_advertised_keys{kind="tag"} 1"#).await
    })
    .await;
    node.store.remove(&blob);
    eventually("the removed blob withdrawn", || async {
        node.metric(r#"peerpull_advertised_keys{kind="digest"} 2"#).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_a_blob_its_peer_holds_and_counts_it_once() {
    let (store, blob, manifest) = store_with_image();
    let holder = Running::start(store, Mirrored::All, None).await;
    let node = Running::start(Memory::new(), Mirrored::All, Some(holder.router)).await;
    eventually("the node is ready", || async { node.get(node.metrics, "/readyz").await.0 == 200 }).await;
    assert!(node.metric("peerpull_routing_peers 1").await);
    let path = format!("/v2/team/app/blobs/{blob}{NS}");
    eventually("the blob is found at the peer", || async { node.get(node.registry, &path).await.0 == 200 }).await;
    let (status, body) = node.get(node.registry, &format!("/v2/team/app/manifests/v1{NS}")).await;
    assert_eq!(status, 200);
    assert_eq!(Digest::sha256_of(body.as_bytes()), manifest);
    let tag_hits = r#"peerpull_mirror_requests_total{registry="registry.example:5000",cache="hit",source="peer"}"#;
    let text = node.get(node.metrics, "/metrics").await.1;
    let hits: f64 = text.lines().find_map(|l| l.strip_prefix(tag_hits)?.trim().parse().ok()).unwrap();
    assert_eq!(hits, 2.0, "the blob and the manifest, each counted once: {text}");
    let served = format!("peerpull_mirror_bytes_served_total{{source=\"local\"}} {}", 100_000 + body.len());
    assert!(holder.metric(&served).await, "{}", holder.get(holder.metrics, "/metrics").await.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_locates_each_blob_at_its_holder() {
    let (store, [manifest, config, layer]) = store_with_full_image();
    let holder = Running::start(store, Mirrored::All, None).await;
    let node = Running::start(Memory::new(), Mirrored::All, Some(holder.router)).await;
    eventually("the node is ready", || async { node.get(node.metrics, "/readyz").await.0 == 200 }).await;
    let mut admin = peerpull_admin::connect(&node.admin).await.unwrap();
    let mut holder_admin = peerpull_admin::connect(&holder.admin).await.unwrap();
    let holder_status = holder_admin.status(StatusRequest {}).await.unwrap().into_inner();

    // Every blob of the image, each with the holder as its provider.
    let expected = [(&manifest, "manifest"), (&config, "config"), (&layer, "layer")];
    let want = LocateRequest { reference: "registry.example:5000/team/app:v2".into(), limit: 0 };
    eventually("the holder provides every blob", || {
        let (mut admin, want) = (admin.clone(), want.clone());
        let peer = holder_status.peer_id.clone();
        async move {
            let Ok(located) = admin.locate(want).await else { return false };
            let located = located.into_inner();
            located.blobs.len() == 3 && located.blobs.iter().all(|b| b.providers.iter().any(|p| p.peer_id == peer))
        }
    })
    .await;
    let located = admin.locate(want).await.unwrap().into_inner();
    assert_eq!(located.digest, manifest.digest.to_string());
    for (blob, (descriptor, role)) in located.blobs.iter().zip(expected) {
        assert_eq!(blob.digest, descriptor.digest.to_string());
        assert_eq!((blob.size, blob.role.as_str(), blob.local), (descriptor.size, role, false));
        assert_eq!(blob.media_type, descriptor.media_type);
        let provider = &blob.providers[0];
        assert_eq!(provider.mirror_addr, holder.registry.to_string(), "{blob:?}");
    }
    // The holder finds the same blobs as its own, by digest too.
    let by_digest = LocateRequest { reference: manifest.digest.to_string(), limit: 0 };
    let own = holder_admin.locate(by_digest).await.unwrap().into_inner();
    assert_eq!(
        own.blobs.iter().map(|b| (b.role.as_str(), b.local)).collect::<Vec<_>>(),
        [("manifest", true), ("config", true), ("layer", true)]
    );

    let error = admin.locate(LocateRequest { reference: "Not/A Reference".into(), limit: 0 }).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    let missing = LocateRequest { reference: "registry.example:5000/team/app:gone".into(), limit: 0 };
    assert_eq!(admin.locate(missing).await.unwrap_err().code(), tonic::Code::NotFound);

    // Status: the peer with its mirror, what each advertises.
    let status = admin.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(status.ready, "{status:?}");
    assert_eq!(status.peers.len(), 1);
    assert_eq!(status.peers[0].peer_id, holder_status.peer_id);
    assert_eq!(status.peers[0].mirror_addr, holder.registry.to_string());
    assert_eq!(status.mirror_addr, node.registry.to_string());
    assert_eq!(status.router_addr, node.router.to_string());
    assert_eq!((status.advertised_digests, status.advertised_tags), (0, 0));
    assert!(!status.private_cluster);
    assert_eq!(status.checks.len(), 4);
    let holder_status = holder_admin.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!((holder_status.advertised_digests, holder_status.advertised_tags), (3, 1));

    // ListAdvertised: every key once, a page at a time.
    let (mut keys, mut after) = (Vec::new(), String::new());
    loop {
        let page = ListAdvertisedRequest { after: after.clone(), page_size: 3 };
        let page = holder_admin.list_advertised(page).await.unwrap().into_inner();
        assert!(page.keys.len() <= 3);
        keys.extend(page.keys);
        if page.next.is_empty() {
            break;
        }
        after = page.next;
    }
    let mut expected: Vec<String> = [&manifest, &config, &layer].iter().map(|d| d.digest.to_string()).collect();
    expected.push("registry.example:5000/team/app:v2".into());
    expected.sort();
    assert_eq!(keys, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_page_shows_each_pull_and_its_source() {
    let (store, [manifest, _, layer]) = store_with_full_image();
    let (blob, manifest) = (layer.digest, manifest.digest);
    let holder = Running::start(store, Mirrored::All, None).await;
    let node = Running::start(Memory::new(), Mirrored::All, Some(holder.router)).await;
    eventually("the node is ready", || async { node.get(node.metrics, "/readyz").await.0 == 200 }).await;
    let path = format!("/v2/team/app/blobs/{blob}{NS}");
    eventually("the blob is found at the peer", || async { node.get(node.registry, &path).await.0 == 200 }).await;

    let (status, page) = node.get(node.metrics, "/debug").await;
    assert_eq!(status, 200, "{page}");
    let row = format!("data-digest=\"{blob}\" data-source=\"peer\" data-via=\"{}\"", holder.registry);
    assert!(page.contains(&row), "{page}");
    assert!(page.contains("id=\"readiness\">ready<"), "{page}");

    // The test pull of the image: its manifest is held by the peer and fetched from it.
    let (status, page) =
        node.get(node.metrics, "/debug/pull?reference=registry.example%3A5000%2Fteam%2Fapp%3Av2").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("id=\"digest\">{manifest}<")), "{page}");
    let probe = format!("data-digest=\"{manifest}\" data-role=\"manifest\" data-local=\"false\"");
    assert!(page.contains(&probe), "{page}");
    assert!(page.contains(&format!("data-source=\"peer\" data-via=\"{}\"", holder.registry)), "{page}");
    // Searching what the holder advertises.
    let (_, page) = holder.get(holder.metrics, "/debug?q=team%2Fapp").await;
    assert!(page.contains("<li><code>registry.example:5000/team/app:v2</code></li>"), "{page}");
    // Bad input is told on the page; other methods are refused.
    let (status, page) = node.get(node.metrics, "/debug/pull?reference=%3Cscript%3E").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"error\"") && !page.contains("<script>"), "{page}");
}

/// A store whose change feed ends at once, as a watcher that gave up would.
#[derive(Debug)]
struct FeedEnds(Memory);

#[async_trait::async_trait]
impl peerpull_store::Store for FeedEnds {
    async fn resolve(&self, reference: &Reference) -> Result<peerpull_oci::Descriptor, peerpull_store::StoreError> {
        self.0.resolve(reference).await
    }
    async fn describe(&self, digest: &Digest) -> Result<peerpull_oci::Descriptor, peerpull_store::StoreError> {
        self.0.describe(digest).await
    }
    async fn open(
        &self,
        digest: &Digest,
        range: Option<peerpull_oci::ByteRange>,
    ) -> Result<peerpull_store::ByteStream, peerpull_store::StoreError> {
        self.0.open(digest, range).await
    }
    async fn list(&self) -> Result<Vec<peerpull_store::Entry>, peerpull_store::StoreError> {
        self.0.list().await
    }
    fn watch(&self, _shutdown: CancellationToken) -> tokio::sync::mpsc::Receiver<peerpull_store::Change> {
        tokio::sync::mpsc::channel(1).1
    }
    async fn ping(&self) -> Result<(), peerpull_store::StoreError> {
        self.0.ping().await
    }
}

#[tokio::test]
async fn a_subsystem_that_ends_on_its_own_stops_the_node_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { admin_socket: None, debug_web: false, ..config(dir.path()) };
    let node = Node::with_store(config, Arc::new(FeedEnds(Memory::new()))).await.unwrap();
    let stop = CancellationToken::new();
    // Nobody asks it to stop: it ends because a part of it did.
    let ended = tokio::time::timeout(Duration::from_secs(20), node.run(stop)).await;
    let error = ended.expect("the node kept running without its advertiser").unwrap_err();
    assert!(error.to_string().contains("advertiser"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_asked_to_stop_ends_without_an_error() {
    // The subsystems end as soon as they are told to: none of them may count as ending on its own.
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { admin_addr: Some("127.0.0.1:0".parse().unwrap()), ..config(dir.path()) };
        let node = Node::with_store(config, Arc::new(Memory::new())).await.unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(node.run(stop.clone()));
        tokio::task::yield_now().await;
        stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(20), running).await.expect("the node stopped");
        assert!(matches!(ended, Ok(Ok(()))), "round {round}: {ended:?}");
    }
}
