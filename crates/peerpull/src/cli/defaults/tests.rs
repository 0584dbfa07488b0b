//! One source of truth for defaults, checked flag by flag: the default clap
//! has (read through its `Command` API, in every subcommand that has the
//! flag), the config type's default, the value the Helm chart's
//! `values.yaml` sets (and the Default column of the chart README's values
//! table), and the default the configuration reference
//! (`docs/configuration.md`) states must all agree.
//!
//! Each row of [`flags`] says where a flag's default lives. Where the chart
//! deploys another value on purpose, the row is an exception with its
//! reason, and is checked to still be one. Every flag with a default in
//! any subcommand needs a row, and so does every flag the reference states a
//! default for, so a new default cannot slip past.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, ValueEnum};
use peerpull_hosts::DialTimeout;
use peerpull_mirror::UpstreamFallback;
use peerpull_oci::Mirrored;
use serde_norway::Value;

use super::super::{parse_bytes, parse_duration, Cli, PrivateImagesArg, TagResolutionArg};
use super::{limits, mirror, preheat, routing};

/// How a flag's values compare: parsed as the flag parses them.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Bool,
    Count,
    Addr,
    /// `4Gi`, `32Mi`, `0`.
    Bytes,
    /// Go syntax, more than zero.
    Duration,
    /// Go syntax, zero allowed (`--dial-timeout`).
    DialTimeout,
}

