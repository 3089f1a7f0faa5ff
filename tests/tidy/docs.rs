//! The map is true: every repository path and every package that ARCHITECTURE.md and the README
//! files name exists.
//!
//! A path is a backticked span or a Markdown link target that starts with one of the
//! repository's top folders (`crates/…`, `xtask/…`, `course/…`, `tests/…`, `fuzz/…`), or, in a
//! crate's own README, with one of the crate's folders (`src/…`, `tests/…`, `benches/…`); a `*`
//! stands for any one entry of an existing folder. A package is named by `-p NAME` or
//! `--package NAME` in a command, or by a bold backticked name (`**`name`**`) in the code map.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::{assert_none, relative, workspace_files, workspace_root};

/// The top folders a backticked repository path starts with.
const TOP: &[&str] = &["crates/", "xtask/", "course/", "tests/", "fuzz/"];

/// The folders a crate's own README names relative to the crate.
const IN_CRATE: &[&str] = &["src/", "tests/", "benches/", "examples/"];

/// ARCHITECTURE.md and every README.md of the workspace (the student's copy and build output
/// left out).
fn documents() -> Vec<PathBuf> {
    let mut files = vec![workspace_root().join("ARCHITECTURE.md")];
    files.extend(workspace_files(&[], |name| name == "README.md"));
    files.sort();
    files
}

/// Every package of the workspace and of `fuzz/` (its own workspace): its name and its folder.
fn packages() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !matches!(
                    name.to_string_lossy().as_ref(),
                    "target" | ".git" | "student"
                ) && !path.join("CACHEDIR.TAG").is_file()
                {
                    walk(&path, out);
                }
            } else if name == "Cargo.toml" {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let mut in_package = false;
                for line in text.lines() {
                    let line = line.trim();
                    if line.starts_with('[') {
                        in_package = line == "[package]";
                    } else if in_package && let Some(value) = line.strip_prefix("name") {
                        let value = value.trim_start().trim_start_matches('=').trim();
                        let folder = path.parent().unwrap_or(dir).to_path_buf();
                        out.insert(value.trim_matches('"').to_string(), folder);
                    }
                }
            }
        }
    }
    let mut packages = BTreeMap::new();
    walk(&workspace_root(), &mut packages);
    packages
}

/// The backticked spans of `text`, in order (inline code only; fenced blocks are split the
/// same way, which is what a command inside one needs).
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        targets.push(&after[..end]);
        rest = &after[end..];
    }
    targets
}

/// Whether `path` (relative to `base`, `*` standing for any one entry) exists.
fn exists(base: &Path, path: &str) -> bool {
    let mut found = vec![base.to_path_buf()];
    for part in path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
    {
        let mut next = Vec::new();
        for dir in &found {
            if let Some((before, after)) = part.split_once('*') {
                if let Ok(entries) = fs::read_dir(dir) {
                    next.extend(entries.flatten().map(|entry| entry.path()).filter(|path| {
                        let name = path.file_name().unwrap_or_default().to_string_lossy();
                        name.len() >= before.len() + after.len()
                            && name.starts_with(before)
                            && name.ends_with(after)
                    }));
                }
            } else if part == ".." {
                next.push(dir.parent().unwrap_or(dir).to_path_buf());
            } else if dir.join(part).exists() {
                next.push(dir.join(part));
            }
        }
        found = next;
    }
    !found.is_empty()
}

/// The path a span names, if it is one: the span up to a `:line` suffix, or `None` for a span
/// that is a command, a pattern or a placeholder rather than a path.
fn as_path<'a>(span: &'a str, prefixes: &[&str]) -> Option<&'a str> {
    let span = span.trim();
    if !prefixes.iter().any(|prefix| span.starts_with(prefix))
        || span.contains(|c: char| c.is_whitespace() || "<>{}[]()|,;\"'".contains(c))
        || span.contains("::")
    {
        return None;
    }
    let path = span.split(':').next().unwrap_or(span);
    // `course/wNN/quiz.md`: a week placeholder, not a path.
    if path.split('/').any(|part| part.contains("NN")) {
        return None;
    }
    Some(path.trim_end_matches('/'))
}

