//! `--config-path` given as containerd's list (`/etc/containerd/certs.d:/etc/docker/certs.d`).
//!
//! containerd's CRI reads each directory of a list in turn, but containerd
//! 2.1's transfer service (its default pull path) takes the whole string for
//! one directory and so finds no `hosts.toml` at all. `configure` and
//! `cleanup` work on the first directory, where CRI looks first, and say so.

use std::path::{Path, PathBuf};

use peerpull_store::containerd::doctor::config_path_dirs;

/// The directory to write into, and a warning when `config_path` lists more than one.
pub(crate) fn first_dir(config_path: &Path) -> (PathBuf, Option<String>) {
    let Some(text) = config_path.to_str() else { return (config_path.to_owned(), None) };
    let dirs = config_path_dirs(text);
    match dirs.as_slice() {
        [first, _, ..] => {
            let warning = format!(
                "--config-path {text} lists {} directories; using the first, {}. containerd 2.1 and later pull \
                 through their transfer service, which reads config_path as one directory and would ignore every \
                 hosts.toml: set containerd's config_path to {} (or use_local_image_pull = true); `peerpull doctor` \
                 checks it",
                dirs.len(),
                first.display(),
                first.display()
            );
            (first.clone(), Some(warning))
        }
        [only] => (only.clone(), None),
        [] => (config_path.to_owned(), None),
    }
}

/// [`first_dir`], printing the warning on stderr.
pub(crate) fn resolve(config_path: &Path) -> PathBuf {
    let (dir, warning) = first_dir(config_path);
    if let Some(warning) = warning {
        eprintln!("peerpull: warning: {warning}");
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_yields_its_first_directory_and_a_warning() {
        let (dir, warning) = first_dir(Path::new("/etc/containerd/certs.d:/etc/docker/certs.d"));
        assert_eq!(dir, Path::new("/etc/containerd/certs.d"));
        let warning = warning.unwrap_or_default();
        assert!(warning.contains("lists 2 directories"), "{warning}");
        assert!(warning.contains("use_local_image_pull"), "{warning}");

        let (dir, warning) = first_dir(Path::new("/etc/containerd/certs.d"));
        assert_eq!((dir.as_path(), warning), (Path::new("/etc/containerd/certs.d"), None));
    }
}
