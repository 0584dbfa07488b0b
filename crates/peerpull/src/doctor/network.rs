//! Probes over the network: this node's mirror and router ports, the
//! upstreams, and the plumbing `readiness` uses to reach the metrics port.

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
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The mirror and router ports answer.
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
pub(super) fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

pub(super) async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}

/// GETs `path` from our own endpoint at `addr`: the status and body.
pub(super) async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
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
