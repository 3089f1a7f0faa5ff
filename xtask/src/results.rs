//! The one result model every output is rendered from: text, JSON, JUnit, GitHub annotations.

use serde::{Deserialize, Serialize};

/// The outcome of a check, a step or a lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It held.
    Pass,
    /// It did not hold: the code under test is wrong.
    Fail,
    /// The runner could not check it (a broken lesson, a missing tool, an I/O error).
    Error,
    /// Not checked, with a reason (strace missing, an earlier step failed): it counts in the
    /// total and scores nothing.
    Skipped,
    /// Not applicable in this mode: a reference-only step (a `run` step, or one marked
    /// `reference-only`) when a foreign server is graded with `--server`. The lesson file fixes
    /// which steps these are; they are not counted in the total.
    #[serde(rename = "not_applicable")]
    NotApplicable,
}

impl Status {
    /// The word printed in reports.
    pub fn word(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Error => "ERROR",
            Self::Skipped => "SKIP",
            Self::NotApplicable => "N/A",
        }
    }

    /// How bad a status is, for [`Status::combine`].
    fn severity(self) -> u8 {
        match self {
            Self::NotApplicable => 0,
            Self::Pass => 1,
            Self::Skipped => 2,
            Self::Error => 3,
            Self::Fail => 4,
        }
    }

    /// Combines statuses: any failure fails, then any error errs, then any skip skips; a
    /// not-applicable status changes nothing, so only statuses that are all not applicable
    /// combine to not applicable (and none at all to a pass).
    pub fn combine(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses
            .into_iter()
            .max_by_key(|status| status.severity())
            .unwrap_or(Status::Pass)
    }
}

/// One check inside a step (a command, a round of clients, an assertion).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    /// What was checked.
    pub name: String,
    /// Its outcome.
    pub status: Status,
    /// Details: expected-vs-got on failure, a figure on success.
    pub detail: Option<String>,
    /// How long the check took, when it was timed on its own.
    pub duration_ms: Option<u64>,
}

impl CheckResult {
    /// The same check with its own time.
    pub fn timed(mut self, elapsed: std::time::Duration) -> Self {
        self.duration_ms = Some(elapsed.as_millis() as u64);
        self
    }

    /// A check with a status and optional detail.
    pub fn new(name: impl Into<String>, status: Status, detail: Option<String>) -> Self {
        Self {
            name: name.into(),
            status,
            detail,
            duration_ms: None,
        }
    }
}

/// One step of a lesson.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    /// The step name.
    pub name: String,
    /// The step kind (`client`, `prove`, ...), or `build`.
    pub kind: String,
    /// Line of the step in the lesson file (0 for the build).
    pub line: usize,
    /// Outcome.
    pub status: Status,
    /// Wall time.
    pub duration_ms: u64,
    /// The checks it made.
    pub checks: Vec<CheckResult>,
    /// A step-level explanation (why it failed or was skipped).
    pub message: Option<String>,
    /// Common-mistakes hints, shown when it failed.
    pub hints: Vec<String>,
}

/// One Done-when item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneResult {
    /// The item's text.
    pub text: String,
    /// `None` when it is not checked mechanically.
    pub status: Option<Status>,
    /// The steps that check it.
    pub checked_by: Vec<String>,
}

/// One lesson run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LessonResult {
    /// Lesson id.
    pub id: String,
    /// Lesson title.
    pub title: String,
    /// Lesson file, relative to the workspace.
    pub file: String,
    /// Overall outcome.
    pub status: Status,
    /// Steps passed.
    pub points: u32,
    /// Steps that count: every step of the file, but for the not-applicable ones under
    /// `--server`.
    pub max_points: u32,
    /// Wall time.
    pub duration_ms: u64,
    /// Every step, build first.
    pub steps: Vec<StepResult>,
    /// Done-when items.
    pub done_when: Vec<DoneResult>,
}

impl LessonResult {
    /// The first failing (or erroring) step.
    pub fn first_failure(&self) -> Option<&StepResult> {
        self.steps
            .iter()
            .find(|step| matches!(step.status, Status::Fail | Status::Error))
    }
}

/// A whole grading run.
#[derive(Debug, Clone, Serialize)]
pub struct GradeReport {
    /// Overall outcome.
    pub status: Status,
    /// Points earned.
    pub points: u32,
    /// Points possible.
    pub max_points: u32,
    /// The `--server` command, if any.
    pub server: Option<String>,
    /// Every lesson graded.
    pub lessons: Vec<LessonResult>,
}

impl GradeReport {
    /// Builds the report from lesson results.
    pub fn new(lessons: Vec<LessonResult>, server: Option<String>) -> Self {
        let status = Status::combine(lessons.iter().map(|l| match l.status {
            Status::Skipped | Status::NotApplicable => Status::Pass,
            other => other,
        }));
        let points = lessons.iter().map(|l| l.points).sum();
        let max_points = lessons.iter().map(|l| l.max_points).sum();
        Self {
            status,
            points,
            max_points,
            server,
            lessons,
        }
    }

