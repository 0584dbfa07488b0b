//! `hosts.toml`: does containerd send each mirrored registry's pulls to this node's mirror?
//!
//! `config_path` may list several directories (`/etc/containerd/certs.d:/etc/docker/certs.d`).
//! containerd's local pull tries them in order and, in each, the registry's
//! own folder (`host_port_`, then `host:port`), then `_default`; the first
//! that exists is the one it reads (`hostDirFromRoots` in CRI's
//! `image_pull.go`, `hostPaths` in `core/remotes/docker/config`). Each check
//! follows that search and names the directory it found the file in.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use peerpull_hosts::{parse_existing, Target, DEFAULT_DIR};

use super::Check;

/// Where containerd finds a target's `hosts.toml`.
struct Found {
    /// The directory of `config_path` it is under.
    root: PathBuf,
    /// `<root>/<folder>/hosts.toml`.
    file: PathBuf,
}

/// One check per target: the `hosts.toml` containerd reads for it, under the directories `dirs`
/// (`config_path`'s, in order), names the mirror at `mirror`. `major` is containerd's major
/// version when known: 1.x refuses a `]` in a table header, 2.x reads hosts only from headers.
pub(super) fn check(dirs: &[PathBuf], targets: &[Target], mirror: SocketAddr, major: Option<u64>) -> Vec<Check> {
    let port = mirror.port();
    let first = dirs.first().map_or(Path::new(""), PathBuf::as_path);
    let fix =
        format!("run `peerpull configure --config-path {} --mirror http://<this node's IP>:{port}`", first.display());
    targets
        .iter()
        .map(|target| {
            let Some(found) = find(dirs, target) else {
                let file = first.join(target.dir_name()).join("hosts.toml");
                let e = std::fs::read_to_string(&file).err().map(|e| e.to_string()).unwrap_or_default();
                let what = match dirs {
                    [_, _, ..] => format!("{}: {e}, and no directory of config_path has one for it", file.display()),
                    _ => format!("{}: {e}", file.display()),
                };
                return Check::fail(what, &fix);
            };
            let file = &found.file;
            let where_ = match dirs.iter().position(|d| *d == found.root) {
                Some(i) if dirs.len() > 1 => {
                    format!(" (in {}, directory {} of {} in config_path)", found.root.display(), i + 1, dirs.len())
                }
                _ => String::new(),
            };
            match names_mirror(file, mirror, major) {
                Ok(Ok(host)) => {
                    Check::ok(format!("{} sends pulls to this node's mirror {host}{where_}", file.display()))
                }
                Ok(Err(hosts)) => {
                    let mut what =
                        format!("{} does not name this node's mirror (port {port}): {hosts:?}", file.display());
                    if let Some(later) = later_naming(dirs, &found, target, mirror, major) {
                        what.push_str(&format!(
                            "; {} does, but containerd reads {} first",
                            later.display(),
                            found.root.display()
                        ));
                    }
                    Check::fail(what, &fix)
                }
                Err(Rejected::Unreadable(e)) => Check::fail(format!("{}: {e}", file.display()), &fix),
                Err(Rejected::Header(header)) => {
                    let what = format!(
                        "{}: containerd 1.6 and 1.7 reject the whole file (a `]` in the table header {header}) and pull without mirrors",
                        file.display()
                    );
                    Check::fail(what, format!("{fix}: it writes IPv6 hosts as dotted keys under [host]"))
                }
                Err(Rejected::Dotted(host)) => {
                    let what = format!(
                        "{}: containerd 2 reads hosts only from table headers, and ignores {host}, written as dotted keys under [host]",
                        file.display()
                    );
                    Check::fail(what, format!("{fix} --containerd-socket <its socket>: for containerd 2 it writes a table per host"))
                }
            }
        })
        .collect()
}

/// The first directory of `dirs` whose `hosts.toml` for some target names the mirror at `mirror`.
pub(super) fn holding<'a>(dirs: &'a [PathBuf], targets: &[Target], mirror: SocketAddr) -> Option<&'a Path> {
    dirs.iter().find(|dir| targets.iter().any(|t| naming(dir, t, mirror, None).is_some())).map(PathBuf::as_path)
}

/// Why a `hosts.toml` cannot be used.
enum Rejected {
    /// Not read or not TOML.
    Unreadable(String),
    /// containerd 1.6 and 1.7 refuse this table header.
    Header(String),
    /// containerd 2 ignores this host, written as dotted keys under `[host]`.
    Dotted(String),
}

/// The host in `file` that is the mirror at `mirror`, or all the hosts it names instead.
fn names_mirror(file: &Path, mirror: SocketAddr, major: Option<u64>) -> Result<Result<String, Vec<String>>, Rejected> {
    let text = std::fs::read_to_string(file).map_err(|e| Rejected::Unreadable(e.to_string()))?;
    let doc = parse_existing(&text).map_err(|e| Rejected::Unreadable(e.to_string()))?;
    let containerd_2 = major.is_some_and(|m| m >= 2);
    if !containerd_2 {
        if let Some(header) = header_containerd_rejects(doc.as_table(), &mut Vec::new()) {
            return Err(Rejected::Header(header));
        }
    }
    let table = doc.get("host").and_then(|h| h.as_table_like());
    let hosts: Vec<String> = table.map(|t| t.iter().map(|(k, _)| k.to_owned()).collect()).unwrap_or_default();
    let found = hosts.iter().find(|host| points_at(host, mirror)).cloned();
    if let (true, Some(host)) = (containerd_2, &found) {
        let dotted = table.and_then(|t| t.get(host)).and_then(|item| item.as_table()).is_some_and(|t| t.is_dotted());
        if dotted {
            return Err(Rejected::Dotted(host.clone()));
        }
    }
    Ok(found.ok_or(hosts))
}

