//! Golden-file tests of the `hosts.toml` renderer: one file per option.
//! Each expected file is byte for byte what Spegel writes for the same input.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use peerpull_hosts::{parse_existing, render, DialTimeout, Dialect, HostsOptions, Mirror, Target};
use peerpull_oci::Registry;

fn golden(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn options(mirrors: &[&str], resolve_tags: bool, dial_timeout: &str) -> HostsOptions {
    HostsOptions {
        mirrors: mirrors.iter().map(|m| m.parse::<Mirror>().unwrap()).collect(),
        resolve_tags,
        dial_timeout: dial_timeout.parse::<DialTimeout>().unwrap(),
        dialect: Dialect::Containerd1,
    }
}

fn registry(s: &str) -> Target {
    Target::Registry(s.parse::<Registry>().unwrap())
}

#[track_caller]
fn assert_golden(actual: &str, name: &str) {
    let expected = golden(name);
    assert_eq!(actual, expected, "\n--- actual ---\n{actual}\n--- expected ({name}) ---\n{expected}");
    parse_existing(actual).unwrap();
}

#[test]
fn docker_hub_goes_to_its_real_upstream() {
    let out = render(&registry("docker.io"), &options(&["http://10.0.0.7:5000"], true, "200ms"), None);
    assert_golden(&out, "docker.io.toml");
    let url_form = render(&registry("https://docker.io"), &options(&["http://10.0.0.7:5000/"], true, "200ms"), None);
    assert_eq!(url_form, out);
}

#[test]
fn plain_http_registry_keeps_its_scheme_and_mirrors_keep_their_order() {
    let opts = options(&["http://10.0.0.7:5000", "http://10.0.0.8:5000"], true, "200ms");
    assert_golden(&render(&registry("http://127.0.0.1:5000"), &opts, None), "plain-http-two-mirrors.toml");
}

#[test]
fn without_tag_resolution_capabilities_are_pull_only() {
    let out = render(&registry("ghcr.io"), &options(&["http://10.0.0.7:5000"], false, "200ms"), None);
    assert_golden(&out, "no-resolve-tags.toml");
}

#[test]
fn default_has_no_server_line() {
    let out = render(&Target::All, &options(&["http://10.0.0.7:5000"], true, "200ms"), None);
    assert_golden(&out, "default.toml");
}

#[test]
fn dial_timeout_is_written_as_given_and_zero_omits_it() {
    let out = render(&registry("docker.io"), &options(&["http://10.0.0.7:5000"], true, "1s"), None);
    assert_golden(&out, "dial-timeout-1s.toml");
    let out = render(&registry("docker.io"), &options(&["http://10.0.0.7:5000"], true, "0"), None);
    assert_golden(&out, "dial-timeout-0.toml");
}

#[test]
fn prepend_keeps_existing_hosts_after_ours() {
    let existing = parse_existing(&golden("existing-k3s.toml")).unwrap();
    let out = render(
        &registry("registry.example.com:5000"),
        &options(&["http://10.0.0.7:5000"], true, "200ms"),
        Some(&existing),
    );
    assert_golden(&out, "prepend-k3s.toml");
}

/// Spegel's own test case for prepending: the same hosts, in the same order,
/// after ours (Spegel also re-sorts keys inside each table; we keep them as written).
#[test]
fn prepend_matches_spegel_case() {
    let existing = "server = 'https://registry-1.docker.io'

[host.'http://example.com:30020']
capabilities = ['pull', 'resolve']
client = ['/etc/certs/xxx/client.cert', '/etc/certs/xxx/client.key']

[host.'http://bar.com:30020']
capabilities = ['pull', 'resolve']
client = ['/etc/certs/xxx/client.cert', '/etc/certs/xxx/client.key']";
    let out = render(
        &registry("docker.io"),
        &options(&["http://127.0.0.1:5000"], true, "200ms"),
        Some(&parse_existing(existing).unwrap()),
    );
    let expected = "server = 'https://registry-1.docker.io'

[host.'http://127.0.0.1:5000']
capabilities = ['pull', 'resolve']
dial_timeout = '200ms'

[host.'http://example.com:30020']
capabilities = ['pull', 'resolve']
client = ['/etc/certs/xxx/client.cert', '/etc/certs/xxx/client.key']

[host.'http://bar.com:30020']
capabilities = ['pull', 'resolve']
client = ['/etc/certs/xxx/client.cert', '/etc/certs/xxx/client.key']";
    assert_eq!(out, expected);
}

#[test]
fn malformed_existing_file_gives_a_one_line_error() {
    let err = parse_existing("[host.'x'\ncapabilities = [").unwrap_err().to_string();
    assert!(err.starts_with("line 1"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

/// containerd 1.6 refuses a `]` in a table header's key, so with an IPv6
/// mirror every host goes under `[host]` as dotted keys, in order, existing
/// hosts (and their sub-tables) after ours.
#[test]
fn ipv6_mirrors_are_written_one_line_per_host() {
    let out = render(
        &registry("docker.io"),
        &options(&["http://[fd00::7]:5000", "http://10.0.0.8:5000"], true, "200ms"),
        None,
    );
    assert_golden(&out, "ipv6.toml");
    assert!(!out.contains("[host."), "{out}");
    let existing = parse_existing(&golden("existing-k3s.toml")).unwrap();
    let out = render(
        &registry("registry.example.com:5000"),
        &options(&["http://fd00::7:5000"], true, "200ms"),
        Some(&existing),
    );
    assert_golden(&out, "prepend-ipv6.toml");
}

/// containerd 2 reads hosts only from table headers: an IPv6 mirror's header
/// spells its brackets as escapes, which read back as the URL; files without
/// one are the same for both.
#[test]
fn ipv6_mirrors_for_containerd_2_are_tables_with_escaped_brackets() {
    let v2 = |mirrors: &[&str]| HostsOptions { dialect: Dialect::Containerd2, ..options(mirrors, true, "200ms") };
    let out = render(&registry("docker.io"), &v2(&["http://[fd00::7]:5000", "http://10.0.0.8:5000"]), None);
    assert_golden(&out, "ipv6-containerd2.toml");
    assert!(!out.lines().any(|l| l.starts_with("[host.") && l.contains(']') && !l.ends_with(']')), "{out}");
    let read = parse_existing(&out).unwrap();
    let hosts: Vec<&str> = read["host"].as_table().unwrap().iter().map(|(k, _)| k).collect();
    assert_eq!(hosts, ["http://[fd00::7]:5000", "http://10.0.0.8:5000"], "the escapes read back as the URL");
    let plain = ["http://10.0.0.7:5000"];
    assert_eq!(
        render(&registry("docker.io"), &v2(&plain), None),
        render(&registry("docker.io"), &options(&plain, true, "200ms"), None)
    );
}
