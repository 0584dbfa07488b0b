//! How containerd's CRI plugin pulls images, and so how it reads `config_path`.
//!
//! Up to containerd 2.0, CRI always pulls with its own client (`client.Pull`),
//! which splits `config_path` into a list of directories (`filepath.SplitList`)
//! and tries them in order. From 2.1 on it pulls through the transfer service,
//! which takes `config_path` as one directory (`registry.WithHostDir` →
//! `config.HostDirFromRoot`): with a list it finds no directory for any
//! registry and ignores every `hosts.toml`, without a word in its log
//! (containerd issues #12415 and #12636). CRI keeps the local pull when
//! `use_local_image_pull = true`, or when its image config holds an option the
//! transfer service does not support: then it sets `use_local_image_pull`
//! itself and logs a warning (`CheckLocalImagePullConfigs`,
//! `internal/cri/config/config.go`, the same list from v2.1.0 to v2.2.x).
//! [`Fallback`] reads that list from the configuration file; the running
//! containerd reports none of it.
//!
//! containerd 2.2 also fills an unset `config_path` with
//! [`DEFAULT_CONFIG_PATH`], a list, unless the deprecated `registry.mirrors`
//! is set.

use std::fmt;
use std::path::PathBuf;

use toml_edit::Item;

use super::Images;

/// `config_path` in containerd 2.2 and later when the configuration sets none (Linux).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/containerd/certs.d:/etc/docker/certs.d";

/// containerd's version, as its Version service reports it (`v2.1.9`, `2.1.9+unknown`, `1.6.20~ds1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// The major version.
    pub major: u64,
    /// The minor version.
    pub minor: u64,
    /// The patch version (0 when not given).
    pub patch: u64,
}

/// What a configuration file says about CRI's pull path (read for containerd 2.1 and later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// `use_local_image_pull`, set in the file.
    pub use_local_image_pull: bool,
    /// The first option (in containerd's order) that makes CRI keep the local pull by itself.
    pub fallback: Option<Fallback>,
    /// Whether the deprecated `registry.mirrors` is set (containerd 2.2 then leaves an unset `config_path` unset).
    pub registry_mirrors: bool,
}

/// An option the transfer service does not support, so CRI keeps the local pull when it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// `disable_snapshot_annotations = false` (its Linux default is `true`).
    SnapshotAnnotations,
    /// `discard_unpacked_layers = true`.
    DiscardUnpackedLayers,
    /// A non-empty `registry.mirrors` (deprecated).
    RegistryMirrors,
    /// A non-empty `registry.configs` (deprecated).
    RegistryConfigs,
    /// A non-empty `registry.auths` (deprecated).
    RegistryAuths,
    /// `max_concurrent_downloads` other than 3.
    MaxConcurrentDownloads(i64),
    /// `image_pull_with_sync_fs = true`.
    ImagePullWithSyncFs,
}

/// How CRI pulls images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullPath {
    /// CRI's own pull, which tries each directory of a `config_path` list in turn.
    Local(Local),
    /// The transfer service, which reads `config_path` as one directory.
    Transfer,
}

/// Why CRI pulls locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// containerd before 2.1 has no other way.
    Only,
    /// `use_local_image_pull = true`.
    UseLocalImagePull,
    /// An option the transfer service does not support.
    Fallback(Fallback),
}

impl Version {
    /// Reads `v2.1.9`, `2.1.9+unknown`, `1.6.20~ds1`, `2.2.0-rc.1`; `None` without a major and minor.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let end = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
        let mut parts = text[..end].split('.').map(str::parse::<u64>);
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(Self { major, minor, patch })
    }

    /// Whether this is `major.minor` or later.
    pub fn at_least(&self, major: u64, minor: u64) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Whether CRI pulls through the transfer service by default (2.1 and later).
    pub fn has_transfer_pull(&self) -> bool {
        self.at_least(2, 1)
    }

    /// Whether an unset `config_path` means [`DEFAULT_CONFIG_PATH`] (2.2 and later).
    pub fn defaults_config_path(&self) -> bool {
        self.at_least(2, 2)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl fmt::Display for Fallback {
    /// As the option reads in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::SnapshotAnnotations => f.write_str("disable_snapshot_annotations = false"),
            Fallback::DiscardUnpackedLayers => f.write_str("discard_unpacked_layers = true"),
            Fallback::RegistryMirrors => f.write_str("registry.mirrors"),
            Fallback::RegistryConfigs => f.write_str("registry.configs"),
            Fallback::RegistryAuths => f.write_str("registry.auths"),
            Fallback::MaxConcurrentDownloads(n) => write!(f, "max_concurrent_downloads = {n}"),
            Fallback::ImagePullWithSyncFs => f.write_str("image_pull_with_sync_fs = true"),
        }
    }
}