/// Where containerd finds `target`'s `hosts.toml` under `dirs`, searching as it does.
fn find(dirs: &[PathBuf], target: &Target) -> Option<Found> {
    let folders = folders(target);
    dirs.iter().find_map(|root| {
        let folder = folders.iter().map(|f| root.join(f)).find(|f| f.exists())?;
        Some(Found { root: root.clone(), file: folder.join("hosts.toml") })
    })
}

/// A `hosts.toml` after `found`'s directory that would send `target`'s pulls to the mirror.
fn later_naming(
    dirs: &[PathBuf],
    found: &Found,
    target: &Target,
    mirror: SocketAddr,
    major: Option<u64>,
) -> Option<PathBuf> {
    let after = dirs.iter().position(|d| *d == found.root)? + 1;
    dirs[after..].iter().find_map(|dir| naming(dir, target, mirror, major))
}

/// The `hosts.toml` containerd would read for `target` were `dir` all of `config_path`, if it names the mirror.
fn naming(dir: &PathBuf, target: &Target, mirror: SocketAddr, major: Option<u64>) -> Option<PathBuf> {
    let file = find(std::slice::from_ref(dir), target)?.file;
    names_mirror(&file, mirror, major).is_ok_and(|n| n.is_ok()).then_some(file)
}

/// The folders containerd tries for `target`, in order: `host_port_`, `host:port`, `_default`.
fn folders(target: &Target) -> Vec<String> {
    let name = target.dir_name();
    let mut folders = Vec::new();
    if let Some((host, port)) = name.rsplit_once(':').filter(|(host, _)| !host.is_empty()) {
        folders.push(format!("{host}_{port}_"));
    }
    folders.push(name.to_owned());
    if let Target::Registry(_) = target {
        folders.push(DEFAULT_DIR.to_owned());
    }
    folders
}

