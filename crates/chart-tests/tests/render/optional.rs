//! The objects that come and go with their toggles, and what they carry:
//! the ServiceMonitor, the dashboard and its queries, the NetworkPolicy, the
//! preheat list, the uninstall hook.

use super::*;

#[test]
fn toggles_add_and_remove_exactly_their_objects() -> Result {
    let base: BTreeSet<_> = render("")?.objects().into_iter().collect();
    for (values, added) in [
        ("serviceMonitor:\n  enabled: true\n", vec![("ServiceMonitor", "peerpull")]),
        ("grafanaDashboard:\n  enabled: true\n", vec![("ConfigMap", "peerpull-dashboard")]),
        (
            "serviceMonitor:\n  enabled: true\ngrafanaDashboard:\n  enabled: true\n",
            vec![("ServiceMonitor", "peerpull"), ("ConfigMap", "peerpull-dashboard")],
        ),
    ] {
        let got: BTreeSet<_> = render(values)?.objects().into_iter().collect();
        let expected: BTreeSet<_> = added.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect();
        let extra: BTreeSet<_> = got.difference(&base).cloned().collect();
        assert_eq!(extra, expected, "{values}");
        assert!(base.is_subset(&got), "{values} removed objects");
    }
    // Off again (explicitly) is the defaults.
    let off = "serviceMonitor:\n  enabled: false\ngrafanaDashboard:\n  enabled: false\n";
    assert_eq!(render(off)?.objects().into_iter().collect::<BTreeSet<_>>(), base);

    // On by default, each can be turned off: the NetworkPolicy, and the generated key.
    for (values, removed) in [
        ("networkPolicy:\n  enabled: false\n", ("NetworkPolicy", "peerpull")),
        ("peerpull:\n  psk:\n    enabled: false\n", ("Secret", "peerpull-psk")),
        ("peerpull:\n  psk:\n    existingSecret: cluster-key\n", ("Secret", "peerpull-psk")),
    ] {
        let got: BTreeSet<_> = render(values)?.objects().into_iter().collect();
        let gone: BTreeSet<_> = base.difference(&got).cloned().collect();
        assert_eq!(gone, BTreeSet::from([(removed.0.to_owned(), removed.1.to_owned())]), "{values}");
        assert!(got.is_subset(&base), "{values}");
    }

    // The uninstall hook goes with cleanup.enabled, and with the mirror configuration.
    let hooks: BTreeSet<_> = base.iter().filter(|(k, _)| k.ends_with("(hook)")).cloned().collect();
    assert_eq!(hooks.len(), 5);
    for values in ["cleanup:\n  enabled: false\n", "peerpull:\n  containerdMirrorAdd: false\n"] {
        let manifest = render(values)?;
        let got: BTreeSet<_> = manifest.objects().into_iter().collect();
        assert_eq!(base.difference(&got).cloned().collect::<BTreeSet<_>>(), hooks, "{values}");
        assert!(got.is_subset(&base));
        if values.contains("containerdMirrorAdd") {
            let (_, pod) = daemonset(&manifest, DS)?;
            assert!(pod.init_containers.is_none(), "no configure without mirror configuration");
            assert!(volume(&pod, "containerd-config").is_err());
        }
    }
    Ok(())
}

#[test]
fn the_preheat_list_reaches_the_daemon_as_a_file_it_reads_again() -> Result {
    let values =
        "peerpull:\n  preheat:\n    images: [docker.io/library/nginx:1.27, ghcr.io/team/app:v2]\n    replicas: 3\n";
    let manifest = render(values)?;
    let cm: ConfigMap = manifest.typed("ConfigMap", "peerpull-preheat")?;
    let list = cm.data.unwrap_or_default().remove("images").unwrap_or_default();
    let lines: Vec<&str> = list.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines, ["docker.io/library/nginx:1.27", "ghcr.io/team/app:v2"], "{list:?}");
    let (_, pod) = daemonset(&manifest, DS)?;
    let main = container(&pod.containers, "peerpull")?;
    let args = args(main);
    assert_eq!(flag(&args, "--preheat-file").as_deref(), Some("/etc/peerpull/preheat/images"));
    assert_eq!(flag(&args, "--preheat-replicas").as_deref(), Some("3"));
    // A directory mount (no subPath): the kubelet updates it in place, so edits need no restart.
    assert_eq!(mount(main, "preheat")?, ("/etc/peerpull/preheat".to_owned(), true));
    let source = volume(&pod, "preheat")?.config_map.clone().ok_or("preheat is not a ConfigMap volume")?;
    assert_eq!(source.name, "peerpull-preheat");
    // An empty list is an empty file: the daemon preheats nothing.
    let manifest = render("")?;
    let cm: ConfigMap = manifest.typed("ConfigMap", "peerpull-preheat")?;
    let list = cm.data.unwrap_or_default().remove("images").unwrap_or_default();
    assert!(list.trim().is_empty(), "{list:?}");
    Ok(())
}

