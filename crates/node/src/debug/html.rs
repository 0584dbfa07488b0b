//! The debug page's HTML: pure functions from the admin API's messages to
//! markup, every value escaped. No script, no external asset: one
//! self-contained document per answer.
//!
//! Rows carry what they show as `data-` attributes too (`data-digest`,
//! `data-source`, `data-via`), so tools and tests can read them without
//! parsing the visible text.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use peerpull_admin::v1;

use crate::admin::human_bytes as bytes;

/// How many advertised keys a search lists.
pub(crate) const SEARCH_LIMIT: usize = 100;

/// One blob of a test pull: where it is, and how its first MiB came.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// The blob and its providers.
    pub(crate) blob: v1::Blob,
    /// Who served the first MiB, how many bytes and how long it took; or why it failed.
    pub(crate) first: Result<First, String>,
}

/// The first MiB of a blob, fetched through this node's mirror.
#[derive(Debug, Clone)]
pub(crate) struct First {
    /// `local`, `peer`, `spool` or `upstream`.
    pub(crate) source: String,
    /// The peer's mirror, when a peer served it.
    pub(crate) via: String,
    /// Bytes received.
    pub(crate) bytes: u64,
    /// How long they took.
    pub(crate) took: Duration,
}

/// Escapes text for HTML content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The main page: this node, its peers, what it advertises (and a search
/// over it), the recent pulls, and the test pull form.
pub(crate) fn home(status: &v1::StatusResponse, pulls: &[v1::Pull], search: Option<(&str, &[String])>) -> String {
    let mut out = String::new();
    node_section(&mut out, status);
    advertised_section(&mut out, status, search);
    preheat_section(&mut out, status);
    private_section(&mut out, status);
    pulls_section(&mut out, pulls);
    test_pull_form(&mut out, "");
    page(&format!("peerpull {}", short(&status.peer_id)), &out)
}

/// The answer to a test pull of `reference`.
pub(crate) fn test_pull(reference: &str, result: Result<(String, Vec<Probe>), String>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<p><a href=\"/debug\">&larr; this node</a></p><h2>Test pull of <code>{}</code></h2>",
        escape(reference)
    );
    match result {
        Err(error) => {
            let _ = write!(out, "<p class=\"bad\" id=\"error\">{}</p>", escape(&error));
        }
        Ok((digest, probes)) => {
            let _ = write!(out, "<p>resolves to <code id=\"digest\">{}</code></p>", escape(&digest));
            out.push_str(
                "<table id=\"probes\"><tr><th>role</th><th>digest</th><th>size</th><th>here</th>\
                 <th>providers</th><th>first MiB from</th><th>took</th><th>rate</th></tr>",
            );
            for probe in &probes {
                probe_row(&mut out, probe);
            }
            out.push_str("</table>");
            let missing = probes.iter().filter(|p| !p.blob.local && p.blob.providers.is_empty()).count();
            if missing > 0 {
                let _ = write!(
                    out,
                    "<p class=\"bad\">{missing} blob(s) held by no node: a pull needs the upstream for them.</p>"
                );
            }
        }
    }
    test_pull_form(&mut out, reference);
    page(&format!("test pull {reference}"), &out)
}

