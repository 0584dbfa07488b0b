//! Running the real `helm` over the chart: `helm template` into a
//! [`Manifest`], `helm lint`.
//!
//! `scripts/setup-helm` installs each version the tests run into
//! `$PEERPULL_HELM_HOME/helm-<version>/helm` (default `/opt/peerpull`); this
//! module finds them there and nowhere else, so a `helm` on `PATH` of another
//! version cannot change what is tested. Helm runs with an empty environment
//! and its cache, configuration and data homes pointed at a path that does
//! not exist: no kubeconfig, plugin or repository of the machine takes part,
//! and nothing is written.
//!
//! It does not own the chart's Kubernetes versions: the tests pass
//! `--kube-version` themselves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{chart_dir, io, Error, Manifest};

/// The Helm the chart is rendered and linted with.
pub const LATEST: &str = "3.17.1";
/// The oldest Helm the chart supports; its templates must render there too.
pub const OLDEST: &str = "3.8.1";

/// Where `scripts/setup-helm` installs when `PEERPULL_HELM_HOME` is unset.
const DEFAULT_HOME: &str = "/opt/peerpull";
/// Release and namespace of every render.
pub const RELEASE: &str = "peerpull";
/// See [`RELEASE`].
pub const NAMESPACE: &str = "peerpull-system";

/// One `helm` binary of a known version.
#[derive(Debug)]
pub struct Helm {
    bin: PathBuf,
    version: &'static str,
}

/// The name `tests/tests/container_image.rs` renders the chart with.
pub type Renderer = Helm;

static HELM_LATEST: OnceLock<Result<Helm, String>> = OnceLock::new();
static HELM_OLDEST: OnceLock<Result<Helm, String>> = OnceLock::new();

impl Helm {
    /// Helm [`LATEST`], found and its version checked once per process.
    pub fn get() -> Result<&'static Helm, Error> {
        cached(&HELM_LATEST, LATEST)
    }

    /// Helm [`OLDEST`].
    pub fn oldest() -> Result<&'static Helm, Error> {
        cached(&HELM_OLDEST, OLDEST)
    }

    /// `$PEERPULL_HELM_HOME/helm-<version>/helm`, if it says it is `version`.
    fn find(version: &'static str) -> Result<Helm, Error> {
        let home = std::env::var_os("PEERPULL_HELM_HOME").map_or_else(|| PathBuf::from(DEFAULT_HOME), PathBuf::from);
        let bin = home.join(format!("helm-{version}")).join("helm");
        if !bin.exists() {
            return Err(Error::Invalid(format!(
                "no helm {version} at {} (run scripts/setup-helm, or set PEERPULL_HELM_HOME to where it installed)",
                bin.display()
            )));
        }
        let helm = Helm { bin, version };
        let said = helm.run(&["version", "--short"], "version")?;
        if !said.starts_with(&format!("v{version}+")) {
            return Err(Error::Invalid(format!("{} is {}, not {version}", helm.bin.display(), said.trim())));
        }
        Ok(helm)
    }

    /// Its version, such as `3.17.1`.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// `helm template` of the chart as release [`RELEASE`] in [`NAMESPACE`]
    /// with `values` (YAML, may be empty) over the defaults, plus `flags`
    /// such as `--set k=v` or `--kube-version 1.25.0`.
    pub fn render(&self, values: &str, flags: &[&str]) -> Result<Manifest, Error> {
        Manifest::parse(&self.render_text(values, flags)?)
    }

    /// Like [`Helm::render`], returning what helm printed.
    pub fn render_text(&self, values: &str, flags: &[&str]) -> Result<String, Error> {
        self.with_values("template", values, flags)
    }

    /// `helm lint --strict` of the chart with `values` and `flags`; what it
    /// printed when it passed.
    pub fn lint(&self, values: &str, flags: &[&str]) -> Result<String, Error> {
        self.with_values("lint", values, &[&["--strict"], flags].concat())
    }

    fn with_values(&self, command: &str, values: &str, flags: &[&str]) -> Result<String, Error> {
        let values_file = tempfile::Builder::new()
            .prefix("values-")
            .suffix(".yaml")
            .tempfile()
            .map_err(io("creating a values file".into()))?;
        std::fs::write(values_file.path(), values).map_err(io("writing a values file".into()))?;
        let chart = chart_dir();
        let values_path = path_str(values_file.path())?;
        let mut args = vec![command];
        if command == "template" {
            args.push(RELEASE);
        }
        args.extend([path_str(&chart)?, "--namespace", NAMESPACE, "--values", values_path]);
        args.extend(flags);
        self.run(&args, &format!("{command} {}", flags.join(" ")))
    }

    fn run(&self, args: &[&str], what: &str) -> Result<String, Error> {
        let nowhere = std::env::temp_dir().join("peerpull-chart-tests-no-helm-home");
        let output = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("HELM_CACHE_HOME", nowhere.join("cache"))
            .env("HELM_CONFIG_HOME", nowhere.join("config"))
            .env("HELM_DATA_HOME", nowhere.join("data"))
            .output()
            .map_err(io(format!("running {}", self.bin.display())))?;
        if !output.status.success() {
            return Err(Error::Failed {
                what: format!("helm {} {}", self.version, what.trim_end()),
                status: output.status,
                stderr: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        String::from_utf8(output.stdout)
            .map_err(|e| Error::Invalid(format!("helm {} printed something not UTF-8: {e}", self.version)))
    }
}

fn cached(cell: &'static OnceLock<Result<Helm, String>>, version: &'static str) -> Result<&'static Helm, Error> {
    cell.get_or_init(|| Helm::find(version).map_err(|e| e.to_string())).as_ref().map_err(|e| Error::Invalid(e.clone()))
}

fn path_str(path: &Path) -> Result<&str, Error> {
    path.to_str().ok_or_else(|| Error::Invalid(format!("{} is not UTF-8", path.display())))
}
