//! Replays the fuzz corpus on stable: every file of `fuzz/corpus/<target>/` through the function
//! of `fuzz_checks` that the cargo-fuzz target of that name calls, so the inputs the fuzzer kept
//! are checked by every `cargo test`, with or without nightly.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Replays one target's corpus; returns how many files it checked. A failing file is reported by
/// its name (the file to hand `cargo +nightly fuzz run <target> <file>`).
fn replay(target: &str) -> usize {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut failed = Vec::new();
    for file in &files {
        let data = fs::read(file).expect("a corpus file");
        let outcome = panic::catch_unwind(|| fuzz_checks::check(target, &data));
        match outcome {
            Ok(true) => {}
            Ok(false) => panic!("no check is called {target}"),
            Err(_) => failed.push(file.display().to_string()),
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: these corpus files fail: {failed:#?}"
    );
    files.len()
}

#[test]
fn kv_parse_corpus_holds() {
    let checked = replay("kv_parse");
    println!("kv_parse: {checked} corpus files checked");
    assert!(
        checked >= 10,
        "the kv_parse corpus has only {checked} files"
    );
}

#[test]
fn line_framer_corpus_holds() {
    let checked = replay("line_framer");
    println!("line_framer: {checked} corpus files checked");
    assert!(
        checked >= 10,
        "the line_framer corpus has only {checked} files"
    );
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    for target in fuzz_checks::TARGETS {
        assert!(
            corpus_dir(target).is_dir(),
            "fuzz/corpus/{target} is missing"
        );
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        let text = fs::read_to_string(&source).expect("the fuzz target's source");
        assert!(
            text.contains(&format!("fuzz_checks::{target}(")),
            "{} does not call fuzz_checks::{target}",
            source.display()
        );
    }
}
