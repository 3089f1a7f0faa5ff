//! A tidy check of the course: every lesson that asks for bodies runs, as one of its counted
//! steps, the unit tests that cover them.
//!
//! A lesson graded only through its server or its integration tests can be passed with a body
//! that only a unit test catches (a batch cap removed, say). So for every file holding a lesson's
//! `todo` or `empty` marker that has a unit-test module of its own, the lesson must show a
//! `cargo test` of its crate that compiles the target holding that file (the library or the
//! binary) and selects that module's tests: no filter, or a filter that matches
//! `<module>::tests::`.

use super::{Action, markers, rust_files};
use crate::lesson::{Lesson, StepKind};
use std::path::Path;

/// A file with bodies to write and unit tests of its own: where its tests are compiled and
/// named.
#[derive(Debug)]
struct TestedFile {
    /// The file, relative to the workspace root, for messages.
    shown: String,
    /// The crate.
    krate: String,
    /// Whether the library holds it (else the binary named after the crate does).
    in_lib: bool,
    /// The module path of its tests (`server::tests::`; `tests::` for the crate root).
    tests_prefix: String,
}

/// What one `cargo test` command line selects.
#[derive(Debug, Default)]
struct CargoTest {
    packages: Vec<String>,
    lib: bool,
    bins: Vec<String>,
    all_bins: bool,
    /// Some target was named (`--lib`, `--bin`, `--test`, ...): only those are compiled.
    targets_named: bool,
    filters: Vec<String>,
    exact: bool,
}

impl CargoTest {
    /// Parses a `cargo test ...` command line; `None` for any other command.
    fn parse(command: &str) -> Option<Self> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let at = words.windows(2).position(|w| w == ["cargo", "test"])?;
        let mut test = Self::default();
        let mut words = words[at + 2..].iter();
        let mut after_dashes = false;
        while let Some(&word) = words.next() {
            match (after_dashes, word) {
                (false, "--") => after_dashes = true,
                (false, "-p" | "--package") => {
                    test.packages.extend(words.next().map(|w| w.to_string()))
                }
                (false, "--lib") => (test.lib, test.targets_named) = (true, true),
                (false, "--bin") => {
                    test.bins.extend(words.next().map(|w| w.to_string()));
                    test.targets_named = true;
                }
                (false, "--bins") => (test.all_bins, test.targets_named) = (true, true),
                (false, "--test" | "--example" | "--bench") => {
                    words.next();
                    test.targets_named = true;
                }
                (false, "--tests" | "--all-targets") => {
                    (test.lib, test.all_bins, test.targets_named) = (true, true, true)
                }
                (false, "--features" | "-F" | "--profile" | "--target" | "-j") => {
                    words.next();
                }
                (true, "--exact") => test.exact = true,
                (true, "--skip" | "--test-threads") => {
                    words.next();
                }
                (_, flag) if flag.starts_with('-') => {}
                (_, filter) => test.filters.push(filter.to_owned()),
            }
        }
        Some(test)
    }

    /// Whether this command runs `file`'s unit tests.
    fn covers(&self, file: &TestedFile) -> bool {
        let target = if file.in_lib {
            self.lib
        } else {
            self.all_bins || self.bins.contains(&file.krate)
        };
        let filtered = self.filters.is_empty()
            || self.filters.iter().any(|filter| {
                if self.exact {
                    filter.starts_with(&file.tests_prefix)
                } else {
                    file.tests_prefix.contains(filter.as_str())
                }
            });
        self.packages.contains(&file.krate) && (!self.targets_named || target) && filtered
    }
}

/// Whether `text` declares `mod name` (with or without `pub`, inline or in its own file).
fn declares(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        let line = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        line.strip_prefix("mod ")
            .is_some_and(|rest| rest.trim_end_matches([';', '{', ' ']) == name)
    })
}

/// The files of `krate` (in `dir`) with a `todo` or `empty` marker of `lesson` and unit tests
/// of their own.
fn tested_files(root: &Path, krate: &str, dir: &Path, lesson: &str) -> Vec<TestedFile> {
    let src = root.join(dir).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files).unwrap();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let mut tested = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let asks = markers(&text)
            .unwrap()
            .iter()
            .any(|marker| marker.lesson == lesson && !matches!(marker.action, Action::Remove));
        if !asks || !declares(&text, "tests") {
            continue;
        }
        let relative = file.strip_prefix(&src).unwrap().with_extension("");
        let mut modules: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        if modules.last().is_some_and(|last| last == "mod") {
            modules.pop();
        }
        let in_lib = match modules.first().map(String::as_str) {
            Some("lib") => true,
            Some("main") => false,
            Some(top) => declares(&lib, top),
            None => true,
        };
        modules.retain(|module| module != "lib" && module != "main");
        modules.push("tests::".to_owned());
        tested.push(TestedFile {
            shown: file.strip_prefix(root).unwrap().display().to_string(),
            krate: krate.to_owned(),
            in_lib,
            tests_prefix: modules.join("::"),
        });
    }
    tested
}

/// The `cargo test` commands of a lesson's counted `run` steps.
fn cargo_tests(lesson: &Lesson) -> Vec<CargoTest> {
    lesson
        .steps
        .iter()
        .filter_map(|step| match &step.kind {
            StepKind::Run(run) => Some(run),
            _ => None,
        })
        .flat_map(|run| run.commands.iter())
        .filter_map(|(command, _)| CargoTest::parse(command))
        .collect()
}

#[test]
fn every_lesson_runs_the_unit_tests_of_the_bodies_it_asks_for() {
    let root = crate::workspace::workspace_root();
    let packages = crate::workspace::workspace_packages(&root).unwrap();
    let mut missing = Vec::new();
    for lesson in crate::lesson::discover(&root).unwrap() {
        let Some((krate, dir)) = packages
            .iter()
            .find(|(name, _)| *name == lesson.front.krate)
        else {
            continue;
        };
        let commands = cargo_tests(&lesson);
        for file in tested_files(&root, krate, dir, &lesson.front.id) {
            if !commands.iter().any(|command| command.covers(&file)) {
                missing.push(format!(
                    "{}: asks for bodies in {} but no `cargo test -p {} {}` step runs its \
                     unit tests (`{}`)",
                    lesson.path.display(),
                    file.shown,
                    file.krate,
                    if file.in_lib { "--lib" } else { "--bin" },
                    file.tests_prefix
                ));
            }
        }
    }
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

#[test]
fn a_cargo_test_line_covers_a_module_through_its_target_and_filters() {
    let server = TestedFile {
        shown: "crates/s/src/server.rs".to_owned(),
        krate: "s".to_owned(),
        in_lib: false,
        tests_prefix: "server::tests::".to_owned(),
    };
    let covers = |command: &str| CargoTest::parse(command).unwrap().covers(&server);
    assert!(covers("cargo test -p s"));
    assert!(covers("cargo test -q -p s --bin s -- server:: batch::"));
    assert!(covers("cargo test -p s --bins server"));
    assert!(covers(
        "cargo test -p s -- --exact server::tests::a_batch_is_capped"
    ));
    assert!(!covers("cargo test -p s --lib"));
    assert!(!covers("cargo test -p s --test io_loop"));
    assert!(!covers("cargo test -p s --bin s -- batch::"));
    assert!(!covers("cargo test -p other"));
    assert!(!covers("cargo test -p s -- --exact tests::server"));
    assert!(CargoTest::parse("cargo build -p s").is_none());
    assert!(declares("#[cfg(test)]\nmod tests;\n", "tests"));
    assert!(declares("    pub mod server {\n", "server"));
    assert!(!declares("mod testsuite;\n", "tests"));
}
