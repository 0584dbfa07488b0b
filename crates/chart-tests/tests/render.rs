//! Renders `charts/peerpull` with the real `helm` for the default values and
//! several value sets, at the oldest and newest Kubernetes the chart claims
//! and with the oldest Helm it supports, and checks what an operator relies
//! on: that `helm lint` passes, the objects and their kinds, that the
//! Kubernetes API types hold every field, that `peerpull` accepts the
//! arguments the chart gives it, the DaemonSet's placement, privileges,
//! mounts and probes, the bootstrap service, the uninstall hook, how a pod
//! learns its zone, and that the optional objects come and go with their
//! toggles.

#[path = "render/optional.rs"]
mod optional;
#[path = "render/support.rs"]
mod support;
#[path = "render/values.rs"]
mod values;
#[path = "render/zone.rs"]
mod zone;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use peerpull_chart_tests::{
    chart_dir, expand, oldest_kube_version, typed_round_trip, Doc, Helm, Manifest, NEWEST_KUBE_VERSION,
};
use serde_json::Value as Json;
use serde_norway::Value;

use crate::support::*;
use crate::values::*;

#[test]
fn defaults_render_the_expected_objects() -> Result {
    let manifest = render("")?;
    let expected: Vec<(String, String)> = [
        ("ClusterRole", NODE_READER),
        ("ClusterRoleBinding", NODE_READER),
        ("ConfigMap", "peerpull-preheat"),
        ("DaemonSet", "peerpull"),
        ("DaemonSet (hook)", "peerpull-cleanup"),
        ("Job (hook)", "peerpull-cleanup-wait"),
        ("NetworkPolicy", "peerpull"),
        ("Role (hook)", "peerpull-cleanup"),
        ("RoleBinding (hook)", "peerpull-cleanup"),
        ("Secret", "peerpull-psk"),
        ("Service", "peerpull-bootstrap"),
        ("Service", "peerpull-metrics"),
        ("ServiceAccount", "peerpull"),
        ("ServiceAccount (hook)", "peerpull-cleanup"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(manifest.objects(), expected);
    for doc in &manifest.docs {
        let namespace = doc.value.get("metadata").and_then(|m| m.get("namespace")).and_then(Value::as_str);
        let cluster_scoped = doc.kind().starts_with("Cluster");
        assert_eq!(namespace, (!cluster_scoped).then_some(NS), "{} {}", doc.kind(), doc.name());
        let labels = labels(&doc.value, &["metadata", "labels"]);
        assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("Helm"));
        assert_eq!(labels.get("app.kubernetes.io/instance").map(String::as_str), Some("peerpull"));
    }
    Ok(())
}

/// What `helm lint` ends with when the chart passed.
const LINTED: &str = "1 chart(s) linted, 0 chart(s) failed";

#[test]
fn helm_lint_passes_for_every_value_set() -> Result {
    let oldest = oldest_kube_version()?;
    for (name, values) in VALUE_SETS {
        for kube in [oldest.as_str(), NEWEST_KUBE_VERSION] {
            let said = Helm::get()?.lint(values, &["--kube-version", kube]).map_err(|e| format!("{name}: {e}"))?;
            assert!(said.contains(LINTED), "{name}, Kubernetes {kube}: {said}");
        }
        // Helm 3.8's lint has no --kube-version (and does not check kubeVersion).
        let said = Helm::oldest()?.lint(values, &[]).map_err(|e| format!("{name}: {e}"))?;
        assert!(said.contains(LINTED), "{name}, Helm {}: {said}", Helm::oldest()?.version());
    }
    Ok(())
}

#[test]
fn every_helm_and_kubernetes_version_renders_the_same_documents() -> Result {
    let targets = targets()?;
    let (helm, kube) = &targets[0];
    let reference = format!("Helm {}, Kubernetes {kube}", helm.version());
    for (name, values) in VALUE_SETS {
        let mut expected: Option<Vec<Json>> = None;
        for (helm, kube) in &targets {
            let at = format!("value set {name}, Helm {}, Kubernetes {kube}", helm.version());
            let manifest = helm.render(values, &["--kube-version", kube]).map_err(|e| format!("{at}: {e}"))?;
            let docs = manifest.docs.iter().map(without_generated_key).collect::<Result<Vec<_>>>()?;
            let Some(expected) = &expected else {
                expected = Some(docs);
                continue;
            };
            assert_eq!(docs.len(), expected.len(), "{at}: not as many documents as with {reference}");
            for (doc, want) in docs.iter().zip(expected) {
                assert!(
                    doc == want,
                    "{at}: {} {} differs from {reference}'s:\n{doc:#}\n{want:#}",
                    doc["kind"],
                    doc["metadata"]["name"]
                );
            }
        }
    }
    Ok(())
}

/// The document as JSON, with the key the PSK Secret generates afresh on
/// every render blanked.
fn without_generated_key(doc: &Doc) -> Result<Json> {
    let mut json = doc.json()?;
    if doc.kind() == "Secret" {
        if let Some(psk) = json.pointer_mut("/data/psk") {
            *psk = Json::from("(generated)");
        }
    }
    Ok(json)
}

#[test]
fn the_chart_refuses_kubernetes_older_than_it_claims() -> Result {
    let oldest = oldest_kube_version()?;
    let (major, rest) = oldest.split_once('.').ok_or("no minor")?;
    let minor: u32 = rest.split('.').next().ok_or("no minor")?.parse()?;
    let older = format!("{major}.{}.99", minor.checked_sub(1).ok_or("minor 0")?);
    for helm in [Helm::get()?, Helm::oldest()?] {
        let error =
            helm.render("", &["--kube-version", &older]).err().ok_or(format!("rendered for Kubernetes {older}"))?;
        assert!(error.to_string().contains("incompatible with Kubernetes"), "{error}");
    }
    Ok(())
}

#[test]
fn every_value_set_renders_documents_the_kubernetes_api_types_hold() -> Result {
    let targets = targets()?;
    for (name, values) in VALUE_SETS {
        for (helm, kube) in &targets {
            let name = format!("value set {name}, Helm {}, Kubernetes {kube}", helm.version());
            let manifest = helm.render(values, &["--kube-version", kube]).map_err(|e| format!("{name}: {e}"))?;
            assert!(!manifest.docs.is_empty(), "{name}: nothing rendered");
            for doc in &manifest.docs {
                let typed = typed_round_trip(doc).map_err(|e| format!("{name}: {e}"))?;
                if !typed {
                    // The only custom resource: Prometheus Operator's ServiceMonitor.
                    assert_eq!(doc.kind(), "ServiceMonitor", "{name}: no API type checks {}", doc.kind());
                    let json = doc.json()?;
                    assert_eq!(json["apiVersion"], "monitoring.coreos.com/v1");
                    assert!(json["spec"]["endpoints"].as_array().is_some_and(|e| !e.is_empty()));
                    assert!(json["spec"]["selector"]["matchLabels"].is_object());
                }
            }
        }
    }
    Ok(())
}

#[test]
fn chart_arguments_are_accepted_by_the_peerpull_cli() -> Result {
    let mut checked = 0;
    for (name, values) in VALUE_SETS {
        let manifest = render(values)?;
        for doc in manifest.docs.iter().filter(|d| d.kind() == "DaemonSet") {
            let (_, pod) = daemonset(&manifest, doc.name())?;
            let containers = pod.containers.iter().chain(pod.init_containers.iter().flatten());
            for c in containers.filter(|c| c.image.as_deref().is_some_and(|i| i.contains("peerpull"))) {
                let parsed = accepted_by_peerpull(c).map_err(|e| format!("value set {name}, {}: {e}", doc.name()))?;
                let subcommand = args(c).first().cloned().unwrap_or_default();
                let variant = match subcommand.as_str() {
                    "run" => "Run(",
                    "configure" => "Configure(",
                    "cleanup" => "Cleanup(",
                    other => return Err(format!("unexpected subcommand {other}").into()),
                };
                assert!(parsed.contains(variant), "{name}: {parsed}");
                checked += 1;
            }
        }
    }
    // defaults, k3s, existing-psk, ipv6, everything: run + configure +
    // cleanup; minimal: run only.
    assert_eq!(checked, 5 * 3 + 1);

    // What peerpull parsed is what the chart meant.
    let manifest = render(EVERYTHING)?;
    let (_, pod) = daemonset(&manifest, DS)?;
    let run = accepted_by_peerpull(container(&pod.containers, "peerpull")?)?;
    for expected in [
        "registry_addr: 0.0.0.0:5100",
        "router_addr: 0.0.0.0:5101",
        "metrics_addr: 0.0.0.0:9191",
        "\"/var/lib/example/peerpull\"",
        "resolve_tags: false",
        "containerd_namespace: \"custom\"",
        "peerpull-bootstrap.peerpull-system.svc.example.internal",
        "5101",
        "Text",
    ] {
        assert!(run.contains(expected), "run: no {expected:?} in\n{run}");
    }
    let configure = accepted_by_peerpull(container(pod.init_containers.as_deref().unwrap_or_default(), "configure")?)?;
    for expected in ["10.0.0.7:30500", "mirror.example.com", "prepend_existing: true", "resolve_tags: false"] {
        assert!(configure.contains(expected), "configure: no {expected:?} in\n{configure}");
    }
    Ok(())
}

#[test]
fn the_cli_check_rejects_what_peerpull_would_reject() -> Result {
    for (values, flags) in [
        ("peerpull:\n  logFormat: yaml\n", &["--log-format"][..]),
        ("service:\n  router:\n    port: 70000\n", &["--router-addr"][..]),
        ("peerpull:\n  dialTimeout: soon\n", &["--dial-timeout"][..]),
        (
            "peerpull:\n  mirroredRegistries: [\"https://docker.io/with/path?q\"]\n",
            &["--mirrored-registry", "--registry"][..],
        ),
    ] {
        let manifest = render(values)?;
        let (_, pod) = daemonset(&manifest, DS)?;
        let all: Vec<&Container> = pod.containers.iter().chain(pod.init_containers.iter().flatten()).collect();
        let errors: Vec<String> =
            all.iter().filter_map(|c| accepted_by_peerpull(c).err()).map(|e| e.to_string()).collect();
        assert!(!errors.is_empty(), "a bad {flags:?} passed the check");
        // Rejected for that value, with peerpull's one-line usage error.
        for error in &errors {
            let message = error.split_once("peerpull: error: ").map(|(_, m)| m).unwrap_or_default();
            assert!(flags.iter().any(|f| message.contains(&format!("for '{f} "))), "{flags:?}: {error}");
        }
    }
    Ok(())
}

#[test]
fn daemonset_runs_on_every_linux_node_with_least_privilege() -> Result {
    let manifest = render("")?;
    let (ds, pod) = daemonset(&manifest, DS)?;
    // Every node, every taint.
    let tolerations = pod.tolerations.clone().unwrap_or_default();
    assert!(
        tolerations.iter().any(|t| t.key.is_none() && t.operator.as_deref() == Some("Exists") && t.effect.is_none()),
        "no toleration for every taint: {tolerations:?}"
    );
    let selector = pod.node_selector.clone().unwrap_or_default();
    assert_eq!(selector, BTreeMap::from([("kubernetes.io/os".to_owned(), "linux".to_owned())]));
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-node-critical"));
    assert_eq!(pod.host_network, None);
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.enable_service_links, Some(false), "Service variables could shadow PEERPULL_* settings");
    let spec = ds.spec.ok_or("no spec")?;
    let selector = spec.selector.match_labels.unwrap_or_default();
    let pod_labels = spec.template.metadata.and_then(|m| m.labels).unwrap_or_default();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "selector does not match the pods");

    let c = container(&pod.containers, "peerpull")?;
    assert_eq!(args(c).first().map(String::as_str), Some("run"));
    let sc = c.security_context.clone().ok_or("no securityContext")?;
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.ok_or("no capabilities")?;
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(caps.add, None);
    assert_eq!(
        pod.security_context.clone().and_then(|s| s.seccomp_profile).map(|p| p.type_),
        Some("RuntimeDefault".to_owned())
    );

    // containerd's socket and content read-only; the identity on the host.
    let a = args(c);
    let socket = flag(&a, "--containerd-socket").ok_or("no --containerd-socket")?;
    assert_eq!(socket, "/run/containerd/containerd.sock");
    assert_eq!(host_path(&pod, "containerd-sock")?, (socket.clone(), "Socket".to_owned()));
    assert_eq!(mount(c, "containerd-sock")?, (socket, true));
    let content = flag(&a, "--containerd-content-path").ok_or("no --containerd-content-path")?;
    assert_eq!(host_path(&pod, "containerd-content")?, (content.clone(), "Directory".to_owned()));
    assert_eq!(mount(c, "containerd-content")?, (content, true));
    let data = flag(&a, "--data-dir").ok_or("no --data-dir")?;
    assert_eq!(host_path(&pod, "data")?, (data.clone(), "DirectoryOrCreate".to_owned()));
    assert_eq!(mount(c, "data")?, (data, false));
    assert!(volume(&pod, "tmp")?.empty_dir.is_some(), "a writable /tmp beside the read-only root");

    // The mirror on the node's port for containerd.
    let ports = c.ports.clone().unwrap_or_default();
    let registry = ports.iter().find(|p| p.name.as_deref() == Some("registry")).ok_or("no registry port")?;
    assert_eq!((registry.container_port, registry.host_port), (5000, Some(5000)));
    assert_eq!(flag(&a, "--registry-addr").as_deref(), Some("0.0.0.0:5000"));
    assert_eq!(flag(&a, "--metrics-addr").as_deref(), Some("0.0.0.0:9090"));

    // Probes: /readyz for startup and readiness, /livez for liveness, on the metrics port.
    let probe = |p: Option<&k8s_openapi::api::core::v1::Probe>| {
        p.and_then(|p| p.http_get.clone()).map(|h| (h.path.unwrap_or_default(), serde_json::to_value(h.port).ok()))
    };
    let metrics_port = Some(serde_json::json!("metrics"));
    assert_eq!(probe(c.startup_probe.as_ref()), Some(("/readyz".to_owned(), metrics_port.clone())));
    assert_eq!(probe(c.readiness_probe.as_ref()), Some(("/readyz".to_owned(), metrics_port.clone())));
    assert_eq!(probe(c.liveness_probe.as_ref()), Some(("/livez".to_owned(), metrics_port)));

    let resources = c.resources.clone().ok_or("no resources")?;
    assert!(resources.requests.is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
    assert!(resources.limits.is_some_and(|r| r.contains_key("memory")));
    Ok(())
}

