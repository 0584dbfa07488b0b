//! Rendering one `hosts.toml`, byte for byte as Spegel writes it.
//!
//! ```toml
//! server = 'https://registry-1.docker.io'
//!
//! [host.'http://10.0.0.7:5000']
//! capabilities = ['pull', 'resolve']
//! dial_timeout = '200ms'
//! ```
//!
//! Literal (single-quoted) strings, a blank line before each `[host]` table,
//! no `[host]` header and no newline at the end, as Spegel's
//! `AddMirrorConfiguration` produces, so an operator switching sees the same
//! file. With `prepend_existing`, the `[host]` tables of the file that was
//! there before follow ours unchanged (comments and quoting kept, which Spegel
//! does not do), and so do its top-level settings for the server (`ca`,
//! `skip_verify`, …) when its `server` is the same upstream as ours.
//!
//! With an IPv6 mirror (a `]` in a host's key) no one file suits every
//! containerd ([`Dialect`]): for 1.x the hosts are written as dotted keys
//! under one `[host]` table (see `dotted_hosts`), the one form it accepts for
//! them that keeps their order; for 2.x, which reads hosts only from table
//! headers, the header spells the brackets as escapes (see `escaped_key`).
//!
//! Implementation notes: the document is built with `toml_edit`; values and
//! keys are parsed from literal-string text so their quoting survives.
//! Tables carry no position, so they print in insertion order: our mirrors
//! first, then the existing hosts with their own sub-tables.

use toml_edit::{DocumentMut, Item, Key, Table, Value};

use crate::duration::DialTimeout;
use crate::mirror::Mirror;
use crate::target::Target;

/// What every generated `hosts.toml` says about the mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsOptions {
    /// The mirrors, in the order containerd should try them.
    pub mirrors: Vec<Mirror>,
    /// Whether mirrors may resolve tags (`capabilities` gets `resolve`).
    pub resolve_tags: bool,
    /// `dial_timeout` for every mirror; zero writes none.
    pub dial_timeout: DialTimeout,
    /// How the containerd that reads the files parses a host with an IPv6 literal.
    pub dialect: Dialect,
}

/// Which containerd reads the files, where it matters: for a host whose URL
/// holds an IPv6 literal (`http://[fd00::7]:5000`). Other files are the same
/// for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// containerd 1.x: refuses the whole file when a table header's key holds
    /// a `]`, even quoted, and then pulls without any mirror; reads hosts
    /// written as dotted keys under `[host]`, in order.
    #[default]
    Containerd1,
    /// containerd 2.x: reads hosts only from table headers of their own
    /// (dotted keys under `[host]` are ignored), in order.
    Containerd2,
}

/// A `hosts.toml` that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    message: String,
}

impl HostsOptions {
    fn capabilities(&self) -> &'static str {
        if self.resolve_tags {
            "['pull', 'resolve']"
        } else {
            "['pull']"
        }
    }
}

/// Parses an existing `hosts.toml`, with a one-line error naming the line.
pub fn parse_existing(text: &str) -> Result<DocumentMut, ParseError> {
    text.parse::<DocumentMut>().map_err(|e| {
        let line = e.span().map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let message = e.message().trim().replace('\n', "; ");
        ParseError {
            message: match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            },
        }
    })
}

/// The `hosts.toml` for `target`, with `existing`'s hosts after ours when given.
pub fn render(target: &Target, options: &HostsOptions, existing: Option<&DocumentMut>) -> String {
    let mut doc = DocumentMut::new();
    let server = target.server();
    if let Some(server) = &server {
        doc.insert("server", Item::Value(literal(server)));
    }
    let mut hosts = Table::new();
    hosts.set_implicit(true);
    for (i, mirror) in options.mirrors.iter().enumerate() {
        let mut table = Table::new();
        table.insert("capabilities", Item::Value(parse_value(options.capabilities())));
        if !options.dial_timeout.is_zero() {
            table.insert("dial_timeout", Item::Value(literal(options.dial_timeout.as_str())));
        }
        table.decor_mut().set_prefix(if i == 0 && server.is_none() { "" } else { "\n" });
        hosts.insert_formatted(&literal_key(mirror.as_str()), Item::Table(table));
    }
    if let Some(existing) = existing {
        if same_server(existing, server.as_deref()) {
            for (name, _) in existing.as_table().iter() {
                if name == "server" || name == "host" {
                    continue;
                }
                if let Some((key, item)) = existing.as_table().get_key_value(name) {
                    doc.insert_formatted(key, unpositioned(item.clone()));
                }
            }
        }
        append_existing_hosts(&mut hosts, existing, &options.mirrors);
    }
    if hosts.iter().any(|(name, _)| name.contains(']')) {
        hosts = match options.dialect {
            Dialect::Containerd1 => dotted_hosts(hosts),
            Dialect::Containerd2 => escaped_hosts(hosts),
        };
    }
    doc.insert("host", Item::Table(hosts));
    let mut text = doc.to_string();
    text.truncate(text.trim_end().len());
    text
}

