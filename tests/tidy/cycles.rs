//! No module cycles: within a crate, the top-level modules of `src/` form layers, so no two of
//! them reach each other, directly or through others.
//!
//! A module depends on another when any of its files names it: `crate::other`, a group
//! `crate::{other, …}`, or `super::other` where that `super` leads to the crate root. A cycle
//! means neither module can be read, tested or moved without the other; the fix is to move what
//! both need into a module below them. The check reads the source, so it sees `use` lines and
//! paths in code alike, and it is blind to comments and strings.

use super::{assert_none, code_only, workspace_root};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// The crates whose `src/` must be free of module cycles, by folder: every crate of the
/// workspace. Adding a crate is one line.
const CYCLE_FREE_CRATES: &[&str] = &[
    "crates/w04/handoff_protocol",
    "crates/w04/eventloop",
    "crates/w04/epoll_server",
    "crates/w05/task_queue",
    "crates/w05/thread_pool",
    "crates/w05/handoff_server",
    "crates/w09/kv_store",
    "crates/w09/kv_server",
    "crates/w10/wal",
    "crates/bench/loadgen",
    "crates/bench/tokio_server",
    "crates/bench/harness",
    "crates/test_support",
    "crates/fuzz_checks",
    "xtask",
];

/// Cycles known and accepted for now, as (crate folder, the two modules), each with why. The
/// check leaves out the edges between the two, in both directions.
const KNOWN: &[(&str, &str, &str)] = &[
    // A timer's callback is called with the dispatcher it runs on (`FnMut(&Dispatcher)`), and
    // the dispatcher owns the timer queue: the two are one mechanism split over two files.
    ("crates/w04/eventloop", "dispatcher", "timer"),
    // A batch reads the log's counters for `STATS`, and the commit queue holds batches; moving
    // `LogCounters` into a leaf module is the fix, in the KV server's own change.
    ("crates/w09/kv_server", "batch", "durable"),
];

/// Where one module names another: the file (relative to `src/`) and the line.
type Site = (String, usize);

/// For each top-level module, the other top-level modules it names, each with the first place
/// that names it.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

/// Every `.rs` file under `src`, relative to it, with its text.
fn sources(src: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, src: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                // A module's unit tests may reach across layers without making the code itself
                // depend both ways.
                && path.file_name().is_none_or(|name| name != "tests.rs")
            {
                let relative = path.strip_prefix(src).unwrap_or(&path);
                let text = fs::read_to_string(&path).unwrap_or_default();
                out.push((relative.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(src, src, &mut out);
    out.sort();
    out
}

/// The module path of a file relative to `src/`: `prove.rs` is `[prove]`, `prove/budget.rs` is
/// `[prove, budget]`, `lesson/mod.rs` is `[lesson]`, and the crate roots are `[]`.
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main") {
        parts.clear();
    }
    parts
}

/// The names at the top level of a `{…}` group that starts right after `text`'s opening brace,
/// and the rest of the text after the group.
fn group_heads(text: &str) -> (Vec<String>, &str) {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item_start = true;
    for (index, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return (heads, &text[index + 1..]),
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            _ if at_item_start && (c.is_alphanumeric() || c == '_') => {
                heads.push(identifier(&text[index..]).to_owned());
                at_item_start = false;
            }
            _ => {}
        }
    }
    (heads, "")
}

/// The identifier at the start of `text`.
fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The crate-level names one line of code refers to, given the module path the line is in:
/// the first segment after `crate::` (or of each item of a `crate::{…}` group), and the segment
/// after a run of `super::` that climbs to the crate root.
fn crate_level_names(code: &str, module: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(['c', 's']) {
        let here = &rest[at..];
        // Only a whole word counts: `my_crate::` is not `crate::`.
        let word_start = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if word_start && here.starts_with("crate::") {
            let after = &here["crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let (heads, remaining) = group_heads(group);
                names.extend(heads);
                rest = remaining;
            } else {
                names.push(identifier(after).to_owned());
                rest = after;
            }
            continue;
        }
        if word_start && here.starts_with("super::") {
            let mut after = here;
            let mut climbs = 0;
            while let Some(next) = after.strip_prefix("super::") {
                climbs += 1;
                after = next;
            }
            if climbs >= module.len() {
                if let Some(group) = after.strip_prefix('{') {
                    let (heads, remaining) = group_heads(group);
                    names.extend(heads);
                    rest = remaining;
                    continue;
                }
                names.push(identifier(after).to_owned());
            }
            rest = after;
            continue;
        }
        rest = &here[1..];
    }
    names
}

