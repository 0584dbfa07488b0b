//! Test support for the Helm chart in `charts/peerpull`.
//!
//! [`Helm`] runs the real `helm` (the pinned versions `scripts/setup-helm`
//! installs) and parses what `helm template` prints into a [`Manifest`] of
//! documents. [`typed_round_trip`] holds a document against the Kubernetes
//! API types, and [`check_args`] hands a container's arguments to the real
//! `peerpull` binary in its validate-only mode (`PEERPULL_CHECK_ARGS=1`).
//!
//! This crate owns no behaviour of peerpull; it only reads the chart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use serde_norway::Value;

pub mod helm;
mod kube;

pub use helm::{Helm, Renderer};
pub use kube::typed_round_trip;

/// Why rendering or checking failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started or its files not written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("{what} failed ({status}):\n{stderr}")]
    Failed {
        /// The program and what it was doing.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The output is not what a chart must produce.
    #[error("{0}")]
    Invalid(String),
}

/// The chart's folder.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/peerpull")
}

/// The newest Kubernetes the chart is rendered for. `Chart.yaml` sets no
/// upper bound; this is the newest version the API types of `k8s-openapi`
/// 0.26 describe (its `latest` feature).
pub const NEWEST_KUBE_VERSION: &str = "1.34.0";

/// The oldest Kubernetes the chart claims: the lower bound of
/// `kubeVersion` in `Chart.yaml` (`>=1.25.0-0` gives `1.25.0`).
pub fn oldest_kube_version() -> Result<String, Error> {
    let path = chart_dir().join("Chart.yaml");
    let text = std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
    let chart: Value =
        serde_norway::from_str(&text).map_err(|e| Error::Invalid(format!("{}: not YAML: {e}", path.display())))?;
    let constraint = chart.get("kubeVersion").and_then(Value::as_str).unwrap_or_default();
    constraint
        .strip_prefix(">=")
        .map(|v| v.trim().trim_end_matches("-0").to_owned())
        .filter(|v| v.split('.').count() == 3 && v.split('.').all(|n| n.parse::<u32>().is_ok()))
        .ok_or_else(|| Error::Invalid(format!("Chart.yaml's kubeVersion {constraint:?} is not \">=X.Y.Z-0\"")))
}

/// The rendered documents, in output order (hooks last).
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Every document.
    pub docs: Vec<Doc>,
}

/// One rendered object.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The template it came from (`peerpull/templates/…`).
    pub source: String,
    /// The object, parsed.
    pub value: Value,
}

impl Manifest {
    /// Splits `helm template`'s output (`---` and a `# Source:` line before each
    /// document) and parses every document as YAML.
    pub fn parse(text: &str) -> Result<Manifest, Error> {
        let mut docs = Vec::new();
        for chunk in text.split("---\n").filter(|c| !c.trim().is_empty()) {
            let source = chunk
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# Source: "))
                .ok_or_else(|| Error::Invalid(format!("a document without a # Source line:\n{chunk}")))?
                .to_owned();
            let value: Value = serde_norway::from_str(chunk)
                .map_err(|e| Error::Invalid(format!("{source}: not YAML: {e}\n{chunk}")))?;
            if !value.is_mapping() {
                return Err(Error::Invalid(format!("{source}: not a mapping:\n{chunk}")));
            }
            docs.push(Doc { source, value });
        }
        Ok(Manifest { docs })
    }

    /// `(kind, name)` of every document, hooks marked with a trailing `(hook)` on the kind.
    pub fn objects(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = self
            .docs
            .iter()
            .map(|d| {
                let kind = if d.is_hook() { format!("{} (hook)", d.kind()) } else { d.kind().to_owned() };
                (kind, d.name().to_owned())
            })
            .collect();
        out.sort();
        out
    }