    /// JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// JUnit XML: one test suite per lesson, one test case per step.
    pub fn to_junit(&self) -> anyhow::Result<String> {
        use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
        let mut report = Report::new("cargo xtask grade");
        for lesson in &self.lessons {
            let mut suite = TestSuite::new(format!("{} {}", lesson.id, lesson.title));
            suite.set_time(std::time::Duration::from_millis(lesson.duration_ms));
            for step in &lesson.steps {
                let mut status = match step.status {
                    Status::Pass => TestCaseStatus::success(),
                    Status::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
                    Status::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
                    Status::Skipped | Status::NotApplicable => TestCaseStatus::skipped(),
                };
                if step.status != Status::Pass {
                    let text = step_text(step);
                    if let Some(first) = text.lines().next() {
                        status.set_message(first.to_owned());
                    }
                    status.set_description(text);
                }
                let mut case = TestCase::new(format!("{} {}", step.kind, step.name), status);
                case.set_classname(format!("{}::{}", lesson.id, lesson.file));
                case.set_time(std::time::Duration::from_millis(step.duration_ms));
                suite.add_test_case(case);
            }
            report.add_test_suite(suite);
        }
        Ok(report.to_string()?)
    }
}

/// A step's failure explanation as plain text: message, failing checks, hints.
pub fn step_text(step: &StepResult) -> String {
    let mut text = String::new();
    if let Some(message) = &step.message {
        text.push_str(message);
        text.push('\n');
    }
    for check in step.checks.iter().filter(|c| c.status != Status::Pass) {
        text.push_str(&format!("{} {}", check.status.word(), check.name));
        if let Some(detail) = &check.detail {
            text.push_str(": ");
            text.push_str(detail);
        }
        text.push('\n');
    }
    for hint in &step.hints {
        text.push_str("hint: ");
        text.push_str(hint);
        text.push('\n');
    }
    text
}

/// One step's outcome before it is timed and named.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The step's status.
    pub(crate) status: Status,
    /// The checks it made.
    pub(crate) checks: Vec<CheckResult>,
    /// A step-level explanation.
    pub(crate) message: Option<String>,
}

impl Outcome {
    /// The outcome of a list of checks: the worst of their statuses.
    pub(crate) fn from_checks(checks: Vec<CheckResult>) -> Self {
        Self {
            status: Status::combine(checks.iter().map(|c| c.status)),
            checks,
            message: None,
        }
    }

    /// An outcome with no checks, only a status and why.
    pub(crate) fn with(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            checks: Vec::new(),
            message: Some(message.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(status: Status) -> StepResult {
        StepResult {
            name: "half-close".into(),
            kind: "client".into(),
            line: 12,
            status,
            duration_ms: 5,
            checks: vec![CheckResult::new(
                "round 0",
                status,
                Some("request 1 `sleep 200`: expected x, got y".into()),
            )],
            message: None,
            hints: vec!["Closing on EOF — wait for owed answers".into()],
        }
    }

    fn report() -> GradeReport {
        let lesson = LessonResult {
            id: "w05-l04".into(),
            title: "IO-to-CPU handoff".into(),
            file: "course/w05/04-io-cpu-handoff.md".into(),
            status: Status::Fail,
            points: 1,
            max_points: 3,
            duration_ms: 20,
            steps: vec![
                step(Status::Pass),
                step(Status::Fail),
                step(Status::Skipped),
            ],
            done_when: vec![],
        };
        GradeReport::new(vec![lesson], None)
    }

    #[test]
    fn combine_prefers_failure() {
        assert_eq!(
            Status::combine([Status::Pass, Status::Skipped]),
            Status::Skipped
        );
        assert_eq!(Status::combine([Status::Error, Status::Fail]), Status::Fail);
        assert_eq!(Status::combine([]), Status::Pass);
        assert_eq!(
            Status::combine([Status::NotApplicable, Status::Pass]),
            Status::Pass
        );
        assert_eq!(
            Status::combine([Status::NotApplicable, Status::NotApplicable]),
            Status::NotApplicable
        );
        assert_eq!(
            Status::combine([Status::NotApplicable, Status::Skipped]),
            Status::Skipped
        );
    }

    #[test]
    fn not_applicable_steps_are_reported_as_such_and_skipped_in_junit() {
        let mut report = report();
        let mut step = step(Status::NotApplicable);
        step.message = Some("not applicable with --server".into());
        report.lessons[0].steps.push(step);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["lessons"][0]["steps"][3]["status"], "not_applicable");
        let xml = report.to_junit().unwrap();
        let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        assert_eq!(parsed.tests, 4);
        assert!(xml.contains("not applicable with --server"), "{xml}");
    }

    #[test]
    fn json_has_statuses_and_points() {
        let json: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(json["status"], "fail");
        assert_eq!(json["points"], 1);
        assert_eq!(json["max_points"], 3);
        assert_eq!(json["lessons"][0]["steps"][1]["status"], "fail");
        assert_eq!(json["lessons"][0]["steps"][2]["status"], "skipped");
    }

    #[test]
    fn junit_is_valid_and_counts_failures() {
        let xml = report().to_junit().unwrap();
        let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
        assert_eq!(parsed.tests, 3);
        assert_eq!(parsed.failures, 1);
        assert!(xml.contains("hint: Closing on EOF"));
    }
}
