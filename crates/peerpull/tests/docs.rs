//! The docs name only what peerpull has, and link only to files that exist,
//! so they cannot drift from it.
//!
//! Every page (README.md, docs/*.md, the chart's README): every `peerpull_…`
//! metric is registered in `crates/*/src` under that name (counters with
//! `_total`, as Prometheus exposes them), and every flag on a `peerpull
//! <command>` line of a code block (or, in the configuration reference, on
//! the flag lines under it) is in that command's `--help`.
//!
//! docs/migrating-from-spegel.md besides: every flag in a peerpull column is
//! in `peerpull run` or `configure --help`, and every chart value in a
//! peerpull column or a `helm … --set` of the peerpull chart is a key of
//! charts/peerpull/values.yaml.
//!
//! Implementation notes: the metric names come from the source, not from a
//! running node, which would need containerd. A registration is a
//! `.register("name", "help", x.clone())` call; `x`'s declared type says
//! whether it is a counter. Names given without the `peerpull_` prefix are
//! registered in a `sub_registry_with_prefix("peerpull")`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

const PAGE: &str = "docs/migrating-from-spegel.md";
const SUBCOMMANDS: [&str; 6] = ["run", "configure", "cleanup", "doctor", "status", "locate"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `--flags` that `peerpull <subcommand> --help` lists.
fn help_flags(subcommand: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_peerpull")).args([subcommand, "--help"]).env_clear().output().unwrap();
    assert!(out.status.success(), "peerpull {subcommand} --help failed: {out:?}");
    flags(&String::from_utf8(out.stdout).unwrap())
}

/// Every `--word` in `text`, without a value after `=`.
fn flags(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let name: String = rest[at + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            found.insert(format!("--{name}"));
        }
        rest = &rest[at + 2 + name.len()..];
    }
    found
}

/// The spans between backticks in `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Whether `path` (`a.b.c`) is a key of the chart's values.
fn has_value(values: &Value, path: &str) -> bool {
    path.split('.').try_fold(values, |node, key| node.get(key)).is_some()
}

/// The value path in a span such as `peerpull.zone.name: eu-1` or `a.b=1`.
fn value_path(span: &str) -> &str {
    span.split(['=', ':', ' ']).next().unwrap_or(span)
}

/// The markdown tables of `page`: each a header and its rows, split into cells.
fn tables(page: &str) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let cells =
        |line: &str| -> Vec<String> { line.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect() };
    let lines: Vec<&str> = page.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < lines.len() {
        let is_table = lines[i].trim_start().starts_with('|') && lines[i + 1].trim_start().starts_with("|---");
        if !is_table {
            i += 1;
            continue;
        }
        let header = cells(lines[i]);
        let mut rows = Vec::new();
        i += 2;
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            rows.push(cells(lines[i]));
            i += 1;
        }
        out.push((header, rows));
    }
    out
}

/// The command lines in fenced code blocks, `\` continuations joined.
fn command_lines(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    let mut current = String::new();
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let line = line.trim().trim_start_matches("$ ");
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        out.push(std::mem::take(&mut current));
    }
    out
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first string literal at the start of `text` (after whitespace) and what follows it.
fn string_literal(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start().strip_prefix('"')?;
    let end = text.find('"')?;
    Some((&text[..end], &text[end + 1..]))
}

/// Whether the metric bound to `ident` in `source` is a counter, judged by its declared type.
fn is_counter(source: &str, ident: &str, file: &Path) -> bool {
    let field = format!("{ident}: ");
    let binding = format!("let {ident} = ");
    let declaration = source.lines().map(str::trim).find(|line| {
        let line = line.strip_prefix("pub(crate) ").or_else(|| line.strip_prefix("pub ")).unwrap_or(line);
        (line.starts_with(&field) || line.starts_with(&binding))
            && ["Counter", "Gauge", "Histogram"].iter().any(|t| line.contains(t))
    });
    let declaration = declaration.unwrap_or_else(|| {
        panic!("{}: cannot find the type of the metric `{ident}`; teach this test the new form", file.display())
    });
    declaration.contains("Counter")
}

