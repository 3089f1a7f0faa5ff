//! One test harness: servers are started, and `/proc` is read, only through `test_support`.
//!
//! A helper elsewhere that spawns a process (`Command::new(…)`, then `.spawn()` within 30 lines), waits for a
//! server's `listening on` line, or reads a `/proc/…` file is a second copy of the harness, and
//! drifts from it (its own timeouts, its own reaping, its own parsing of `stat`).

use std::fs;

use crate::{assert_none, code_only, relative, rust_files};

/// Where the harness lives.
const HARNESS: &str = "crates/test_support/";

/// Tests whose subject is the course runner itself, started as a student starts it, with the
/// standard streams their check needs (a socketpair whose reader goes away, pipes read while
/// Ctrl-C arrives, `watch` read line by line while its commands are typed): they start no server
/// of their own, so they are not a second harness.
const RUNNER_UNDER_TEST: &[&str] = &[
    "xtask/tests/cli.rs",
    "xtask/tests/interrupt.rs",
    "xtask/tests/watch.rs",
];

/// How a harness parses a server's first line (built with `concat!`, so this file does not
/// match itself).
const LISTENING_PARSES: &[&str] = &[
    concat!("strip_prefix(", "\"listening on"),
    concat!("starts_with(", "\"listening on"),
];

/// What reads a `/proc` file: the reading call and the path on one line.
const PROC_READS: &[&str] = &["read_to_string(", "read_dir(", "File::open(", "fs::read("];

#[test]
fn servers_are_started_and_proc_is_read_only_in_test_support() {
    let mut violations = Vec::new();
    for path in rust_files() {
        let rel = relative(&path);
        if rel.starts_with(HARNESS) {
            continue;
        }
        let source = fs::read_to_string(&path).unwrap_or_default();
        let code = code_only(&source);
        for (index, (raw, line)) in source.lines().zip(&code).enumerate() {
            let at = format!("{rel}:{}", index + 1);
            // The path is a string literal, which `code_only` blanks; the call is code.
            if raw.contains("\"/proc/") && PROC_READS.iter().any(|call| line.contains(call)) {
                violations.push(format!("{at}: reads /proc"));
            }
            // A server prints the line; a harness strips it off to learn the address.
            if LISTENING_PARSES.iter().any(|parse| raw.contains(parse)) {
                violations.push(format!("{at}: parses a server's `listening on` line"));
            }
            if line.contains(".spawn()") && !RUNNER_UNDER_TEST.contains(&rel.as_str()) {
                let from = index.saturating_sub(30);
                if code[from..=index]
                    .iter()
                    .any(|line| line.contains("Command::new("))
                {
                    violations.push(format!("{at}: spawns a process"));
                }
            }
        }
    }
    assert_none(
        "server starts or /proc reads outside test_support (use its ServerProcess and Proc)",
        violations,
    );
}
