//! Probes over the network: this node's ports, its readiness, the upstreams.
//!
//! The node's readiness and DHT peer count come from `/readyz?verbose` on
//! the metrics port, where the node reports each of its readiness checks
//! (the routing one with the size of its routing table).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use peerpull_hosts::Target;
use tokio::net::TcpStream;

use super::Check;
use crate::cli::ListenArgs;

/// Upper bound on each network probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The mirror and router ports answer; the node is ready and has DHT peers.
pub(super) async fn ports(listen: &ListenArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    for (name, addr) in [("mirror", reachable(listen.registry_addr)), ("router", reachable(listen.router_addr))] {
        checks.push(match connect(addr).await {
            Ok(_) => Check::ok(format!("the {name} port {addr} answers")),
            Err(e) => Check::fail(
                format!("the {name} port {addr} does not answer: {e}"),
                "start `peerpull run` (or check its flags)",
            ),
        });
    }
    let metrics = reachable(listen.metrics_addr);
    match http_get(metrics, "/readyz?verbose").await {
        Ok((status, body)) => checks.extend(readiness(metrics, status, &body)),
        Err(e) => {
            checks.push(Check::fail(format!("the metrics port {metrics} does not answer: {e}"), "start `peerpull run`"))
        }
    }
    checks
}

/// What `/readyz?verbose` at `addr` said: ready or why not, and the DHT's peers.
fn readiness(addr: SocketAddr, status: u16, body: &str) -> Vec<Check> {
    let mut checks = vec![match status {
        200 => Check::ok(format!("peerpull on {addr} is ready")),
        _ => {
            let failed: Vec<&str> = body.lines().filter(|l| l.starts_with("[-]")).collect();
            let why = if failed.is_empty() { body.trim().to_owned() } else { failed.join("; ") };
            Check::fail(
                format!("peerpull on {addr} is not ready ({status}): {why}"),
                "see peerpull's log; readiness needs containerd, the first advertisement and a DHT peer",
            )
        }
    }];
    let routing = body.lines().find_map(|l| l.strip_prefix("[+]routing ok: ").or(l.strip_prefix("[-]routing ")));
    let peers = routing.map(|detail| detail.split(' ').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0));
    checks.push(match peers {
        Some(n) if n >= 1 => Check::ok(format!("the DHT has {n} peer(s)")),
        Some(_) => Check::warn(
            "the DHT has no peers: this node can serve only what it holds",
            "check --bootstrap and that other nodes' router ports are reachable",
        ),
        None => Check::warn("peerpull does not report its DHT peers", "upgrade peerpull"),
    });
    if let Some(detail) = body.lines().find_map(|l| l.strip_prefix("[+]membership ok: ")) {
        checks.push(match detail.starts_with("OPEN") {
            true => Check::warn(
                "the cluster is open: any host that reaches the router port can join, announce and be asked",
                "give every node the same --psk-file (the Helm chart generates one)",
            ),
            false => Check::ok(format!("the cluster is private ({detail})")),
        });
    }
    checks
}

/// Each mirrored registry's upstream accepts connections.
pub(super) async fn upstreams(targets: &[Target]) -> Vec<Check> {
    let mut checks = Vec::new();
    for target in targets {
        let Target::Registry(registry) = target else { continue };
        let port = match registry.scheme() {
            peerpull_oci::Scheme::Http => 80,
            peerpull_oci::Scheme::Https => 443,
        };
        let host = registry.upstream_host();
        let addr = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let probe = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr.as_str())).await;
        checks.push(match probe {
            Ok(Ok(_)) => Check::ok(format!("upstream {} is reachable", registry.upstream_url())),
            _ => Check::warn(
                format!(
                    "upstream {} is not reachable: pulls of images no node holds will fail",
                    registry.upstream_url()
                ),
                "check the node's network and DNS; peers still serve what they hold",
            ),
        });
    }
    checks
}

/// An address to connect to for a listen address (unspecified → the loopback of its family).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}

/// GETs `path` from our own endpoint at `addr`: the status and body.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("http://{addr}{path}").parse().map_err(|e| format!("{e}"))?;
    let exchange = async {
        let response = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange).await.map_err(|_| "timed out".to_owned())?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn readiness_and_peers_come_from_the_verbose_report() {
        let addr: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let ready = "[+]containerd ok: answers\n[+]advertisement ok: initial advertisement done\n\
                     [+]routing ok: 3 peers in the routing table\nreadyz check passed\n";
        let checks = readiness(addr, 200, ready);
        assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Ok, Status::Ok]);
        let open = format!("{ready}[+]membership ok: OPEN: no pre-shared key\n");
        assert_eq!(readiness(addr, 200, &open)[2].status, Status::Warn);
        let private = format!("{ready}[+]membership ok: private cluster, pre-shared key ab12cd34\n");
        assert_eq!(readiness(addr, 200, &private)[2].status, Status::Ok);
        assert_eq!(checks[1].what, "the DHT has 3 peer(s)");

        let alone = ready.replace("3 peers", "0 peers");
        assert_eq!(readiness(addr, 200, &alone)[1].status, Status::Warn);

        let not_ready = "[-]containerd failed: containerd does not answer\n[+]advertisement ok: done\n\
                         [-]routing failed: no peer in the routing table\nreadyz check failed\n";
        let checks = readiness(addr, 503, not_ready);
        assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Fail, Status::Warn]);
        assert!(checks[0].what.contains("containerd does not answer; [-]routing failed"), "{}", checks[0]);

        // An older peerpull answers the plain probe only.
        let checks = readiness(addr, 200, "ok\n");
        assert_eq!(checks[1].what, "peerpull does not report its DHT peers");
    }
}