    /// The one document of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Result<&Doc, Error> {
        let mut found = self.docs.iter().filter(|d| d.kind() == kind && d.name() == name);
        match (found.next(), found.next()) {
            (Some(doc), None) => Ok(doc),
            (None, _) => Err(Error::Invalid(format!("no {kind} {name} in {:?}", self.objects()))),
            (Some(_), Some(_)) => Err(Error::Invalid(format!("more than one {kind} {name}"))),
        }
    }

    /// The one document of `kind` named `name`, as a typed object.
    pub fn typed<T: DeserializeOwned>(&self, kind: &str, name: &str) -> Result<T, Error> {
        self.get(kind, name)?.typed()
    }
}

impl Doc {
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.value.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("")
    }

    /// `metadata.annotations[key]`.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value.get("metadata")?.get("annotations")?.get(key)?.as_str()
    }

    /// Whether Helm treats it as a hook.
    pub fn is_hook(&self) -> bool {
        self.annotation("helm.sh/hook").is_some()
    }

    /// The document as JSON, as the API server would receive it.
    pub fn json(&self) -> Result<Json, Error> {
        serde_json::to_value(&self.value).map_err(|e| Error::Invalid(format!("{}: not JSON-shaped: {e}", self.source)))
    }

    /// The document as a typed object.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.json()?)
            .map_err(|e| Error::Invalid(format!("{} {}: {e}", self.kind(), self.name())))
    }
}

/// Expands `$(VAR)` in a container argument as the kubelet does, from
/// `vars`; unknown references stay as written, `$$` escapes.
pub fn expand(arg: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')').map(|end| (&inner[..end], &inner[end + 1..])) {
                Some((name, tail)) if vars.contains_key(name) => {
                    out.push_str(&vars[name]);
                    rest = tail;
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The peerpull binary: `PEERPULL_BIN`, or `target/<profile>/peerpull` next
/// to the test binary (`cargo test --workspace` builds it; otherwise run
/// `cargo build -p peerpull`).
pub fn peerpull_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("PEERPULL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = target_profile_dir()?.join("peerpull");
    if path.exists() {
        Ok(path)
    } else {
        Err(Error::Invalid(format!(
            "no peerpull binary at {} (run `cargo build -p peerpull` or set PEERPULL_BIN)",
            path.display()
        )))
    }
}

/// What `peerpull` said about a command line in its validate-only mode.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Whether it accepted the arguments.
    pub accepted: bool,
    /// Its exit code.
    pub code: Option<i32>,
    /// stdout: a marker line and the parsed command (Rust `Debug`).
    pub stdout: String,
    /// stderr: the one-line error when rejected.
    pub stderr: String,
}

/// Runs `peerpull ARGS` with `PEERPULL_CHECK_ARGS=1` and only `env` besides
/// (no inherited `PEERPULL_*` may change the outcome).
pub fn check_args(args: &[String], env: &BTreeMap<String, String>) -> Result<Checked, Error> {
    let bin = peerpull_binary()?;
    let output = Command::new(&bin)
        .args(args)
        .env_clear()
        .envs(env)
        .env("PEERPULL_CHECK_ARGS", "1")
        .output()
        .map_err(io(format!("running {}", bin.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let checked = Checked {
        accepted: output.status.success() && stdout.starts_with("peerpull: arguments accepted\n"),
        code: output.status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if output.status.success() && !checked.accepted {
        return Err(Error::Invalid(format!(
            "{} ran without the validate-only mode (built before PEERPULL_CHECK_ARGS?); rebuild it: cargo build -p \
             peerpull\n{}",
            bin.display(),
            checked.stdout
        )));
    }
    Ok(checked)
}

/// Serializes anything to JSON for comparisons.
pub fn to_json<T: Serialize>(value: &T) -> Result<Json, Error> {
    serde_json::to_value(value).map_err(|e| Error::Invalid(e.to_string()))
}

/// `target/<profile>`: the test binary lives in `target/<profile>/deps`.
fn target_profile_dir() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(io("locating the test binary".into()))?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Invalid(format!("no target directory above {}", exe.display())))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}
