//! `peerpull run`: the node daemon.
//!
//! Turns the flags into a [`peerpull_node::Config`], starts the node and
//! runs it until SIGTERM or SIGINT. The node stops its subsystems in two
//! phases and the daemon exits 0; if a subsystem ends on its own, the node
//! stops the others and the daemon exits 1.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::anyhow;
use ipnet::IpNet;
use peerpull_hosts::{RegistriesYaml, RegistryConfig};
use peerpull_mirror::UpstreamFallback;
use peerpull_node::{Error, Listener, Node};
use peerpull_oci::Mirrored;
use peerpull_routing::{Psk, Zone};
use peerpull_store::containerd::Config as StoreConfig;
use peerpull_upstream::{Credentials, RegistrySettings, Tls};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::exit::Failure;
use crate::logging;

/// This node's zone: `--zone`, or the label of the Node `--zone-from-node`
/// names (none, with a warning, when it cannot be read: pulls work the same
/// without a zone).
async fn zone(args: &RunArgs) -> Zone {
    if let Some(zone) = args.zone {
        return zone;
    }
    let Some(node) = &args.zone_from_node else { return Zone::NONE };
    match crate::node_zone::zone_of_node(node).await {
        Ok(Some(name)) => match Zone::new(&name) {
            Ok(zone) => {
                tracing::info!(%node, %zone, "zone read from the node's topology.kubernetes.io/zone label");
                zone
            }
            Err(error) => {
                tracing::warn!(%node, %error, "the node's zone label is not a zone name; running without a zone");
                Zone::NONE
            }
        },
        Ok(None) => {
            tracing::warn!(%node, "the node has no topology.kubernetes.io/zone label; running without a zone");
            Zone::NONE
        }
        Err(error) => {
            tracing::warn!(%node, error = format!("{error:#}"), "could not read the node's zone; running without a zone");
            Zone::NONE
        }
    }
}

/// Runs the daemon until a signal stops it.
pub(crate) fn run(args: RunArgs) -> Result<(), Failure> {
    logging::init(&args.log_level, args.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow!("starting the runtime: {e}")))?;
    runtime.block_on(daemon(args))
}

async fn daemon(args: RunArgs) -> Result<(), Failure> {
    let registries = args.mirrored.load()?;
    let psk = args.psk_file.as_deref().map(Psk::from_file).transpose().map_err(Failure::usage)?;
    let mut clients = own_addresses();
    clients.extend(args.client_cidrs.iter().copied());
    let mirrored = registries.mirrored();
    let zone = zone(&args).await;
    let upstream = peerpull_upstream::Config {
        registries: registries.yaml.as_ref().map(|y| upstream_settings(y, &mirrored)).unwrap_or_default(),
        ..Default::default()
    };
    let upstream_fallback = args.upstream_fallback.then(|| UpstreamFallback {
        spool_max_bytes: args.spool_max_bytes,
        ..UpstreamFallback::new(args.data_dir.join("spool"))
    });
    // What the node learnt about repositories, kept across restarts.
    let private_state = args.data_dir.join("private-repositories");
    if args.private_images == crate::cli::PrivateImagesArg::Verify && psk.is_none() {
        tracing::warn!(
            "--private-images verify without --psk-file: pulls on this node are checked, \
             but any host that reaches the mirror port can claim to be a peer with a verified pull"
        );
    }
    let config = peerpull_node::Config {
        containerd: StoreConfig {
            socket: args.containerd.containerd_socket,
            namespace: args.containerd.containerd_namespace,
            content_path: args.containerd.containerd_content_path,
        },
        routing: peerpull_routing::Config {
            listen: args.listen.router_addr,
            mirror_addr: args.listen.registry_addr,
            bootstrap: args.bootstrap,
            data_dir: args.data_dir,
            zone,
            psk,
            ..Default::default()
        },
        mirror: peerpull_mirror::Config {
            mirrored: mirrored.clone(),
            resolve_tags: args.tags.resolve_tags,
            upstream,
            tag_resolution: args.tag_resolution.into(),
            tag_timeout: args.tag_timeout,
            upstream_fallback,
            clients: Some(clients),
            max_peer_uploads: args.max_peer_uploads as usize,
            max_upload_rate: args.max_upload_rate,
            multi_source_min_bytes: args.multi_source_min_bytes,
            relay_fanout: args.relay_fanout as usize,
            zone,
            private_images: peerpull_mirror::PrivateImages {
                mode: args.private_images.into(),
                grace: args.private_grace,
                state_file: Some(private_state),
            },
            ..Default::default()
        },
        limits: peerpull_mirror::Limits {
            max_connections: args.max_connections as usize,
            max_connections_per_ip: args.max_connections_per_ip as usize,
            ..Default::default()
        },
        registry_addr: args.listen.registry_addr,
        metrics_addr: args.listen.metrics_addr,
        admin_socket: Some(args.admin.admin_socket).filter(|p| !p.as_os_str().is_empty()),
        admin_addr: args.admin_addr,
        debug_web: args.debug_web,
        preheat: peerpull_node::preheat::Config {
            images: args.preheat,
            file: args.preheat_file,
            replicas: args.preheat_replicas as usize,
            interval: args.preheat_interval,
        },
    };
    let node = Node::start(config).await.map_err(failure)?;
    tracing::info!(
        peer = %node.peer_id(),
        registry = %args.listen.registry_addr,
        router = %args.listen.router_addr,
        metrics = %args.listen.metrics_addr,
        mirrored = ?mirrored.registries().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peerpull started"
    );
    let shutdown = CancellationToken::new();
    let running = node.run(shutdown.clone());
    tokio::pin!(running);
    let result = tokio::select! {
        name = stop_signal() => {
            tracing::info!(signal = name, "shutting down");
            shutdown.cancel();
            running.await
        }
        result = &mut running => result,
    };
    result.map_err(failure)?;
    tracing::info!("stopped");
    Ok(())
}