#[test]
fn optional_objects_carry_their_settings() -> Result {
    let manifest = render(EVERYTHING)?;
    let sm = manifest.get("ServiceMonitor", "peerpull")?.json()?;
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["relabelings"][0]["targetLabel"], "node");
    assert_eq!(sm["spec"]["endpoints"][0]["metricRelabelings"][0]["action"], "drop");
    assert_eq!(sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], "metrics");
    let metrics: Service = manifest.typed("Service", "peerpull-metrics")?;
    let metrics_labels = metrics.metadata.labels.unwrap_or_default();
    assert_eq!(metrics_labels.get("app.kubernetes.io/component").map(String::as_str), Some("metrics"));

    let np: NetworkPolicy = manifest.typed("NetworkPolicy", "peerpull")?;
    let ingress = np.spec.and_then(|s| s.ingress).unwrap_or_default();
    let port_of = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
        rule.ports.as_ref().and_then(|p| p.first()).and_then(|p| serde_json::to_value(&p.port).ok())
    };
    let router = ingress.iter().find(|r| port_of(r) == Some(serde_json::json!(5101))).ok_or("no router rule")?;
    assert!(router.from.as_ref().is_some_and(|f| f.iter().all(|p| p.pod_selector.is_some())), "router open to all");
    let registry = ingress.iter().find(|r| port_of(r) == Some(serde_json::json!(5100))).ok_or("no registry rule")?;
    assert!(registry.from.is_none(), "containerd on the node must reach the mirror");
    let metrics = ingress.iter().find(|r| port_of(r) == Some(serde_json::json!(9191))).ok_or("no metrics rule")?;
    assert!(metrics.from.as_ref().is_some_and(|f| f[0].namespace_selector.is_some()));
    assert!(ingress.iter().any(|r| port_of(r) == Some(serde_json::json!(8080))), "extraIngress missing");

    let cm: ConfigMap = manifest.typed("ConfigMap", "peerpull-dashboard")?;
    let cm_labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(cm_labels.get("grafana_dashboard").map(String::as_str), Some("1"));
    assert_eq!(cm_labels.get("env").map(String::as_str), Some("prod"), "commonLabels on every object");

    let (ds, pod) = daemonset(&manifest, DS)?;
    let image = pod.containers[0].image.clone().unwrap_or_default();
    assert_eq!(
        image,
        "registry.example.com/infra/peerpull@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(pod.image_pull_secrets.as_ref().map(Vec::len), Some(1));
    let meta = ds.spec.and_then(|s| s.template.metadata).ok_or("no pod metadata")?;
    assert_eq!(meta.annotations.unwrap_or_default().get("example.com/scrape").map(String::as_str), Some("true"));
    let pod_labels = meta.labels.unwrap_or_default();
    assert_eq!(pod_labels.get("team").map(String::as_str), Some("platform"));
    // The socket's directory instead of the socket.
    assert_eq!(host_path(&pod, "containerd-sock")?, ("/run/containerd".to_owned(), "Directory".to_owned()));
    Ok(())
}

