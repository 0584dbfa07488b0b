//! Setting a node up: containerd honours what `peerpull configure` wrote
//! (its first request goes to the mirror), and `peerpull doctor` reports a
//! misconfigured node's problems and passes a healthy one.

#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::sync::{Arc, Mutex};

use peerpull_e2e::Cluster;
use peerpull_testbed::peerpull::{binary, configure};
use peerpull_testbed::{free_port, loopback_subnet, Containerd, ContainerdOptions, ImageBuilder, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a stand-in mirror saw: each request line, with when it arrived.
type Seen = Arc<Mutex<Vec<(std::time::Instant, String)>>>;

/// A stand-in mirror that records each request line and answers 404.
async fn recording_mirror(ip: std::net::IpAddr) -> (String, Seen) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let line = head.lines().next().unwrap_or_default().to_owned();
            log.lock().unwrap().push((std::time::Instant::now(), line));
            let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}"#;
            let reply = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_asks_the_configured_mirror_first_then_falls_back_upstream() {
    let upstream = Upstream::start().await.unwrap();
    let image = ImageBuilder::new("e2e-configure").layers(&[10_000]).build().unwrap();
    let reference = image.push(&upstream, "e2e/configure:v1").await.unwrap();
    let node = Containerd::start().await.unwrap();
    let (mirror, seen) = recording_mirror(loopback_subnet().node(0)).await;
    configure(&node, &mirror, &[upstream.url()]).await.unwrap();

    let pulled = node.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    let seen: Vec<String> = seen.lock().unwrap().iter().map(|(_, line)| line.clone()).collect();
    let first = seen.first().expect("containerd never asked the mirror");
    // containerd percent-encodes the `:` of the registry's port in `?ns=`.
    let ns = upstream.host().replace(':', "%3A");
    let expected = format!("HEAD /v2/e2e/configure/manifests/v1?ns={ns} HTTP/1.1");
    assert_eq!(first, &expected, "all requests: {seen:?}");
    for blob in &image.blobs()[1..] {
        let kind = if blob.media_type.contains("manifest") { "manifests" } else { "blobs" };
        let asked = format!("GET /v2/e2e/configure/{kind}/{}?ns={ns} HTTP/1.1", blob.digest);
        assert!(seen.contains(&asked), "the mirror was not asked for {}: {seen:?}", blob.digest);
    }
}

