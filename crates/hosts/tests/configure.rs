//! `configure` and `cleanup` on a real directory: backups, restore byte for
//! byte, prepend, idempotence, `_default`, and leaving other registries alone.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use peerpull_hosts::{cleanup, configure, Change, Config, DialTimeout, Dialect, Error, HostsOptions, Target};

/// Every file under `root` (relative path → bytes and mode), for exact comparisons.
fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.insert(format!("{rel}/"), (Vec::new(), mode));
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                out.insert(rel, (fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes(), 0));
            } else {
                out.insert(rel, (fs::read(&path).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap()
}

fn config(root: &Path, registries: &[&str], prepend: bool) -> Config {
    Config {
        config_path: root.to_owned(),
        targets: registries.iter().map(|r| Target::Registry(r.parse().unwrap())).collect(),
        hosts: HostsOptions {
            mirrors: vec!["http://10.0.0.7:5000".parse().unwrap()],
            resolve_tags: true,
            dial_timeout: DialTimeout::default(),
            dialect: Dialect::default(),
        },
        prepend_existing: prepend,
    }
}

const K3S_DOCKER: &str =
    "server = \"https://registry-1.docker.io\"\n\n[host.\"https://mirror.corp\"]\n  ca = \"ca.crt\"\n";
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// A config path as an operator has it: Docker Hub with a CA beside its
/// hosts.toml, a private registry we do not mirror, and a stray file.
fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "docker.io/hosts.toml", K3S_DOCKER);
    write(dir.path(), "docker.io/ca.crt", CA);
    fs::set_permissions(dir.path().join("docker.io/hosts.toml"), fs::Permissions::from_mode(0o600)).unwrap();
    write(dir.path(), "corp.example:5000/hosts.toml", "server = \"https://corp.example:5000\"\nca = \"ca.crt\"\n");
    write(dir.path(), "corp.example:5000/ca.crt", CA);
    write(dir.path(), "README", "notes\n");
    dir
}

#[test]
fn writes_one_folder_per_registry_into_an_empty_path() {
    let dir = tempfile::tempdir().unwrap();
    let report = configure(&config(dir.path(), &["docker.io", "http://127.0.0.1:5000"], false)).unwrap();
    assert_eq!(report.changes.len(), 2);
    assert!(read(dir.path(), "docker.io/hosts.toml").starts_with("server = 'https://registry-1.docker.io'\n"));
    assert!(read(dir.path(), "127.0.0.1:5000/hosts.toml").starts_with("server = 'http://127.0.0.1:5000'\n"));
    let files: Vec<String> = snapshot(dir.path()).into_keys().collect();
    assert_eq!(
        files,
        [
            "127.0.0.1:5000/",
            "127.0.0.1:5000/hosts.toml",
            "_backup/",
            "_backup/.peerpull.toml",
            "docker.io/",
            "docker.io/hosts.toml"
        ]
    );
}

#[test]
fn no_registry_means_default() {
    let dir = tempfile::tempdir().unwrap();
    configure(&config(dir.path(), &[], false)).unwrap();
    assert_eq!(
        read(dir.path(), "_default/hosts.toml"),
        "[host.'http://10.0.0.7:5000']\ncapabilities = ['pull', 'resolve']\ndial_timeout = '200ms'"
    );
    cleanup(dir.path()).unwrap();
    assert!(snapshot(dir.path()).is_empty());
}

#[test]
fn backs_up_replaces_and_restores_byte_for_byte() {
    let dir = populated();
    let before = snapshot(dir.path());
    let mtime = |rel: &str| fs::metadata(dir.path().join(rel)).unwrap().modified().unwrap();
    let ca_time = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    fs::File::options().write(true).open(dir.path().join("docker.io/ca.crt")).unwrap().set_modified(ca_time).unwrap();
    configure(&config(dir.path(), &["docker.io"], false)).unwrap();
    assert_eq!(mtime("_backup/docker.io/ca.crt"), ca_time, "the backup keeps modification times");

    // Ours replaced docker.io's folder (mode of the old hosts.toml kept, CA gone from the live folder)...
    let live = snapshot(dir.path());
    assert!(!live.contains_key("docker.io/ca.crt"));
    assert_eq!(live["docker.io/hosts.toml"].1, 0o600);
    // ...the original is in _backup exactly...
    assert_eq!(live["_backup/docker.io/hosts.toml"], before["docker.io/hosts.toml"]);
    assert_eq!(live["_backup/docker.io/ca.crt"], before["docker.io/ca.crt"]);
    // ...and the registry we do not mirror is untouched and not backed up.
    assert_eq!(live["corp.example:5000/ca.crt"], before["corp.example:5000/ca.crt"]);
    assert!(!live.contains_key("_backup/corp.example:5000/"));

    let report = cleanup(dir.path()).unwrap();
    assert_eq!(report.changes, [Change::Restored(dir.path().join("docker.io"))]);
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(mtime("docker.io/ca.crt"), ca_time);
}

#[test]
fn second_run_changes_nothing() {
    let dir = populated();
    let cfg = config(dir.path(), &["docker.io", "ghcr.io"], true);
    configure(&cfg).unwrap();
    let first = snapshot(dir.path());
    let mtime = fs::metadata(dir.path().join("docker.io/hosts.toml")).unwrap().modified().unwrap();
    let report = configure(&cfg).unwrap();
    assert!(report.is_noop(), "{report:?}");
    assert_eq!(snapshot(dir.path()), first);
    assert_eq!(fs::metadata(dir.path().join("docker.io/hosts.toml")).unwrap().modified().unwrap(), mtime);
}