#[test]
fn init_container_points_containerd_at_the_node_ip() -> Result {
    let manifest = render("")?;
    let (_, pod) = daemonset(&manifest, DS)?;
    let inits = pod.init_containers.clone().unwrap_or_default();
    let c = container(&inits, "configure")?;
    let a = args(c);
    assert_eq!(a.first().map(String::as_str), Some("configure"));
    assert_eq!(flags(&a, "--mirror"), vec!["http://$(NODE_IP):5000".to_owned()]);
    let env = container_env(c)?;
    assert_eq!(expand("http://$(NODE_IP):5000", &env), format!("http://{NODE_IP}:5000"));
    let config_path = flag(&a, "--config-path").ok_or("no --config-path")?;
    assert_eq!(config_path, "/etc/containerd/certs.d");
    assert_eq!(host_path(&pod, "containerd-config")?, (config_path.clone(), "DirectoryOrCreate".to_owned()));
    assert_eq!(mount(c, "containerd-config")?, (config_path, false));
    assert_eq!(c.security_context.as_ref().and_then(|s| s.read_only_root_filesystem), Some(true));
    // Only the init container writes certs.d.
    let main = container(&pod.containers, "peerpull")?;
    assert!(mount(main, "containerd-config").is_err());

    // A fixed node IP replaces the downward API.
    let manifest = render(MINIMAL.replace("containerdMirrorAdd: false", "containerdMirrorAdd: true").as_str())?;
    let (_, pod) = daemonset(&manifest, "pp")?;
    let inits = pod.init_containers.clone().unwrap_or_default();
    let env = container_env(container(&inits, "configure")?)?;
    assert_eq!(env.get("NODE_IP").map(String::as_str), Some("192.0.2.10"));
    Ok(())
}