fn doctor(args: &[String]) -> Output {
    std::process::Command::new(binary().unwrap()).arg("doctor").args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_each_problem_of_a_misconfigured_node() {
    let node = Containerd::start_with(ContainerdOptions { discard_unpacked_layers: true, set_config_path: false })
        .await
        .unwrap();
    let ip = loopback_subnet().node(0);
    let dead = format!("http://127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()).unwrap());
    let output = doctor(&[
        "--containerd-socket".into(),
        node.socket().display().to_string(),
        "--containerd-config".into(),
        node.config_file().display().to_string(),
        "--config-path".into(),
        node.config_path().display().to_string(),
        "--registry-addr".into(),
        format!("{ip}:5000"),
        "--router-addr".into(),
        format!("{ip}:5001"),
        "--metrics-addr".into(),
        format!("{ip}:9090"),
        "--mirrored-registry".into(),
        dead.clone(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for expected in [
        "[ok]   containerd answers at",
        "[FAIL] CRI registry config_path is not set",
        "[FAIL] discard_unpacked_layers is on",
        "hosts.toml: No such file or directory",
        &format!("[FAIL] the mirror port {ip}:5000 does not answer"),
        &format!("[FAIL] the router port {ip}:5001 does not answer"),
        &format!("[warn] upstream {dead} is not reachable"),
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("fix: ").count(), stdout.matches("[FAIL]").count() + stdout.matches("[warn]").count());
    assert!(String::from_utf8_lossy(&output.stderr).contains("doctor found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_configured_running_node() {
    let cluster = Cluster::start(2).await.unwrap();
    let node = &cluster.nodes[0];
    let o = node.peerpull.options();
    peerpull_testbed::eventually("the node to count its DHT peer", std::time::Duration::from_secs(30), || async {
        (node.peerpull.metric("peerpull_routing_peers").await.ok()? >= 1.0).then_some(())
    })
    .await
    .unwrap();
    let output = doctor(&[
        "--containerd-socket".into(),
        node.containerd.socket().display().to_string(),
        "--containerd-config".into(),
        node.containerd.config_file().display().to_string(),
        "--registry-addr".into(),
        format!("{}:{}", o.ip, o.registry_port),
        "--router-addr".into(),
        format!("{}:{}", o.ip, o.router_port),
        "--metrics-addr".into(),
        format!("{}:{}", o.ip, o.metrics_port),
        "--mirrored-registry".into(),
        cluster.upstream.url(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    assert!(stdout.contains("sends pulls to this node's mirror"), "{stdout}");
    assert!(stdout.contains("the DHT has 1 peer(s)"), "{stdout}");
    assert!(stdout.contains("no problems found"), "{stdout}");
}

/// Asserts each of `expected` is in `stdout`, and that every failure and warning names its fix.
#[track_caller]
fn assert_findings(stdout: &str, expected: &[&str]) {
    for expected in expected {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("fix: ").count(), stdout.matches("[FAIL]").count() + stdout.matches("[warn]").count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_containerd_down_a_bad_config_and_another_nodes_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("config.toml");
    std::fs::write(&config_file, "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\n").unwrap();
    let certs = dir.path().join("certs.d");
    std::fs::create_dir(&certs).unwrap();
    let upstream = format!("http://127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()).unwrap());
    let configured = std::process::Command::new(binary().unwrap())
        .args(["configure", "--mirror", "http://127.0.0.9:5999", "--registry", &upstream, "--config-path"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(configured.status.success(), "{}", String::from_utf8_lossy(&configured.stderr));
    let ip = loopback_subnet().node(0);
    let socket = dir.path().join("no-containerd.sock");
    let output = doctor(&[
        "--containerd-socket".into(),
        socket.display().to_string(),
        "--containerd-config".into(),
        config_file.display().to_string(),
        "--config-path".into(),
        certs.display().to_string(),
        "--registry-addr".into(),
        format!("{ip}:5000"),
        "--mirrored-registry".into(),
        upstream,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_findings(
        &stdout,
        &[
            &format!("[FAIL] containerd does not answer at {}", socket.display()),
            "fix: start containerd, or pass its socket with --containerd-socket",
            &format!("parsing {}: TOML parse error at line 2", config_file.display()),
            "does not name this node's mirror (port 5000)",
            "http://127.0.0.9:5999",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_node_that_is_not_ready_and_has_no_peers() {
    let node = Containerd::start().await.unwrap();
    let ip = loopback_subnet().node(0);
    let upstream = Upstream::start().await.unwrap();
    let mut options = peerpull_testbed::PeerpullOptions::on(ip);
    // Its only bootstrap peer is a port nobody listens on.
    options.bootstrap = vec![format!("127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()).unwrap())];
    options.mirrored = vec![upstream.url()];
    configure(&node, &options.mirror_url(), &[upstream.url()]).await.unwrap();
    let peerpull = peerpull_testbed::Peerpull::start(&node, options.clone()).await.unwrap();
    let output = doctor(&[
        "--containerd-socket".into(),
        node.socket().display().to_string(),
        "--containerd-namespace".into(),
        "no-such-namespace".into(),
        "--containerd-config".into(),
        node.config_file().display().to_string(),
        "--registry-addr".into(),
        format!("{ip}:{}", options.registry_port),
        "--router-addr".into(),
        format!("{ip}:{}", options.router_port),
        "--metrics-addr".into(),
        format!("{ip}:{}", options.metrics_port),
        "--mirrored-registry".into(),
        upstream.url(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_findings(
        &stdout,
        &[
            "[warn] namespace no-such-namespace",
            "fix: CRI creates k8s.io with the first pull; otherwise pass --containerd-namespace",
            &format!("[FAIL] peerpull on {ip}:{} is not ready", options.metrics_port),
            "[warn] the DHT has no peers",
            "fix: check --bootstrap and that other nodes' router ports are reachable",
        ],
    );
    drop(peerpull);
}

/// Runs `peerpull configure` on `node` with `mirrors`, in order, for `upstream`.
fn configure_mirrors(node: &Containerd, mirrors: &[&str], upstream: &str) {
    let mut args = vec!["configure".to_owned(), "--config-path".into(), node.config_path().display().to_string()];
    for mirror in mirrors {
        args.extend(["--mirror".to_owned(), (*mirror).to_owned()]);
    }
    args.extend(["--registry".to_owned(), upstream.to_owned()]);
    args.extend(["--containerd-socket".to_owned(), node.socket().display().to_string()]);
    let out = std::process::Command::new(binary().unwrap()).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_uses_ipv6_mirrors_in_the_order_written() {
    let upstream = Upstream::start().await.unwrap();
    let image = ImageBuilder::new("e2e-ipv6-hosts").layers(&[10_000]).build().unwrap();
    let reference = image.push(&upstream, "e2e/ipv6:v1").await.unwrap();
    let v6 = std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    for v6_first in [true, false] {
        let node = Containerd::start().await.unwrap();
        let (ipv6, seen6) = recording_mirror(v6).await;
        let (ipv4, seen4) = recording_mirror(loopback_subnet().node(0)).await;
        // The IPv6 mirror unbracketed, as `http://$(NODE_IP):5000` reads on an IPv6 node.
        let unbracketed = ipv6.replace(['[', ']'], "");
        let order = if v6_first { [unbracketed.as_str(), &ipv4] } else { [ipv4.as_str(), &unbracketed] };
        configure_mirrors(&node, &order, &upstream.url());
        let written = std::fs::read_to_string(node.config_path().join(upstream.host()).join("hosts.toml")).unwrap();
        // containerd 1.x refuses a `]` in a table header; 2.x reads hosts only from headers.
        let escaped = ipv6.replace('[', "\\u005B").replace(']', "\\u005D");
        let form = if node.release().major_minor() >= (2, 0) {
            format!("[host.\"{escaped}\"]")
        } else {
            format!("'{ipv6}'.capabilities")
        };
        assert!(written.contains(&form), "{written}");

        let pulled = node.cri_pull(&reference).await.unwrap();
        assert_eq!(pulled.manifest_digest(), Some(image.digest()));
        // Both mirrors were asked for the tag (each answers 404), the first one first.
        let ns = upstream.host().replace(':', "%3A");
        let head = format!("HEAD /v2/e2e/ipv6/manifests/v1?ns={ns} HTTP/1.1");
        let asked = |seen: &Seen| seen.lock().unwrap().iter().find(|(_, line)| *line == head).map(|(at, _)| *at);
        let (at6, at4) = (asked(&seen6), asked(&seen4));
        let (Some(at6), Some(at4)) = (at6, at4) else { panic!("a mirror was skipped: {at6:?} {at4:?}\n{written}") };
        assert_eq!(at6 < at4, v6_first, "containerd did not keep the written order:\n{written}");
    }
}
