//! Readiness findings from both sources, and doctor against a real admin
//! socket and a real metrics port (a stub daemon on a socket in a temporary
//! directory, a one-line HTTP server on loopback).

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use peerpull_admin::v1;
use tonic::{Request, Response, Status as GrpcStatus};

use super::*;
use crate::doctor::Status;

const READY: &str = "[+]containerd ok: answers\n[+]advertisement ok: initial advertisement done\n\
                     [+]routing ok: 3 peers in the routing table\n\
                     [+]membership ok: private cluster, pre-shared key ab12cd34\nreadyz check passed\n";

const NOT_READY_BODY: &str = "[-]containerd failed: containerd does not answer\n[+]advertisement ok: done\n\
                              [-]routing failed: no peer in the routing table\n\
                              [+]membership ok: OPEN: no pre-shared key, any host that reaches the router port \
                              can join\nreadyz check failed\n";

fn addr() -> SocketAddr {
    "127.0.0.1:9090".parse().unwrap()
}

fn lines(checks: &[Check]) -> Vec<String> {
    checks.iter().map(ToString::to_string).collect()
}

fn named(name: &str, ok: bool, detail: &str) -> v1::Check {
    v1::Check { name: name.into(), ok, detail: detail.into() }
}

fn peers(n: usize) -> Vec<v1::Peer> {
    (0..n).map(|i| v1::Peer { peer_id: format!("peer-{i}"), mirror_addr: String::new(), zone: String::new() }).collect()
}

/// The `Status` of the node `READY` describes.
fn ready_status() -> v1::StatusResponse {
    v1::StatusResponse {
        mirror_addr: "0.0.0.0:5000".into(),
        ready: true,
        checks: vec![
            named("containerd", true, "answers"),
            named("advertisement", true, "initial advertisement done"),
            named("routing", true, "3 peers in the routing table"),
            named("membership", true, "private cluster, pre-shared key ab12cd34"),
        ],
        peers: peers(3),
        private_cluster: true,
        ..Default::default()
    }
}

/// The `Status` of the node `NOT_READY_BODY` describes.
fn not_ready_status() -> v1::StatusResponse {
    v1::StatusResponse {
        mirror_addr: "0.0.0.0:5000".into(),
        ready: false,
        checks: vec![
            named("containerd", false, "containerd does not answer"),
            named("advertisement", true, "done"),
            named("routing", false, "no peer in the routing table"),
            named("membership", true, "OPEN: no pre-shared key, any host that reaches the router port can join"),
        ],
        peers: vec![],
        private_cluster: false,
        ..Default::default()
    }
}

#[test]
fn readiness_and_peers_come_from_the_verbose_report() {
    let checks = findings(addr(), &Report::from_readyz(200, READY));
    assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Ok, Status::Ok, Status::Ok]);
    assert_eq!(checks[1].what, "the DHT has 3 peer(s)");
    assert_eq!(checks[2].what, "the cluster is private (private cluster, pre-shared key ab12cd34)");

    let alone = READY.replace("3 peers", "0 peers");
    assert_eq!(findings(addr(), &Report::from_readyz(200, &alone))[1].status, Status::Warn);

    let checks = findings(addr(), &Report::from_readyz(503, NOT_READY_BODY));
    assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Fail, Status::Warn, Status::Warn]);
    assert_eq!(
        checks[0].what,
        "peerpull on 127.0.0.1:9090 is not ready (503): [-]containerd failed: containerd does not answer; \
         [-]routing failed: no peer in the routing table"
    );

    // An older peerpull answers the plain probe only.
    let checks = findings(addr(), &Report::from_readyz(200, "ok\n"));
    assert_eq!(
        lines(&checks),
        [
            "[ok]   peerpull on 127.0.0.1:9090 is ready",
            "[warn] peerpull does not report its DHT peers\n       fix: upgrade peerpull"
        ]
    );
    let checks = findings(addr(), &Report::from_readyz(503, "containerd does not answer\n"));
    assert_eq!(checks[0].what, "peerpull on 127.0.0.1:9090 is not ready (503): containerd does not answer");
}

#[test]
fn the_typed_status_gives_the_lines_the_verbose_report_gave() {
    for (status, code, body) in [(ready_status(), 200, READY), (not_ready_status(), 503, NOT_READY_BODY)] {
        let typed = lines(&findings(addr(), &Report::from_status(&status)));
        let scraped = lines(&findings(addr(), &Report::from_readyz(code, body)));
        assert_eq!(typed, scraped);
    }
    // The peer count is the routing table's, whatever the check's text says.
    let mut status = ready_status();
    status.peers = peers(1);
    status.checks[2].detail = "ready".into();
    assert_eq!(findings(addr(), &Report::from_status(&status))[1].what, "the DHT has 1 peer(s)");
}

