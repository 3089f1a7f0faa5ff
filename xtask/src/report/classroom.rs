//! `grade --format classroom`: the result GitHub Classroom's autograding reporter reads.
//!
//! The reporter takes one JSON object per grader, `{version, status, max_score, tests: [{name,
//! status, score, message, test_code, filename, line_no, duration}]}`, sums the tests' `score`
//! against `max_score` and shows each test. A workflow passes it the object base64-encoded
//! through a step output (`course/grading/` has one a teacher can copy). Each lesson step that
//! counts is one test worth its `points=` weight (1 unless the lesson says otherwise), so a
//! student who fails one step loses that step's points, not the whole lesson.

use super::per_step::{StepTest, max_score, step_tests};
use crate::lesson::Lesson;
use crate::results::GradeReport;
use serde::Serialize;

/// The version of the shape Classroom's graders write.
const VERSION: u32 = 1;

/// The whole result.
#[derive(Debug, Serialize)]
struct ClassroomResult {
    /// The shape's version.
    version: u32,
    /// `pass` when every test passed, `fail` when one did not, `error` when there was none.
    status: &'static str,
    /// The points the run could score: the sum of the tests' weights.
    max_score: u32,
    /// One test per lesson step that counts.
    tests: Vec<ClassroomTest>,
}

/// One test: one lesson step.
#[derive(Debug, Serialize)]
struct ClassroomTest {
    /// The lesson id, the step's kind and name.
    name: String,
    /// `pass`, `fail` or `error`.
    status: &'static str,
    /// The step's weight when it passed, else 0.
    score: u32,
    /// Why it did not pass; `null` when it did.
    message: Option<String>,
    /// The step's block as the lesson shows it.
    test_code: String,
    /// The lesson file.
    filename: String,
    /// The line of the step's block in the lesson file.
    line_no: usize,
    /// The step's wall time in milliseconds.
    duration: u64,
}

/// Renders `report` as Classroom's result; `lessons` gives each step's weight and block.
pub(crate) fn render(report: &GradeReport, lessons: &[Lesson]) -> String {
    let tests = step_tests(report, lessons);
    let result = ClassroomResult {
        version: VERSION,
        status: overall_status(&tests),
        max_score: max_score(&tests),
        tests: tests.iter().map(test).collect(),
    };
    serde_json::to_string_pretty(&result).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The run's status from its tests: a run without tests is an error, not a pass.
fn overall_status(tests: &[StepTest<'_>]) -> &'static str {
    if tests.is_empty() {
        "error"
    } else if tests.iter().all(|t| t.status_word() == "pass") {
        "pass"
    } else {
        "fail"
    }
}

fn test(test: &StepTest<'_>) -> ClassroomTest {
    ClassroomTest {
        name: test.name(),
        status: test.status_word(),
        score: test.score(),
        message: test.message(),
        test_code: test.code().to_owned(),
        filename: test.lesson.file.clone(),
        line_no: test.result.line,
        duration: test.result.duration_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lesson::parse::parse_lesson;
    use crate::results::{LessonResult, Status, StepResult};
    use std::path::Path;

    /// The minimal lesson of course/FORMAT.md, its `ping` step worth 3 points.
    const LESSON: &str = "---\nid: w05-l09\ntitle: \"Ping\"\norder: 9\ncrate: handoff_server\n\
duration: 30 min\n---\n\n# Ping\n\n## Goal\nG.\n\n## What you build\nW.\n\n## Why it matters\nY.\n\n\
## Do\n1. D.\n\n## Test\n\n```console server name=main\n$ handoff_server {port} --workers 2 --log\n```\n\n\
```console client name=ping server=main within=500ms points=3\n> ping\n< pong\n```\n\n## Expected\nE.\n\n\
## Prove\n\n```console prove name=still-alive\nalive\n```\n\n## Done when\n- Pong. (checked by: ping)\n\n\
## Common mistakes\n| Mistake | Fix | Caught by |\n|---|---|---|\n| M | F | `ping` |\n\n## Diagram\n```text\nd\n```\n";

    fn step(name: &str, kind: &str, line: usize, status: Status) -> StepResult {
        StepResult {
            name: name.into(),
            kind: kind.into(),
            line,
            status,
            duration_ms: 7,
            checks: Vec::new(),
            message: (status != Status::Pass).then(|| "it broke".to_owned()),
            hints: Vec::new(),
        }
    }

    fn report(ping: Status) -> GradeReport {
        let lesson = LessonResult {
            id: "w05-l09".into(),
            title: "Ping".into(),
            file: "course/w05/09-ping.md".into(),
            status: ping,
            points: 0,
            max_points: 3,
            duration_ms: 30,
            steps: vec![
                step("build", "build", 0, Status::Pass),
                step("main", "server", 25, Status::Pass),
                step("ping", "client", 29, ping),
                step("still-alive", "prove", 41, Status::Pass),
            ],
            done_when: Vec::new(),
        };
        GradeReport::new(vec![lesson], None)
    }

    #[test]
    fn a_step_is_worth_its_points_weight_and_loses_all_of_it_when_it_fails() {
        let lesson = parse_lesson(LESSON, Path::new("course/w05/09-ping.md")).unwrap();
        assert_eq!(lesson.steps[1].points, 3);
        let lessons = [lesson];
        let passed: serde_json::Value =
            serde_json::from_str(&render(&report(Status::Pass), &lessons)).unwrap();
        assert_eq!(passed["status"], "pass");
        assert_eq!(passed["max_score"], 5, "{passed}");
        // The build passed, so it is no test; the three steps are, at their lines.
        let tests = passed["tests"].as_array().unwrap();
        assert_eq!(tests.len(), 3, "{passed}");
        assert_eq!(tests[1]["name"], "w05-l09 client ping");
        assert_eq!(tests[1]["score"], 3);
        assert_eq!(tests[1]["line_no"], 29);
        assert_eq!(tests[1]["filename"], "course/w05/09-ping.md");
        assert_eq!(
            tests[1]["test_code"],
            "console client name=ping server=main within=500ms points=3\n> ping\n< pong\n"
        );
        assert!(tests[1]["message"].is_null());

        let failed: serde_json::Value =
            serde_json::from_str(&render(&report(Status::Fail), &lessons)).unwrap();
        assert_eq!(failed["status"], "fail");
        assert_eq!(failed["max_score"], 5);
        assert_eq!(failed["tests"][1]["score"], 0);
        assert_eq!(failed["tests"][1]["status"], "fail");
        assert_eq!(failed["tests"][1]["message"], "it broke");
        let total: u64 = failed["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["score"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 2);
    }

    #[test]
    fn a_points_weight_must_be_a_positive_number() {
        for bad in ["points=0", "points=many", "points=1001"] {
            let text = LESSON.replace("points=3", bad);
            let error = parse_lesson(&text, Path::new("x.md")).unwrap_err();
            assert_eq!(error.line, 29, "{error}");
        }
        let text = LESSON.replace(" points=3", "");
        let lesson = parse_lesson(&text, Path::new("x.md")).unwrap();
        assert!(lesson.steps.iter().all(|s| s.points == 1));
    }

    #[test]
    fn a_run_without_tests_is_an_error() {
        let empty = GradeReport::new(Vec::new(), None);
        let result: serde_json::Value = serde_json::from_str(&render(&empty, &[])).unwrap();
        assert_eq!(result["status"], "error");
        assert_eq!(result["max_score"], 0);
    }
}