impl PullOptions {
    /// How containerd `version` pulls with these options.
    pub fn path(&self, version: Version) -> PullPath {
        if !version.has_transfer_pull() {
            PullPath::Local(Local::Only)
        } else if self.use_local_image_pull {
            PullPath::Local(Local::UseLocalImagePull)
        } else if let Some(fallback) = &self.fallback {
            PullPath::Local(Local::Fallback(fallback.clone()))
        } else {
            PullPath::Transfer
        }
    }
}

/// The directories of a `config_path`, in the order containerd's local pull tries them.
///
/// Empty entries are left out: containerd would look for them relative to its working directory.
pub fn config_path_dirs(config_path: &str) -> Vec<PathBuf> {
    std::env::split_paths(config_path).filter(|p| !p.as_os_str().is_empty()).collect()
}

/// The pull options a configuration file sets.
pub(super) fn from_file(images: &Images<'_>) -> PullOptions {
    let flag = |item: Option<&Item>| item.and_then(Item::as_bool);
    let registry = images.top("registry");
    let filled =
        |key: &str| registry.and_then(|r| r.get(key)).and_then(Item::as_table_like).is_some_and(|t| !t.is_empty());
    // containerd's order, so the one named is the one its log names.
    let fallback = [
        (flag(images.containerd("disable_snapshot_annotations")) == Some(false))
            .then_some(Fallback::SnapshotAnnotations),
        (flag(images.containerd("discard_unpacked_layers")) == Some(true)).then_some(Fallback::DiscardUnpackedLayers),
        filled("mirrors").then_some(Fallback::RegistryMirrors),
        filled("configs").then_some(Fallback::RegistryConfigs),
        filled("auths").then_some(Fallback::RegistryAuths),
        images
            .top("max_concurrent_downloads")
            .and_then(Item::as_integer)
            .filter(|n| *n != 3)
            .map(Fallback::MaxConcurrentDownloads),
        (flag(images.top("image_pull_with_sync_fs")) == Some(true)).then_some(Fallback::ImagePullWithSyncFs),
    ]
    .into_iter()
    .flatten()
    .next();
    PullOptions {
        use_local_image_pull: flag(images.own("use_local_image_pull")) == Some(true),
        fallback,
        registry_mirrors: filled("mirrors"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use toml_edit::DocumentMut;

    use super::*;

    fn options(text: &str) -> PullOptions {
        let doc: DocumentMut = text.parse().unwrap();
        from_file(&Images::of(&doc))
    }

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_as_containerd_reports_them() {
        assert_eq!(v("v2.1.9"), Version { major: 2, minor: 1, patch: 9 });
        assert_eq!(v("2.1.9+unknown"), Version { major: 2, minor: 1, patch: 9 });
        assert_eq!(v("1.6.20~ds1"), Version { major: 1, minor: 6, patch: 20 });
        assert_eq!(v("2.2.0-rc.1"), Version { major: 2, minor: 2, patch: 0 });
        assert_eq!(v("2.1").to_string(), "2.1.0");
        assert_eq!(Version::parse("unknown"), None);
        assert_eq!(Version::parse("2"), None);
        assert!(!v("2.0.7").has_transfer_pull());
        assert!(v("2.1.0").has_transfer_pull());
        assert!(v("3.0.0").has_transfer_pull());
        assert!(!v("2.1.9").defaults_config_path());
        assert!(v("2.2.1").defaults_config_path());
    }

    #[test]
    fn transfer_service_from_2_1_unless_local_pull_is_asked_for_or_forced() {
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.images']\n";
        let plain = options(v3);
        assert_eq!(plain, PullOptions::default());
        assert_eq!(plain.path(v("1.6.20")), PullPath::Local(Local::Only));
        assert_eq!(plain.path(v("2.0.7")), PullPath::Local(Local::Only));
        assert_eq!(plain.path(v("2.1.9")), PullPath::Transfer);
        assert_eq!(plain.path(v("2.2.1")), PullPath::Transfer);

        let local = options(&format!("{v3}use_local_image_pull = true\n"));
        assert_eq!(local.path(v("2.1.9")), PullPath::Local(Local::UseLocalImagePull));
        assert_eq!(options(&format!("{v3}use_local_image_pull = false\n")).path(v("2.1.9")), PullPath::Transfer);

        // The defaults containerd writes with `config default` change nothing.
        let defaults = "disable_snapshot_annotations = true\ndiscard_unpacked_layers = false\n\
            max_concurrent_downloads = 3\nimage_pull_with_sync_fs = false\n\
            [plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/etc/containerd/certs.d'\n";
        assert_eq!(options(&format!("{v3}{defaults}")).path(v("2.1.9")), PullPath::Transfer);

        for (setting, fallback, named) in [
            ("disable_snapshot_annotations = false", Fallback::SnapshotAnnotations, None),
            ("discard_unpacked_layers = true", Fallback::DiscardUnpackedLayers, None),
            ("max_concurrent_downloads = 10", Fallback::MaxConcurrentDownloads(10), None),
            ("image_pull_with_sync_fs = true", Fallback::ImagePullWithSyncFs, None),
            (
                "registry.mirrors.'docker.io'.endpoint = ['http://m']",
                Fallback::RegistryMirrors,
                Some("registry.mirrors"),
            ),
            (
                "registry.configs.'r.io'.tls.insecure_skip_verify = true",
                Fallback::RegistryConfigs,
                Some("registry.configs"),
            ),
            ("registry.auths.'r.io'.username = 'u'", Fallback::RegistryAuths, Some("registry.auths")),
        ] {
            let found = options(&format!("{v3}{setting}\n"));
            assert_eq!(found.path(v("2.1.9")), PullPath::Local(Local::Fallback(fallback.clone())), "{setting}");
            assert_eq!(fallback.to_string(), named.unwrap_or(setting));
        }
        // An empty table is no setting at all.
        assert_eq!(options(&format!("{v3}[plugins.'io.containerd.cri.v1.images'.registry.mirrors]\n")).fallback, None);
    }

    #[test]
    fn a_version_2_file_is_read_as_containerd_2_migrates_it() {
        let v2 = r#"version = 2
[plugins."io.containerd.grpc.v1.cri"]
  max_concurrent_downloads = 3
  [plugins."io.containerd.grpc.v1.cri".containerd]
    disable_snapshot_annotations = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
"#;
        assert_eq!(options(v2).path(v("2.1.9")), PullPath::Transfer);
        let annotations = v2.replace("disable_snapshot_annotations = true", "disable_snapshot_annotations = false");
        assert_eq!(options(&annotations).fallback, Some(Fallback::SnapshotAnnotations));
        // use_local_image_pull is not migrated: only the images plugin's table has it.
        let local = format!("{v2}[plugins.\"io.containerd.cri.v1.images\"]\n  use_local_image_pull = true\n");
        assert_eq!(options(&local).path(v("2.1.9")), PullPath::Local(Local::UseLocalImagePull));
        let ignored = v2.replace("max_concurrent_downloads = 3", "use_local_image_pull = true");
        assert_eq!(options(&ignored).path(v("2.1.9")), PullPath::Transfer);
    }

    #[test]
    fn config_path_lists_split_like_containerd() {
        assert_eq!(config_path_dirs("/a"), [PathBuf::from("/a")]);
        assert_eq!(
            config_path_dirs(DEFAULT_CONFIG_PATH),
            [PathBuf::from("/etc/containerd/certs.d"), PathBuf::from("/etc/docker/certs.d")]
        );
        assert_eq!(config_path_dirs("/a::/b:"), [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(config_path_dirs("").is_empty());
    }
}
