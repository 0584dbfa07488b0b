//! `peerpull doctor`: what is wrong with this node's set-up, and how to fix it.
//!
//! Each check prints one line, `[ok]`, `[warn]` or `[FAIL]`, and every
//! failure a concrete fix. The command exits 1 when any check failed.
//! Checks: containerd answers and the namespace exists; CRI's registry
//! `config_path` is set; a `hosts.toml` for each mirrored registry points at
//! this node's mirror; `discard_unpacked_layers` is off; the mirror, metrics
//! and router ports answer; the DHT has peers; the upstreams are reachable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use peerpull_hosts::{parse_existing, Target};
use peerpull_store::containerd::{Config as StoreConfig, Containerd, Setting};
use peerpull_store::Store;
use tokio::net::TcpStream;

use crate::cli::DoctorArgs;
use crate::exit::Failure;

/// Upper bound on each network probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct Report {
    failures: usize,
}

impl Report {
    fn ok(&mut self, what: impl AsRef<str>) {
        println!("[ok]   {}", what.as_ref());
    }

    fn warn(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        println!("[warn] {}\n       fix: {}", what.as_ref(), fix.as_ref());
    }

    fn fail(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failures += 1;
        println!("[FAIL] {}\n       fix: {}", what.as_ref(), fix.as_ref());
    }
}

/// Runs every check and prints the report.
pub(crate) fn run(args: DoctorArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow!("starting the runtime: {e}")))?;
    let failures = runtime.block_on(check(&args))?;
    if failures > 0 {
        return Err(Failure::Runtime(anyhow!("doctor found {failures} problem(s)")));
    }
    println!("no problems found");
    Ok(())
}

async fn check(args: &DoctorArgs) -> Result<usize, Failure> {
    let mut report = Report::default();
    let socket = &args.containerd.containerd_socket;
    let namespace = &args.containerd.containerd_namespace;
    let store = Containerd::new(StoreConfig {
        socket: socket.clone(),
        namespace: namespace.clone(),
        content_path: args.containerd.containerd_content_path.clone(),
    })
    .map_err(Failure::usage)?;

    let reachable = match store.ping().await {
        Ok(()) => {
            report.ok(format!("containerd answers at {}", socket.display()));
            true
        }
        Err(e) => {
            report.fail(
                format!("containerd does not answer at {}: {e}", socket.display()),
                "start containerd, or pass its socket with --containerd-socket",
            );
            false
        }
    };
    if reachable {
        match store.check_namespace().await {
            Ok(()) => report.ok(format!("namespace {namespace} exists")),
            Err(e) => report.warn(
                format!("namespace {namespace}: {e}"),
                "CRI creates k8s.io with the first pull; otherwise pass --containerd-namespace",
            ),
        }
    }

    let config = store.config_check(Some(&args.containerd_config)).await;
    let config_path = match &config.config_path {
        Setting::Known { value: Some(path), source } => {
            report.ok(format!("CRI registry config_path is {path} (from {source:?})"));
            Some(PathBuf::from(path))
        }
        Setting::Known { value: None, .. } => {
            report.fail(
                "CRI registry config_path is not set: containerd ignores hosts.toml files",
                format!(
                    "add config_path = \"{}\" under [plugins.\"io.containerd.grpc.v1.cri\".registry] in {} and restart containerd",
                    args.config_path.display(),
                    args.containerd_config.display()
                ),
            );
            None
        }
        Setting::Unknown(why) => {
            report.warn(
                format!("cannot tell whether CRI's config_path is set ({})", why.join("; ")),
                "pass containerd's config file with --containerd-config",
            );
            None
        }
    };
    match &config.discard_unpacked_layers {
        Setting::Known { value: false, .. } => report.ok("discard_unpacked_layers is off: layers stay shareable"),
        Setting::Known { value: true, .. } => report.fail(
            "discard_unpacked_layers is on: this node drops layers after unpacking and has nothing to share",
            format!(
                "set discard_unpacked_layers = false under [plugins.\"io.containerd.grpc.v1.cri\".containerd] in {}",
                args.containerd_config.display()
            ),
        ),
        Setting::Unknown(why) => report.warn(
            format!("cannot tell whether discard_unpacked_layers is on ({})", why.join("; ")),
            "pass containerd's config file with --containerd-config",
        ),
    }

    let hosts_dir = config_path.unwrap_or_else(|| args.config_path.clone());
    check_hosts(&mut report, &hosts_dir, args);
    check_ports(&mut report, args).await;
    check_upstreams(&mut report, args).await;
    Ok(report.failures)
}