#[test]
fn k3s_values_put_every_path_on_k3s() -> Result {
    let manifest = render(K3S)?;
    let (_, pod) = daemonset(&manifest, DS)?;
    let main = container(&pod.containers, "peerpull")?;
    let a = args(main);
    assert_eq!(flag(&a, "--containerd-socket").as_deref(), Some("/run/k3s/containerd/containerd.sock"));
    assert_eq!(host_path(&pod, "containerd-sock")?.0, "/run/k3s/containerd/containerd.sock");
    let content = "/var/lib/rancher/k3s/agent/containerd/io.containerd.content.v1.content";
    assert_eq!(flag(&a, "--containerd-content-path").as_deref(), Some(content));
    assert_eq!(host_path(&pod, "containerd-content")?.0, content);
    assert!(a.contains(&"--registries-yaml=/etc/rancher/k3s/registries.yaml".to_owned()));
    let certs = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d";
    let inits = pod.init_containers.clone().unwrap_or_default();
    assert_eq!(flag(&args(container(&inits, "configure")?), "--config-path").as_deref(), Some(certs));
    assert_eq!(host_path(&pod, "containerd-config")?.0, certs);
    let (_, cleanup) = daemonset(&manifest, CLEANUP)?;
    let inits = cleanup.init_containers.clone().unwrap_or_default();
    assert_eq!(flag(&args(container(&inits, "cleanup")?), "--config-path").as_deref(), Some(certs));
    assert_eq!(host_path(&cleanup, "containerd-config")?.0, certs);
    Ok(())
}

