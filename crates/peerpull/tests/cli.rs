//! Black-box tests of the built `peerpull` binary: `configure`, `cleanup`,
//! environment variables, and one line plus exit code 64 for each bad input
//! with nothing written.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DOCKER_HUB: &str = "server = 'https://registry-1.docker.io'

[host.'http://10.0.0.7:5000']
capabilities = ['pull', 'resolve']
dial_timeout = '200ms'";

fn peerpull(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerpull"));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Every file under `root` with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.insert(path.clone(), Vec::new());
                stack.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Asserts exit code 64, exactly one line on stderr containing `needle`, and nothing changed under `dir`.
#[track_caller]
fn assert_bad_input(dir: &Path, args: &[&str], env: &[(&str, &str)], needle: &str) {
    let before = snapshot(dir);
    let out = peerpull(args, env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
    assert!(err.starts_with("peerpull: error: "), "{err}");
    assert!(err.contains(needle), "{args:?}: {err:?} does not mention {needle:?}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(snapshot(dir), before, "{args:?} changed the config path");
}

fn operator_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("docker.io")).unwrap();
    fs::write(dir.path().join("docker.io/hosts.toml"), "server = \"https://registry-1.docker.io\"\n").unwrap();
    fs::write(dir.path().join("docker.io/ca.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    dir
}

#[test]
fn help_and_version_exit_zero() {
    for args in [&["--help"][..], &["--version"], &["configure", "--help"], &["cleanup", "--help"]] {
        let out = peerpull(args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
    let out = peerpull(&["configure", "--help"], &[]);
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in ["--config-path", "--mirror", "--registry", "--registries-yaml", "--resolve-tags", "--prepend-existing"]
    {
        assert!(help.contains(flag), "{flag} missing from help");
    }
    assert!(help.contains("PEERPULL_CONFIG_PATH") && help.contains("PEERPULL_DIAL_TIMEOUT"));

    // No subcommand is bad usage: help on stderr, 64.
    let out = peerpull(&[], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("Usage:"));
}

#[test]
fn configure_twice_then_cleanup_restores_byte_for_byte() {
    let dir = operator_dir();
    let path = dir.path().to_str().unwrap();
    let before = snapshot(dir.path());
    let args = ["configure", "--config-path", path, "--mirror", "http://10.0.0.7:5000", "--registry", "docker.io"];

    let out = peerpull(&args, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(dir.path().join("docker.io/hosts.toml")).unwrap(), DOCKER_HUB);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("backed up") && stdout.contains("wrote"), "{stdout}");

    let configured = snapshot(dir.path());
    let out = peerpull(&args, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(snapshot(dir.path()), configured, "second configure changed files");

    let out = peerpull(&["cleanup", "--config-path", path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(snapshot(dir.path()), before);
    let out = peerpull(&["cleanup", "--config-path", path], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("nothing to clean up"));
}

#[test]
fn a_config_path_list_is_written_into_its_first_directory_with_a_warning() {
    let first = operator_dir();
    let second = tempfile::tempdir().unwrap();
    let list = format!("{}:{}", first.path().display(), second.path().display());
    let before = snapshot(first.path());
    let args = ["configure", "--config-path", &list, "--mirror", "http://10.0.0.7:5000", "--registry", "docker.io"];

    let out = peerpull(&args, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(fs::read_to_string(first.path().join("docker.io/hosts.toml")).unwrap(), DOCKER_HUB);
    assert!(snapshot(second.path()).is_empty(), "the second directory was written");
    assert!(err.starts_with("peerpull: warning: ") && err.contains("lists 2 directories"), "{err}");
    assert!(err.contains("transfer service"), "{err}");

    let out = peerpull(&["cleanup", "--config-path", &list], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(snapshot(first.path()), before);
}

#[test]
fn every_flag_reads_its_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let out = peerpull(
        &["configure"],
        &[
            ("PEERPULL_CONFIG_PATH", path),
            ("PEERPULL_MIRROR", "http://10.0.0.7:5000,http://10.0.0.8:5000"),
            ("PEERPULL_REGISTRY", "ghcr.io,http://127.0.0.1:5000"),
            ("PEERPULL_RESOLVE_TAGS", "false"),
            ("PEERPULL_DIAL_TIMEOUT", "1s"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ghcr = fs::read_to_string(dir.path().join("ghcr.io/hosts.toml")).unwrap();
    assert_eq!(
        ghcr,
        "server = 'https://ghcr.io'\n\n\
         [host.'http://10.0.0.7:5000']\ncapabilities = ['pull']\ndial_timeout = '1s'\n\n\
         [host.'http://10.0.0.8:5000']\ncapabilities = ['pull']\ndial_timeout = '1s'"
    );
    let local = fs::read_to_string(dir.path().join("127.0.0.1:5000/hosts.toml")).unwrap();
    assert!(local.starts_with("server = 'http://127.0.0.1:5000'\n"));

    let out = peerpull(&["cleanup"], &[("PEERPULL_CONFIG_PATH", path)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(snapshot(dir.path()).is_empty());
}

#[test]
fn registries_yaml_and_prepend_existing() {
    let dir = operator_dir();
    let yaml = tempfile::NamedTempFile::new().unwrap();
    fs::write(yaml.path(), "mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.corp\"]\n  \"*\":\n").unwrap();
    let out = peerpull(
        &["configure", "--mirror", "http://10.0.0.7:5000", "--registries-yaml", yaml.path().to_str().unwrap()],
        &[("PEERPULL_CONFIG_PATH", dir.path().to_str().unwrap()), ("PEERPULL_PREPEND_EXISTING", "true")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(dir.path().join("docker.io/hosts.toml")).unwrap(), DOCKER_HUB);
    assert!(dir.path().join("docker.io/ca.crt").exists(), "prepend keeps the files beside hosts.toml");
    assert!(dir.path().join("_default/hosts.toml").exists());
}

#[test]
fn bad_input_is_one_line_exit_64_and_writes_nothing() {
    let dir = operator_dir();
    let path = dir.path().to_str().unwrap();
    let mirror = ["--mirror", "http://10.0.0.7:5000"];
    let configure = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["configure", "--config-path", path].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let check = |args: Vec<String>, needle: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_bad_input(dir.path(), &args, &[], needle);
    };

    check(configure(&["--mirror", "10.0.0.7:5000"]), "must be a URL starting with http:// or https://");
    check(configure(&["--mirror", "http://10.0.0.7:5000/v2"]), "10.0.0.7:5000/v2");
    check(configure(&["--mirror", "http://10.0.0.7:5000", "--dial-timeout", "200"]), "invalid duration \"200\"");
    check(configure(&["--mirror", "http://10.0.0.7:5000", "--dial-timeout", "soon"]), "soon");
    check(configure(&["--mirror", "http://10.0.0.7:5000", "--registry", "ftp://x.io"]), "ftp");
    check(configure(&["--mirror", "http://10.0.0.7:5000", "--resolve-tags", "maybe"]), "maybe");
    check(configure(&[]), "--mirror");
    check(configure(&["--mirror", "http://10.0.0.7:5000", "--bogus"]), "--bogus");
    check(
        configure(&["--mirror", "http://10.0.0.7:5000", "--registry", "docker.io", "--registries-yaml", "/x"]),
        "cannot be used with",
    );

    let mut missing = vec!["configure", "--config-path", "/nonexistent/certs.d"];
    missing.extend(mirror);
    assert_bad_input(dir.path(), &missing, &[], "config path /nonexistent/certs.d does not exist");
    assert_bad_input(dir.path(), &["cleanup", "--config-path", "/nonexistent/certs.d"], &[], "does not exist");
    assert!(!Path::new("/nonexistent").exists());

    let file = dir.path().join("docker.io/ca.crt");
    let not_dir = ["configure", "--config-path", file.to_str().unwrap(), mirror[0], mirror[1]];
    assert_bad_input(dir.path(), &not_dir, &[], "is not a directory");

    let yaml = dir.path().join("docker.io/registries.yaml");
    fs::write(&yaml, "mirrors: [docker.io]\n").unwrap();
    let bad_yaml =
        ["configure", "--config-path", path, mirror[0], mirror[1], "--registries-yaml", yaml.to_str().unwrap()];
    assert_bad_input(dir.path(), &bad_yaml, &[], "registries.yaml: mirrors: invalid type");
    let no_yaml = ["configure", "--config-path", path, mirror[0], mirror[1], "--registries-yaml", "/nonexistent.yaml"];
    assert_bad_input(dir.path(), &no_yaml, &[], "cannot read /nonexistent.yaml");

    let env_bad = [("PEERPULL_CONFIG_PATH", path), ("PEERPULL_MIRROR", "http://ok:5000,nope")];
    assert_bad_input(dir.path(), &["configure"], &env_bad, "nope");

    // An existing hosts.toml that is not TOML is refused before anything is written.
    fs::write(dir.path().join("docker.io/hosts.toml"), "server = [").unwrap();
    let prepend =
        ["configure", "--config-path", path, mirror[0], mirror[1], "--registry", "docker.io", "--prepend-existing"];
    assert_bad_input(dir.path(), &prepend, &[], "is not valid TOML");
}

#[test]
fn unwritable_config_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permission bits; sysfs refuses new files even to root.
    let target = if fs::write(locked.join("probe"), "").is_ok() { PathBuf::from("/sys") } else { locked.clone() };
    let out =
        peerpull(&["configure", "--config-path", target.to_str().unwrap(), "--mirror", "http://10.0.0.7:5000"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not writable"), "{err}");
}

#[test]
fn status_and_locate_without_a_daemon_name_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let socket = socket.to_str().unwrap();
    for args in [vec!["status", "--admin-socket", socket], vec!["locate", "nginx:1.27", "--admin-socket", socket]] {
        let out = peerpull(&args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("no peerpull daemon answers on {socket}")), "{err}");
        assert!(err.contains("No such file or directory"), "{err}");
    }
    // A bad reference is bad usage, told before any daemon is asked.
    let out = peerpull(&["locate", "Not A/Reference", "--admin-socket", socket], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("\"Not A/Reference\""), "{err}");
}

#[test]
fn run_and_doctor_refuse_bad_flags_with_64_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let admin = dir.path().join("admin.sock");
    let (data, admin) = (data.to_str().unwrap(), admin.to_str().unwrap());
    let cases: [(&[&str], &str); 10] = [
        (&["--registry-addr", "nope"], "'nope' for '--registry-addr <ADDR>'"),
        (&["--router-addr", "[::1]"], "--router-addr"),
        (&["--bootstrap", "/garbage"], "bad bootstrap peer \"/garbage\""),
        (&["--tag-timeout", "soon"], "invalid duration \"soon\""),
        (&["--psk-file", "/nonexistent/psk"], "cannot read the pre-shared key /nonexistent/psk"),
        (&["--max-connections", "0"], "'0' for '--max-connections <N>'"),
        (&["--tag-resolution", "sideways"], "possible values: upstream-first, peers-first"),
        (&["--preheat", "Not/An Image!"], "'Not/An Image!' for '--preheat <REF>'"),
        (&["--preheat-replicas", "0"], "'0' for '--preheat-replicas <N>'"),
        (&["--bogus"], "'--bogus'"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["run", "--data-dir", data, "--admin-socket", admin];
        args.extend(extra);
        assert_bad_input(dir.path(), &args, &[], needle);
    }
    for (extra, needle) in [
        (&["--registry-addr", "nope"][..], "'nope' for '--registry-addr <ADDR>'"),
        (&["--mirrored-registry", "ftp://x"], "unsupported scheme \"ftp\""),
        (&["--bogus"], "'--bogus'"),
    ] {
        let mut args = vec!["doctor"];
        args.extend(extra);
        assert_bad_input(dir.path(), &args, &[], needle);
    }
}

#[test]
fn run_names_the_flag_and_the_cause_of_a_port_in_use() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    for flag in ["--registry-addr", "--router-addr", "--metrics-addr"] {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> =
            ["run", "--data-dir", dir.path().to_str().unwrap(), "--admin-socket"].map(str::to_owned).to_vec();
        args.push(dir.path().join("admin.sock").display().to_string());
        args.extend(["--containerd-socket".to_owned(), dir.path().join("none.sock").display().to_string()]);
        for other in ["--registry-addr", "--router-addr", "--metrics-addr"] {
            let addr = if other == flag { taken.clone() } else { "127.0.0.1:0".to_owned() };
            args.extend([other.to_owned(), addr]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_peerpull"))
            .env_clear()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{flag} {taken}: still running with its port taken");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        let last = err.lines().last().unwrap_or("");
        assert_eq!(status.code(), Some(1), "{flag}: {err}");
        assert!(last.starts_with("peerpull: error: "), "{flag}: {err}");
        assert!(last.contains(&taken) && last.contains("Address already in use"), "{flag}: {last}");
        assert!(last.contains(&format!("{flag} {taken}: cannot listen")), "{flag}: {last}");
    }
}

/// `--version` names the commit the binary was built from: in this
/// checkout, a commit of its history (HEAD may have moved on since the
/// build); `unknown` only where git cannot say.
#[test]
fn version_names_the_commit() {
    let out = peerpull(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("peerpull {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = text.trim_end().strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(')'));
    let commit = commit.unwrap_or_else(|| panic!("{text:?} is not `{prefix}<commit>)`"));
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    let checkout = git(&["rev-parse", "HEAD"]).is_ok_and(|o| o.status.success());
    if !checkout {
        assert!(commit == "unknown" || commit.len() >= 7, "{text:?}");
        return;
    }
    assert!(commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()), "{text:?}: not a short commit");
    let known = git(&["rev-parse", "--verify", "--quiet", &format!("{commit}^{{commit}}")]).unwrap();
    assert!(known.status.success(), "{commit} is no commit of this checkout");
}

#[test]
fn an_empty_admin_socket_is_accepted_as_none() {
    for (args, env) in [(vec!["doctor", "--admin-socket", ""], None), (vec!["run"], Some(""))] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_peerpull"));
        command.args(&args).env_clear().env("PEERPULL_CHECK_ARGS", "1");
        if let Some(value) = env {
            command.env("PEERPULL_ADMIN_SOCKET", value);
        }
        let out = command.output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(printed.contains("admin_socket: \"\""), "{args:?}: {printed}");
    }
}