/// Each mirrored registry (or `_default`) has a hosts.toml naming our mirror.
fn check_hosts(report: &mut Report, dir: &Path, args: &DoctorArgs) {
    let targets = if args.mirrored_registries.is_empty() {
        vec![Target::All]
    } else {
        Target::from_registries(args.mirrored_registries.iter().cloned())
    };
    let port = args.listen.registry_addr.port();
    for target in targets {
        let file = dir.join(target.dir_name()).join("hosts.toml");
        let fix =
            format!("run `peerpull configure --config-path {} --mirror http://<this node's IP>:{port}`", dir.display());
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                report.fail(format!("{}: {e}", file.display()), fix);
                continue;
            }
        };
        let hosts: Vec<String> = match parse_existing(&text) {
            Ok(doc) => doc
                .get("host")
                .and_then(|h| h.as_table_like())
                .map(|t| t.iter().map(|(k, _)| k.to_owned()).collect())
                .unwrap_or_default(),
            Err(e) => {
                report.fail(format!("{}: {e}", file.display()), fix);
                continue;
            }
        };
        let ours = hosts.iter().find(|host| points_at(host, args.listen.registry_addr));
        match ours {
            Some(host) => report.ok(format!("{} sends pulls to this node's mirror {host}", file.display())),
            None => report
                .fail(format!("{} does not name this node's mirror (port {port}): {hosts:?}", file.display()), fix),
        }
    }
}

/// Whether a hosts.toml host URL is this node's mirror at `addr`.
fn points_at(host: &str, addr: SocketAddr) -> bool {
    let Some(rest) = host.strip_prefix("http://").or_else(|| host.strip_prefix("https://")) else { return false };
    let authority = rest.trim_end_matches('/');
    let Some((ip, port)) = authority.rsplit_once(':') else { return false };
    if port.parse() != Ok(addr.port()) {
        return false;
    }
    addr.ip().is_unspecified() || ip.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip == addr.ip())
}

async fn check_ports(report: &mut Report, args: &DoctorArgs) {
    let registry = reachable(args.listen.registry_addr);
    let metrics = reachable(args.listen.metrics_addr);
    let router = reachable(args.listen.router_addr);
    for (name, addr) in [("mirror", registry), ("router", router)] {
        match connect(addr).await {
            Ok(_) => report.ok(format!("the {name} port {addr} answers")),
            Err(e) => report.fail(
                format!("the {name} port {addr} does not answer: {e}"),
                "start `peerpull run` (or check its flags)",
            ),
        }
    }
    match http_get(metrics, "/readyz").await {
        Ok((200, _)) => report.ok(format!("peerpull on {metrics} is ready")),
        Ok((status, body)) => report.fail(
            format!("peerpull on {metrics} is not ready ({status}): {}", body.trim()),
            "see peerpull's log; readiness needs containerd, the first advertisement and a DHT peer",
        ),
        Err(e) => report.fail(format!("the metrics port {metrics} does not answer: {e}"), "start `peerpull run`"),
    }
    match http_get(metrics, "/metrics").await {
        Ok((200, body)) => {
            let peers = body
                .lines()
                .find(|l| l.starts_with("peerpull_routing_peers "))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
            match peers {
                Some(n) if n >= 1.0 => report.ok(format!("the DHT has {n} peer(s)")),
                Some(_) => report.warn(
                    "the DHT has no peers: this node can serve only what it holds",
                    "check --bootstrap and that other nodes' router ports are reachable",
                ),
                None => report.warn("peerpull does not report its DHT peers", "upgrade peerpull"),
            }
        }
        Ok((status, _)) => report.warn(format!("/metrics answered {status}"), "check --metrics-addr"),
        Err(_) => {}
    }
}

async fn check_upstreams(report: &mut Report, args: &DoctorArgs) {
    for registry in &args.mirrored_registries {
        let port = match registry.scheme() {
            peerpull_oci::Scheme::Http => 80,
            peerpull_oci::Scheme::Https => 443,
        };
        let host = registry.upstream_host();
        let target = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let probe = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(target.as_str())).await;
        match probe {
            Ok(Ok(_)) => report.ok(format!("upstream {} is reachable", registry.upstream_url())),
            _ => report.warn(
                format!(
                    "upstream {} is not reachable: pulls of images no node holds will fail",
                    registry.upstream_url()
                ),
                "check the node's network and DNS; peers still serve what they hold",
            ),
        }
    }
}

/// An address to connect to for a listen address (unspecified → loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
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