#[test]
fn bootstrap_service_is_headless_and_is_what_run_bootstraps_from() -> Result {
    for (values, ds_name, namespace, domain, port) in [
        ("", DS, NS, "cluster.local", 5001),
        (EVERYTHING, DS, NS, "example.internal", 5101),
        (MINIMAL, "pp", "infra", "cluster.local", 5001),
    ] {
        let manifest = render(values)?;
        let service_name = format!("{ds_name}-bootstrap");
        let service: Service = manifest.typed("Service", &service_name)?;
        let spec = service.spec.ok_or("no spec")?;
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let (ds, pod) = daemonset(&manifest, ds_name)?;
        let pod_labels = ds.spec.and_then(|s| s.template.metadata).and_then(|m| m.labels).unwrap_or_default();
        let selector = spec.selector.unwrap_or_default();
        assert!(!selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        let ports = spec.ports.unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, port);
        let a = args(container(&pod.containers, "peerpull")?);
        assert_eq!(
            flag(&a, "--bootstrap"),
            Some(format!("dns:{service_name}.{namespace}.svc.{domain}:{port}")),
            "the daemon must bootstrap through the service"
        );
        assert_eq!(flag(&a, "--router-addr"), Some(format!("0.0.0.0:{port}")));

        let metrics: Service = manifest.typed("Service", &format!("{ds_name}-metrics"))?;
        let spec = metrics.spec.ok_or("no spec")?;
        let selector = spec.selector.unwrap_or_default();
        assert!(!selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        let ports = spec.ports.unwrap_or_default();
        assert_eq!(ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>(), vec![Some("metrics".to_owned())]);
    }
    // A single node stands alone: no --bootstrap, and peerpull still accepts the rest.
    let manifest = render("peerpull:\n  standalone: true\n")?;
    let (_, pod) = daemonset(&manifest, DS)?;
    let c = container(&pod.containers, "peerpull")?;
    assert_eq!(flags(&args(c), "--bootstrap"), Vec::<String>::new());
    assert!(accepted_by_peerpull(c)?.contains("bootstrap: []"));
    Ok(())
}

#[test]
fn readme_documents_every_value() -> Result {
    let values: Value = serde_norway::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml"))?)?;
    let readme = std::fs::read_to_string(chart_dir().join("README.md"))?;
    let mut missing = Vec::new();
    let mut documented = 0;
    walk_values("", &values, &readme, &mut missing, &mut documented);
    assert!(missing.is_empty(), "values not in charts/peerpull/README.md: {missing:?}");
    assert!(documented > 50, "only {documented} values found");
    // And in values.yaml itself: every documented key has a `# --` line.
    let text = std::fs::read_to_string(chart_dir().join("values.yaml"))?;
    assert!(text.matches("# -- ").count() >= documented);
    Ok(())
}

/// A key is documented when README's table has a row for it; maps without a
/// row of their own are documented through their keys.
fn walk_values(path: &str, value: &Value, readme: &str, missing: &mut Vec<String>, documented: &mut usize) {
    if !path.is_empty() && readme.contains(&format!("| `{path}` |")) {
        *documented += 1;
        return;
    }
    match value.as_mapping() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = key.as_str().unwrap_or_default();
                let child_path = if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
                walk_values(&child_path, child, readme, missing, documented);
            }
        }
        _ => missing.push(path.to_owned()),
    }
}