/// The exposed names of every metric registered in `crates/*/src`.
fn registered_metrics() -> BTreeSet<String> {
    let mut files = Vec::new();
    for krate in fs::read_dir(root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        let source = fs::read_to_string(&file).unwrap();
        let prefixed = source.contains("sub_registry_with_prefix(\"peerpull\")");
        let mut rest = source.as_str();
        while let Some(at) = rest.find(".register(") {
            rest = &rest[at + ".register(".len()..];
            let Some((name, after)) = string_literal(rest) else { continue };
            let Some(after) = after.trim_start().strip_prefix(',') else { continue };
            let Some((_help, after)) = string_literal(after) else { continue };
            let Some(end) = after.find(".clone()") else { continue };
            let ident = after[..end].rsplit(['.', ',', ' ', '\n']).next().unwrap_or_default();
            let mut full = if name.starts_with("peerpull_") {
                name.to_owned()
            } else {
                assert!(prefixed, "{}: `{name}` is registered without the peerpull prefix", file.display());
                format!("peerpull_{name}")
            };
            if is_counter(&source, ident, &file) {
                full.push_str("_total");
            }
            names.insert(full);
        }
    }
    names
}

/// The pages checked: the README, every page under docs/, the chart's README.
fn pages() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md"), root().join("charts/peerpull/README.md")];
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The flags each `peerpull <command>` line of `page`'s code blocks names,
/// with the flag lines (`--flag …`, indented in the page) under such a
/// line, as `(command, flag, line)`.
fn command_flags(page: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in command_lines(page) {
        if let Some(sub) = &current {
            if line.starts_with("--") {
                for flag in flags(line.split('#').next().unwrap_or_default()) {
                    out.push((sub.clone(), flag, line.clone()));
                }
                continue;
            }
        }
        current = None;
        let words: Vec<&str> = line.split_whitespace().map(|w| w.trim_matches('`')).collect();
        for (i, word) in words.iter().enumerate() {
            let is_peerpull = *word == "peerpull" || word.ends_with("/peerpull");
            let Some(sub) = words.get(i + 1).filter(|s| is_peerpull && SUBCOMMANDS.contains(s)) else { continue };
            let named = words[i + 2..].join(" ");
            // `--containerd-*`: a family of flags, not one.
            for flag in flags(named.split('#').next().unwrap_or_default()).into_iter().filter(|f| !f.ends_with('-')) {
                out.push(((*sub).to_owned(), flag, line.clone()));
            }
            current = Some((*sub).to_owned());
        }
    }
    out
}

#[test]
fn every_page_names_only_metrics_and_flags_peerpull_has() {
    let registered = registered_metrics();
    let mut helps = std::collections::BTreeMap::new();
    let mut missing = Vec::new();
    let (mut metrics_checked, mut flags_checked) = (0, 0);
    for path in pages() {
        let page = fs::read_to_string(&path).unwrap();
        let shown = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
        for name in metric_names(&page) {
            metrics_checked += 1;
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
            if !registered.contains(&name) && !registered.contains(base) {
                missing.push(format!("{shown}: metric `{name}` is not registered in crates/*/src"));
            }
        }
        for (sub, flag, line) in command_flags(&page) {
            flags_checked += 1;
            let known = helps.entry(sub.clone()).or_insert_with(|| help_flags(&sub));
            if !known.contains(&flag) && flag != "--help" {
                missing.push(format!("{shown}: `peerpull {sub}` has no flag `{flag}` (in: {})", line.trim()));
            }
        }
    }
    assert!(missing.is_empty(), "the docs name what peerpull does not have:\n  {}", missing.join("\n  "));
    // Pages whose code blocks or names stopped parsing would pass vacuously.
    assert!(metrics_checked >= 40, "only {metrics_checked} metric names found in the docs");
    assert!(flags_checked >= 40, "only {flags_checked} flags found on peerpull command lines");
}

