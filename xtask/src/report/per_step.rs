//! The view of a grading run that the per-test formats share (GitHub Classroom, Exercism): one
//! test per lesson step that counts, each with the lesson step it came from.
//!
//! Both formats know only "tests", so this module decides once which results are tests: every
//! step of a graded lesson but the not-applicable ones (under `--server` they do not count), the
//! `build` line only when it did not pass (it is not a point, but a student must see why nothing
//! ran), and a lesson file that breaks the format as one erroring test. Lessons `grade --server`
//! left out are not tests at all: they were never the subject of the run.

use crate::lesson::{Lesson, Step};
use crate::results::{GradeReport, LessonResult, Status, StepResult};

/// One test of a per-test format: a step result with the lesson step it reports, if it is one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepTest<'a> {
    /// The 1-based place of the lesson among the lessons that have tests.
    pub(crate) lesson_number: usize,
    /// The lesson's result.
    pub(crate) lesson: &'a LessonResult,
    /// The step's result.
    pub(crate) result: &'a StepResult,
    /// The lesson step, or `None` for the `build` line and a broken lesson file.
    pub(crate) step: Option<&'a Step>,
}

impl StepTest<'_> {
    /// The test's name: the lesson id, then the step's kind and name (`w05-l04 client ping`).
    pub(crate) fn name(&self) -> String {
        format!(
            "{} {} {}",
            self.lesson.id, self.result.kind, self.result.name
        )
    }

    /// The points the step is worth: its `points=` weight, and nothing for a line that is not a
    /// lesson step.
    pub(crate) fn weight(&self) -> u32 {
        self.step.map_or(0, |step| step.points)
    }

    /// The points it scored: its weight when it passed, else none.
    pub(crate) fn score(&self) -> u32 {
        if self.result.status == Status::Pass {
            self.weight()
        } else {
            0
        }
    }

    /// The status word both formats use: `pass`, `fail` or `error`. A skipped step did not run,
    /// so neither format may call it passed, and it did not fail on its own: it is an error,
    /// whose message says why it did not run.
    pub(crate) fn status_word(&self) -> &'static str {
        match self.result.status {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error | Status::Skipped | Status::NotApplicable => "error",
        }
    }

    /// What to tell the student when the step did not pass: its message, the checks that did not
    /// hold, and the hints; `None` when it passed.
    pub(crate) fn message(&self) -> Option<String> {
        (self.result.status != Status::Pass)
            .then(|| crate::results::step_text(self.result).trim_end().to_owned())
    }

    /// The step's block as the lesson shows it (empty for a line that is not a lesson step).
    pub(crate) fn code(&self) -> &str {
        self.step.map_or("", |step| step.block.as_str())
    }
}

/// Every test of `report`, in the order the lessons were graded and their steps reported.
pub(crate) fn step_tests<'a>(report: &'a GradeReport, lessons: &'a [Lesson]) -> Vec<StepTest<'a>> {
    let mut tests = Vec::new();
    let mut lesson_number = 0;
    for lesson in &report.lessons {
        let source = lessons.iter().find(|l| l.front.id == lesson.id);
        let counted: Vec<&StepResult> = lesson
            .steps
            .iter()
            .filter(|result| counts(source, result))
            .collect();
        if counted.is_empty() {
            continue;
        }
        lesson_number += 1;
        for result in counted {
            let step = source.and_then(|l| l.steps.iter().find(|s| s.name == result.name));
            tests.push(StepTest {
                lesson_number,
                lesson,
                result,
                step: step.filter(|_| result.kind != "build"),
            });
        }
    }
    tests
}

/// Whether a step result is a test: see the module's documentation.
fn counts(lesson: Option<&Lesson>, result: &StepResult) -> bool {
    match result.kind.as_str() {
        "build" => result.status != Status::Pass,
        // A broken lesson file is graded `error` and must show; a lesson `--server` left out
        // (`select`) was not graded.
        "format" => true,
        "select" => false,
        _ => lesson.is_some() && result.status != Status::NotApplicable,
    }
}