#[test]
fn nulls_set_flags_and_required_values_take_effect() -> Result {
    let helm = Helm::get()?;
    // A null removes a default; --set types like Helm's strvals.
    let manifest = helm.render(
        "nodeSelector: null\n",
        &["--set", "service.registry.hostPort=31000", "--set", "peerpull.mirroredRegistries={docker.io,ghcr.io}"],
    )?;
    let (_, pod) = daemonset(&manifest, DS)?;
    assert_eq!(pod.node_selector, None);
    let c = container(&pod.containers, "peerpull")?;
    let registry = c.ports.clone().unwrap_or_default().into_iter().find(|p| p.name.as_deref() == Some("registry"));
    assert_eq!(registry.and_then(|p| p.host_port), Some(31000));
    assert_eq!(flags(&args(c), "--mirrored-registry"), vec!["docker.io".to_owned(), "ghcr.io".to_owned()]);
    // required fails the render with its message, as under Helm.
    let error = helm.render("image:\n  repository: \"\"\n", &[]).err().ok_or("an empty image.repository rendered")?;
    assert!(error.to_string().contains("image.repository is required"), "{error}");
    Ok(())
}

#[test]
fn the_cluster_is_private_by_default() -> Result {
    use k8s_openapi::api::core::v1::Secret;
    let manifest = render("")?;
    let secret: Secret = manifest.typed("Secret", "peerpull-psk")?;
    let key = secret.data.unwrap_or_default().remove("psk").ok_or("no psk in the Secret")?;
    let key = String::from_utf8(key.0)?;
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()), "not 32 bytes in hex: {key:?}");
    let (_, pod) = daemonset(&manifest, DS)?;
    let run = container(&pod.containers, "peerpull")?;
    let args = args(run);
    assert!(args.contains(&"--psk-file=/etc/peerpull/psk/psk".to_owned()), "{args:?}");
    assert!(args.contains(&"--client-cidr=$(NODE_IP)".to_owned()), "{args:?}");
    let mount = run.volume_mounts.iter().flatten().find(|m| m.name == "psk").ok_or("no psk mount")?;
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/peerpull/psk", Some(true)));
    let source = volume(&pod, "psk")?.secret.as_ref().ok_or("the psk volume is not a Secret")?;
    assert_eq!(source.secret_name.as_deref(), Some("peerpull-psk"));
    let parsed = accepted_by_peerpull(run)?;
    assert!(parsed.contains("\"/etc/peerpull/psk/psk\"") && parsed.contains(NODE_IP), "{parsed}");

    // A Secret of the operator's own is mounted instead.
    let (_, pod) = daemonset(&render("peerpull:\n  psk:\n    existingSecret: cluster-key\n")?, DS)?;
    assert_eq!(volume(&pod, "psk")?.secret.as_ref().and_then(|s| s.secret_name.as_deref()), Some("cluster-key"));
    // Off: no key and no flag.
    let (_, pod) = daemonset(&render("peerpull:\n  psk:\n    enabled: false\n")?, DS)?;
    assert!(volume(&pod, "psk").is_err());
    assert!(!args_of(&pod).iter().any(|a| a.starts_with("--psk-file")));
    Ok(())
}

