//! `cargo xtask quiz` as a student meets it: the course's quizzes pass the format check, an
//! attempt answered on stdin is scored and recorded, and an unknown week is refused.
//!
//! Every run points `CARGO_TARGET_DIR` at a temporary folder, so the recorded attempts of a test
//! never mix with a student's own.

use assert_cmd::Command;
use std::path::Path;
use std::time::Duration;

/// A hang guard for one runner invocation; none of these runs takes more than a few seconds.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The runner with colours off, recording into `target`.
fn runner(target: &Path) -> Command {
    let mut command = Command::cargo_bin("xtask").expect("the xtask binary");
    command
        .env("NO_COLOR", "1")
        .env("CARGO_TARGET_DIR", target)
        .timeout(TIMEOUT);
    command
}

#[test]
fn every_quiz_of_the_course_passes_the_format_check() {
    let target = test_support::TempDir::new("quiz-check");
    let output = runner(target.path())
        .args(["quiz", "--check"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for week in ["w04", "w05", "w06", "w09", "w10"] {
        assert!(
            stdout.contains(&format!("course/{week}/quiz.md: ")),
            "{week} missing: {stdout}"
        );
    }
}

#[test]
fn an_attempt_on_stdin_is_scored_and_recorded() {
    let target = test_support::TempDir::new("quiz-attempt");
    // W04's first answer is b; the second (a short answer) is EAGAIN; then the input ends.
    let output = runner(target.path())
        .args(["quiz", "w04"])
        .write_stdin("b\neagain\n")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Question 1/10: "), "{stdout}");
    assert!(stdout.contains("right.\n  why: "), "{stdout}");
    assert!(stdout.contains("input ended"), "{stdout}");
    assert!(stdout.contains("score: 2/10"), "{stdout}");
    assert!(stdout.contains("attempt 1; best so far 2/10"), "{stdout}");
    let record = std::fs::read_to_string(target.path().join("xtask/quiz/w04.jsonl")).unwrap();
    let attempt: serde_json::Value = serde_json::from_str(record.trim()).unwrap();
    assert_eq!(attempt["right"], 2);
    assert_eq!(attempt["total"], 10);
    assert_eq!(attempt["answers"].as_array().map(Vec::len), Some(2));

    // The list shows the best score recorded.
    let listed = runner(target.path()).arg("quiz").output().expect("run");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("w04  10 questions, best so far 2/10"),
        "{listed}"
    );
}

#[test]
fn a_week_without_a_quiz_is_a_usage_error() {
    let target = test_support::TempDir::new("quiz-unknown");
    let output = runner(target.path())
        .args(["quiz", "w99"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("w99 has no quiz"), "{stderr}");
    assert!(stderr.contains("w04, w05, w06, w09, w10"), "{stderr}");
}
