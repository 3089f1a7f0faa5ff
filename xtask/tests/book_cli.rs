//! `cargo xtask book` on the command line, without mdBook: `--check` generates the book's source
//! and checks every link between the course's pages, needing no tool; `--no-install` says how to
//! install a missing mdBook instead of installing it.

use assert_cmd::Command;
use std::path::PathBuf;
use std::time::Duration;

/// A target folder of the test's own and a HOME without cargo's `bin`, so no installed mdBook
/// is found and the workspace's target folder is left alone.
fn without_mdbook(test: &str) -> (Command, PathBuf) {
    let scratch =
        std::env::temp_dir().join(format!("xtask-book-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let mut command = Command::cargo_bin("xtask").expect("the xtask binary");
    command
        .env("CARGO_TARGET_DIR", scratch.join("target"))
        .env("HOME", &scratch)
        .env("CARGO_HOME", scratch.join("cargo-home"))
        .env("PATH", "/usr/bin:/bin")
        .timeout(Duration::from_secs(120));
    (command, scratch)
}

#[test]
fn check_generates_the_book_and_checks_its_links_without_mdbook() {
    let (mut command, scratch) = without_mdbook("check");
    let output = command.args(["book", "--check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("links between them checked"), "{stderr}");
    let src = scratch.join("target/xtask/book/src");
    assert!(src.join("SUMMARY.md").is_file(), "{stderr}");
    assert!(src.join("w05/04-io-cpu-handoff.md").is_file());
    assert!(
        !scratch.join("target/xtask/book/html").exists(),
        "mdBook ran"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn without_mdbook_no_install_says_how_to_install_it() {
    let (mut command, scratch) = without_mdbook("no-install");
    let output = command.args(["book", "--no-install"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("mdbook is not installed: install it with `cargo install mdbook"),
        "{stderr}"
    );
    let refused = Command::cargo_bin("xtask")
        .unwrap()
        .args(["book", "--check", "--serve"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    std::fs::remove_dir_all(&scratch).unwrap();
}