fn args_of(pod: &k8s_openapi::api::core::v1::PodSpec) -> Vec<String> {
    pod.containers.iter().find(|c| c.name == "peerpull").map(args).unwrap_or_default()
}

#[test]
fn the_admin_socket_is_writable_and_tcp_and_the_debug_page_are_opt_in() -> Result {
    let (_, pod) = daemonset(&render("")?, DS)?;
    let run = container(&pod.containers, "peerpull")?;
    let args = args(run);
    assert_eq!(flag(&args, "--admin-socket").as_deref(), Some("/run/peerpull/admin.sock"), "{args:?}");
    assert_eq!(flag(&args, "--admin-addr"), None, "no TCP admin API unless asked");
    assert_eq!(flag(&args, "--debug-web").as_deref(), Some("false"), "no debug page unless asked");
    // The root filesystem is read-only: the socket's directory is a volume of its own.
    assert_eq!(mount(run, "admin")?, ("/run/peerpull".to_owned(), false));
    assert!(volume(&pod, "admin")?.empty_dir.is_some());
    accepted_by_peerpull(run)?;

    let (_, pod) = daemonset(&render("peerpull:\n  debugWeb: true\n  admin:\n    addr: 127.0.0.1:5002\n")?, DS)?;
    let run = container(&pod.containers, "peerpull")?;
    assert_eq!(flag(&args_of(&pod), "--admin-addr").as_deref(), Some("127.0.0.1:5002"));
    assert_eq!(flag(&args_of(&pod), "--debug-web").as_deref(), Some("true"));
    let parsed = accepted_by_peerpull(run)?;
    assert!(parsed.contains("127.0.0.1:5002"), "{parsed}");
    Ok(())
}

