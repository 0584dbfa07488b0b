//! Which containerd a test node runs: a [`Release`].
//!
//! `$PEERPULL_CONTAINERD` picks one for a test run: `1.6` (the system's
//! containerd, which must be 1.6), `1.7` or `2.1` (installed by
//! `scripts/setup` in `$PEERPULL_CONTAINERD_HOME/containerd-<major.minor>/bin`,
//! default `/opt/peerpull`), or a directory holding `bin/containerd`; unset,
//! the `containerd` on `PATH`. A test may also name one itself. A choice
//! that is not installed is an error naming the variable, never a quiet
//! fallback to another version.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::Error;

/// The environment variable that picks the containerd of a test run.
pub const CHOICE_VAR: &str = "PEERPULL_CONTAINERD";

/// Where `scripts/setup` installs the other releases (`containerd-<major.minor>/bin`).
pub const HOME_VAR: &str = "PEERPULL_CONTAINERD_HOME";

/// [`HOME_VAR`]'s default.
const DEFAULT_HOME: &str = "/opt/peerpull";

/// The binaries a node's containerd runs with, and the version they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// What was asked for: `1.6`, `2.1`, a directory, or `system` (nothing set).
    label: String,
    /// The directory of `containerd`, `ctr` and `containerd-shim-runc-v2`; `None`: those on `PATH`.
    bin: Option<PathBuf>,
    /// What `containerd --version` says, e.g. `2.1.9+unknown`.
    version: String,
    major: u32,
    minor: u32,
}

impl Release {
    /// The release `$PEERPULL_CONTAINERD` names for this test run (the
    /// system's `containerd` on `PATH` when it is not set), looked up once.
    pub fn chosen() -> Result<Self, Error> {
        static CHOSEN: OnceLock<Result<Release, String>> = OnceLock::new();
        let chosen = CHOSEN.get_or_init(|| {
            let choice = std::env::var(CHOICE_VAR).ok().filter(|c| !c.is_empty());
            let release = match choice {
                Some(choice) => Self::named(&choice),
                None => Self::system(),
            };
            release.map_err(|e| match e {
                Error::Io { what, .. } => what,
                other => other.to_string(),
            })
        });
        chosen.clone().map_err(|what| Error::Io { what, source: std::io::ErrorKind::NotFound.into() })
    }

    /// `1.6` (the system's containerd, which must be 1.6), `1.7` or `2.1`
    /// (installed by `scripts/setup`), or a directory holding `bin/containerd`.
    pub fn named(choice: &str) -> Result<Self, Error> {
        if choice == "1.6" {
            let release = Self::system()?;
            if (release.major, release.minor) != (1, 6) {
                return Err(not_installed(format!(
                    "{CHOICE_VAR}=1.6 means the system's containerd, but the one on PATH is {}",
                    release.version
                )));
            }
            return Ok(release);
        }
        let is_version = choice.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        let dir = if is_version {
            let home = std::env::var_os(HOME_VAR).unwrap_or_else(|| DEFAULT_HOME.into());
            PathBuf::from(home).join(format!("containerd-{choice}"))
        } else {
            PathBuf::from(choice)
        };
        let bin = dir.join("bin");
        if !bin.join("containerd").is_file() {
            let hint = if is_version { " (run `scripts/setup`, or `make setup`)" } else { "" };
            return Err(not_installed(format!(
                "{CHOICE_VAR}={choice}: containerd {choice} is not installed: {} is missing{hint}",
                bin.join("containerd").display()
            )));
        }
        let release = Self::probe(choice, Some(bin))?;
        if is_version && !release.version.starts_with(&format!("{choice}.")) {
            return Err(not_installed(format!(
                "{CHOICE_VAR}={choice}: {} is containerd {}",
                release.containerd().display(),
                release.version
            )));
        }
        Ok(release)
    }

    /// The system's containerd, the one on `PATH`.
    fn system() -> Result<Self, Error> {
        Self::probe("system", None)
    }

    /// Runs `containerd --version` from `bin` (or `PATH`) and reads it.
    fn probe(label: &str, bin: Option<PathBuf>) -> Result<Self, Error> {
        let containerd = bin.as_ref().map_or_else(|| PathBuf::from("containerd"), |b| b.join("containerd"));
        let output = Command::new(&containerd)
            .arg("--version")
            .output()
            .map_err(Error::io(format!("running {} --version ({CHOICE_VAR})", containerd.display())))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let Some((version, major, minor)) = parse_version(&text) else {
            return Err(not_installed(format!("{} --version printed {text:?}", containerd.display())));
        };
        Ok(Self { label: label.to_owned(), bin, version, major, minor })
    }

    /// What it was chosen as: `1.6`, `2.1`, a directory, or `system`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its version as `containerd --version` prints it, e.g. `2.1.9+unknown`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Its major and minor version, e.g. `(2, 1)`.
    pub fn major_minor(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// Its `containerd` binary.
    pub fn containerd(&self) -> PathBuf {
        self.binary("containerd")
    }

    /// Its `ctr` binary.
    pub fn ctr(&self) -> PathBuf {
        self.binary("ctr")
    }

    fn binary(&self, name: &str) -> PathBuf {
        self.bin.as_ref().map_or_else(|| PathBuf::from(name), |bin| bin.join(name))
    }

    /// `PATH` with its binaries first, when they are not the system's.
    pub(crate) fn path_env(&self) -> Option<OsString> {
        let bin = self.bin.as_ref()?;
        let rest = std::env::var_os("PATH").unwrap_or_default();
        std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(&rest))).ok()
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.bin {
            Some(bin) => write!(f, "containerd {} ({})", self.version, bin.display()),
            None => write!(f, "containerd {} (on PATH)", self.version),
        }
    }
}

/// The version, major and minor in `containerd --version`'s output:
/// `containerd github.com/containerd/containerd/v2 2.1.9+unknown [revision]`.
fn parse_version(text: &str) -> Option<(String, u32, u32)> {
    let version = text.split_whitespace().nth(2)?;
    let mut numbers = version.split(|c: char| !c.is_ascii_digit()).map(str::parse::<u32>);
    let (Some(Ok(major)), Some(Ok(minor))) = (numbers.next(), numbers.next()) else { return None };
    Some((version.to_owned(), major, minor))
}

fn not_installed(what: String) -> Error {
    Error::Io { what, source: std::io::ErrorKind::NotFound.into() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_each_release_prints() {
        let debian_12 = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n";
        assert_eq!(parse_version(debian_12), Some(("1.6.20~ds1".to_owned(), 1, 6)));
        let sid = "containerd github.com/containerd/containerd/v2 2.1.9+unknown \n";
        assert_eq!(parse_version(sid), Some(("2.1.9+unknown".to_owned(), 2, 1)));
        assert_eq!(parse_version("containerd: command not found"), None);
    }

    #[test]
    fn a_choice_that_is_not_installed_names_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let Err(e) = Release::named(&dir.path().display().to_string()) else {
            panic!("an empty directory is no release")
        };
        let message = e.to_string();
        assert!(message.starts_with(&format!("{CHOICE_VAR}={}: ", dir.path().display())), "{message}");
        assert!(message.contains("bin/containerd is missing"), "{message}");
    }
}