/// A table header whose key holds a `]` (`[host.'http://[::1]:5000']`),
/// which containerd's TOML parser (go-toml v1) refuses even when quoted.
fn header_containerd_rejects(table: &toml_edit::Table, path: &mut Vec<String>) -> Option<String> {
    for (key, item) in table.iter() {
        let toml_edit::Item::Table(inner) = item else { continue };
        path.push(key.to_owned());
        let has_header = !inner.is_implicit() && !inner.is_dotted();
        if has_header && path.iter().any(|k| k.contains(']')) {
            let bare = |k: &str| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            let part = |k: &String| if bare(k) { k.clone() } else { format!("'{k}'") };
            let header = path.iter().map(part).collect::<Vec<_>>().join(".");
            return Some(format!("[{header}]"));
        }
        if let Some(found) = header_containerd_rejects(inner, path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

/// Whether a hosts.toml host URL is this node's mirror at `addr`.
fn points_at(host: &str, addr: SocketAddr) -> bool {
    let Some(rest) = host.strip_prefix("http://").or_else(|| host.strip_prefix("https://")) else { return false };
    let authority = rest.trim_end_matches('/');
    let Some((ip, port)) = authority.rsplit_once(':') else { return false };
    if port.parse() != Ok(addr.port()) {
        return false;
    }
    addr.ip().is_unspecified() || ip.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip == addr.ip())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn each_target_needs_a_hosts_file_naming_our_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("hosts.toml"), text).unwrap();
        };
        write(
            "docker.io",
            "server = 'https://registry-1.docker.io'\n[host.'http://10.0.0.7:5000']\ncapabilities = ['pull']\n",
        );
        write("ghcr.io", "[host.'http://10.0.0.8:5000']\n");
        write("quay.io", "[host\n");
        // containerd 1.6 rejects this file; the same hosts as dotted keys are fine.
        write("registry.k8s.io", "[host.'http://[fd00::7]:5000']\ncapabilities = ['pull']\n");
        write("example.com", "[host]\n'http://[fd00::7]:5000'.capabilities = ['pull']\n");
        let targets: Vec<Target> = ["docker.io", "ghcr.io", "quay.io", "gcr.io"]
            .iter()
            .map(|r| Target::Registry(r.parse().unwrap()))
            .collect();
        let checks = check(&[dir.path().to_owned()], &targets, "10.0.0.7:5000".parse().unwrap(), Some(1));
        let statuses: Vec<Status> = checks.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [Status::Ok, Status::Fail, Status::Fail, Status::Fail]);
        assert!(checks[1].what.contains("does not name this node's mirror"), "{}", checks[1]);
        assert!(checks[3].what.contains("No such file"), "{}", checks[3]);
        assert!(checks[1].fix.as_deref().unwrap().contains("peerpull configure --config-path"));
        let v6: Vec<Target> =
            ["registry.k8s.io", "example.com"].iter().map(|r| Target::Registry(r.parse().unwrap())).collect();
        let v6_mirror: SocketAddr = "[fd00::7]:5000".parse().unwrap();
        for major in [Some(1), None] {
            let checks = check(&[dir.path().to_owned()], &v6, v6_mirror, major);
            assert_eq!(checks[0].status, Status::Fail, "{}", checks[0]);
            assert!(checks[0].what.contains("containerd 1.6 and 1.7 reject the whole file"), "{}", checks[0]);
            assert!(checks[0].what.contains("[host.'http://[fd00::7]:5000']"), "{}", checks[0]);
            assert_eq!(checks[1].status, Status::Ok, "{}", checks[1]);
        }
        // containerd 2 is the other way round.
        let checks = check(&[dir.path().to_owned()], &v6, v6_mirror, Some(2));
        assert_eq!(checks[0].status, Status::Ok, "{}", checks[0]);
        assert_eq!(checks[1].status, Status::Fail, "{}", checks[1]);
        assert!(checks[1].what.contains("ignores http://[fd00::7]:5000, written as dotted keys"), "{}", checks[1]);
        assert!(checks[1].fix.as_deref().unwrap().contains("--containerd-socket"), "{}", checks[1]);
    }

    #[test]
    fn containerd_reads_the_first_directory_of_config_path_that_has_a_folder_for_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|d| dir.path().join(d));
        let write = |root: &Path, folder: &str, text: &str| {
            std::fs::create_dir_all(root.join(folder)).unwrap();
            std::fs::write(root.join(folder).join("hosts.toml"), text).unwrap();
        };
        let ours = "[host.'http://10.0.0.7:5000']\n";
        let theirs = "[host.'http://10.0.0.8:5000']\n";
        std::fs::create_dir_all(&a).unwrap();
        write(&b, "docker.io", ours);
        write(&c, "docker.io", theirs);
        let mirror: SocketAddr = "10.0.0.7:5000".parse().unwrap();
        let registry = |r: &str| vec![Target::Registry(r.parse().unwrap())];
        let dirs = [a.clone(), b.clone(), c.clone()];

        let checks = check(&dirs, &registry("docker.io"), mirror, None);
        assert_eq!(checks[0].status, Status::Ok, "{}", checks[0]);
        let expected = format!("(in {}, directory 2 of 3 in config_path)", b.display());
        assert!(checks[0].what.ends_with(&expected), "{}", checks[0]);
        assert_eq!(holding(&dirs, &registry("docker.io"), mirror), Some(b.as_path()));

        // An earlier directory's folder wins, even one that names another mirror.
        let dirs = [c.clone(), b.clone()];
        let checks = check(&dirs, &registry("docker.io"), mirror, None);
        assert_eq!(checks[0].status, Status::Fail, "{}", checks[0]);
        let expected =
            format!("; {}/docker.io/hosts.toml does, but containerd reads {} first", b.display(), c.display());
        assert!(checks[0].what.ends_with(&expected), "{}", checks[0]);
        assert!(checks[0].fix.as_deref().unwrap().contains(&format!("--config-path {} ", c.display())));
        assert_eq!(holding(&dirs, &registry("docker.io"), mirror), Some(b.as_path()));

        // Then `_default` in the same directory, before any later directory.
        write(&a, "_default", ours);
        let checks = check(&[a.clone(), c.clone()], &registry("quay.io"), mirror, None);
        assert_eq!(checks[0].status, Status::Ok, "{}", checks[0]);
        assert!(checks[0].what.starts_with(&format!("{}/_default/hosts.toml sends", a.display())), "{}", checks[0]);
        // `host_port_` comes before `host:port`.
        write(&c, "127.0.0.1_5000_", ours);
        write(&c, "127.0.0.1:5000", theirs);
        let checks = check(std::slice::from_ref(&c), &registry("127.0.0.1:5000"), mirror, None);
        assert_eq!(checks[0].status, Status::Ok, "{}", checks[0]);
        assert!(checks[0].what.contains("127.0.0.1_5000_"), "{}", checks[0]);

        let none = check(&[dir.path().join("x"), dir.path().join("y")], &registry("ghcr.io"), mirror, None);
        assert_eq!(none[0].status, Status::Fail);
        assert!(none[0].what.contains("x/ghcr.io/hosts.toml: No such file"), "{}", none[0]);
        assert!(none[0].what.ends_with("and no directory of config_path has one for it"), "{}", none[0]);
    }

    #[test]
    fn a_mirror_on_every_address_matches_any_ip_with_its_port() {
        let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert!(points_at("http://10.1.2.3:5000", any));
        assert!(!points_at("http://10.1.2.3:5001", any));
        let one: SocketAddr = "[::1]:5000".parse().unwrap();
        assert!(points_at("http://[::1]:5000/", one));
        assert!(!points_at("http://127.0.0.1:5000", one));
        assert!(!points_at("unix:///x", one));
    }
}
