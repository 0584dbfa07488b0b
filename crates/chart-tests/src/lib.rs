//! Test support for the Helm chart in `charts/peerpull`.
//!
//! Helm is not packaged where the tests run, so [`Renderer`] builds a small
//! renderer (`render/main.go`: Go's text/template with Sprig and Helm's own
//! functions and value merging) with Debian's `golang-go` and
//! `golang-github-masterminds-sprig-dev`, offline in GOPATH mode, and renders
//! the chart into a [`Manifest`] of parsed documents. [`typed_round_trip`]
//! holds a document against the Kubernetes API types, and [`check_args`]
//! hands a container's arguments to the real `peerpull` binary in its
//! validate-only mode (`PEERPULL_CHECK_ARGS=1`).
//!
//! This crate owns no behaviour of peerpull; it only reads the chart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use serde_norway::Value;

mod kube;

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

/// The renderer, built once per test process.
#[derive(Debug)]
pub struct Renderer {
    bin: PathBuf,
}

static RENDERER: OnceLock<Result<Renderer, String>> = OnceLock::new();

impl Renderer {
    /// Builds the renderer (once) into `target/<profile>/chart-render/`, with
    /// Go's build cache beside it so reruns are fast and nothing is fetched.
    pub fn get() -> Result<&'static Renderer, Error> {
        RENDERER
            .get_or_init(|| Renderer::build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Invalid(e.clone()))
    }

    fn build() -> Result<Renderer, Error> {
        let out_dir = target_profile_dir()?.join("chart-render");
        std::fs::create_dir_all(&out_dir).map_err(io(format!("creating {}", out_dir.display())))?;
        let bin = out_dir.join("render");
        // Build under a private name and rename: other test processes may be
        // using the binary at the same time.
        let tmp = out_dir.join(format!("render.{}", std::process::id()));
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("render");
        let output = Command::new("go")
            .current_dir(&source)
            .args(["build", "-o"])
            .arg(&tmp)
            .arg(".")
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", out_dir.join("go-cache"))
            .env("GOFLAGS", "")
            .env("GOENV", "off")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .output()
            .map_err(io("running `go build` for the chart renderer (run scripts/setup: golang-go)".into()))?;
        if !output.status.success() {
            return Err(Error::Failed {
                what: "go build (render/; needs golang-go and golang-github-masterminds-sprig-dev, see scripts/setup)"
                    .into(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        std::fs::rename(&tmp, &bin).map_err(io(format!("moving the renderer to {}", bin.display())))?;
        Ok(Renderer { bin })
    }

    /// Renders the chart as release `peerpull` in namespace `peerpull-system`
    /// with `values` (YAML, may be empty) over the defaults, plus renderer
    /// flags such as `--set k=v` or `--api-versions`.
    pub fn render(&self, values: &str, flags: &[&str]) -> Result<Manifest, Error> {
        let text = self.render_text(values, flags)?;
        Manifest::parse(&text)
    }

    /// Like [`Renderer::render`], returning the raw output.
    pub fn render_text(&self, values: &str, flags: &[&str]) -> Result<String, Error> {
        let values_file = tempfile::Builder::new()
            .prefix("values-")
            .suffix(".yaml")
            .tempfile()
            .map_err(io("creating a values file".into()))?;
        std::fs::write(values_file.path(), values).map_err(io("writing a values file".into()))?;
        let output = Command::new(&self.bin)
            .args(["--release-name", "peerpull", "--namespace", "peerpull-system", "-f"])
            .arg(values_file.path())
            .args(flags)
            .arg(chart_dir())
            .output()
            .map_err(io(format!("running {}", self.bin.display())))?;
        if !output.status.success() {
            return Err(Error::Failed {
                what: "rendering the chart".into(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        String::from_utf8(output.stdout).map_err(|e| Error::Invalid(format!("renderer output is not UTF-8: {e}")))
    }
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
    /// Splits the renderer's output (`---` and a `# Source:` line before each
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
