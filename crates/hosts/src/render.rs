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