#[test]
fn uninstall_hook_runs_cleanup_on_every_node_and_waits_for_it() -> Result {
    let manifest = render("")?;
    let (_, main) = daemonset(&manifest, DS)?;
    let (cleanup_ds, cleanup) = daemonset(&manifest, CLEANUP)?;
    let job: Job = manifest.typed("Job", "peerpull-cleanup-wait")?;
    for doc in manifest.docs.iter().filter(|d| d.is_hook()) {
        assert_eq!(doc.annotation("helm.sh/hook"), Some("post-delete"), "{}", doc.name());
        assert_eq!(doc.annotation("helm.sh/hook-delete-policy"), Some("before-hook-creation,hook-succeeded"));
    }
    let weight = |kind: &str, name: &str| -> Result<i32> {
        Ok(manifest.get(kind, name)?.annotation("helm.sh/hook-weight").ok_or("no weight")?.parse()?)
    };
    assert!(weight("Role", CLEANUP)? < weight("DaemonSet", CLEANUP)?);
    assert!(weight("DaemonSet", CLEANUP)? < weight("Job", "peerpull-cleanup-wait")?);

    // Wherever the daemon ran, the cleanup runs.
    assert_eq!(cleanup.tolerations, main.tolerations);
    assert_eq!(cleanup.node_selector, main.node_selector);
    assert_eq!(cleanup.affinity, main.affinity);
    let inits = cleanup.init_containers.clone().unwrap_or_default();
    let c = container(&inits, "cleanup")?;
    assert_eq!(args(c), vec!["cleanup".to_owned(), "--config-path=/etc/containerd/certs.d".to_owned()]);
    assert_eq!(mount(c, "containerd-config")?, ("/etc/containerd/certs.d".to_owned(), false));
    assert_eq!(host_path(&cleanup, "containerd-config")?.0, "/etc/containerd/certs.d");
    // Its pods must not be taken for the daemon's.
    let main_selector = main_labels(&manifest)?;
    let cleanup_labels = cleanup_ds.spec.and_then(|s| s.template.metadata).and_then(|m| m.labels).unwrap_or_default();
    assert!(!main_selector.iter().all(|(k, v)| cleanup_labels.get(k) == Some(v)));

    // The Job waits for that DaemonSet, with just the rights to read it.
    let pod = job.spec.map(|s| s.template).and_then(|t| t.spec).ok_or("no Job pod")?;
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let wait = &pod.containers[0];
    let mut command = wait.command.clone().unwrap_or_default();
    command.extend(args(wait));
    assert_eq!(&command[..4], ["kubectl", "rollout", "status", "daemonset/peerpull-cleanup"]);
    assert!(command.contains(&format!("--namespace={NS}")));
    let sa = pod.service_account_name.ok_or("no service account")?;
    let binding: RoleBinding = manifest.typed("RoleBinding", CLEANUP)?;
    assert_eq!(binding.role_ref.name, CLEANUP);
    assert!(binding.subjects.unwrap_or_default().iter().any(|s| s.kind == "ServiceAccount" && s.name == sa));
    let role: Role = manifest.typed("Role", CLEANUP)?;
    let rules = role.rules.unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources.as_deref(), Some(&["daemonsets".to_owned()][..]));
    assert_eq!(rules[0].resource_names.as_deref(), Some(&[CLEANUP.to_owned()][..]));
    assert!(rules[0].verbs.iter().all(|v| ["get", "list", "watch"].contains(&v.as_str())));
    Ok(())
}

fn main_labels(manifest: &Manifest) -> Result<BTreeMap<String, String>> {
    let (ds, _) = daemonset(manifest, DS)?;
    Ok(ds.spec.map(|s| s.selector).and_then(|s| s.match_labels).unwrap_or_default())
}

#[test]
fn dashboard_queries_only_metrics_peerpull_exports() -> Result {
    let manifest = render("grafanaDashboard:\n  enabled: true\n")?;
    let cm: ConfigMap = manifest.typed("ConfigMap", "peerpull-dashboard")?;
    let json = cm.data.unwrap_or_default().remove("peerpull.json").ok_or("no peerpull.json")?;
    let dashboard: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(dashboard["uid"], "peerpull");
    let panels = dashboard["panels"].as_array().ok_or("no panels")?;
    // The metric names the mirror and the router register, as Prometheus exposes them.
    let mirror = "crates/mirror/src/metrics.rs";
    let routing = "crates/routing/src/metrics.rs";
    let exported = [
        (mirror, "mirror_requests", vec!["peerpull_mirror_requests_total"]),
        (mirror, "resolve_duration_seconds", vec!["peerpull_resolve_duration_seconds_bucket"]),
        (routing, "advertised_keys", vec!["peerpull_advertised_keys"]),
        (mirror, "mirror_bytes_served", vec!["peerpull_mirror_bytes_served_total"]),
        (mirror, "peer_fetch_failures", vec!["peerpull_peer_fetch_failures_total"]),
    ];
    let mut known = BTreeSet::new();
    for (file, registered, names) in &exported {
        let source = std::fs::read_to_string(chart_dir().join("../..").join(file))?;
        assert!(source.contains(&format!("\"{registered}\"")), "{file} no longer registers {registered}");
        known.extend(names.iter().map(|n| n.to_string()));
    }
    let mut used = BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().ok_or("a panel without targets")? {
            let expr = target["expr"].as_str().ok_or("a target without expr")?;
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("peerpull_") {
                    assert!(known.contains(word), "the dashboard queries {word}, which peerpull does not export");
                    used.insert(word.to_owned());
                }
            }
        }
    }
    assert_eq!(used, known, "every metric has a panel");
    Ok(())
}
