//! `hosts.toml`: does containerd send each mirrored registry's pulls to this node's mirror?

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use peerpull_hosts::{parse_existing, Target};

use super::Check;

/// One check per target: its `hosts.toml` under `dir` names the mirror at `mirror`.
pub(super) fn check(dir: &Path, targets: &[Target], mirror: SocketAddr) -> Vec<Check> {
    let port = mirror.port();
    let fix =
        format!("run `peerpull configure --config-path {} --mirror http://<this node's IP>:{port}`", dir.display());
    targets
        .iter()
        .map(|target| {
            let file = dir.join(target.dir_name()).join("hosts.toml");
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) => return Check::fail(format!("{}: {e}", file.display()), &fix),
            };
            let doc = match parse_existing(&text) {
                Ok(doc) => doc,
                Err(e) => return Check::fail(format!("{}: {e}", file.display()), &fix),
            };
            if let Some(header) = header_containerd_rejects(doc.as_table(), &mut Vec::new()) {
                let what = format!(
                    "{}: containerd 1.6 and 1.7 reject the whole file (a `]` in the table header {header}) and pull without mirrors",
                    file.display()
                );
                return Check::fail(what, format!("{fix}: it writes IPv6 hosts as dotted keys under [host]"));
            }
            let hosts: Vec<String> = doc
                .get("host")
                .and_then(|h| h.as_table_like())
                .map(|t| t.iter().map(|(k, _)| k.to_owned()).collect())
                .unwrap_or_default();
            match hosts.iter().find(|host| points_at(host, mirror)) {
                Some(host) => Check::ok(format!("{} sends pulls to this node's mirror {host}", file.display())),
                None => Check::fail(
                    format!("{} does not name this node's mirror (port {port}): {hosts:?}", file.display()),
                    &fix,
                ),
            }
        })
        .collect()
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
        let checks = check(dir.path(), &targets, "10.0.0.7:5000".parse().unwrap());
        let statuses: Vec<Status> = checks.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [Status::Ok, Status::Fail, Status::Fail, Status::Fail]);
        assert!(checks[1].what.contains("does not name this node's mirror"), "{}", checks[1]);
        assert!(checks[3].what.contains("No such file"), "{}", checks[3]);
        assert!(checks[1].fix.as_deref().unwrap().contains("peerpull configure --config-path"));
        let v6: Vec<Target> =
            ["registry.k8s.io", "example.com"].iter().map(|r| Target::Registry(r.parse().unwrap())).collect();
        let checks = check(dir.path(), &v6, "[fd00::7]:5000".parse().unwrap());
        assert_eq!(checks[0].status, Status::Fail, "{}", checks[0]);
        assert!(checks[0].what.contains("containerd 1.6 and 1.7 reject the whole file"), "{}", checks[0]);
        assert!(checks[0].what.contains("[host.'http://[fd00::7]:5000']"), "{}", checks[0]);
        assert_eq!(checks[1].status, Status::Ok, "{}", checks[1]);
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
