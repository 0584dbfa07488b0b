//! Names the commit the daemon is built from, for the admin API's `Status`:
//! `PEERPULL_VERSION` is e.g. `0.1.0 (commit 5250d95)`, or
//! `0.1.0 (commit unknown)` when there is no `git` or no checkout. It never
//! fails the build.
//!
//! `peerpull --version` prints the same string (`peerpull_node::VERSION`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).filter(|c| c.chars().all(|c| c.is_ascii_hexdigit()));
    let commit = commit.as_deref().unwrap_or("unknown");
    println!("cargo:rustc-env=PEERPULL_VERSION={} (commit {commit})", env!("CARGO_PKG_VERSION"));
    // Run again when HEAD moves: a checkout changes HEAD, a commit the
    // branch's ref (a file of its own, or a line of packed-refs). Only
    // files that exist: cargo reruns every build for one that does not.
    println!("cargo:rerun-if-changed=build.rs");
    let Some(dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) else { return };
    let common = git(&["rev-parse", "--git-common-dir"]).map_or_else(|| dir.clone(), PathBuf::from);
    let mut watched = vec![dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    for path in watched.into_iter().filter(|p| p.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git ARGS`' first line, when git runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    let line = String::from_utf8(out.stdout).ok()?.lines().next()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}