/// Every `peerpull_…` name in `page`.
fn metric_names(page: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = page;
    while let Some(at) = rest.find("peerpull_") {
        let boundary = rest[..at].chars().next_back().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        // `peerpull_` alone is the prefix, not a name; `peerpull_mirror=debug` is a log filter.
        let log_filter = rest[at + name.len()..].starts_with('=');
        if boundary && !name.ends_with('_') && !log_filter {
            found.insert(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    found
}

#[test]
fn the_spegel_page_names_only_what_peerpull_has() {
    let page = fs::read_to_string(root().join(PAGE)).unwrap();
    let values: Value =
        serde_norway::from_str(&fs::read_to_string(root().join("charts/peerpull/values.yaml")).unwrap()).unwrap();
    let table_flags: BTreeSet<String> = help_flags("run").union(&help_flags("configure")).cloned().collect();
    let mut missing = Vec::new();
    let (mut keys_checked, mut flags_checked) = (0, 0);

    for (header, rows) in tables(&page) {
        let column = |want: &str| {
            header.iter().position(|h| {
                let h = h.to_lowercase();
                h.contains("peerpull") && h.contains(want)
            })
        };
        let (value_column, flag_column) = (column("value"), column("flag"));
        for row in &rows {
            if let Some(cell) = value_column.and_then(|c| row.get(c)) {
                for span in code_spans(cell) {
                    keys_checked += 1;
                    if !has_value(&values, value_path(span)) {
                        missing.push(format!("chart value `{span}` is not in charts/peerpull/values.yaml"));
                    }
                }
            }
            if let Some(cell) = flag_column.and_then(|c| row.get(c)) {
                for flag in flags(cell) {
                    flags_checked += 1;
                    if !table_flags.contains(&flag) {
                        missing
                            .push(format!("flag `{flag}` is in neither `peerpull run --help` nor `configure --help`"));
                    }
                }
            }
        }
    }

    for line in command_lines(&page) {
        let words: Vec<&str> = line.split_whitespace().map(|w| w.trim_matches('`')).collect();
        for (i, word) in words.iter().enumerate() {
            let is_peerpull = *word == "peerpull" || word.ends_with("/peerpull");
            let Some(sub) = words.get(i + 1).filter(|s| is_peerpull && SUBCOMMANDS.contains(s)) else { continue };
            let known = help_flags(sub);
            for flag in flags(&words[i + 2..].join(" ")) {
                flags_checked += 1;
                if !known.contains(&flag) {
                    missing.push(format!("`peerpull {sub}` has no flag `{flag}` (in: {line})"));
                }
            }
        }
        if line.contains("helm ") && line.contains("charts/peerpull") {
            for pair in words.windows(2).filter(|w| w[0] == "--set") {
                keys_checked += 1;
                if !has_value(&values, value_path(pair[1])) {
                    missing.push(format!("chart value `{}` is not in charts/peerpull/values.yaml", pair[1]));
                }
            }
        }
    }

    let registered = registered_metrics();
    let named = metric_names(&page);
    let unknown: Vec<&String> = named.difference(&registered).collect();
    for name in &unknown {
        missing.push(format!("metric `{name}` is not registered in crates/*/src"));
    }
    if !unknown.is_empty() {
        missing.push(format!("(registered: {})", registered.iter().cloned().collect::<Vec<_>>().join(", ")));
    }

    assert!(missing.is_empty(), "{PAGE} names what peerpull does not have:\n  {}", missing.join("\n  "));
    // A page whose tables stopped parsing would pass the checks above vacuously.
    assert!(keys_checked >= 50, "{PAGE}: only {keys_checked} chart values found in peerpull columns");
    assert!(flags_checked >= 25, "{PAGE}: only {flags_checked} flags found");
    assert!(named.len() >= 30, "{PAGE}: only {} peerpull metrics found", named.len());
}

#[test]
fn every_relative_link_in_the_docs_leads_to_a_file() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for path in pages() {
        let page = fs::read_to_string(&path).unwrap();
        let dir = path.parent().unwrap();
        for target in page.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            if !dir.join(file).exists() {
                broken.push(format!("{}: ({target})", path.strip_prefix(root()).unwrap_or(&path).display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to no file:\n  {}", broken.join("\n  "));
    assert!(checked >= 20, "only {checked} relative links found");
}
