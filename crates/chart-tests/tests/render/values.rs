//! The value sets the chart is rendered with, the names they produce, and
//! the Helm and Kubernetes versions it is rendered for.

use peerpull_chart_tests::{oldest_kube_version, Helm, NEWEST_KUBE_VERSION};

use crate::support::Result;

pub(crate) const NS: &str = "peerpull-system";
pub(crate) const DS: &str = "peerpull";
pub(crate) const CLEANUP: &str = "peerpull-cleanup";
/// The node IP the tests stand in for the downward API's `status.hostIP`.
pub(crate) const NODE_IP: &str = "10.0.0.7";
/// The node name the tests stand in for the downward API's `spec.nodeName`.
pub(crate) const NODE_NAME: &str = "node-a";
/// The ClusterRole and ClusterRoleBinding that let the pods read their Node (cluster-scoped: named with the namespace).
pub(crate) const NODE_READER: &str = "peerpull-system-peerpull-node-reader";

pub(crate) const K3S: &str = r#"
peerpull:
  containerdSock: /run/k3s/containerd/containerd.sock
  containerdRegistryConfigPath: /var/lib/rancher/k3s/agent/etc/containerd/certs.d
  containerdContentPath: /var/lib/rancher/k3s/agent/containerd/io.containerd.content.v1.content
  extraArgs:
    - --registries-yaml=/etc/rancher/k3s/registries.yaml
"#;

pub(crate) const EVERYTHING: &str = r#"
image:
  repository: registry.example.com/infra/peerpull
  tag: 1.2.3
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
imagePullSecrets:
  - name: pull-secret
daemonsetAnnotations:
  example.com/owner: platform
podAnnotations:
  example.com/scrape: "true"
podLabels:
  team: platform
commonLabels:
  env: prod
clusterDomain: example.internal.
updateStrategy:
  type: RollingUpdate
  rollingUpdate:
    maxUnavailable: 2
service:
  registry:
    port: 5100
    hostPort: 30500
  router:
    port: 5101
  metrics:
    port: 9191
    annotations:
      prometheus.io/scrape: "true"
  bootstrap:
    annotations:
      example.com/bootstrap: "yes"
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - key: node-role.kubernetes.io/edge
              operator: DoesNotExist
serviceMonitor:
  enabled: true
  labels:
    release: kube-prometheus-stack
  relabelings:
    - sourceLabels: [__meta_kubernetes_pod_node_name]
      targetLabel: node
  metricRelabelings:
    - sourceLabels: [__name__]
      regex: go_.*
      action: drop
grafanaDashboard:
  enabled: true
  annotations:
    grafana_folder: Infrastructure
networkPolicy:
  enabled: true
  metricsFrom:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: monitoring
  extraIngress:
    - from:
        - ipBlock:
            cidr: 10.0.0.0/8
      ports:
        - port: 8080
          protocol: TCP
cleanup:
  timeout: 10m
peerpull:
  logLevel: peerpull_mirror=debug,info
  logFormat: text
  mirroredRegistries:
    - https://docker.io
    - ghcr.io
    - http://10.0.0.5:5000
  additionalMirrorTargets:
    - https://mirror.example.com
  resolveTags: false
  prependExisting: true
  dialTimeout: 1s
  mountSocketDirectory: true
  containerdNamespace: custom
  dataDir: /var/lib/example/peerpull
  zone:
    name: us-east-1a
"#;

pub(crate) const MINIMAL: &str = r#"
fullnameOverride: pp
namespaceOverride: infra
priorityClassName: ""
tolerations: []
nodeSelector: null
service:
  registry:
    nodeIp: 192.0.2.10
livenessProbe:
  enabled: false
peerpull:
  containerdContentPath: ""
  containerdMirrorAdd: false
  zone:
    fromNode: false
"#;

/// The pre-shared key from a Secret the operator made.
pub(crate) const EXISTING_PSK: &str = r#"
peerpull:
  psk:
    existingSecret: cluster-key
"#;

/// An IPv6 node: the mirror on the node's IPv6 address, listeners on `[::]`.
pub(crate) const IPV6: &str = r#"
service:
  listenAddress: "[::]"
  registry:
    nodeIp: "fd00::7"
"#;

/// Every value set the tests render: name and values. `everything` turns
/// the ServiceMonitor and the Grafana dashboard on.
pub(crate) const VALUE_SETS: &[(&str, &str)] = &[
    ("defaults", ""),
    ("k3s", K3S),
    ("existing-psk", EXISTING_PSK),
    ("ipv6", IPV6),
    ("everything", EVERYTHING),
    ("minimal", MINIMAL),
];

/// Every Helm and Kubernetes version the chart is rendered for: the Helm the
/// tests use and the oldest it supports, each at the oldest Kubernetes
/// `Chart.yaml` claims and at [`NEWEST_KUBE_VERSION`]. The first is what
/// [`crate::support::render`] uses.
pub(crate) fn targets() -> Result<Vec<(&'static Helm, String)>> {
    let oldest = oldest_kube_version()?;
    let newest = NEWEST_KUBE_VERSION.to_owned();
    Ok(vec![
        (Helm::get()?, newest.clone()),
        (Helm::get()?, oldest.clone()),
        (Helm::oldest()?, newest),
        (Helm::oldest()?, oldest),
    ])
}