#[test]
fn prepend_keeps_existing_hosts_and_their_ca_where_they_are() {
    let dir = populated();
    let before = snapshot(dir.path());
    configure(&config(dir.path(), &["docker.io"], true)).unwrap();
    assert_eq!(
        read(dir.path(), "docker.io/hosts.toml"),
        "server = 'https://registry-1.docker.io'\n\n\
         [host.'http://10.0.0.7:5000']\ncapabilities = ['pull', 'resolve']\ndial_timeout = '200ms'\n\n\
         [host.\"https://mirror.corp\"]\n  ca = \"ca.crt\""
    );
    assert_eq!(read(dir.path(), "docker.io/ca.crt"), CA);
    cleanup(dir.path()).unwrap();
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn dropping_a_registry_gives_its_original_back() {
    let dir = populated();
    let before = snapshot(dir.path());
    configure(&config(dir.path(), &["docker.io", "ghcr.io"], false)).unwrap();
    configure(&config(dir.path(), &["ghcr.io"], false)).unwrap();
    let live = snapshot(dir.path());
    assert_eq!(live["docker.io/hosts.toml"], before["docker.io/hosts.toml"]);
    assert_eq!(live["docker.io/ca.crt"], before["docker.io/ca.crt"]);
    assert!(!live.contains_key("_backup/docker.io/"));
    cleanup(dir.path()).unwrap();
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn cleanup_without_backup_does_nothing() {
    let dir = populated();
    let before = snapshot(dir.path());
    assert!(cleanup(dir.path()).unwrap().changes.is_empty());
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn cleanup_undoes_a_spegel_backup() {
    let dir = tempfile::tempdir().unwrap();
    // Spegel moved everything into _backup and wrote only its own folders.
    write(dir.path(), "_backup/docker.io/hosts.toml", K3S_DOCKER);
    write(dir.path(), "_backup/README", "notes\n");
    write(dir.path(), "docker.io/hosts.toml", "server = 'https://registry-1.docker.io'");
    write(dir.path(), "ghcr.io/hosts.toml", "server = 'https://ghcr.io'");
    cleanup(dir.path()).unwrap();
    let files: Vec<String> = snapshot(dir.path()).into_keys().collect();
    assert_eq!(files, ["README", "docker.io/", "docker.io/hosts.toml"]);
    assert_eq!(read(dir.path(), "docker.io/hosts.toml"), K3S_DOCKER);
}

#[test]
fn configure_takes_over_a_spegel_backup() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "_backup/docker.io/hosts.toml", K3S_DOCKER);
    write(dir.path(), "_backup/corp.example:5000/hosts.toml", "server = \"https://corp.example:5000\"\n");
    write(dir.path(), "docker.io/hosts.toml", "server = 'https://registry-1.docker.io'");
    write(dir.path(), "ghcr.io/hosts.toml", "server = 'https://ghcr.io'");
    configure(&config(dir.path(), &["docker.io"], true)).unwrap();
    // Ours on top of the original docker.io, Spegel's ghcr.io gone, the private registry back in force.
    assert!(read(dir.path(), "docker.io/hosts.toml").ends_with("[host.\"https://mirror.corp\"]\n  ca = \"ca.crt\""));
    assert!(!dir.path().join("ghcr.io").exists());
    assert_eq!(read(dir.path(), "corp.example:5000/hosts.toml"), "server = \"https://corp.example:5000\"\n");
    cleanup(dir.path()).unwrap();
    let files: Vec<String> = snapshot(dir.path()).into_keys().collect();
    assert_eq!(files, ["corp.example:5000/", "corp.example:5000/hosts.toml", "docker.io/", "docker.io/hosts.toml"]);
    assert_eq!(read(dir.path(), "docker.io/hosts.toml"), K3S_DOCKER);
}

#[test]
fn bad_input_writes_nothing() {
    let dir = populated();
    write(dir.path(), "ghcr.io/hosts.toml", "server = [unclosed");
    let before = snapshot(dir.path());

    let err = configure(&config(dir.path(), &["docker.io", "ghcr.io"], true)).unwrap_err();
    assert!(matches!(err, Error::ExistingHostsToml { .. }), "{err}");
    assert!(err.is_usage());
    assert!(!err.to_string().contains('\n'), "{err}");

    let mut no_mirrors = config(dir.path(), &["docker.io"], false);
    no_mirrors.hosts.mirrors.clear();
    assert!(matches!(configure(&no_mirrors).unwrap_err(), Error::NoMirrors));

    let conflicting = config(dir.path(), &["http://127.0.0.1:5000", "https://127.0.0.1:5000"], false);
    assert!(matches!(configure(&conflicting).unwrap_err(), Error::ConflictingRegistries { .. }));
    assert_eq!(snapshot(dir.path()), before);

    let missing = dir.path().join("nope");
    assert!(matches!(configure(&config(&missing, &[], false)).unwrap_err(), Error::ConfigPathMissing { .. }));
    let file = dir.path().join("README");
    assert!(matches!(cleanup(&file).unwrap_err(), Error::ConfigPathNotDir { .. }));
    assert!(!missing.exists());
}
