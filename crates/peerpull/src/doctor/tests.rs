use peerpull_store::containerd::doctor::Version;
use tempfile::TempDir;

use super::*;

const MIRROR: &str = "10.0.0.7:5000";

/// A node's files: containerd's config (`{a}` and `{b}` stand for two certs.d directories) and a
/// `hosts.toml` for docker.io naming the mirror in `{b}`.
struct Node {
    dir: TempDir,
}

impl Node {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = Self { dir };
        for d in ["a", "b"] {
            std::fs::create_dir_all(node.path(d)).unwrap();
        }
        let config = config.replace("{a}", &node.path("a").display().to_string());
        let config = config.replace("{b}", &node.path("b").display().to_string());
        std::fs::write(node.config_file(), config).unwrap();
        node.hosts("b", "docker.io", &format!("[host.'http://{MIRROR}']\ncapabilities = ['pull']\n"));
        node
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_file(&self) -> PathBuf {
        self.path("config.toml")
    }

    fn hosts(&self, dir: &str, registry: &str, text: &str) {
        std::fs::create_dir_all(self.path(dir).join(registry)).unwrap();
        std::fs::write(self.path(dir).join(registry).join("hosts.toml"), text).unwrap();
    }

    /// What doctor says about the configuration and docker.io's hosts.toml, given what containerd reports.
    fn doctor(&self, version: Result<&str, &str>, status: serde_json::Value) -> Vec<Check> {
        let version = version.map(|v| Version::parse(v).unwrap()).map_err(str::to_owned);
        let report = ConfigReport::from_sources(version, Ok(status), Some(&self.config_file()));
        let targets = [Target::Registry("docker.io".parse().unwrap())];
        let dirs = hosts_dirs(&report, &self.path("a"));
        let config_file = self.config_file();
        let setup = Setup {
            config_file: &config_file,
            hosts_dir: &self.path("a"),
            dirs: &dirs,
            targets: &targets,
            mirror: MIRROR.parse().unwrap(),
        };
        let mut checks = configuration(&report, &setup);
        checks.extend(hosts::check(&dirs, &targets, setup.mirror, report.version.as_ref().ok().map(|v| v.major)));
        checks
    }
}

fn statuses(checks: &[Check]) -> Vec<Status> {
    checks.iter().map(|c| c.status).collect()
}

fn text(checks: &[Check]) -> String {
    checks.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// CRI `Status`'s verbose `config` in containerd 2: the runtime plugin's settings only.
fn containerd_2_status() -> serde_json::Value {
    serde_json::json!({
        "containerd": { "defaultRuntimeName": "runc", "ignoreBlockIONotEnabledErrors": false },
        "cni": { "binDirs": ["/opt/cni/bin"], "confDir": "/etc/cni/net.d" },
        "containerdRootDir": "/var/lib/containerd",
    })
}

const V3_LIST: &str = "version = 3
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.registry]
config_path = '{a}:{b}'
";