/// The package names a command span names with `-p NAME` or `--package NAME`; a placeholder
/// (`-p <crate>`) names no package in particular.
fn packages_in(span: &str) -> Vec<&str> {
    let words: Vec<&str> = span.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "-p" || pair[0] == "--package")
        .map(|pair| pair[1])
        .filter(|name| !name.starts_with('<'))
        .collect()
}

#[test]
fn every_path_and_package_the_docs_name_exists() {
    let root = workspace_root();
    let packages = packages();
    assert!(packages.contains_key("handoff_server"), "{packages:?}");
    let mut violations = Vec::new();
    for file in documents() {
        let rel = relative(&file);
        let folder = file.parent().unwrap_or(&root).to_path_buf();
        let text = fs::read_to_string(&file).unwrap_or_default();
        // A path is looked up at the root, beside the document, and — since a paragraph or a
        // table row about a crate names its files from the crate's folder (`tests/crash.rs`) —
        // in the folder of every package the same paragraph names.
        for paragraph in text.split("\n\n").flat_map(|block| block.split("\n|")) {
            let mut bases = vec![root.clone(), folder.clone()];
            bases.extend(
                code_spans(paragraph)
                    .into_iter()
                    .filter_map(|span| packages.get(span.trim()).cloned()),
            );
            let found = |path: &str| bases.iter().any(|base| exists(base, path));
            let in_crate = folder.join("Cargo.toml").is_file() && folder != root;
            for span in code_spans(paragraph) {
                let path = as_path(span, TOP)
                    .or_else(|| in_crate.then(|| as_path(span, IN_CRATE)).flatten());
                // A link's label may shorten its target (`course/w09/04`); the target is
                // checked below.
                let is_label = paragraph.contains(&format!("[`{span}`]("));
                if let Some(path) = path
                    && !is_label
                    && !found(path)
                {
                    violations.push(format!("{rel}: `{span}`: no such path"));
                }
                for package in packages_in(span) {
                    if !packages.contains_key(package) {
                        violations.push(format!("{rel}: `{span}`: no package `{package}`"));
                    }
                }
            }
            for target in link_targets(paragraph) {
                let target = target.split('#').next().unwrap_or_default().trim();
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                if !exists(&folder, target) {
                    violations.push(format!("{rel}: link ({target}): no such path"));
                }
            }
        }
        if rel == "ARCHITECTURE.md" {
            // The code map's entries: **`name`** (or **`a`, `b`**) names packages.
            for entry in text.split("\n**").skip(1) {
                let head = entry.split("**").next().unwrap_or_default();
                for name in code_spans(&format!(" {head}")) {
                    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !packages.contains_key(name)
                    {
                        violations.push(format!("{rel}: **`{name}`**: no package `{name}`"));
                    }
                }
            }
        }
    }
    assert_none(
        "paths and packages the docs name that do not exist",
        violations,
    );
}

#[test]
fn a_missing_path_and_a_pattern_are_told_apart() {
    let root = workspace_root();
    assert!(exists(&root, "crates/w05/handoff_server/src/io_loop.rs"));
    assert!(exists(&root, "crates/bench/*"));
    assert!(exists(&root, "xtask/examples/foreign_*.rs"));
    assert!(!exists(&root, "xtask/examples/no_such_*.rs"));
    assert!(!exists(
        &root,
        "crates/w05/handoff_server/src/no_such_file.rs"
    ));
    assert_eq!(as_path("crates/w05/x.rs:42", TOP), Some("crates/w05/x.rs"));
    assert_eq!(as_path("cargo test -p tests", TOP), None);
    assert_eq!(as_path("fuzz/corpus/<target>/", TOP), None);
    assert_eq!(as_path("course/wNN/quiz.md", TOP), None);
    assert_eq!(
        packages_in("cargo test -p eventloop -p tests"),
        ["eventloop", "tests"]
    );
}