#[test]
fn an_ipv6_node_ip_gives_a_mirror_url_peerpull_accepts() -> Result {
    let (_, pod) = daemonset(&render("service:\n  registry:\n    nodeIp: \"fd00::7\"\n")?, DS)?;
    let inits = pod.init_containers.clone().unwrap_or_default();
    let configure = container(&inits, "configure")?;
    // Kubernetes cannot bracket the variable: the flag reads `http://fd00::7:5000`.
    let env = container_env(configure)?;
    assert_eq!(expand("http://$(NODE_IP):5000", &env), "http://fd00::7:5000");
    let parsed = accepted_by_peerpull(configure)?;
    assert!(parsed.contains("http://[fd00::7]:5000"), "{parsed}");
    let run = container(&pod.containers, "peerpull")?;
    let parsed = accepted_by_peerpull(run)?;
    assert!(parsed.contains("fd00::7/128"), "{parsed}");
    // On IPv6 nodes the listeners take the IPv6 wildcard.
    let values = "service:\n  listenAddress: \"[::]\"\n  registry:\n    nodeIp: \"fd00::7\"\n";
    let (_, pod) = daemonset(&render(values)?, DS)?;
    let run = container(&pod.containers, "peerpull")?;
    for flag_name in ["--registry-addr", "--router-addr", "--metrics-addr"] {
        assert!(flag(&args(run), flag_name).is_some_and(|v| v.starts_with("[::]:")), "{flag_name}: {:?}", args(run));
    }
    accepted_by_peerpull(run)?;
    Ok(())
}
