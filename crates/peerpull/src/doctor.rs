//! `peerpull doctor`: what is wrong with this node's set-up, and how to fix it.
//!
//! Every check returns [`Check`] values; [`run`] prints them in one place,
//! `[ok]`, `[warn]` or `[FAIL]`, each warning and failure with a concrete
//! fix, and exits 1 when any failed. Checks: containerd answers and the
//! namespace exists; CRI's registry `config_path` is set;
//! `discard_unpacked_layers` is off; a `hosts.toml` for each mirrored
//! registry points at this node's mirror; the mirror and router ports
//! answer; the node is ready and its DHT has peers (from the daemon's admin
//! API, else `/readyz?verbose`); the upstreams are reachable.
//!
//! The parts: this file (containerd and its configuration), `hosts`
//! (`hosts.toml` files), `network` (probes of the ports and upstreams) and
//! `readiness` (what the running node says about itself).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use peerpull_store::containerd::{Config as StoreConfig, ConfigReport, Containerd, Setting};
use peerpull_store::Store;

use crate::cli::DoctorArgs;
use crate::exit::Failure;

mod hosts;
mod network;
mod readiness;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
}

/// One finding: what was checked, how it came out, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) status: Status,
    pub(crate) what: String,
    /// Set for warnings and failures.
    pub(crate) fix: Option<String>,
}

impl Check {
    pub(crate) fn ok(what: impl Into<String>) -> Self {
        Self { status: Status::Ok, what: what.into(), fix: None }
    }

    pub(crate) fn warn(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { status: Status::Warn, what: what.into(), fix: Some(fix.into()) }
    }

    pub(crate) fn fail(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { status: Status::Fail, what: what.into(), fix: Some(fix.into()) }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.status {
            Status::Ok => "[ok]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        };
        write!(f, "{tag} {}", self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n       fix: {fix}")?;
        }
        Ok(())
    }
}

/// Runs every check and prints the report.
pub(crate) fn run(args: DoctorArgs) -> Result<(), Failure> {
    let targets = args.mirrored.load()?.targets;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow!("starting the runtime: {e}")))?;
    let checks = runtime.block_on(async {
        let (mut checks, config_path) = containerd(&args).await?;
        let hosts_dir = config_path.unwrap_or_else(|| args.config_path.clone());
        checks.extend(hosts::check(&hosts_dir, &targets, args.listen.registry_addr));
        checks.extend(network::ports(&args.listen).await);
        checks.extend(readiness::check(&args.listen, &args.admin.admin_socket).await);
        checks.extend(network::upstreams(&targets).await);
        Ok::<_, Failure>(checks)
    })?;
    for check in &checks {
        println!("{check}");
    }
    let failures = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failures > 0 {
        return Err(Failure::Runtime(anyhow!("doctor found {failures} problem(s)")));
    }
    println!("no problems found");
    Ok(())
}

/// containerd and its CRI configuration; also where containerd looks for `hosts.toml`, when it says.
async fn containerd(args: &DoctorArgs) -> Result<(Vec<Check>, Option<PathBuf>), Failure> {
    let socket = &args.containerd.containerd_socket;
    let namespace = &args.containerd.containerd_namespace;
    let store = Containerd::new(StoreConfig {
        socket: socket.clone(),
        namespace: namespace.clone(),
        content_path: args.containerd.containerd_content_path.clone(),
    })
    .map_err(Failure::usage)?;
    let mut checks = Vec::new();
    match store.ping().await {
        Ok(()) => {
            checks.push(Check::ok(format!("containerd answers at {}", socket.display())));
            checks.push(match store.check_namespace().await {
                Ok(()) => Check::ok(format!("namespace {namespace} exists")),
                Err(e) => Check::warn(
                    format!("namespace {namespace}: {e}"),
                    "CRI creates k8s.io with the first pull; otherwise pass --containerd-namespace",
                ),
            });
        }
        Err(e) => checks.push(Check::fail(
            format!("containerd does not answer at {}: {e}", socket.display()),
            "start containerd, or pass its socket with --containerd-socket",
        )),
    }
    let report = store.config_check(Some(&args.containerd_config)).await;
    let (config_checks, config_path) = configuration(&report, &args.containerd_config, &args.config_path);
    checks.extend(config_checks);
    Ok((checks, config_path))
}

/// CRI's `config_path` and `discard_unpacked_layers`, as `report` found them.
fn configuration(report: &ConfigReport, config_file: &Path, hosts_dir: &Path) -> (Vec<Check>, Option<PathBuf>) {
    let mut checks = Vec::new();
    let file = config_file.display();
    let unknown = |setting: &str, why: &[String]| {
        Check::warn(
            format!("cannot tell whether {setting} ({})", why.join("; ")),
            "pass containerd's config file with --containerd-config",
        )
    };
    let config_path = match &report.config_path {
        Setting::Known { value: Some(path), source } => {
            checks.push(Check::ok(format!("CRI registry config_path is {path} (from {source:?})")));
            Some(PathBuf::from(path))
        }
        Setting::Known { value: None, .. } => {
            checks.push(Check::fail(
                "CRI registry config_path is not set: containerd ignores hosts.toml files",
                format!(
                    "add config_path = \"{}\" under [plugins.\"io.containerd.grpc.v1.cri\".registry] in {file} and restart containerd",
                    hosts_dir.display(),
                ),
            ));
            None
        }
        Setting::Unknown(why) => {
            checks.push(unknown("CRI's config_path is set", why));
            None
        }
    };
    checks.push(match &report.discard_unpacked_layers {
        Setting::Known { value: false, .. } => Check::ok("discard_unpacked_layers is off: layers stay shareable"),
        Setting::Known { value: true, .. } => Check::fail(
            "discard_unpacked_layers is on: this node drops layers after unpacking and has nothing to share",
            format!("set discard_unpacked_layers = false under [plugins.\"io.containerd.grpc.v1.cri\".containerd] in {file}"),
        ),
        Setting::Unknown(why) => unknown("discard_unpacked_layers is on", why),
    });
    (checks, config_path)
}

#[cfg(test)]
mod tests {
    use peerpull_store::containerd::ConfigSource;

    use super::*;

    #[test]
    fn configuration_findings_name_their_fix() {
        let report = ConfigReport {
            config_path: Setting::Known { value: None, source: ConfigSource::CriStatus },
            discard_unpacked_layers: Setting::Known { value: true, source: ConfigSource::CriStatus },
        };
        let (checks, path) = configuration(&report, Path::new("/etc/containerd/config.toml"), Path::new("/certs.d"));
        assert_eq!(path, None);
        assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Fail, Status::Fail]);
        let text = checks.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(text.contains("fix: add config_path = \"/certs.d\""), "{text}");
        assert!(text.contains("fix: set discard_unpacked_layers = false"), "{text}");

        let report = ConfigReport {
            config_path: Setting::Known {
                value: Some("/etc/containerd/certs.d".into()),
                source: ConfigSource::CriStatus,
            },
            discard_unpacked_layers: Setting::Unknown(vec!["no answer".into()]),
        };
        let (checks, path) = configuration(&report, Path::new("/c.toml"), Path::new("/certs.d"));
        assert_eq!(path, Some(PathBuf::from("/etc/containerd/certs.d")));
        assert_eq!(checks.iter().map(|c| c.status).collect::<Vec<_>>(), [Status::Ok, Status::Warn]);
        assert_eq!(checks[0].fix, None);
        assert_eq!(checks[1].to_string(), "[warn] cannot tell whether discard_unpacked_layers is on (no answer)\n       fix: pass containerd's config file with --containerd-config");
    }
}