fn node_section(out: &mut String, s: &v1::StatusResponse) {
    let (class, ready) = if s.ready { ("good", "ready") } else { ("bad", "NOT READY") };
    let cluster = if s.private_cluster { "private (pre-shared key)" } else { "OPEN (no pre-shared key)" };
    let _ = write!(
        out,
        "<h1>peerpull <span class=\"{class}\" id=\"readiness\">{ready}</span></h1>\
         <table id=\"node\"><tr><th>peer id</th><td><code>{}</code></td></tr>\
         <tr><th>version</th><td>{}</td></tr><tr><th>mirror</th><td>{}</td></tr>\
         <tr><th>router</th><td>{}</td></tr><tr><th>cluster</th><td>{cluster}</td></tr></table><ul id=\"checks\">",
        escape(&s.peer_id),
        escape(&s.version),
        escape(&s.mirror_addr),
        escape(&s.router_addr),
    );
    for check in &s.checks {
        let class = if check.ok { "good" } else { "bad" };
        let mark = if check.ok { "ok" } else { "failed" };
        let _ = write!(
            out,
            "<li><span class=\"{class}\">{} {mark}</span>: {}</li>",
            escape(&check.name),
            escape(&check.detail)
        );
    }
    let _ = write!(
        out,
        "</ul><h2>Peers ({})</h2><table id=\"peers\"><tr><th>peer id</th><th>mirror</th><th>zone</th></tr>",
        s.peers.len()
    );
    for peer in &s.peers {
        let mirror = if peer.mirror_addr.is_empty() { "-" } else { &peer.mirror_addr };
        let zone = if peer.zone.is_empty() { "-" } else { &peer.zone };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&peer.peer_id),
            escape(mirror),
            escape(zone)
        );
    }
    out.push_str("</table>");
}

fn advertised_section(out: &mut String, s: &v1::StatusResponse, search: Option<(&str, &[String])>) {
    let _ = write!(
        out,
        "<h2>Advertised</h2><p id=\"advertised\">{} digests, {} tags</p>\
         <form method=\"get\" action=\"/debug\"><input name=\"q\" size=\"40\" placeholder=\"search keys: nginx, sha256:ab\" value=\"{}\"> \
         <button>search</button></form>",
        s.advertised_digests,
        s.advertised_tags,
        escape(search.map_or("", |(q, _)| q)),
    );
    if let Some((query, keys)) = search {
        let more = if keys.len() >= SEARCH_LIMIT { " (the first ones)" } else { "" };
        let _ =
            write!(out, "<p>{} key(s) contain <code>{}</code>{more}:</p><ul id=\"keys\">", keys.len(), escape(query));
        for key in keys {
            let _ = write!(out, "<li><code>{}</code></li>", escape(key));
        }
        out.push_str("</ul>");
    }
}

fn preheat_section(out: &mut String, s: &v1::StatusResponse) {
    if s.preheat.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<h2>Preheated ({})</h2><table id=\"preheat\"><tr><th>image</th><th>state</th><th>this node</th>\
         <th>held by / responsible</th><th>digest</th></tr>",
        s.preheat.len()
    );
    for p in &s.preheat {
        let held = p.holders.iter().filter(|h| p.responsible.contains(h)).count();
        let state = if p.error.is_empty() { p.state.clone() } else { format!("{}: {}", p.state, p.error) };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{held} / {}</td><td><code>{}</code></td></tr>",
            escape(&p.reference),
            escape(&state),
            if p.mine { "responsible" } else { "-" },
            p.responsible.len(),
            escape(&short(&p.digest)),
        );
    }
    out.push_str("</table>");
}

fn private_section(out: &mut String, s: &v1::StatusResponse) {
    let Some(p) = s.private_images.as_ref().filter(|p| p.mode == "verify") else { return };
    let _ = write!(out, "<h2>Private repositories ({})</h2><ul id=\"private\">", p.repositories.len());
    for repository in &p.repositories {
        let _ = write!(out, "<li><code>{}</code></li>", escape(repository));
    }
    let _ = write!(
        out,
        "</ul><table id=\"verified\"><tr><th>credentials (fingerprint)</th><th>repository</th><th>verified</th></tr>"
    );
    for v in &p.verifications {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}/{}</code></td><td>{}s ago</td></tr>",
            escape(&v.fingerprint),
            escape(&v.registry),
            escape(&v.repository),
            v.seconds_ago
        );
    }
    out.push_str("</table>");
}