/// The module dependency graph of a crate's sources (paths relative to `src/`, with their text).
/// Inline `mod name { … }` blocks (a file's `mod tests`) count as one level deeper, so their
/// `super::` resolves as the compiler resolves it.
fn module_graph(files: &[(String, String)]) -> Graph {
    let top_level: BTreeSet<String> = files
        .iter()
        .filter_map(|(file, _)| module_path(file).first().cloned())
        .collect();
    let mut graph: Graph = top_level
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (file, text) in files {
        let file_module = module_path(file);
        let Some(owner) = file_module.first().cloned() else {
            continue;
        };
        // Inline modules open at a brace depth and end when the depth falls back below it.
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        for (index, line) in code_only(text).iter().enumerate() {
            let line = line.replace("'{'", "' '").replace("'}'", "' '");
            let mut module = file_module.clone();
            module.extend(inline.iter().map(|(name, _)| name.clone()));
            for name in crate_level_names(&line, &module) {
                if name != owner && top_level.contains(&name) {
                    graph
                        .get_mut(&owner)
                        .expect("every owner is a node")
                        .entry(name)
                        .or_insert_with(|| (file.clone(), index + 1));
                }
            }
            let trimmed = line.trim_start();
            let declaration = trimmed
                .strip_prefix("pub(crate) ")
                .or_else(|| trimmed.strip_prefix("pub "))
                .unwrap_or(trimmed);
            if let Some(after) = declaration.strip_prefix("mod ") {
                if after.trim_end().ends_with('{') {
                    inline.push((identifier(after).to_owned(), depth));
                }
            }
            for c in line.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth = depth.saturating_sub(1);
                        if inline.last().is_some_and(|(_, open)| *open == depth) {
                            inline.pop();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    graph
}

/// One cycle through each group of modules that reach each other, printed with the place each
/// step of it is named: `a -> b (a.rs:3) -> a (b/c.rs:9)`.
fn cycles(graph: &Graph) -> Vec<String> {
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut found = Vec::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // The shortest way back to `start`, by breadth-first search over the edges.
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue: VecDeque<&str> = graph[start].keys().map(String::as_str).collect();
        for next in &queue {
            previous.insert(next, start);
        }
        while let Some(module) = queue.pop_front() {
            if module == start {
                break;
            }
            for next in graph.get(module).into_iter().flat_map(BTreeMap::keys) {
                if !previous.contains_key(next.as_str()) {
                    previous.insert(next, module);
                    queue.push_back(next);
                }
            }
        }
        if !previous.contains_key(start.as_str()) {
            continue;
        }
        let mut path = vec![start.as_str()];
        let mut at = previous[start.as_str()];
        while at != start {
            path.push(at);
            at = previous[at];
        }
        path.push(start);
        path.reverse();
        let mut text = path[0].to_owned();
        for pair in path.windows(2) {
            let (file, line) = &graph[pair[0]][pair[1]];
            text.push_str(&format!(" -> {} ({file}:{line})", pair[1]));
        }
        reported.extend(path.iter().map(|m| (*m).to_owned()));
        found.push(text);
    }
    found
}

#[test]
fn no_module_cycles() {
    let mut violations = Vec::new();
    for krate in CYCLE_FREE_CRATES {
        let src: PathBuf = workspace_root().join(krate).join("src");
        let files = sources(&src);
        assert!(!files.is_empty(), "{} has no sources", src.display());
        let mut graph = module_graph(&files);
        for (_, a, b) in KNOWN.iter().filter(|(known, ..)| known == krate) {
            for (from, to) in [(a, b), (b, a)] {
                if let Some(edges) = graph.get_mut(*from) {
                    edges.remove(*to);
                }
            }
        }
        for cycle in cycles(&graph) {
            violations.push(format!("{krate}/src: {cycle}"));
        }
    }
    assert_none(
        "module cycles (move what both modules need into one below them)",
        violations,
    );
}

/// A crate in memory: file paths relative to `src/` and their text.
fn fake_crate(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(file, text)| ((*file).to_owned(), (*text).to_owned()))
        .collect()
}

#[test]
fn the_cycle_check_finds_a_cycle_through_uses_groups_and_super() {
    let files = fake_crate(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\nuse crate::a::X;\n"),
        ("a.rs", "//! a\nuse crate::{b::Y, c};\n"),
        ("b/mod.rs", "//! b\nmod inner;\n"),
        (
            "b/inner.rs",
            "//! inner\nfn f() { super::super::a::g(); }\n",
        ),
        (
            "c.rs",
            "//! c\n// crate::a in a comment\nconst S: &str = \"crate::b\";\n",
        ),
    ]);
    let graph = module_graph(&files);
    assert_eq!(graph["a"].keys().collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(graph["b"].keys().collect::<Vec<_>>(), ["a"]);
    assert!(graph["c"].is_empty(), "comments and strings name nothing");
    assert_eq!(
        cycles(&graph),
        ["a -> b (a.rs:2) -> a (b/inner.rs:2)"],
        "the cycle is printed with where each step is named"
    );
}

#[test]
fn the_cycle_check_resolves_super_in_an_inline_module_to_its_parent() {
    let files = fake_crate(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "//! a\nuse super::b;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    fn t() { let c = '{'; }\n}\n",
        ),
        (
            "b.rs",
            "//! b\nmod tests {\n    use super::helper;\n}\nfn helper() {}\n",
        ),
    ]);
    let graph = module_graph(&files);
    assert_eq!(graph["a"].keys().collect::<Vec<_>>(), ["b"]);
    assert!(graph["b"].is_empty(), "{graph:?}");
    assert!(cycles(&graph).is_empty());
}