/// This node's own addresses (every interface's), which may use the mirror as
/// containerd does; loopback always may.
fn own_addresses() -> Vec<IpNet> {
    match nix::ifaddrs::getifaddrs() {
        Ok(interfaces) => interfaces
            .filter_map(|i| i.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .map(IpNet::from)
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list this node's addresses; only loopback and --client-cidr may use the mirror");
            Vec::new()
        }
    }
}

/// Upstream credentials and TLS settings from a `registries.yaml`'s `configs:`.
///
/// A `"*"` entry applies to each registry named under `mirrors:` that has no
/// entry of its own, and to no other host: with every registry mirrored, the
/// host comes from whoever sends the request, and credentials must not
/// follow it anywhere.
fn upstream_settings(yaml: &RegistriesYaml, mirrored: &Mirrored) -> BTreeMap<String, RegistrySettings> {
    let settings = |config: &RegistryConfig| {
        let auth = config.auth.as_ref();
        let credentials = auth.and_then(|a| match (a.credentials(), &a.identitytoken) {
            (Some((username, password)), _) => Some(Credentials::Basic { username, password }),
            (None, Some(token)) => Some(Credentials::IdentityToken(token.clone())),
            (None, None) => None,
        });
        let tls = config.tls.clone().unwrap_or_default();
        let tls = Tls {
            ca_file: tls.ca_file,
            cert_file: tls.cert_file,
            key_file: tls.key_file,
            insecure_skip_verify: tls.insecure_skip_verify,
        };
        RegistrySettings { credentials, tls }
    };
    let mut out: BTreeMap<String, RegistrySettings> = yaml
        .configs
        .iter()
        .filter(|(host, _)| *host != "*")
        .map(|(host, config)| (host.clone(), settings(config)))
        .collect();
    if let Some(wildcard) = yaml.configs.get("*") {
        if matches!(mirrored, Mirrored::All) {
            tracing::warn!(
                "registries.yaml: configs.\"*\" is not used while every registry is mirrored; name the registries"
            );
        }
        for registry in mirrored.registries() {
            out.entry(registry.host().to_owned()).or_insert_with(|| settings(wildcard));
        }
    }
    out
}

/// The exit a node error calls for, naming the flag behind a bad address.
fn failure(error: Error) -> Failure {
    match error {
        Error::Store(e) => Failure::usage(e),
        Error::Admin(e) => Failure::Runtime(anyhow!("--admin-socket: {e}")),
        Error::Mirror(e @ peerpull_mirror::Error::Upstream(_)) => Failure::usage(e),
        Error::Listen { listener, addr, source } => {
            let flag = match listener {
                Listener::Registry => "--registry-addr",
                Listener::Metrics => "--metrics-addr",
                Listener::Admin => "--admin-addr",
            };
            Failure::Runtime(anyhow!("{flag} {addr}: cannot listen: {source}"))
        }
        Error::Router { addr, source: peerpull_routing::Error::Listen { reason, .. } } => {
            Failure::Runtime(anyhow!("--router-addr {addr}: cannot listen: {reason}"))
        }
        other => Failure::Runtime(other.into()),
    }
}

/// Waits for SIGTERM or SIGINT and names it.
async fn stop_signal() -> &'static str {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn wildcard_credentials_go_only_to_named_registries() {
        let text = "mirrors:\n  docker.io:\n  ghcr.io:\nconfigs:\n  \"*\":\n    auth: {username: all, password: pw}\n  ghcr.io:\n    auth: {username: gh, password: pw}\n";
        let yaml = RegistriesYaml::parse(text, Path::new("registries.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let registry = |s: &str| s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        let named = Mirrored::Only(vec![registry("docker.io"), registry("ghcr.io")]);
        let settings = upstream_settings(&yaml, &named);
        let user = |host: &str| match settings.get(host).and_then(|s| s.credentials.clone()) {
            Some(Credentials::Basic { username, .. }) => Some(username),
            _ => None,
        };
        assert_eq!(user("docker.io").as_deref(), Some("all"));
        assert_eq!(user("ghcr.io").as_deref(), Some("gh"), "a registry's own entry wins");
        assert!(!settings.contains_key("*"));
        let everything = upstream_settings(&yaml, &Mirrored::All);
        assert_eq!(
            everything.keys().collect::<Vec<_>>(),
            ["ghcr.io"],
            "no wildcard when the host is the client's choice"
        );
    }
}
