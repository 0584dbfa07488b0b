//! `configure`: point containerd at the mirrors, keeping what was there.
//!
//! Everything is read and checked first (config path, existing files, the
//! record in `_backup`); only then is anything written, so bad input leaves
//! the disk as it was. Running it again with the same input changes nothing.
//!
//! Only the folders of the mirrored registries are touched: another
//! registry's `hosts.toml` and certificates (a private registry's CA, say)
//! stay in force. Spegel instead moves the whole config path aside, which
//! breaks such registries while it runs. A folder written by an earlier run
//! for a registry that is no longer mirrored gets its original back.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::fs::{copy_tree, read_tree, remove, replace, sync, temp_name, Node};
use crate::render::{parse_existing, render, HostsOptions};
use crate::report::{Change, Report};
use crate::state::{entries, Backup};
use crate::target::Target;

/// Everything `configure` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// containerd's registry `config_path`, e.g. `/etc/containerd/certs.d`.
    pub config_path: PathBuf,
    /// The registries to mirror; empty means all (`_default`).
    pub targets: Vec<Target>,
    /// Mirrors, capabilities and dial timeout.
    pub hosts: HostsOptions,
    /// Keep the hosts (and the files beside them) of an existing
    /// `hosts.toml` after ours instead of replacing them.
    pub prepend_existing: bool,
}

/// One registry folder: what it should hold, and whether its original needs backing up.
#[derive(Debug)]
struct Entry {
    name: String,
    desired: Node,
    back_up: bool,
}

/// Writes `hosts.toml` for every target under the config path.
pub fn configure(config: &Config) -> Result<Report, Error> {
    let path = &config.config_path;
    check_config_path(path)?;
    if config.hosts.mirrors.is_empty() {
        return Err(Error::NoMirrors);
    }
    let targets = dedup(&config.targets)?;
    let backup = Backup::new(path);
    let previous = previously_written(path, &backup)?;
    let mut planned = Vec::new();
    for target in &targets {
        planned.push(plan_entry(config, &backup, previous.as_deref(), target)?);
    }
    let names: Vec<String> = planned.iter().map(|e| e.name.clone()).collect();
    // Folders written before for registries no longer mirrored, and originals
    // in a Spegel `_backup` for registries we do not mirror, go back to how they were.
    let mut stale = previous.unwrap_or_default();
    if backup.exists() {
        stale.extend(backup.originals()?);
    }
    stale.retain(|p| !names.contains(p));
    stale.sort();
    stale.dedup();

    let mut report = Report::default();
    if !backup.exists() {
        fs::create_dir(&backup.dir).map_err(Error::io("create", &backup.dir))?;
    }
    for entry in planned.iter().filter(|e| e.back_up) {
        let (live, saved) = (path.join(&entry.name), backup.entry(&entry.name));
        let tmp = temp_name(&saved);
        copy_tree(&live, &tmp).and_then(|()| fs::rename(&tmp, &saved)).map_err(|e| {
            let _ = remove(&tmp);
            Error::io("back up", &live)(e)
        })?;
        report.push(Change::BackedUp(live));
    }
    backup.record(&names)?;
    for name in &stale {
        report.push(restore_entry(path, &backup, name)?);
    }
    for entry in &planned {
        let live = path.join(&entry.name);
        let hosts_toml = live.join("hosts.toml");
        if read_tree(&live).ok().flatten().as_ref() == Some(&entry.desired) {
            report.push(Change::Unchanged(hosts_toml));
            continue;
        }
        sync(&live, &entry.desired).map_err(Error::io("write", &live))?;
        report.push(Change::Wrote(hosts_toml));
    }
    Ok(report)
}

/// Puts a folder's original back from `_backup`, or removes it when it had none.
pub(crate) fn restore_entry(path: &Path, backup: &Backup, name: &str) -> Result<Change, Error> {
    let (live, saved) = (path.join(name), backup.entry(name));
    if fs::symlink_metadata(&saved).is_ok() {
        replace(&saved, &live).map_err(Error::io("restore", &live))?;
        Ok(Change::Restored(live))
    } else {
        remove(&live).map_err(Error::io("remove", &live))?;
        Ok(Change::Removed(live))
    }
}

/// The config path must be an existing, writable folder.
pub(crate) fn check_config_path(path: &Path) -> Result<(), Error> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(Error::ConfigPathNotDir { path: path.to_owned() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::ConfigPathMissing { path: path.to_owned() })
        }
        Err(e) => return Err(Error::ConfigPathNotWritable { path: path.to_owned(), source: e }),
    }
    // Permission bits do not tell root about read-only mounts; trying does.
    let probe = temp_name(&path.join("probe"));
    fs::File::create_new(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|source| Error::ConfigPathNotWritable { path: path.to_owned(), source })
}

/// The folders an earlier configure wrote, or `None` when there was none.
pub(crate) fn previously_written(path: &Path, backup: &Backup) -> Result<Option<Vec<String>>, Error> {
    if !backup.exists() {
        return Ok(None);
    }
    match backup.written()? {
        Some(written) => Ok(Some(written)),
        None => entries(path).map(Some),
    }
}

/// Targets without repeats; two schemes for one host is an error.
fn dedup(targets: &[Target]) -> Result<Vec<Target>, Error> {
    let mut out: Vec<Target> = Vec::new();
    for target in targets {
        match out.iter().find(|t| t.dir_name() == target.dir_name()) {
            Some(seen) if seen == target => {}
            Some(seen) => {
                return Err(Error::ConflictingRegistries {
                    host: target.dir_name().to_owned(),
                    first: seen.to_string(),
                    second: target.to_string(),
                })
            }
            None => out.push(target.clone()),
        }
    }
    if out.is_empty() {
        out.push(Target::All);
    }
    Ok(out)
}

fn plan_entry(config: &Config, backup: &Backup, previous: Option<&[String]>, target: &Target) -> Result<Entry, Error> {
    let name = target.dir_name().to_owned();
    let saved = backup.entry(&name);
    let ours_before = previous.is_some_and(|p| p.contains(&name));
    let (original, origin, back_up) = if fs::symlink_metadata(&saved).is_ok() {
        (read_tree(&saved).map_err(Error::io("read", &saved))?, saved, false)
    } else if ours_before {
        (None, saved, false)
    } else {
        let live = config.config_path.join(&name);
        let original = read_tree(&live).map_err(Error::io("read", &live))?;
        let back_up = original.is_some();
        (original, live, back_up)
    };
    let (dir_mode, mut originals) = match original {
        Some(Node::Dir { mode, children }) => (mode, children),
        _ => (0o755, BTreeMap::new()),
    };
    let hosts_name = OsString::from("hosts.toml");
    let original_hosts = originals.remove(&hosts_name);
    let mut existing = None;
    let mut hosts_mode = 0o644;
    if let Some(Node::File { bytes, mode }) = &original_hosts {
        hosts_mode = *mode;
        if config.prepend_existing {
            let path = origin.join("hosts.toml");
            let text = std::str::from_utf8(bytes)
                .map_err(|_| Error::ExistingHostsToml { path: path.clone(), message: "not UTF-8".to_owned() })?;
            let doc = parse_existing(text).map_err(|e| Error::ExistingHostsToml { path, message: e.to_string() })?;
            existing = Some(doc);
        }
    }
    let text = render(target, &config.hosts, existing.as_ref());
    let mut children = if config.prepend_existing { originals } else { BTreeMap::new() };
    children.insert(hosts_name, Node::File { bytes: text.into_bytes(), mode: hosts_mode });
    Ok(Entry { name, desired: Node::Dir { mode: dir_mode, children }, back_up })
}
