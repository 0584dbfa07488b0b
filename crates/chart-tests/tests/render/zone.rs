//! How a pod learns its zone: by default from its node's
//! `topology.kubernetes.io/zone` label, read through the Kubernetes API with
//! a read-only ClusterRole and a token only the daemon container holds; or
//! one fixed zone for every pod, with no RBAC; or none.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::json;

use super::*;

/// Where in-cluster clients find the token and the CA.
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[test]
fn by_default_each_pod_reads_its_nodes_zone_with_one_read_only_rule() -> Result {
    let manifest = render("")?;
    // Exactly `get` on `nodes`: no list, no watch, nothing else.
    let role: ClusterRole = manifest.typed("ClusterRole", NODE_READER)?;
    let rules = serde_json::to_value(role.rules.unwrap_or_default())?;
    assert_eq!(rules, json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]));
    assert_eq!(role.aggregation_rule, None);
    // Granted to the pods' ServiceAccount, and to nothing else.
    let (_, pod) = daemonset(&manifest, DS)?;
    let account = pod.service_account_name.clone().ok_or("no service account")?;
    manifest.get("ServiceAccount", &account)?;
    let binding: ClusterRoleBinding = manifest.typed("ClusterRoleBinding", NODE_READER)?;
    assert_eq!(
        serde_json::to_value(&binding.role_ref)?,
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NODE_READER})
    );
    assert_eq!(
        serde_json::to_value(binding.subjects.unwrap_or_default())?,
        json!([{"kind": "ServiceAccount", "name": account, "namespace": NS}])
    );

    // The daemon is given its node's name from the downward API and reads the label.
    let main = container(&pod.containers, "peerpull")?;
    let a = args(main);
    assert_eq!(flags(&a, "--zone-from-node"), vec!["$(NODE_NAME)".to_owned()]);
    assert_eq!(flags(&a, "--zone"), Vec::<String>::new());
    let env = main.env.as_deref().unwrap_or_default();
    let node_name = env.iter().find(|v| v.name == "NODE_NAME").ok_or("no NODE_NAME")?;
    let field = node_name.value_from.as_ref().and_then(|f| f.field_ref.as_ref()).map(|f| f.field_path.as_str());
    assert_eq!(field, Some("spec.nodeName"));
    let parsed = accepted_by_peerpull(main)?;
    assert!(parsed.contains(&format!("\"{NODE_NAME}\"")), "the node name does not reach peerpull:\n{parsed}");

    // The token: mounted where clients look for it, in the daemon container only.
    assert_eq!(pod.automount_service_account_token, Some(false), "the kubelet would mount it into every container");
    assert_eq!(mount(main, "kube-api-access")?, (TOKEN_DIR.to_owned(), true));
    for init in pod.init_containers.iter().flatten() {
        assert!(mount(init, "kube-api-access").is_err(), "{} holds the token", init.name);
    }
    let projected = volume(&pod, "kube-api-access")?.projected.clone().ok_or("kube-api-access is not projected")?;
    assert_eq!(
        serde_json::to_value(projected)?,
        json!({"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        ]})
    );
    Ok(())
}

#[test]
fn a_fixed_zone_wins_over_the_node_label_and_needs_no_rbac() -> Result {
    let base: BTreeSet<_> = render("")?.objects().into_iter().collect();
    let rbac: BTreeSet<(String, String)> =
        [("ClusterRole", NODE_READER), ("ClusterRoleBinding", NODE_READER)].map(|(k, n)| (k.into(), n.into())).into();
    for values in [
        "peerpull:\n  zone:\n    fromNode: false\n    name: us-east-1a\n",
        // The name wins while fromNode is still on.
        "peerpull:\n  zone:\n    name: us-east-1a\n",
    ] {
        let manifest = render(values)?;
        let got: BTreeSet<_> = manifest.objects().into_iter().collect();
        assert_eq!(base.difference(&got).cloned().collect::<BTreeSet<_>>(), rbac, "{values}");
        assert!(got.is_subset(&base), "{values}");
        let (_, pod) = daemonset(&manifest, DS)?;
        let main = container(&pod.containers, "peerpull")?;
        let a = args(main);
        assert_eq!(flags(&a, "--zone"), vec!["us-east-1a".to_owned()], "{values}");
        assert_eq!(flags(&a, "--zone-from-node"), Vec::<String>::new(), "{values}");
        assert!(!main.env.iter().flatten().any(|v| v.name == "NODE_NAME"), "{values}");
        assert!(volume(&pod, "kube-api-access").is_err() && mount(main, "kube-api-access").is_err(), "{values}");
        let parsed = accepted_by_peerpull(main)?;
        assert!(parsed.contains("us-east-1a"), "{values}: the zone does not reach peerpull:\n{parsed}");
    }

    // Neither: no zone, no RBAC, no token.
    let manifest = render("peerpull:\n  zone:\n    fromNode: false\n")?;
    let got: BTreeSet<_> = manifest.objects().into_iter().collect();
    assert_eq!(base.difference(&got).cloned().collect::<BTreeSet<_>>(), rbac);
    let (_, pod) = daemonset(&manifest, DS)?;
    let main = container(&pod.containers, "peerpull")?;
    assert!(!args(main).iter().any(|a| a.starts_with("--zone")), "{:?}", args(main));
    assert!(volume(&pod, "kube-api-access").is_err());
    accepted_by_peerpull(main)?;
    Ok(())
}

#[test]
fn zone_names_peerpull_would_refuse_are_caught() -> Result {
    let manifest = render("peerpull:\n  zone:\n    name: \"eu west/1\"\n")?;
    let (_, pod) = daemonset(&manifest, DS)?;
    let error = accepted_by_peerpull(container(&pod.containers, "peerpull")?).err().ok_or("a bad zone passed")?;
    // Refused for that value (not as an unknown flag), with peerpull's one-line usage error.
    assert!(error.to_string().contains("for '--zone "), "{error}");
    Ok(())
}
