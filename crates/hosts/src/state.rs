//! The backup folder and the record, kept inside it, of what `configure` wrote.
//!
//! `<config_path>/_backup/` holds a byte-for-byte copy of every registry
//! folder `configure` replaced, taken the first time it replaced it, and
//! `.peerpull.toml` listing every folder `configure` wrote (with or without
//! an original). `cleanup` moves the copies back, removes the written folders
//! that had no original, and removes `_backup`. containerd never reads
//! `_backup`: no registry is called that.
//!
//! A `_backup` without `.peerpull.toml` was left by Spegel, which moves the
//! whole config path into `_backup` and writes only its own folders; then
//! every live folder counts as written.

use std::fs;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Value};

use crate::error::Error;
use crate::fs::{write_file, TEMP_PREFIX};

/// The backup folder's name, as Spegel names it.
pub const BACKUP_DIR: &str = "_backup";
/// The record of written folders inside the backup folder.
pub(crate) const STATE_FILE: &str = ".peerpull.toml";

const HEADER: &str = "# Written by `peerpull configure`, read by `peerpull cleanup`: the folders configure wrote.\n\
                      # Every other entry of this folder is a copy of what was there before.\n";

/// Where the backup lives under one config path.
#[derive(Debug, Clone)]
pub(crate) struct Backup {
    pub(crate) dir: PathBuf,
}

impl Backup {
    pub(crate) fn new(config_path: &Path) -> Self {
        Self { dir: config_path.join(BACKUP_DIR) }
    }

    pub(crate) fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub(crate) fn entry(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The folders written by the last configure; `None` without a record.
    pub(crate) fn written(&self) -> Result<Option<Vec<String>>, Error> {
        let path = self.state_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path)(e)),
        };
        let damaged = |message: &str| Error::State { path: path.clone(), message: message.to_owned() };
        let doc = text.parse::<DocumentMut>().map_err(|e| damaged(e.message()))?;
        let array = doc.get("written").and_then(Item::as_array).ok_or_else(|| damaged("no `written` list"))?;
        array
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| damaged("`written` holds a non-string")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Records the folders this configure writes.
    pub(crate) fn record(&self, written: &[String]) -> Result<(), Error> {
        let mut doc = DocumentMut::new();
        doc.insert("written", Item::Value(Value::Array(written.iter().map(String::as_str).collect())));
        let text = format!("{HEADER}{doc}");
        let path = self.state_path();
        write_file(&path, text.as_bytes(), 0o644).map_err(Error::io("write", path))
    }

    /// The original entries kept in the backup (not the record, not temporaries).
    pub(crate) fn originals(&self) -> Result<Vec<String>, Error> {
        entries(&self.dir).map(|names| names.into_iter().filter(|n| n != STATE_FILE).collect())
    }

    /// Removes the record and the (by then empty) backup folder.
    pub(crate) fn remove(&self) -> Result<(), Error> {
        crate::fs::remove(&self.dir).map_err(Error::io("remove", &self.dir))
    }
}

/// The names in `dir`, without our temporaries and without `_backup`.
pub(crate) fn entries(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != BACKUP_DIR && !name.starts_with(TEMP_PREFIX) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
