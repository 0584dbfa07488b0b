//! Errors of `configure` and `cleanup`.

use std::io;
use std::path::PathBuf;

/// Why configuring or cleaning up a config path failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config path does not exist.
    #[error("config path {} does not exist", path.display())]
    ConfigPathMissing { path: PathBuf },
    /// The config path is not a directory.
    #[error("config path {} is not a directory", path.display())]
    ConfigPathNotDir { path: PathBuf },
    /// Nothing can be created in the config path.
    #[error("config path {} is not writable: {source}", path.display())]
    ConfigPathNotWritable { path: PathBuf, source: io::Error },
    /// No mirror was given.
    #[error("no mirror given: at least one --mirror is needed")]
    NoMirrors,
    /// Two registries map to the same folder with different schemes.
    #[error("registry {host} is listed both as {first} and as {second}")]
    ConflictingRegistries { host: String, first: String, second: String },
    /// An existing `hosts.toml` that had to be read is not valid TOML.
    #[error("existing {} is not valid TOML: {message}", path.display())]
    ExistingHostsToml { path: PathBuf, message: String },
    /// The record of what configure wrote is unreadable.
    #[error("{} is damaged: {message}", path.display())]
    State { path: PathBuf, message: String },
    /// A file-system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
}

impl Error {
    /// True when the error is the caller's input or set-up rather than a
    /// failure while working (the binary exits 64 for these).
    pub fn is_usage(&self) -> bool {
        !matches!(self, Error::Io { .. } | Error::State { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
