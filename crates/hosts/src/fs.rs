//! File-system helpers: whole trees read into memory, written atomically.
//!
//! A registry folder holds a `hosts.toml` and perhaps a few certificates, so
//! reading one whole into memory is cheap and lets `configure` decide
//! everything before it writes anything. Every file is written to a temporary
//! name in its own folder and renamed over the target, so containerd (which
//! re-reads `hosts.toml` on every pull) never sees half a file.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Prefix of every temporary name this crate creates; no registry starts with a dot.
pub(crate) const TEMP_PREFIX: &str = ".peerpull-tmp-";

/// A file-system entry and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    File { bytes: Vec<u8>, mode: u32 },
    Symlink { target: PathBuf },
    Dir { mode: u32, children: BTreeMap<OsString, Node> },
}

/// Reads `path` (not following a final symlink); `None` when it does not exist.
pub(crate) fn read_tree(path: &Path) -> io::Result<Option<Node>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() {
        return Ok(Some(Node::Symlink { target: fs::read_link(path)? }));
    }
    if meta.is_dir() {
        let mut children = BTreeMap::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if let Some(node) = read_tree(&entry.path())? {
                children.insert(entry.file_name(), node);
            }
        }
        return Ok(Some(Node::Dir { mode, children }));
    }
    Ok(Some(Node::File { bytes: fs::read(path)?, mode }))
}

/// Copies `src` to `dst` (which must not exist), keeping modes, symlinks and
/// modification times. Used for backups, so a restore is byte for byte.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    if meta.file_type().is_symlink() {
        return symlink(fs::read_link(src)?, dst);
    }
    if meta.is_dir() {
        fs::create_dir(dst)?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
    } else {
        fs::copy(src, dst)?;
    }
    // Times are best effort: a file its owner cannot read still gets copied.
    if let (Ok(modified), Ok(file)) = (meta.modified(), fs::File::open(dst)) {
        let _ = file.set_modified(modified);
    }
    fs::set_permissions(dst, meta.permissions())
}

/// Makes `path` hold exactly `node`, touching only what differs. Files in a
/// folder are written before its `hosts.toml`, and leftovers removed after,
/// so at every moment the `hosts.toml` containerd reads refers to files that exist.
pub(crate) fn sync(path: &Path, node: &Node) -> io::Result<()> {
    match node {
        Node::File { bytes, mode } => write_file(path, bytes, *mode),
        Node::Symlink { target } => {
            if fs::read_link(path).ok().as_deref() == Some(target.as_path()) {
                return Ok(());
            }
            let tmp = temp_name(path);
            symlink(target, &tmp)?;
            replace(&tmp, path)
        }
        Node::Dir { mode, children } => {
            let meta = fs::symlink_metadata(path);
            match meta {
                Ok(meta) if meta.is_dir() => {
                    if meta.permissions().mode() & 0o7777 != *mode {
                        fs::set_permissions(path, fs::Permissions::from_mode(*mode))?;
                    }
                }
                Ok(_) => {
                    remove(path)?;
                    create_dir(path, *mode)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(path, *mode)?,
                Err(e) => return Err(e),
            }
            let hosts_toml = OsStr::new("hosts.toml");
            let ordered = children.iter().filter(|(n, _)| *n != hosts_toml).chain(children.get_key_value(hosts_toml));
            for (name, child) in ordered {
                sync(&path.join(name), child)?;
            }
            for entry in fs::read_dir(path)? {
                let entry = entry?;
                if !children.contains_key(&entry.file_name()) {
                    remove(&entry.path())?;
                }
            }
            Ok(())
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, unless it already holds them.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_file() && meta.permissions().mode() & 0o7777 == mode && fs::read(path)? == bytes {
            return Ok(());
        }
    }
    let tmp = temp_name(path);
    let result = fs::write(&tmp, bytes).and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    replace(&tmp, path)
}

/// Removes a file, symlink or whole folder; nothing to do when it is gone.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves `from` onto `to`, replacing a folder at `to` as well as a file.
pub(crate) fn replace(from: &Path, to: &Path) -> io::Result<()> {
    let is_dir = fs::symlink_metadata(to).map(|m| m.is_dir()).unwrap_or(false);
    if !is_dir {
        return fs::rename(from, to).inspect_err(|_| {
            let _ = remove(from);
        });
    }
    let old = temp_name(to);
    fs::rename(to, &old)?;
    fs::rename(from, to)?;
    remove(&old)
}

/// A temporary sibling of `path`.
pub(crate) fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{TEMP_PREFIX}{}-{name}", std::process::id()))
}

fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