/// Where the config types hold a flag's default.
#[derive(Debug)]
enum Config {
    /// The config type's default in the flag's syntax (`None`: unset).
    Is(Option<String>),
    /// No config type holds this setting: the flag's own default is the truth.
    CliOnly(&'static str),
}

/// What the Helm chart deploys for a flag.
#[derive(Debug)]
enum Chart {
    /// The value of this `values.yaml` key (dotted path).
    Value(&'static str),
    /// `service.listenAddress` with the port `service.<name>.port`.
    Listen(&'static str),
    /// A value the DaemonSet template passes as it is (`--flag=value`), not a chart value.
    Template,
    /// The chart deploys another value on purpose: the key's value must differ from the flag's default.
    Exception { key: &'static str, reason: &'static str },
    /// No chart value: the daemon's default applies (or the chart never runs the subcommand).
    Absent,
}

/// Whether the configuration reference states the flag's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readme {
    States,
    Silent,
}

#[derive(Debug)]
struct Flag {
    long: &'static str,
    kind: Kind,
    config: Config,
    chart: Chart,
    readme: Readme,
}

/// Every flag with a default, and the flags without one whose chart value matters.
fn flags() -> Vec<Flag> {
    use Chart::{Absent, Exception, Listen, Template, Value};
    use Config::{CliOnly, Is};
    use Readme::{Silent, States};
    let flag = |long, kind, config, chart, readme| Flag { long, kind, config, chart, readme };
    let is = |value: String| Is(Some(value));
    let (mirror, routing, limits, preheat) = (mirror(), routing(), limits(), preheat());
    let tag_resolution = TagResolutionArg::from(mirror.tag_resolution).to_possible_value().unwrap();
    let private_images = PrivateImagesArg::from(mirror.private_images.mode).to_possible_value().unwrap();
    let no_node_default = "peerpull_node::Config has no Default; the flag's default is the truth";
    vec![
        flag(
            "containerd-socket",
            Kind::Text,
            CliOnly("the store's containerd Config has no Default; the flag names containerd's own default socket"),
            Value("peerpull.containerdSock"),
            States,
        ),
        flag(
            "containerd-namespace",
            Kind::Text,
            is(peerpull_store::containerd::DEFAULT_NAMESPACE.to_owned()),
            Value("peerpull.containerdNamespace"),
            States,
        ),
        flag(
            "containerd-content-path",
            Kind::Text,
            Is(peerpull_store::containerd::Config::new("").content_path.map(|p| p.display().to_string())),
            Exception {
                key: "peerpull.containerdContentPath",
                reason: "the chart knows where containerd keeps its content on the node and mounts it read-only, \
                         so it turns the direct read path on (several times the gRPC path's throughput); the CLI \
                         cannot assume containerd's root directory and reads over gRPC unless told",
            },
            Silent,
        ),
        flag("registry-addr", Kind::Addr, is(routing.mirror_addr.to_string()), Listen("registry"), States),
        flag("router-addr", Kind::Addr, is(routing.listen.to_string()), Listen("router"), States),
        flag("metrics-addr", Kind::Addr, CliOnly(no_node_default), Listen("metrics"), States),
        flag("data-dir", Kind::Text, is(routing.data_dir.display().to_string()), Value("peerpull.dataDir"), States),
        flag(
            "mirrored-registry",
            Kind::Text,
            Is(match &mirror.mirrored {
                Mirrored::All => None,
                Mirrored::Only(list) => Some(list.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
            }),
            Value("peerpull.mirroredRegistries"),
            Silent,
        ),
        flag(
            "psk-file",
            Kind::Text,
            Is(routing.psk.as_ref().map(|_| "a key".to_owned())),
            Exception {
                key: "peerpull.psk.enabled",
                reason: "the chart generates the cluster's pre-shared key (a Secret kept across upgrades) and passes \
                         it to every node, so its clusters are private; a key file cannot have a default",
            },
            Silent,
        ),
        flag("resolve-tags", Kind::Bool, is(mirror.resolve_tags.to_string()), Value("peerpull.resolveTags"), States),
        flag(
            "tag-resolution",
            Kind::Text,
            is(tag_resolution.get_name().to_owned()),
            Value("peerpull.tagResolution"),
            States,
        ),
        flag(
            "tag-timeout",
            Kind::Duration,
            is(format!("{}ms", mirror.tag_timeout.as_millis())),
            Value("peerpull.tagTimeout"),
            States,
        ),
        flag(
            "upstream-fallback",
            Kind::Bool,
            is(peerpull_mirror::Config::UPSTREAM_FALLBACK.to_string()),
            Value("peerpull.upstreamFallback"),
            States,
        ),
        flag(
            "spool-max-bytes",
            Kind::Bytes,
            is(UpstreamFallback::new(PathBuf::new()).spool_max_bytes.to_string()),
            Value("peerpull.spoolMaxBytes"),
            States,
        ),
        flag(
            "max-upload-rate",
            Kind::Bytes,
            is(mirror.max_upload_rate.to_string()),
            Value("peerpull.maxUploadRate"),
            States,
        ),
        flag(
            "multi-source-min-bytes",
            Kind::Bytes,
            is(mirror.multi_source_min_bytes.to_string()),
            Value("peerpull.multiSourceMinBytes"),
            States,
        ),
        flag("relay-fanout", Kind::Count, is(mirror.relay_fanout.to_string()), Value("peerpull.relayFanout"), States),
        flag(
            "private-images",
            Kind::Text,
            is(private_images.get_name().to_owned()),
            Value("peerpull.privateImages"),
            States,
        ),
        flag(
            "private-grace",
            Kind::Duration,
            is(format!("{}h", mirror.private_images.grace.as_secs() / 3600)),
            Value("peerpull.privateGrace"),
            States,
        ),
        flag("preheat-replicas", Kind::Count, is(preheat.replicas.to_string()), Value("peerpull.preheat.replicas"), States),
        flag(
            "preheat-interval",
            Kind::Duration,
            is(format!("{}s", preheat.interval.as_secs())),
            Value("peerpull.preheat.interval"),
            States,
        ),
        flag(
            "max-peer-uploads",
            Kind::Count,
            is(mirror.max_peer_uploads.to_string()),
            Value("peerpull.maxPeerUploads"),
            States,
        ),
        flag("max-connections", Kind::Count, is(limits.max_connections.to_string()), Absent, States),
        flag("max-connections-per-ip", Kind::Count, is(limits.max_connections_per_ip.to_string()), Absent, States),
        flag("admin-socket", Kind::Text, is(peerpull_admin::DEFAULT_SOCKET.to_owned()), Template, States),
        flag("admin-addr", Kind::Addr, CliOnly(no_node_default), Value("peerpull.admin.addr"), Silent),
        flag("debug-web", Kind::Bool, CliOnly(no_node_default), Value("peerpull.debugWeb"), States),
        flag("log-level", Kind::Text, CliOnly("logging is the binary's own"), Value("peerpull.logLevel"), States),
        flag(
            "log-format",
            Kind::Text,
            CliOnly("logging is the binary's own"),
            Exception {
                key: "peerpull.logFormat",
                reason: "in a cluster the logs go to a collector, which reads JSON; at a terminal text reads better",
            },
            States,
        ),
        flag(
            "config-path",
            Kind::Text,
            is(peerpull_hosts::CONTAINERD_CONFIG_PATH.to_owned()),
            Value("peerpull.containerdRegistryConfigPath"),
            Silent,
        ),
        flag(
            "dial-timeout",
            Kind::DialTimeout,
            is(DialTimeout::default().as_str().to_owned()),
            Value("peerpull.dialTimeout"),
            Silent,
        ),
        flag(
            "prepend-existing",
            Kind::Bool,
            CliOnly("what `configure` does with existing files"),
            Value("peerpull.prependExisting"),
            Silent,
        ),
        flag("containerd-config", Kind::Text, CliOnly("what `doctor` reads"), Absent, Silent),
        flag("output", Kind::Text, CliOnly("how `status` and `locate` print"), Absent, Silent),
        flag(
            "limit",
            Kind::Count,
            CliOnly("`locate` asks the node for this many providers per blob (the node's own default for 0 is private to peerpull-node)"),
            Absent,
            Silent,
        ),
    ]
}

impl Kind {
    /// `text` as the flag parses it, in a form to compare.
    fn parse(self, text: &str) -> Result<String, String> {
        let text = text.trim();
        match self {
            Kind::Text => Ok(text.to_owned()),
            Kind::Bool => text.parse::<bool>().map(|b| b.to_string()).map_err(|e| e.to_string()),
            Kind::Count => text.parse::<u64>().map(|n| n.to_string()).map_err(|e| e.to_string()),
            Kind::Addr => text.parse::<SocketAddr>().map(|a| a.to_string()).map_err(|e| e.to_string()),
            Kind::Bytes => parse_bytes(text).map(|n| n.to_string()),
            Kind::Duration => parse_duration(text).map(|d| format!("{d:?}")),
            Kind::DialTimeout => {
                text.parse::<DialTimeout>().map(|d| format!("{:?}", d.duration())).map_err(|e| e.to_string())
            }
        }
    }

    /// The same for a value that may be unset.
    fn parse_opt(self, text: Option<&str>) -> Result<Option<String>, String> {
        text.map(|t| self.parse(t)).transpose()
    }
}

/// A value for a message: quoted, or `none`.
fn show(value: &Option<String>) -> String {
    value.as_ref().map_or_else(|| "none".to_owned(), |v| format!("{v:?}"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Each flag's defaults as clap has them, by subcommand: `--long` → (subcommand, default).
fn clap_defaults() -> BTreeMap<String, Vec<(String, Option<String>)>> {
    let mut cli = Cli::command();
    // Builds every subcommand, so that implied defaults (`false` of a switch) are filled in.
    cli.build();
    let mut out: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
    for sub in cli.get_subcommands() {
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            let values: Vec<String> =
                arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
            let default = (!values.is_empty()).then(|| values.join(","));
            out.entry(long.to_owned()).or_default().push((sub.get_name().to_owned(), default));
        }
    }
    out
}

/// A `values.yaml` value by dotted path, as text ("", `[]` and null: unset).
fn chart_value(values: &Value, key: &str) -> Result<Option<String>, String> {
    let value = key.split('.').try_fold(values, |v, part| v.get(part)).ok_or(format!("values.yaml has no {key}"))?;
    Ok(match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Sequence(list) if list.is_empty() => None,
        Value::Sequence(list) => Some(list.iter().map(yaml_text).collect::<Vec<_>>().join(",")),
        other => Some(yaml_text(other)),
    })
}

/// A scalar as the chart README's values table writes it (without quotes).
fn yaml_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Sequence(list) if list.is_empty() => "[]".to_owned(),
        Value::Null => "null".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The Default column of the chart README's row for `key`.
fn chart_readme_default(readme: &str, key: &str) -> Option<String> {
    let row = readme.lines().find(|l| l.starts_with(&format!("| `{key}` |")))?;
    let cell = row.split('|').nth(3)?.trim();
    let cell = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')).unwrap_or(cell);
    Some(cell.strip_prefix('"').and_then(|c| c.strip_suffix('"')).unwrap_or(cell).to_owned())
}

/// The value the DaemonSet template passes as `--long=value`, when it is not a template expression.
fn template_value(template: &str, long: &str) -> Option<String> {
    let prefix = format!("- --{long}=");
    template
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .find(|value| !value.contains("{{"))
        .map(str::to_owned)
}

/// The defaults the configuration reference's block states (its first code
/// block): `--long` → value (`# default VALUE…`, `# …, default VALUE…` or
/// `# VALUE (default) | …`).
fn readme_defaults(reference: &str) -> BTreeMap<String, String> {
    let block = reference.split("```").nth(1).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in block.lines() {
        let Some(rest) = line.strip_prefix("  --") else { continue };
        let Some((flag, comment)) = rest.split_once('#') else { continue };
        let long = flag.split_whitespace().next().unwrap_or_default().to_owned();
        let comment = comment.trim();
        let stated = if let Some((before, _)) = comment.split_once(" (default)") {
            before.rsplit(' ').next()
        } else if let Some(after) = comment.strip_prefix("default ").or(comment.split_once(", default ").map(|s| s.1)) {
            after.split_whitespace().next()
        } else {
            None
        };
        if let Some(value) = stated {
            out.insert(long, value.trim_end_matches([':', ';', ',']).to_owned());
        }
    }
    out
}

#[test]
fn each_default_is_the_same_everywhere() {
    let clap = clap_defaults();
    let values: Value = serde_norway::from_str(&read("charts/peerpull/values.yaml")).unwrap();
    let chart_readme = read("charts/peerpull/README.md");
    let template = read("charts/peerpull/templates/daemonset.yaml");
    let readme = readme_defaults(&read("docs/configuration.md"));
    let mut problems = Vec::new();
    let mut rows = BTreeSet::new();
    for flag in flags() {
        rows.insert(flag.long);
        for problem in check(&flag, &clap, &values, &chart_readme, &template, &readme) {
            problems.push(format!("--{}: {problem}", flag.long));
        }
    }
    for (long, uses) in &clap {
        if uses.iter().any(|(_, default)| default.is_some()) && !rows.contains(long.as_str()) {
            problems.push(format!("--{long} has a default but no row in `flags()`: say where its default lives"));
        }
    }
    for long in readme.keys() {
        if !rows.contains(long.as_str()) {
            problems.push(format!("--{long}: docs/configuration.md states a default but `flags()` has no row for it"));
        }
    }
    assert!(problems.is_empty(), "defaults disagree:\n{}", problems.join("\n"));
}

/// What disagrees with clap's default of `flag`, one line each.
fn check(
    flag: &Flag,
    clap: &BTreeMap<String, Vec<(String, Option<String>)>>,
    values: &Value,
    chart_readme: &str,
    template: &str,
    readme: &BTreeMap<String, String>,
) -> Vec<String> {
    let kind = flag.kind;
    let Some(uses) = clap.get(flag.long) else { return vec!["no subcommand has this flag (a stale row?)".into()] };
    let (first, cli) = &uses[0];
    let mut problems: Vec<String> = uses[1..]
        .iter()
        .filter(|(_, other)| other != cli)
        .map(|(sub, other)| format!("clap's default is {} in `{first}` but {} in `{sub}`", show(cli), show(other)))
        .collect();
    let want = match kind.parse_opt(cli.as_deref()) {
        Ok(want) => want,
        Err(e) => return vec![format!("clap's default {}: {e}", show(cli))],
    };
    let truth = match &flag.config {
        Config::Is(_) => "the config type's default is the truth",
        Config::CliOnly(why) => why,
    };
    // Whether `theirs`, parsed as the flag parses it, differs from clap's default.
    let differs = |what: &str, theirs: &Option<String>| -> Result<bool, String> {
        let parsed = kind.parse_opt(theirs.as_deref()).map_err(|e| format!("{what} is {}: {e}", show(theirs)))?;
        Ok(parsed != want)
    };
    // What is wrong when `theirs` is not clap's default.
    let same = |what: String, theirs: Result<Option<String>, String>| -> Option<String> {
        match theirs.and_then(|theirs| Ok((differs(&what, &theirs)?, theirs))) {
            Ok((false, _)) => None,
            Ok((true, theirs)) => {
                Some(format!("clap's default is {} but {what} is {} ({truth})", show(cli), show(&theirs)))
            }
            Err(e) => Some(e),
        }
    };
    if let Config::Is(config) = &flag.config {
        problems.extend(same("the config type's default".into(), Ok(config.clone())));
    }
    let mut documented = Vec::new();
    let mut chart_key = |key: &str| {
        documented.push(key.to_owned());
        chart_value(values, key)
    };
    match &flag.chart {
        Chart::Value(key) => problems.extend(same(format!("values.yaml {key}"), chart_key(key))),
        Chart::Listen(service) => {
            let ip = chart_key("service.listenAddress");
            let port = chart_key(&format!("service.{service}.port"));
            let addr = ip.and_then(|ip| Ok(format!("{}:{}", ip.unwrap_or_default(), port?.unwrap_or_default())));
            problems.extend(same(format!("values.yaml service.listenAddress:service.{service}.port"), addr.map(Some)));
        }
        Chart::Template => problems.extend(same(
            "what charts/peerpull/templates/daemonset.yaml passes".into(),
            Ok(template_value(template, flag.long)),
        )),
        Chart::Exception { key, reason } => {
            let what = format!("values.yaml {key}");
            match chart_key(key).and_then(|value| Ok((differs(&what, &value)?, value))) {
                Ok((true, _)) => {}
                Ok((false, value)) => problems.push(format!(
                    "{what} is {}, the flag's default, yet the row lists it as an exception ({reason}): \
                     make it a `Chart::Value` row",
                    show(&value)
                )),
                Err(e) => problems.push(e),
            }
        }
        Chart::Absent => {}
    }
    match (flag.readme, readme.get(flag.long)) {
        (Readme::States, Some(stated)) => {
            problems.extend(same("what docs/configuration.md states".into(), Ok(Some(stated.clone()))))
        }
        (Readme::States, None) => problems.push("docs/configuration.md states no default for it".into()),
        (Readme::Silent, Some(stated)) => {
            problems.push(format!("docs/configuration.md states the default {stated:?}: make the row `Readme::States`"))
        }
        (Readme::Silent, None) => {}
    }
    // The chart README's values table says what values.yaml sets.
    for key in documented {
        let raw = key.split('.').try_fold(values, |v, part| v.get(part)).map(yaml_text);
        let table = chart_readme_default(chart_readme, &key);
        if raw.is_some() && raw != table {
            problems.push(format!(
                "values.yaml sets {key}: {} but charts/peerpull/README.md's values table says {}",
                show(&raw),
                show(&table)
            ));
        }
    }
    problems
}

#[test]
fn defaults_read_as_users_write_them() {
    assert_eq!(super::bytes(4 << 30), "4Gi");
    assert_eq!(super::bytes(32 << 20), "32Mi");
    assert_eq!(super::bytes(1536), "1536");
    assert_eq!(super::bytes(0), "0");
    assert_eq!(super::duration(std::time::Duration::from_secs(2)), "2s");
    assert_eq!(super::duration(std::time::Duration::from_millis(1500)), "1500ms");
    assert_eq!(super::duration(std::time::Duration::from_nanos(1_000_001)), "1000001ns");
    for text in [super::spool_max_bytes(), super::multi_source_min_bytes(), super::max_upload_rate()] {
        assert!(parse_bytes(text).is_ok(), "{text}");
    }
    assert_eq!(parse_duration(super::tag_timeout()), Ok(mirror().tag_timeout));
}
