//! The node's persisted identity.
//!
//! An ed25519 keypair kept in `data_dir/identity.key` (libp2p's protobuf
//! encoding, file mode 0600), so a node keeps its peer id across restarts.
//! The file is written to a temporary name and renamed into place, so a crash
//! never leaves a half-written key behind.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;

use crate::Error;

/// The identity file's name inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Loads the keypair in `data_dir`, or creates (and persists) a new ed25519 one.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, Error> {
    let path = data_dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let keypair = Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| Error::IdentityDecode { path: path.clone(), reason: e.to_string() })?;
            tighten_permissions(&path)?;
            Ok(keypair)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(data_dir, &path),
        Err(source) => Err(Error::Identity { path, source }),
    }
}

fn create(data_dir: &Path, path: &Path) -> Result<Keypair, Error> {
    let io_err = |p: &Path| {
        let p: PathBuf = p.to_owned();
        move |source| Error::Identity { path: p, source }
    };
    fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| Error::IdentityDecode { path: path.to_owned(), reason: e.to_string() })?;
    let tmp = path.with_extension("key.tmp");
    let mut file =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    tracing::info!(path = %path.display(), peer = %keypair.public().to_peer_id(), "created node identity");
    Ok(keypair)
}

/// A key readable by others is a leak waiting to happen; restore 0600.
fn tighten_permissions(path: &Path) -> Result<(), Error> {
    let io_err = |source| Error::Identity { path: path.to_owned(), source };
    let mode = fs::metadata(path).map_err(io_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "identity file readable by others; fixing");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let a = load_or_create(&data).unwrap();
        let b = load_or_create(&data).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        let mode = fs::metadata(data.join(IDENTITY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(IDENTITY_FILE), b"not a key").unwrap();
        assert!(matches!(load_or_create(dir.path()), Err(Error::IdentityDecode { .. })));
    }

    #[test]
    fn loose_permissions_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create(dir.path()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
