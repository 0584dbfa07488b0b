//! `peerpull doctor`: what is wrong with this node's set-up, and how to fix it.
//!
//! Every check returns [`Check`] values; [`run`] prints them in one place,
//! `[ok]`, `[warn]` or `[FAIL]`, each warning and failure with a concrete
//! fix, and exits 1 when any failed. Checks: containerd answers and the
//! namespace exists; CRI's registry `config_path` is set; containerd 2.1
//! and later pull in a way that reads it (their transfer service takes a
//! `config_path` list for one directory and ignores every `hosts.toml`);
//! `discard_unpacked_layers` is off; the `hosts.toml` containerd reads for
//! each mirrored registry points at this node's mirror; the mirror and router ports
//! answer; the node is ready and its DHT has peers (from the daemon's admin
//! API, else `/readyz?verbose`); the upstreams are reachable.
//!
//! The parts: this file (containerd and its configuration), `hosts`
//! (`hosts.toml` files), `network` (probes of the ports and upstreams) and
//! `readiness` (what the running node says about itself).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use peerpull_hosts::Target;
use peerpull_store::containerd::doctor::{config_path_dirs, Local, PullPath};
use peerpull_store::containerd::{Config as StoreConfig, ConfigReport, ConfigSource, Containerd, Setting};
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
    let mirror = args.listen.registry_addr;
    let checks = runtime.block_on(async {
        let (mut checks, report) = containerd(&args).await?;
        let dirs = hosts_dirs(&report, &args.config_path);
        let setup = Setup {
            config_file: &args.containerd_config,
            hosts_dir: &args.config_path,
            dirs: &dirs,
            targets: &targets,
            mirror,
        };
        checks.extend(configuration(&report, &setup));
        let major = report.version.as_ref().ok().map(|v| v.major);
        checks.extend(hosts::check(&dirs, &targets, mirror, major));
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

/// What the configuration checks look at besides the report: the files given and the `hosts.toml` found.
struct Setup<'a> {
    /// containerd's configuration file (`--containerd-config`).
    config_file: &'a Path,
    /// Where `hosts.toml` files are expected when containerd does not say (`--config-path`).
    hosts_dir: &'a Path,
    /// The directories containerd reads `hosts.toml` from, in order.
    dirs: &'a [PathBuf],
    targets: &'a [Target],
    mirror: SocketAddr,
}

/// containerd answers, and what it and its configuration file say.
async fn containerd(args: &DoctorArgs) -> Result<(Vec<Check>, ConfigReport), Failure> {
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
    Ok((checks, report))
}

/// The directories containerd reads `hosts.toml` from, in order: `config_path`'s, else `hosts_dir`.
fn hosts_dirs(report: &ConfigReport, hosts_dir: &Path) -> Vec<PathBuf> {
    let dirs = match report.config_path.value() {
        Some(Some(path)) => config_path_dirs(path),
        _ => Vec::new(),
    };
    if dirs.is_empty() {
        vec![hosts_dir.to_owned()]
    } else {
        dirs
    }
}

/// CRI's `config_path`, how containerd pulls, and `discard_unpacked_layers`, as `report` found them.
fn configuration(report: &ConfigReport, setup: &Setup<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let file = setup.config_file.display();
    let unknown = |setting: &str, why: &[String]| {
        Check::warn(
            format!("cannot tell whether {setting} ({})", why.join("; ")),
            "pass containerd's config file with --containerd-config",
        )
    };
    let listed = |path: &str| match config_path_dirs(path).len() {
        n @ 2.. => format!(", a list of {n} directories"),
        _ => String::new(),
    };
    match &report.config_path {
        Setting::Known { value: Some(path), source: ConfigSource::Default } => {
            let version = report.version.as_ref().map(ToString::to_string).unwrap_or_default();
            checks.push(Check::ok(format!(
                "CRI registry config_path is not set, so containerd {version} uses its default {path}{}",
                listed(path)
            )));
        }
        Setting::Known { value: Some(path), source } => {
            checks.push(Check::ok(format!("CRI registry config_path is {path} (from {source:?}){}", listed(path))));
        }
        Setting::Known { value: None, .. } => {
            checks.push(Check::fail(
                "CRI registry config_path is not set: containerd ignores hosts.toml files",
                format!(
                    "add config_path = \"{}\" under {} in {file} and restart containerd",
                    setup.hosts_dir.display(),
                    report.registry_table(),
                ),
            ));
        }
        Setting::Unknown(why) => checks.push(unknown("CRI's config_path is set", why)),
    }
    checks.extend(pull_path(report, setup));
    checks.push(match &report.discard_unpacked_layers {
        Setting::Known { value: false, .. } => Check::ok("discard_unpacked_layers is off: layers stay shareable"),
        Setting::Known { value: true, .. } => Check::fail(
            "discard_unpacked_layers is on: this node drops layers after unpacking and has nothing to share",
            format!("set discard_unpacked_layers = false under {} in {file}", report.discard_table()),
        ),
        Setting::Unknown(why) => unknown("discard_unpacked_layers is on", why),
    });
    checks
}

/// How containerd 2.1 and later pull, and whether that way reads `config_path`.
///
/// Nothing for containerd before 2.1 (CRI's own pull reads every directory of a list), so
/// their report is as it was.
fn pull_path(report: &ConfigReport, setup: &Setup<'_>) -> Option<Check> {
    let list = match report.config_path.value() {
        Some(Some(path)) if config_path_dirs(path).len() > 1 => Some(path.as_str()),
        _ => None,
    };
    let ignores =
        |list: &str| format!("{}, so it ignores every hosts.toml and never asks the mirror", ignores_short(list));
    let version = match &report.version {
        Ok(version) if !version.has_transfer_pull() => return None,
        Ok(version) => version,
        Err(why) => {
            let local = report.pull.value().is_some_and(|p| p.use_local_image_pull || p.fallback.is_some());
            let list = list.filter(|_| !local)?;
            return Some(Check::warn(
                format!(
                    "cannot tell how containerd pulls (version: {why}): from 2.1 on it pulls through its transfer service, and {}",
                    ignores(list)
                ),
                one_directory(report, setup),
            ));
        }
    };
    let path = match report.pull_path() {
        Some(path) => path,
        None => {
            let list = list?;
            let why = match &report.pull {
                Setting::Unknown(why) => why.join("; "),
                Setting::Known { .. } => String::new(),
            };
            return Some(Check::warn(
                format!(
                    "cannot tell whether containerd {version} pulls through its transfer service ({why}), where {}",
                    ignores(list)
                ),
                "pass containerd's config file with --containerd-config",
            ));
        }
    };
    let file = setup.config_file.display();
    Some(match (path, list) {
        (PullPath::Transfer, Some(list)) => Check::fail(
            format!("containerd {version} pulls through its transfer service: {}", ignores(list)),
            one_directory(report, setup),
        ),
        (PullPath::Transfer, None) => Check::ok(format!(
            "containerd {version} pulls through its transfer service, which reads config_path as one directory"
        )),
        (PullPath::Local(Local::UseLocalImagePull), _) => Check::ok(format!(
            "containerd {version} pulls with CRI's local pull (use_local_image_pull = true), which reads each directory of config_path in turn"
        )),
        // Issue #12415: turning that option off (as the discard_unpacked_layers fix says) breaks the mirror.
        (PullPath::Local(Local::Fallback(option)), Some(list)) => Check::warn(
            format!(
                "containerd {version} pulls with CRI's local pull only because {option} is set; without it, its transfer service would ignore every hosts.toml, since {}",
                ignores_short(list)
            ),
            format!(
                "set use_local_image_pull = true under {} in {file} too, or {} in {file}",
                report.images_table(),
                one_directory_only(report, setup)
            ),
        ),
        (PullPath::Local(Local::Fallback(option)), None) => Check::ok(format!(
            "containerd {version} pulls with CRI's local pull, not its transfer service, because {option} is set"
        )),
        (PullPath::Local(Local::Only), _) => return None,
    })
}

/// What the transfer service makes of a `config_path` list.
fn ignores_short(list: &str) -> String {
    format!("it takes the config_path list {list} for one directory")
}

/// The fix for a `config_path` list the transfer service ignores.
fn one_directory(report: &ConfigReport, setup: &Setup<'_>) -> String {
    format!(
        "{}, or set use_local_image_pull = true under {}, in {} and restart containerd",
        one_directory_only(report, setup),
        report.images_table(),
        setup.config_file.display()
    )
}

/// Setting `config_path` to the one directory that holds the mirror's `hosts.toml`.
fn one_directory_only(report: &ConfigReport, setup: &Setup<'_>) -> String {
    match hosts::holding(setup.dirs, setup.targets, setup.mirror) {
        Some(dir) => format!(
            "set config_path = \"{}\" (the directory with the mirror's hosts.toml) under {}",
            dir.display(),
            report.registry_table()
        ),
        None => format!(
            "set config_path to one directory under {} and run `peerpull configure --config-path` with it",
            report.registry_table()
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
