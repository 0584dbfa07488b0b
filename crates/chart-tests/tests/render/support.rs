//! Reading rendered objects: containers, volumes, mounts, flags, and the
//! hand-off of a container's arguments to `peerpull`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use peerpull_chart_tests::{check_args, expand, Helm, Manifest, NEWEST_KUBE_VERSION};
use serde_norway::Value;

use crate::values::{NODE_IP, NODE_NAME};

pub(crate) type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `helm template` with `values`, by the Helm the tests use, for the newest
/// Kubernetes.
pub(crate) fn render(values: &str) -> Result<Manifest> {
    Ok(Helm::get()?.render(values, &["--kube-version", NEWEST_KUBE_VERSION])?)
}

pub(crate) fn daemonset(manifest: &Manifest, name: &str) -> Result<(DaemonSet, PodSpec)> {
    let ds: DaemonSet = manifest.typed("DaemonSet", name)?;
    let pod = ds.spec.clone().and_then(|s| s.template.spec).ok_or("DaemonSet without a pod spec")?;
    Ok((ds, pod))
}

pub(crate) fn container<'a>(containers: &'a [Container], name: &str) -> Result<&'a Container> {
    Ok(containers.iter().find(|c| c.name == name).ok_or_else(|| format!("no container {name}"))?)
}

pub(crate) fn volume<'a>(pod: &'a PodSpec, name: &str) -> Result<&'a Volume> {
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    Ok(volumes.iter().find(|v| v.name == name).ok_or_else(|| format!("no volume {name}"))?)
}

pub(crate) fn host_path(pod: &PodSpec, name: &str) -> Result<(String, String)> {
    let hp = volume(pod, name)?.host_path.clone().ok_or_else(|| format!("volume {name} is not a hostPath"))?;
    Ok((hp.path, hp.type_.unwrap_or_default()))
}

/// `(mountPath, readOnly)` of `volume` in `c`.
pub(crate) fn mount(c: &Container, volume: &str) -> Result<(String, bool)> {
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let m = mounts.iter().find(|m| m.name == volume).ok_or_else(|| format!("{} does not mount {volume}", c.name))?;
    Ok((m.mount_path.clone(), m.read_only.unwrap_or(false)))
}

pub(crate) fn args(c: &Container) -> Vec<String> {
    c.args.clone().unwrap_or_default()
}

/// The value of `--flag=VALUE` among `args`, if given once.
pub(crate) fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    let mut values = args.iter().filter_map(|a| a.strip_prefix(&prefix));
    let value = values.next()?;
    values.next().is_none().then(|| value.to_owned())
}

pub(crate) fn flags(args: &[String], name: &str) -> Vec<String> {
    let prefix = format!("{name}=");
    args.iter().filter_map(|a| a.strip_prefix(&prefix).map(str::to_owned)).collect()
}

/// The container's environment as the kubelet would give it on the node
/// [`NODE_NAME`] whose IP is [`NODE_IP`] (values as written; `status.hostIP`
/// and `spec.nodeName` from the downward API).
pub(crate) fn container_env(c: &Container) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for var in c.env.as_deref().unwrap_or_default() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("status.hostIP") => NODE_IP.to_owned(),
                Some("spec.nodeName") => NODE_NAME.to_owned(),
                other => return Err(format!("{}: env {} from {other:?}", c.name, var.name).into()),
            },
            (None, None) => String::new(),
        };
        env.insert(var.name.clone(), value);
    }
    Ok(env)
}

/// Hands `c`'s arguments, expanded like the kubelet does, to `peerpull`'s
/// validate-only mode with `c`'s environment; returns what it parsed.
pub(crate) fn accepted_by_peerpull(c: &Container) -> Result<String> {
    let env = container_env(c)?;
    let expanded: Vec<String> = args(c).iter().map(|a| expand(a, &env)).collect();
    let checked = check_args(&expanded, &env)?;
    if !checked.accepted {
        return Err(format!("peerpull rejected {} args {expanded:?}: {}", c.name, checked.stderr.trim()).into());
    }
    Ok(checked.stdout)
}

pub(crate) fn labels(doc: &Value, path: &[&str]) -> BTreeMap<String, String> {
    let mut v = doc;
    for key in path {
        match v.get(*key) {
            Some(next) => v = next,
            None => return BTreeMap::new(),
        }
    }
    serde_norway::from_value(v.clone()).unwrap_or_default()
}
