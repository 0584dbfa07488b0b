//! The crate's shape, checked: its modules depend one way (no import
//! cycle), and the node-to-node wire is named in one file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The code of a file without comments and without its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The top-level modules `code` names through `crate::`.
fn used(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let group = match rest.strip_prefix('{') {
            Some(inner) => inner.split('}').next().unwrap_or_default(),
            None => rest,
        };
        let firsts = group.split(',').map(|part| {
            let part = part.trim_start_matches(|c: char| c.is_whitespace() || c == '{');
            part.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or_default().to_owned()
        });
        // Only the first path in an unbraced use; every path of a braced group.
        let firsts: Vec<String> = if rest.starts_with('{') { firsts.collect() } else { firsts.take(1).collect() };
        names.extend(firsts.into_iter().filter(|name| modules.contains(name)));
    }
    names
}

#[test]
fn the_mirror_modules_import_each_other_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let module_of = |path: &Path| {
        let relative = path.strip_prefix(&src).unwrap_or(path);
        let first = relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
        first.unwrap_or_default().trim_end_matches(".rs").to_owned()
    };
    let files: Vec<PathBuf> = sources(&src)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs") && !p.components().any(|c| c.as_os_str() == "tests"))
        .collect();
    let modules: BTreeSet<String> = files.iter().map(|p| module_of(p)).filter(|m| m != "lib").collect();
    assert!(modules.len() > 10, "the crate's modules were found: {modules:?}");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|p| module_of(p) != "lib") {
        let module = module_of(file);
        let mut deps = used(&code(file), &modules);
        deps.remove(&module);
        graph.entry(module).or_default().extend(deps);
    }
    assert!(graph.get("mirror").is_some_and(|d| d.contains("source")), "imports were read: {graph:?}");

    // Depth-first, keeping the path: a module met again on its own path closes a cycle.
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module);
            return Some(cycle);
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for dep in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("the mirror's modules import each other in a cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn every_peerpull_header_is_named_in_the_wire_module_only() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut naming = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap_or_else(|e| panic!("{}: {e}", crates.display())).flatten() {
        let src = entry.path().join("src");
        if !src.is_dir() {
            continue;
        }
        for file in sources(&src) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.contains("\"x-peerpull-") {
                naming.push(file.strip_prefix(&crates).unwrap_or(&file).display().to_string());
            }
        }
    }
    assert_eq!(naming, ["mirror/src/wire.rs"], "x-peerpull-* header names outside the wire module");
}