#[test]
fn a_socket_answers_for_the_node_listening_there() {
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(same_listener(at("0.0.0.0:5000"), at("10.0.0.7:5000")));
    assert!(same_listener(at("10.0.0.7:5000"), at("0.0.0.0:5000")));
    assert!(same_listener(at("[::1]:5000"), at("[::1]:5000")));
    assert!(!same_listener(at("10.0.0.7:5000"), at("10.0.0.8:5000")));
    assert!(!same_listener(at("0.0.0.0:5000"), at("0.0.0.0:5100")));
}

/// A daemon's admin API that answers `Status` only.
#[derive(Debug, Clone)]
struct Daemon(v1::StatusResponse);

#[tonic::async_trait]
impl peerpull_admin::Admin for Daemon {
    async fn status(&self, _: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, GrpcStatus> {
        Ok(Response::new(self.0.clone()))
    }

    async fn locate(&self, _: Request<v1::LocateRequest>) -> Result<Response<v1::LocateResponse>, GrpcStatus> {
        Err(GrpcStatus::unimplemented("locate"))
    }

    async fn list_advertised(
        &self,
        _: Request<v1::ListAdvertisedRequest>,
    ) -> Result<Response<v1::ListAdvertisedResponse>, GrpcStatus> {
        Err(GrpcStatus::unimplemented("list_advertised"))
    }

    async fn recent_pulls(
        &self,
        _: Request<v1::RecentPullsRequest>,
    ) -> Result<Response<v1::RecentPullsResponse>, GrpcStatus> {
        Err(GrpcStatus::unimplemented("recent_pulls"))
    }
}

/// Serves `status` on a socket in `dir`.
fn serve(dir: &tempfile::TempDir, status: v1::StatusResponse) -> PathBuf {
    let path = dir.path().join("admin.sock");
    let listener = peerpull_admin::bind(&path).unwrap();
    let served = path.clone();
    tokio::spawn(
        async move { peerpull_admin::serve_unix(&served, listener, Daemon(status), std::future::pending()).await },
    );
    path
}

/// A metrics port that answers every request with `status` and `body`.
fn metrics_port(status: u16, body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn listen(metrics: SocketAddr) -> ListenArgs {
    ListenArgs {
        registry_addr: "127.0.0.1:5000".parse().unwrap(),
        router_addr: "127.0.0.1:5001".parse().unwrap(),
        metrics_addr: metrics,
    }
}

#[tokio::test]
async fn doctor_reads_the_daemons_status_over_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(&dir, ready_status());
    // The metrics port accepts connections and never answers: had doctor
    // asked /readyz, it would report it as not answering.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = silent.local_addr().unwrap();
    let checks = check(&listen(metrics), &socket).await;
    assert_eq!(
        lines(&checks),
        [
            format!("[ok]   peerpull on {metrics} is ready"),
            "[ok]   the DHT has 3 peer(s)".to_owned(),
            "[ok]   the cluster is private (private cluster, pre-shared key ab12cd34)".to_owned(),
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let socket = serve(&dir, not_ready_status());
    let checks = check(&listen(metrics), &socket).await;
    assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Fail, Status::Warn, Status::Warn]);
    assert!(checks[0].what.contains("is not ready (503): [-]containerd failed"), "{}", checks[0]);

    drop(silent);
    let checks = check(&listen(metrics), &socket).await;
    assert!(lines(&checks)[0].starts_with(&format!("[FAIL] the metrics port {metrics} does not answer")), "{checks:?}");
}

#[tokio::test]
async fn without_the_socket_doctor_says_so_and_reads_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = metrics_port(200, READY);
    let missing = dir.path().join("no-daemon.sock");
    let checks = check(&listen(metrics), &missing).await;
    assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Warn, Status::Ok, Status::Ok, Status::Ok]);
    let warning = checks[0].to_string();
    assert!(
        warning.starts_with(&format!("[warn] cannot ask the admin socket {} (", missing.display()))
            && warning.contains("No such file or directory")
            && warning.contains("readiness and peers come from /readyz?verbose")
            && warning.contains("fix: pass `peerpull run`'s --admin-socket"),
        "{warning}"
    );
    assert_eq!(checks[2].what, "the DHT has 3 peer(s)");

    // "" asks /readyz?verbose without a word about the socket.
    let checks = check(&listen(metrics), std::path::Path::new("")).await;
    assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Ok, Status::Ok, Status::Ok]);

    // Neither answers: the metrics port's failure, as before.
    drop(dir);
    let nothing = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let checks = check(&listen(nothing), &missing).await;
    assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Warn, Status::Fail]);
    assert!(checks[1].what.starts_with(&format!("the metrics port {nothing} does not answer")), "{}", checks[1]);
}

#[tokio::test]
async fn a_socket_of_another_daemon_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let mut other = not_ready_status();
    other.mirror_addr = "127.0.0.1:6000".into();
    let socket = serve(&dir, other);
    let metrics = metrics_port(200, READY);
    let checks = check(&listen(metrics), &socket).await;
    assert!(
        checks[0].what.contains("it belongs to the peerpull whose mirror is 127.0.0.1:6000, not 127.0.0.1:5000"),
        "{}",
        checks[0]
    );
    assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Warn, Status::Ok, Status::Ok, Status::Ok]);
}
