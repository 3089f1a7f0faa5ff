//! `grade --format exercism`: the `results.json` of Exercism's test-runner interface, version 3.
//!
//! The interface wants `{version: 3, status, message, tests: [{name, status, message, output,
//! test_code, task_id}]}`: `status` is `pass`, `fail` (a test failed or erred) or `error` (no
//! test ran, with `message` saying why); each test's `test_code` is the code the test ran, here
//! the step's block as the lesson shows it, and its `output` is what the code under test printed,
//! here the end of the log of the server the step talked to, capped at the interface's 500
//! characters. `task_id` links a test to a task: each graded lesson is one task, numbered in
//! grading order.

use super::per_step::{StepTest, step_tests};
use crate::lesson::{Lesson, Step, StepKind};
use crate::results::GradeReport;
use serde::Serialize;
use std::path::Path;

/// The interface's version this file follows (tests linked to tasks).
const VERSION: u32 = 3;

/// The interface's limit on a test's `output`, in characters.
pub(crate) const OUTPUT_LIMIT: usize = 500;

/// The whole `results.json`.
#[derive(Debug, Serialize)]
struct ExercismResults {
    /// The interface's version.
    version: u32,
    /// `pass`, `fail` or `error`.
    status: &'static str,
    /// Why nothing ran, when `status` is `error`; `null` otherwise.
    message: Option<String>,
    /// One test per lesson step that counts, in the order they ran.
    tests: Vec<ExercismTest>,
}

/// One test: one lesson step.
#[derive(Debug, Serialize)]
struct ExercismTest {
    /// The lesson id, the step's kind and name.
    name: String,
    /// `pass`, `fail` or `error`.
    status: &'static str,
    /// Why it did not pass; `null` when it did.
    message: Option<String>,
    /// The end of the server's log, at most [`OUTPUT_LIMIT`] characters; absent for a step that
    /// talks to no server.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    /// The step's block as the lesson shows it.
    test_code: String,
    /// The lesson's number in grading order.
    task_id: usize,
}

/// Renders `report` as Exercism's `results.json`. `lessons` gives each step's block and server;
/// `log_root` is where the runner kept each lesson's logs (`<target>/xtask/logs`).
pub(crate) fn render(report: &GradeReport, lessons: &[Lesson], log_root: &Path) -> String {
    let tests = step_tests(report, lessons);
    // Only a lesson step that passed or failed ran: a failed build (the interface's compile
    // error) or a broken lesson file means no test was executed.
    let ran = tests
        .iter()
        .any(|t| t.step.is_some() && matches!(t.status_word(), "pass" | "fail"));
    let (status, message) = if !ran {
        let why = tests
            .iter()
            .find_map(StepTest::message)
            .unwrap_or_else(|| "no lesson step was graded".to_owned());
        ("error", Some(why))
    } else if tests.iter().all(|t| t.status_word() == "pass") {
        ("pass", None)
    } else {
        ("fail", None)
    };
    let results = ExercismResults {
        version: VERSION,
        status,
        message,
        tests: tests
            .iter()
            .map(|t| ExercismTest {
                name: t.name(),
                status: t.status_word(),
                message: t.message(),
                output: server_output(t, lessons, log_root),
                test_code: t.code().to_owned(),
                task_id: t.lesson_number,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&results).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The end of the log of the server `test`'s step talked to, as the runner kept it.
fn server_output(test: &StepTest<'_>, lessons: &[Lesson], log_root: &Path) -> Option<String> {
    let step = test.step?;
    let lesson = lessons.iter().find(|l| l.front.id == test.lesson.id)?;
    let log = step_log(lesson, step)?;
    let text =
        std::fs::read_to_string(log_root.join(&lesson.front.id).join(format!("{log}.log"))).ok()?;
    Some(tail(&text, OUTPUT_LIMIT))
}

/// The name of the log a step's server writes, following the step to its server (a `wait` step
/// through the client it waits for); `None` for a step without a server (`run`).
fn step_log<'a>(lesson: &'a Lesson, step: &'a Step) -> Option<&'a str> {
    let server_log = |server: &str| {
        lesson.steps.iter().find_map(|s| match &s.kind {
            StepKind::Server(server_step) if s.name == server => Some(server_step.log.as_str()),
            _ => None,
        })
    };
    match &step.kind {
        StepKind::Run(_) => None,
        StepKind::Server(server) => Some(server.log.as_str()),
        StepKind::Client(client) => server_log(&client.server),
        StepKind::Signal(signal) => server_log(&signal.server),
        StepKind::Trace(trace) => server_log(&trace.server),
        StepKind::Prove(prove) => prove
            .log
            .as_deref()
            .or_else(|| prove.server.as_deref().and_then(server_log)),
        StepKind::Wait(wait) => {
            let client = lesson.steps.iter().find(|s| s.name == wait.client)?;
            step_log(lesson, client)
        }
    }
}

/// The last characters of `text`, at most `limit` of them in all: when it is longer, a note that
/// says so, then as much of its end as fits.
pub(crate) fn tail(text: &str, limit: usize) -> String {
    let count = text.chars().count();
    if count <= limit {
        return text.to_owned();
    }
    let note = "(the log's start is cut: its last characters follow)\n";
    let keep = limit.saturating_sub(note.chars().count());
    let end: String = text.chars().skip(count - keep).collect();
    format!("{note}{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_is_cut_to_its_end_within_the_limit() {
        let log: String = (0..200).map(|n| format!("line {n}\n")).collect();
        let output = tail(&log, OUTPUT_LIMIT);
        assert_eq!(output.chars().count(), OUTPUT_LIMIT);
        assert!(output.starts_with("(the log's start is cut"), "{output}");
        assert!(output.ends_with("line 199\n"), "{output}");
        assert_eq!(tail("short\n", OUTPUT_LIMIT), "short\n");
        // Characters, not bytes: a multi-byte log is cut on a character boundary.
        let wide = "é".repeat(600);
        assert_eq!(tail(&wide, OUTPUT_LIMIT).chars().count(), OUTPUT_LIMIT);
    }
}