/// Adds the `[host."…"]` tables of `existing` after ours, skipping our own mirrors.
fn append_existing_hosts(hosts: &mut Table, existing: &DocumentMut, ours: &[Mirror]) {
    let Some(theirs) = existing.get("host").and_then(Item::as_table) else { return };
    for (name, _) in theirs.iter() {
        let normalised = name.trim_end_matches('/').to_ascii_lowercase();
        if ours.iter().any(|m| m.as_str() == normalised) {
            continue;
        }
        let Some((key, item)) = theirs.get_key_value(name) else { continue };
        let mut item = unpositioned(item.clone());
        if let Item::Table(table) = &mut item {
            let prefix = table.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_owned();
            if !prefix.starts_with('\n') {
                table.decor_mut().set_prefix(format!("\n{prefix}"));
            }
        }
        hosts.insert_formatted(key, item);
    }
}

/// `hosts` as one `[host]` table whose hosts are dotted keys, a line per setting:
///
/// ```toml
/// [host]
/// 'http://[fd00::7]:5000'.capabilities = ['pull', 'resolve']
/// 'http://[fd00::7]:5000'.dial_timeout = '200ms'
/// ```
///
/// containerd 1.6's TOML parser refuses a `]` inside a table header's key,
/// even quoted, so `[host.'http://[fd00::7]:5000']` makes it reject the whole
/// file and pull without mirrors; in a key of a key/value line it is
/// accepted. containerd orders hosts by the line each starts on: dotted keys
/// keep one line per host start, in order (inline tables would not: they all
/// count as starting where `[host]` does). Used only when some host needs
/// it, so every other file stays byte for byte as Spegel writes it.
fn dotted_hosts(hosts: Table) -> Table {
    fn dot(table: &mut Table) {
        table.set_dotted(true);
        for (mut key, item) in table.iter_mut() {
            // Indentation from an existing file's sub-tables would now sit mid-line.
            key.leaf_decor_mut().clear();
            key.dotted_decor_mut().clear();
            if let Item::Table(inner) = item {
                dot(inner);
            }
        }
    }
    let mut out = Table::new();
    out.decor_mut().set_prefix("\n");
    for (key, item) in hosts.into_iter() {
        let item = match item {
            Item::Table(mut table) => {
                dot(&mut table);
                Item::Table(table)
            }
            other => other,
        };
        out.insert_formatted(&literal_key(&key), item);
    }
    out
}

/// `hosts` with each key that holds a bracket spelled with escapes
/// (`[host."http://\u005Bfd00::7\u005D:5000"]`), the rest as they were.
fn escaped_hosts(hosts: Table) -> Table {
    let mut out = Table::new();
    out.set_implicit(true);
    for (name, _) in hosts.iter() {
        let Some((key, item)) = hosts.get_key_value(name) else { continue };
        let key = if name.contains(['[', ']']) { escaped_key(name) } else { key.clone() };
        out.insert_formatted(&key, item.clone());
    }
    out
}

/// Whether `existing` names the same upstream server as ours (both none for `_default`).
fn same_server(existing: &DocumentMut, ours: Option<&str>) -> bool {
    let theirs = existing.get("server").and_then(Item::as_str);
    let norm = |s: &str| {
        let s = s.trim().trim_end_matches('/').to_ascii_lowercase();
        let s = s.strip_suffix("/v2").unwrap_or(&s).to_owned();
        if s.contains("://") {
            s
        } else {
            format!("https://{s}")
        }
    };
    match (theirs, ours) {
        (None, None) => true,
        (Some(a), Some(b)) => norm(a) == norm(b),
        _ => false,
    }
}

/// `item` with every table position cleared, so it prints where it is inserted.
fn unpositioned(mut item: Item) -> Item {
    fn clear(table: &mut Table) {
        table.set_position(None);
        for (_, item) in table.iter_mut() {
            match item {
                Item::Table(t) => clear(t),
                Item::ArrayOfTables(a) => a.iter_mut().for_each(clear),
                _ => {}
            }
        }
    }
    match &mut item {
        Item::Table(t) => clear(t),
        Item::ArrayOfTables(a) => a.iter_mut().for_each(clear),
        _ => {}
    }
    item
}

/// A single-quoted TOML string. Callers pass validated URLs and durations,
/// which never hold a quote or a newline.
fn literal(s: &str) -> Value {
    debug_assert!(!s.contains(['\'', '\n']));
    parse_value(&format!("'{s}'"))
}

fn parse_value(text: &str) -> Value {
    let mut value = text.parse::<Value>().unwrap_or_else(|_| Value::from(text));
    value.decor_mut().clear();
    value
}

fn literal_key(s: &str) -> Key {
    format!("'{s}'").parse::<Key>().unwrap_or_else(|_| Key::new(s))
}

/// `s` double-quoted with its brackets as `\u005B` and `\u005D`: the same
/// key to a TOML reader, and no `]` in the text of a table header.
fn escaped_key(s: &str) -> Key {
    let escaped = s.replace('[', "\\u005B").replace(']', "\\u005D");
    format!("\"{escaped}\"").parse::<Key>().unwrap_or_else(|_| Key::new(s))
}
