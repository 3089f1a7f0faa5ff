//! No module cycles: within each crate, the top-level modules that name each other through
//! `crate::` paths form no cycle, so each module can be read (and tested) on top of the ones
//! below it.
//!
//! A module's files are `src/<name>.rs` and everything under `src/<name>/`; its unit tests
//! (`tests.rs` files) are left out, since a test may reach across layers without making the
//! code itself depend both ways.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::{assert_none, code_only, relative, rust_files};

/// The folders whose crates are checked. `xtask` is not yet among them: its runner is being
/// restructured into a library, and its check joins this list with that change.
const CHECKED: &[&str] = &["crates/", "tests/"];

/// Cycles known and accepted for now, as (crate `src` folder, the two modules), each with why.
const KNOWN: &[(&str, &str, &str)] = &[
    // A timer's callback is called with the dispatcher it runs on (`FnMut(&Dispatcher)`), and
    // the dispatcher owns the timer queue: the two are one mechanism split over two files.
    ("crates/w04/eventloop/src", "dispatcher", "timer"),
    // A batch reads the log's counters for `STATS`, and the commit queue holds batches; moving
    // `LogCounters` into a leaf module is the fix, in the KV server's own change.
    ("crates/w09/kv_server/src", "batch", "durable"),
];

/// The top-level module names after each `crate::` in `line` (`crate::a::b`, `crate::{a, b::c}`).
fn crate_paths(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        // `handoff_server::…` or `my_crate::…` is another crate, not this one's `crate::`.
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                names.push(identifier(item.trim()));
            }
        } else {
            names.push(identifier(after));
        }
    }
    names.retain(|name| !name.is_empty() && name != "self");
    names
}

/// The identifier `text` starts with.
fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// For a file under a crate's `src/`, the crate's `src` folder and the top-level module the file
/// belongs to (`None` for the crate roots `lib.rs` and `main.rs`).
fn module_of(rel: &str) -> Option<(String, Option<String>)> {
    let at = rel.find("/src/")?;
    let src = rel[..at + "/src".len()].to_string();
    let inside = &rel[at + "/src/".len()..];
    let first = inside.split('/').next()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    let module = match module {
        "lib" | "main" => None,
        name => Some(name.to_string()),
    };
    Some((src, module))
}

/// A cycle in `edges` through `start`, if there is one, as the modules along it.
fn cycle_through(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        edges: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(edges, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(edges, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_crate_has_a_module_cycle() {
    // Per crate (its `src` folder): module → the modules it names.
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for path in rust_files() {
        let rel = relative(&path);
        if !CHECKED.iter().any(|dir| rel.starts_with(dir)) || rel.ends_with("/tests.rs") {
            continue;
        }
        let Some((src, Some(module))) = module_of(&rel) else {
            continue;
        };
        let source = fs::read_to_string(&path).unwrap_or_default();
        let edges = graphs
            .entry(src)
            .or_default()
            .entry(module.clone())
            .or_default();
        for line in code_only(&source) {
            for name in crate_paths(&line) {
                if name != module {
                    edges.insert(name);
                }
            }
        }
    }
    let mut violations = Vec::new();
    for (src, edges) in &graphs {
        for module in edges.keys() {
            if let Some(cycle) = cycle_through(edges, module) {
                // Report each cycle once, from its smallest module.
                let known = KNOWN.iter().any(|(dir, a, b)| {
                    dir == src
                        && cycle.len() == 2
                        && cycle.contains(&a.to_string())
                        && cycle.contains(&b.to_string())
                });
                if cycle.iter().min() == Some(module) && !known {
                    violations.push(format!("{src}: {} → {module}", cycle.join(" → ")));
                }
            }
        }
    }
    assert!(
        graphs
            .keys()
            .any(|src| Path::new(src).ends_with("handoff_server/src")),
        "the walk found no handoff_server modules: is it rooted right?"
    );
    assert_none("module cycles", violations);
}

#[test]
fn crate_paths_finds_single_and_grouped_imports() {
    assert_eq!(
        crate_paths("use crate::server::{self, Config};"),
        ["server"]
    );
    assert_eq!(
        crate_paths("use crate::{loop_link::LoopLink, overload};"),
        ["loop_link", "overload"]
    );
    assert_eq!(
        crate_paths("handoff_server::io_loop::IoLoop"),
        Vec::<String>::new()
    );
    assert_eq!(crate_paths("let x = crate::batch::MAX_BATCH;"), ["batch"]);
}

#[test]
fn a_cycle_is_found_and_a_chain_is_not() {
    let graph = |pairs: &[(&str, &str)]| {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in pairs {
            edges
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        edges
    };
    let chain = graph(&[
        ("loops", "server"),
        ("server", "loop_link"),
        ("loops", "loop_link"),
    ]);
    assert_eq!(cycle_through(&chain, "loops"), None);
    let cycle = graph(&[("loops", "server"), ("server", "loops")]);
    assert_eq!(
        cycle_through(&cycle, "loops"),
        Some(vec!["loops".to_string(), "server".to_string()])
    );
}