/// The points a run could score: the weights of every test.
pub(crate) fn max_score(tests: &[StepTest<'_>]) -> u32 {
    tests.iter().map(StepTest::weight).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lesson::parse::parse_lesson;
    use std::path::Path;

    /// A lesson with a reference-only `run` step, a server, a client and a prove step.
    const LESSON: &str = "---\nid: w05-l09\ntitle: \"Ping\"\norder: 9\ncrate: handoff_server\n\
duration: 30 min\n---\n\n# Ping\n\n## Goal\nG.\n\n## What you build\nW.\n\n## Why it matters\nY.\n\n\
## Do\n1. D.\n\n## Test\n\n```console run name=unit\n$ true\n```\n\n\
```console server name=main\n$ handoff_server {port} --workers 2 --log\n```\n\n\
```console client name=ping server=main\n> ping\n< pong\n```\n\n## Expected\nE.\n\n\
## Prove\n\n```console prove name=alive\nalive\n```\n\n## Done when\n- Pong. (checked by: ping)\n\n\
## Common mistakes\n| Mistake | Fix | Caught by |\n|---|---|---|\n| M | F | `ping` |\n\n## Diagram\n```text\nd\n```\n";

    fn step(name: &str, kind: &str, status: Status) -> StepResult {
        StepResult {
            name: name.into(),
            kind: kind.into(),
            line: 1,
            status,
            duration_ms: 1,
            checks: Vec::new(),
            message: (status != Status::Pass).then(|| format!("{name} did not pass")),
            hints: Vec::new(),
        }
    }

    fn lesson_result(id: &str, steps: Vec<StepResult>) -> LessonResult {
        LessonResult {
            id: id.into(),
            title: "T".into(),
            file: "course/w05/09-ping.md".into(),
            status: Status::Fail,
            points: 0,
            max_points: 0,
            duration_ms: 1,
            steps,
            done_when: Vec::new(),
        }
    }

    #[test]
    fn only_the_steps_that_count_are_tests() {
        let lesson = parse_lesson(LESSON, Path::new("course/w05/09-ping.md")).unwrap();
        let graded = lesson_result(
            "w05-l09",
            vec![
                step("build", "build", Status::Pass),
                step("unit", "run", Status::NotApplicable),
                step("main", "server", Status::Pass),
                step("ping", "client", Status::Fail),
                step("alive", "prove", Status::Skipped),
            ],
        );
        let left_out = lesson_result(
            "w05-l01",
            vec![step("foreign-server", "select", Status::Skipped)],
        );
        let broken = lesson_result("07-broken", vec![step("format", "format", Status::Error)]);
        let report = GradeReport::new(vec![left_out, graded, broken], Some("s {port}".into()));
        let lessons = [lesson];
        let tests = step_tests(&report, &lessons);
        let names: Vec<String> = tests.iter().map(StepTest::name).collect();
        // The passed build, the not-applicable run step and the lesson left out are no tests.
        assert_eq!(
            names,
            [
                "w05-l09 server main",
                "w05-l09 client ping",
                "w05-l09 prove alive",
                "07-broken format format"
            ]
        );
        let statuses: Vec<&str> = tests.iter().map(StepTest::status_word).collect();
        // A skipped step did not run: neither format may call it passed.
        assert_eq!(statuses, ["pass", "fail", "error", "error"]);
        assert_eq!(
            max_score(&tests),
            3,
            "a broken file's test is worth nothing"
        );
        assert_eq!(tests.iter().map(StepTest::score).sum::<u32>(), 1);
        assert_eq!(tests[0].lesson_number, 1);
        assert_eq!(tests[3].lesson_number, 2);
        assert_eq!(tests[1].message().as_deref(), Some("ping did not pass"));

        // A build that failed is shown, worth nothing, and its steps did not run.
        let failed_build = lesson_result(
            "w05-l09",
            vec![
                step("build", "build", Status::Fail),
                step("main", "server", Status::Skipped),
            ],
        );
        let report = GradeReport::new(vec![failed_build], None);
        let tests = step_tests(&report, &lessons);
        assert_eq!(tests.len(), 2);
        assert_eq!(tests[0].name(), "w05-l09 build build");
        assert_eq!(tests[0].weight(), 0);
        assert_eq!(tests[0].code(), "");

        // Exercism: no step ran, so the run is an error that says why.
        let results: serde_json::Value = serde_json::from_str(&super::super::exercism::render(
            &report,
            &lessons,
            Path::new("/nonexistent"),
        ))
        .unwrap();
        assert_eq!(results["status"], "error");
        assert_eq!(results["message"], "build did not pass");
        assert_eq!(results["version"], 3);
    }
}
