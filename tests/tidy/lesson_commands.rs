//! Every `cargo` command the course shows names a package, a binary, a test or a benchmark that
//! exists, and every `target/<profile>/NAME` it runs is a binary of the workspace. A lesson that
//! says `cargo build -p eventloop` and then runs `target/release/epoll_server` (a binary of
//! another package) sends the student to a file that was never built; this finds such drift when
//! a crate is split or renamed, before a student does.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::{assert_none, relative, workspace_root};

/// What `cargo metadata` says the workspace holds: package names and target names by kind.
#[derive(Debug, Default)]
struct Workspace {
    packages: BTreeSet<String>,
    bins: BTreeSet<String>,
    /// Each binary's package.
    bin_package: std::collections::BTreeMap<String, String>,
    tests: BTreeSet<String>,
    examples: BTreeSet<String>,
    benches: BTreeSet<String>,
}

fn workspace() -> Workspace {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let mut workspace = Workspace::default();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        workspace
            .packages
            .insert(package["name"].as_str().unwrap_or_default().to_owned());
        for target in package["targets"].as_array().into_iter().flatten() {
            let name = target["name"].as_str().unwrap_or_default().to_owned();
            for kind in target["kind"].as_array().into_iter().flatten() {
                if kind.as_str() == Some("bin") {
                    let package = package["name"].as_str().unwrap_or_default().to_owned();
                    workspace.bin_package.insert(name.clone(), package);
                }
                let set = match kind.as_str() {
                    Some("bin") => &mut workspace.bins,
                    Some("test") => &mut workspace.tests,
                    Some("example") => &mut workspace.examples,
                    Some("bench") => &mut workspace.benches,
                    _ => continue,
                };
                set.insert(name.clone());
            }
        }
    }
    workspace
}

/// The markdown files a student reads: the course and the README.
fn course_files(root: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root.join("README.md")];
    walk(&root.join("course"), &mut files);
    files.sort();
    files
}

/// The names a command line refers to, as `(what, name)`: `-p X`, `--package X`, `--bin X`,
/// `--test X`, `--example X`, `--bench X`, up to a `--` (after it the words are the program's).
fn named_targets(command: &str) -> Vec<(&'static str, String)> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut named = Vec::new();
    for (index, word) in words.iter().enumerate() {
        if *word == "--" {
            break;
        }
        let what = match *word {
            "-p" | "--package" => "package",
            "--bin" => "binary",
            "--test" => "test",
            "--example" => "example",
            "--bench" => "benchmark",
            _ => continue,
        };
        if let Some(name) = words.get(index + 1) {
            let name = name.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'));
            // A placeholder (`-p <crate>`) names nothing in particular.
            if !name.is_empty() && !name.starts_with('<') && !words[index + 1].starts_with('<') {
                named.push((what, name.to_owned()));
            }
        }
    }
    named
}

/// Every `cargo ...` command in `line`, each up to the end of its code span or of the line.
fn cargo_commands(line: &str) -> Vec<&str> {
    let mut commands = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("cargo ") {
        let command = &rest[at..];
        let end = command.find(['`', '|', ';', ')']).unwrap_or(command.len());
        commands.push(&command[..end]);
        rest = &command[end..];
    }
    commands
}

/// Every `target/release/NAME` or `target/debug/NAME` in `line`.
fn built_binaries(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    for profile in ["target/release/", "target/debug/"] {
        let mut rest = line;
        while let Some(at) = rest.find(profile) {
            let after = &rest[at + profile.len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
            rest = after;
        }
    }
    names
}

#[test]
fn every_cargo_command_in_the_course_names_what_exists() {
    let root = workspace_root();
    let workspace = workspace();
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in course_files(&root) {
        let text = fs::read_to_string(&file).unwrap_or_default();
        // The packages of the last `cargo build -p ...` and its line: a `target/.../NAME` within
        // a few lines of it runs what that command built, so NAME must be one of their binaries.
        let mut last_build: Option<(usize, Vec<String>)> = None;
        for (index, line) in text.lines().enumerate() {
            let at = format!("{}:{}", relative(&file), index + 1);
            for command in cargo_commands(line) {
                if command.starts_with("cargo build") {
                    let built: Vec<String> = named_targets(command)
                        .into_iter()
                        .filter(|(what, _)| *what == "package")
                        .map(|(_, name)| name)
                        .collect();
                    if !built.is_empty() {
                        last_build = Some((index, built));
                    }
                }
                for (what, name) in named_targets(command) {
                    checked += 1;
                    let known = match what {
                        "package" => &workspace.packages,
                        "binary" => &workspace.bins,
                        "test" => &workspace.tests,
                        "example" => &workspace.examples,
                        _ => &workspace.benches,
                    };
                    if !known.contains(&name) {
                        violations.push(format!(
                            "{at}: `{command}` names {what} `{name}`, which no package has"
                        ));
                    }
                }
            }
            for name in built_binaries(line) {
                checked += 1;
                let Some(package) = workspace.bin_package.get(&name) else {
                    violations.push(format!(
                        "{at}: `target/.../{name}` is no binary of the workspace"
                    ));
                    continue;
                };
                if let Some((built_at, built)) = &last_build {
                    if index - built_at <= 5 && !built.contains(package) {
                        violations.push(format!(
                            "{at}: runs `{name}` (package `{package}`) after a build of only {}",
                            built.join(", ")
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} names found: is the scan still reading the course?"
    );
    assert_none("cargo commands naming what does not exist", violations);
}

#[test]
fn the_scan_reads_packages_binaries_and_tests_from_a_command_line() {
    assert_eq!(
        named_targets("cargo test -p kv_server --test kv_server -- --exact a_test -p nothing"),
        [
            ("package", "kv_server".to_owned()),
            ("test", "kv_server".to_owned())
        ]
    );
    assert_eq!(
        cargo_commands("run `cargo build --release -p epoll_server`, then `cargo xtask lesson`"),
        [
            "cargo build --release -p epoll_server",
            "cargo xtask lesson"
        ]
    );
    assert_eq!(
        built_binaries("`target/release/epoll_server {port}` and target/debug/x"),
        ["epoll_server", "x"]
    );
    assert!(named_targets("cargo test -p <crate>").is_empty());
}