#[test]
fn containerd_1_6_with_a_version_2_config_reads_as_before() {
    let node = Node::new(
        "version = 2
[plugins.\"io.containerd.grpc.v1.cri\".containerd]
  discard_unpacked_layers = false
[plugins.\"io.containerd.grpc.v1.cri\".registry]
  config_path = \"{b}\"
",
    );
    let b = node.path("b");
    let status = serde_json::json!({
        "registry": { "configPath": b },
        "containerd": { "discardUnpackedLayers": false },
    });
    let checks = node.doctor(Ok("1.6.20~ds1"), status);
    assert_eq!(
        text(&checks),
        format!(
            "[ok]   CRI registry config_path is {b} (from CriStatus)\n\
             [ok]   discard_unpacked_layers is off: layers stay shareable\n\
             [ok]   {b}/docker.io/hosts.toml sends pulls to this node's mirror http://{MIRROR}",
            b = b.display()
        )
    );
    // A list is fine too: containerd 1.6 pulls with CRI's own pull, which tries each directory.
    let node = Node::new(&V3_LIST.replace("version = 3", "version = 2").replace("cri.v1.images", "grpc.v1.cri"));
    let status = serde_json::json!({ "registry": { "configPath": format!("{}:{}", node.path("a").display(), node.path("b").display()) } });
    let checks = node.doctor(Ok("1.6.20~ds1"), status);
    assert_eq!(statuses(&checks), [Status::Ok, Status::Ok, Status::Ok], "{}", text(&checks));
    assert!(checks[0].what.ends_with("(from CriStatus), a list of 2 directories"), "{}", checks[0]);
}

#[test]
fn containerd_2_1_with_one_directory_pulls_through_the_transfer_service() {
    let node = Node::new(&V3_LIST.replace("{a}:{b}", "{b}"));
    let checks = node.doctor(Ok("2.1.9+unknown"), containerd_2_status());
    assert_eq!(statuses(&checks), [Status::Ok; 4], "{}", text(&checks));
    let file = node.config_file();
    assert_eq!(
        checks[0].what,
        format!("CRI registry config_path is {} (from ConfigFile({file:?}))", node.path("b").display())
    );
    assert_eq!(
        checks[1].what,
        "containerd 2.1.9 pulls through its transfer service, which reads config_path as one directory"
    );
}

#[test]
fn containerd_2_1_with_a_list_ignores_hosts_toml() {
    let node = Node::new(V3_LIST);
    let checks = node.doctor(Ok("2.1.9+unknown"), containerd_2_status());
    assert_eq!(statuses(&checks), [Status::Ok, Status::Fail, Status::Ok, Status::Ok], "{}", text(&checks));
    let (a, b) = (node.path("a").display().to_string(), node.path("b").display().to_string());
    assert_eq!(
        checks[1].to_string(),
        format!(
            "[FAIL] containerd 2.1.9 pulls through its transfer service: it takes the config_path list {a}:{b} for one directory, \
             so it ignores every hosts.toml and never asks the mirror\n       \
             fix: set config_path = \"{b}\" (the directory with the mirror's hosts.toml) under \
             [plugins.'io.containerd.cri.v1.images'.registry], or set use_local_image_pull = true under \
             [plugins.'io.containerd.cri.v1.images'], in {} and restart containerd",
            node.config_file().display()
        )
    );
    // Without the mirror's hosts.toml anywhere, the fix cannot name its directory.
    std::fs::remove_dir_all(node.path("b").join("docker.io")).unwrap();
    let checks = node.doctor(Ok("2.1.9"), containerd_2_status());
    assert!(checks[1].fix.as_deref().unwrap().starts_with("set config_path to one directory under"), "{}", checks[1]);
    assert_eq!(checks[3].status, Status::Fail, "{}", checks[3]);
    assert!(checks[3].what.contains("no directory of config_path has one"), "{}", checks[3]);
    // containerd 2.0 and earlier pull with CRI's own pull: no finding about it.
    assert_eq!(node.doctor(Ok("2.0.7"), containerd_2_status()).len(), 3);
}

#[test]
fn a_list_with_use_local_image_pull_names_the_directory_holding_hosts_toml() {
    let node = Node::new(&V3_LIST.replace("snapshotter = 'overlayfs'", "use_local_image_pull = true"));
    for version in ["2.1.9", "2.2.1"] {
        let checks = node.doctor(Ok(version), containerd_2_status());
        assert_eq!(statuses(&checks), [Status::Ok; 4], "{}", text(&checks));
        assert_eq!(
            checks[1].what,
            format!("containerd {version} pulls with CRI's local pull (use_local_image_pull = true), which reads each directory of config_path in turn")
        );
        let b = node.path("b");
        assert_eq!(
            checks[3].what,
            format!(
                "{}/docker.io/hosts.toml sends pulls to this node's mirror http://{MIRROR} (in {}, directory 2 of 2 in config_path)",
                b.display(),
                b.display()
            )
        );
    }
}

#[test]
fn containerd_2_2_fills_an_unset_config_path_with_a_list() {
    let node = Node::new("version = 3\n");
    let checks = node.doctor(Ok("2.2.1"), containerd_2_status());
    assert_eq!(statuses(&checks), [Status::Ok, Status::Fail, Status::Ok, Status::Fail], "{}", text(&checks));
    assert_eq!(
        checks[0].what,
        "CRI registry config_path is not set, so containerd 2.2.1 uses its default \
         /etc/containerd/certs.d:/etc/docker/certs.d, a list of 2 directories"
    );
    assert!(
        checks[1]
            .what
            .contains("it takes the config_path list /etc/containerd/certs.d:/etc/docker/certs.d for one directory"),
        "{}",
        checks[1]
    );
    // containerd 2.1 leaves it unset.
    let checks = node.doctor(Ok("2.1.9"), containerd_2_status());
    assert_eq!(checks[0].status, Status::Fail, "{}", checks[0]);
    assert!(
        checks[0].to_string().contains(&format!(
            "fix: add config_path = \"{}\" under [plugins.'io.containerd.cri.v1.images'.registry] in",
            node.path("a").display()
        )),
        "{}",
        checks[0]
    );
}

#[test]
fn an_option_that_forces_the_local_pull_holds_up_a_list_only_until_it_goes() {
    let node = Node::new(&V3_LIST.replace("snapshotter = 'overlayfs'", "discard_unpacked_layers = true"));
    let checks = node.doctor(Ok("2.1.9"), containerd_2_status());
    assert_eq!(statuses(&checks), [Status::Ok, Status::Warn, Status::Fail, Status::Ok], "{}", text(&checks));
    assert!(checks[1].what.contains("only because discard_unpacked_layers = true is set"), "{}", checks[1]);
    assert!(checks[1].fix.as_deref().unwrap().starts_with("set use_local_image_pull = true under"), "{}", checks[1]);
    assert!(
        checks[2]
            .to_string()
            .contains("fix: set discard_unpacked_layers = false under [plugins.'io.containerd.cri.v1.images'] in"),
        "{}",
        checks[2]
    );
    let node = Node::new(
        &V3_LIST.replace("{a}:{b}", "{b}").replace("snapshotter = 'overlayfs'", "max_concurrent_downloads = 5"),
    );
    let checks = node.doctor(Ok("2.1.9"), containerd_2_status());
    assert_eq!(checks[1].to_string(), "[ok]   containerd 2.1.9 pulls with CRI's local pull, not its transfer service, because max_concurrent_downloads = 5 is set");
}

#[test]
fn a_list_with_containerd_down_is_a_warning() {
    let node = Node::new(V3_LIST);
    let checks = node.doctor(Err("containerd does not answer"), containerd_2_status());
    assert_eq!(statuses(&checks), [Status::Ok, Status::Warn, Status::Ok, Status::Ok], "{}", text(&checks));
    assert!(
        checks[1]
            .what
            .starts_with("cannot tell how containerd pulls (version: containerd does not answer): from 2.1 on"),
        "{}",
        checks[1]
    );
    let local = Node::new(&V3_LIST.replace("snapshotter = 'overlayfs'", "use_local_image_pull = true"));
    assert_eq!(local.doctor(Err("down"), containerd_2_status()).len(), 3);
}

#[test]
fn configuration_findings_name_their_fix() {
    let no_file = |config_path, discard_unpacked_layers| ConfigReport {
        config_path,
        discard_unpacked_layers,
        version: Err("down".into()),
        file_version: None,
        pull: Setting::Unknown(vec!["no file".into()]),
    };
    let setup = |dirs| Setup {
        config_file: Path::new("/etc/containerd/config.toml"),
        hosts_dir: Path::new("/certs.d"),
        dirs,
        targets: &[],
        mirror: MIRROR.parse().unwrap(),
    };
    let report = no_file(
        Setting::Known { value: None, source: ConfigSource::CriStatus },
        Setting::Known { value: true, source: ConfigSource::CriStatus },
    );
    let dirs = hosts_dirs(&report, Path::new("/certs.d"));
    assert_eq!(dirs, [PathBuf::from("/certs.d")]);
    let checks = configuration(&report, &setup(&dirs));
    assert_eq!(statuses(&checks), [Status::Fail, Status::Fail]);
    let text = text(&checks);
    assert!(
        text.contains("fix: add config_path = \"/certs.d\" under [plugins.\"io.containerd.grpc.v1.cri\".registry]"),
        "{text}"
    );
    assert!(
        text.contains(
            "fix: set discard_unpacked_layers = false under [plugins.\"io.containerd.grpc.v1.cri\".containerd]"
        ),
        "{text}"
    );

    let report = no_file(
        Setting::Known { value: Some("/etc/containerd/certs.d".into()), source: ConfigSource::CriStatus },
        Setting::Unknown(vec!["no answer".into()]),
    );
    let dirs = hosts_dirs(&report, Path::new("/certs.d"));
    assert_eq!(dirs, [PathBuf::from("/etc/containerd/certs.d")]);
    let checks = configuration(&report, &setup(&dirs));
    assert_eq!(statuses(&checks), [Status::Ok, Status::Warn]);
    assert_eq!(checks[0].fix, None);
    assert_eq!(checks[1].to_string(), "[warn] cannot tell whether discard_unpacked_layers is on (no answer)\n       fix: pass containerd's config file with --containerd-config");
}