fn pulls_section(out: &mut String, pulls: &[v1::Pull]) {
    let _ = write!(
        out,
        "<h2>Recent pulls ({})</h2><table id=\"pulls\"><tr><th>time</th><th>client</th><th>image</th>\
         <th>what</th><th>size</th><th>source</th><th>status</th><th>took</th><th>rate</th></tr>",
        pulls.len()
    );
    for p in pulls {
        let source = source_text(&p.source, &p.via_peer_id, &p.via_mirror_addr);
        let what = if p.head { format!("{} (HEAD)", p.kind) } else { p.kind.clone() };
        let took = Duration::from_millis(p.duration_millis);
        let unfinished = if p.complete { "" } else { " (unfinished)" };
        let _ = write!(
            out,
            "<tr class=\"pull\" data-digest=\"{}\" data-source=\"{}\" data-via=\"{}\" data-status=\"{}\">\
             <td>{}</td><td>{}</td><td>{}/{}</td><td>{what} <code title=\"{}\">{}</code></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}{unfinished}</td><td>{}</td></tr>",
            escape(&p.reference),
            escape(if p.source.is_empty() { "miss" } else { &p.source }),
            escape(&p.via_mirror_addr),
            p.status,
            clock(p.unix_millis),
            escape(&p.client),
            escape(&p.registry),
            escape(&p.repository),
            escape(&p.reference),
            escape(&short(&p.reference)),
            bytes(p.size),
            escape(&source),
            p.status,
            millis(took),
            rate(p.bytes, took),
        );
    }
    out.push_str("</table>");
}

fn probe_row(out: &mut String, probe: &Probe) {
    let blob = &probe.blob;
    let providers: Vec<String> = blob.providers.iter().map(|p| escape(&p.mirror_addr)).collect();
    let providers = if providers.is_empty() { "none".to_owned() } else { providers.join(" ") };
    let (from, source, via, took, rate_text) = match &probe.first {
        Ok(first) => (
            source_text(&first.source, "", &first.via),
            first.source.clone(),
            first.via.clone(),
            millis(first.took),
            rate(first.bytes, first.took),
        ),
        Err(error) => (format!("failed: {error}"), "failed".to_owned(), String::new(), "-".into(), "-".into()),
    };
    let _ = write!(
        out,
        "<tr class=\"probe\" data-digest=\"{}\" data-role=\"{}\" data-local=\"{}\" data-providers=\"{}\" data-source=\"{}\" data-via=\"{}\">\
         <td>{}</td><td><code title=\"{}\">{}</code></td><td>{}</td><td>{}</td><td>{providers}</td><td>{}</td><td>{took}</td><td>{rate_text}</td></tr>",
        escape(&blob.digest),
        escape(&blob.role),
        blob.local,
        escape(&blob.providers.iter().map(|p| p.mirror_addr.as_str()).collect::<Vec<_>>().join(" ")),
        escape(&source),
        escape(&via),
        escape(&blob.role),
        escape(&blob.digest),
        escape(&short(&blob.digest)),
        bytes(blob.size),
        if blob.local { "yes" } else { "no" },
        escape(&from),
    );
}

fn test_pull_form(out: &mut String, reference: &str) {
    let _ = write!(
        out,
        "<h2>Test pull</h2><p>Resolves an image through this node's mirror and fetches the first MiB of each blob \
         (nothing is stored in containerd).</p>\
         <form id=\"test-pull\" method=\"get\" action=\"/debug/pull\">\
         <input name=\"reference\" size=\"60\" placeholder=\"docker.io/library/nginx:latest\" value=\"{}\"> \
         <button>test pull</button></form>",
        escape(reference)
    );
}

/// Where content came from, in words.
fn source_text(source: &str, peer_id: &str, mirror: &str) -> String {
    let peer = match (peer_id.is_empty(), mirror.is_empty()) {
        (_, true) => String::new(),
        (true, false) => mirror.to_owned(),
        (false, false) => format!("{} {mirror}", short(peer_id)),
    };
    match source {
        "" => "404: no node holds it".to_owned(),
        "local" => "local (this node's containerd)".to_owned(),
        "spool" => "spool (this node's upstream fetch)".to_owned(),
        "peer" => format!("peer {peer}"),
        "upstream" if !peer.is_empty() => format!("upstream, fetched by {peer}"),
        other => other.to_owned(),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}\
         th,td{{border:1px solid #ccc;padding:.25em .5em;text-align:left;font-size:.9em}}th{{background:#f3f3f3}}\
         code{{font-size:.9em}}.good{{color:#176f2c}}.bad{{color:#b00020;font-weight:bold}}\
         </style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// The last 12 characters of a long identifier (digests, peer ids), which tell them apart.
fn short(text: &str) -> String {
    match text.char_indices().rev().nth(11) {
        Some((i, _)) if text.len() > 20 => format!("…{}", &text[i..]),
        _ => text.to_owned(),
    }
}

fn clock(unix_millis: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_millis).unwrap_or(0));
    httpdate::fmt_http_date(at)
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn rate(sent: u64, took: Duration) -> String {
    let seconds = took.as_secs_f64();
    if sent == 0 || seconds <= 0.0 {
        return "-".to_owned();
    }
    format!("{}/s", bytes((sent as f64 / seconds) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert('x')</script>\"&";

    fn pull(reference: &str, repository: &str) -> v1::Pull {
        v1::Pull {
            unix_millis: 1_764_600_000_000,
            client: "containerd".into(),
            registry: "docker.io".into(),
            repository: repository.into(),
            reference: reference.into(),
            kind: "blob".into(),
            head: false,
            status: 200,
            size: 2 << 20,
            source: "peer".into(),
            via_peer_id: "12D3KooWEoAJzpvJnMryP5JS5yy4LCN7r4yc4xo1RTnCDY89FPPU".into(),
            via_mirror_addr: "10.0.0.7:5000".into(),
            bytes: 2 << 20,
            duration_millis: 500,
            complete: true,
        }
    }

    #[test]
    fn escapes_every_character_that_could_break_out() {
        assert_eq!(escape(HOSTILE), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;");
    }

    #[test]
    fn hostile_names_never_reach_the_page_as_markup() {
        let status = v1::StatusResponse {
            peer_id: HOSTILE.into(),
            checks: vec![v1::Check { name: HOSTILE.into(), ok: false, detail: HOSTILE.into() }],
            peers: vec![v1::Peer { peer_id: HOSTILE.into(), mirror_addr: HOSTILE.into(), zone: HOSTILE.into() }],
            preheat: vec![v1::Preheat {
                reference: HOSTILE.into(),
                digest: HOSTILE.into(),
                state: HOSTILE.into(),
                error: HOSTILE.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let keys = vec![HOSTILE.to_owned()];
        let html = home(&status, &[pull(HOSTILE, HOSTILE)], Some((HOSTILE, &keys)));
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("'x'"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        let probe = Probe {
            blob: v1::Blob { digest: HOSTILE.into(), role: HOSTILE.into(), ..Default::default() },
            first: Err(HOSTILE.into()),
        };
        for html in [test_pull(HOSTILE, Ok((HOSTILE.into(), vec![probe]))), test_pull(HOSTILE, Err(HOSTILE.into()))] {
            assert!(!html.contains("<script>") && !html.contains("'x'"), "{html}");
        }
    }

    #[test]
    fn a_pull_row_names_its_source_and_peer() {
        let html = home(&v1::StatusResponse::default(), &[pull("sha256:abc", "library/nginx")], None);
        assert!(html.contains("data-digest=\"sha256:abc\" data-source=\"peer\" data-via=\"10.0.0.7:5000\""), "{html}");
        assert!(html.contains("peer …RTnCDY89FPPU 10.0.0.7:5000"), "{html}");
        assert!(html.contains("4.0 MiB/s"), "{html}");
        assert!(html.contains("docker.io/library/nginx"));
        let miss = v1::Pull { source: String::new(), status: 404, ..pull("sha256:abc", "x") };
        let html = home(&v1::StatusResponse::default(), &[miss], None);
        assert!(html.contains("data-source=\"miss\"") && html.contains("404: no node holds it"), "{html}");
    }

    #[test]
    fn long_identifiers_are_shortened_from_the_left() {
        assert_eq!(short("sha256:0123456789abcdef0123456789"), "…ef0123456789");
        assert_eq!(short("short"), "short");
    }
}
