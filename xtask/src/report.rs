//! Human output: the per-step progress lines, colour on a terminal only, and the GitHub Actions
//! annotations and step summary.

use crate::lesson::Lesson;
use crate::results::{GradeReport, LessonResult, Status, StepResult};
use std::io::IsTerminal;
use std::path::Path;

/// Prints progress as a lesson runs (to stderr, so `--format json` on stdout stays clean).
#[derive(Debug, Clone)]
pub(crate) struct Printer {
    /// Print at all (tests run lessons silently).
    pub(crate) enabled: bool,
    /// Use ANSI colours.
    pub(crate) color: bool,
}

impl Printer {
    /// A printer for this terminal: colour only on a TTY and when NO_COLOR is unset.
    pub(crate) fn for_terminal() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            enabled: true,
            color: std::io::stderr().is_terminal() && !no_color,
        }
    }

    /// A printer that prints nothing.
    pub(crate) fn silent() -> Self {
        Self {
            enabled: false,
            color: false,
        }
    }

    fn paint(&self, status: Status, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match status {
            Status::Pass => "32",
            Status::Fail | Status::Error => "31",
            Status::Skipped => "33",
        };
        format!("\x1b[1;{code}m{text}\x1b[0m")
    }

    /// The lesson's title line.
    pub(crate) fn lesson_header(&self, lesson: &Lesson) {
        if self.enabled {
            eprintln!(
                "\n{} — {}  ({})",
                lesson.front.id,
                lesson.front.title,
                lesson.path.display()
            );
        }
    }

    /// A build command starting (builds are not timed as steps).
    pub(crate) fn building(&self, command: &str) {
        if self.enabled {
            eprintln!("  ....  build: {command} (not timed)");
        }
    }

    /// A background client step starting.
    pub(crate) fn background(&self, name: &str) {
        if self.enabled {
            eprintln!("  ....  client {name}: running in the background");
        }
    }

    /// One line per step with its time, then details for anything that did not pass.
    pub(crate) fn step(&self, step: &StepResult) {
        if !self.enabled || crate::process::interrupted() {
            return;
        }
        let seconds = step.duration_ms as f64 / 1000.0;
        let label = if step.kind == step.name {
            step.kind.clone()
        } else {
            format!("{} {}", step.kind, step.name)
        };
        eprintln!(
            "  {}  {label:<32} {seconds:>7.2}s",
            self.paint(step.status, &format!("{:<5}", step.status.word()))
        );
        for check in &step.checks {
            let show_detail = check.status != Status::Pass || step.checks.len() > 1;
            if !show_detail && check.detail.is_none() {
                continue;
            }
            let detail = check.detail.as_deref().unwrap_or("");
            let detail = detail.replace('\n', "\n          ");
            let time = check
                .duration_ms
                .map_or(String::new(), |ms| format!(" ({:.2}s)", ms as f64 / 1000.0));
            eprintln!(
                "        {} {}{time}{}{}",
                self.paint(check.status, check.status.word()),
                check.name,
                if detail.is_empty() { "" } else { " — " },
                detail
            );
        }
        if let Some(message) = &step.message {
            eprintln!("        {}", message.replace('\n', "\n        "));
        }
        for hint in &step.hints {
            eprintln!("        hint: {hint}");
        }
    }

    /// The Done-when items and the lesson's verdict.
    pub(crate) fn lesson_footer(&self, result: &LessonResult, log_dir: &Path) {
        if !self.enabled || crate::process::interrupted() {
            return;
        }
        if !result.done_when.is_empty() {
            eprintln!("  Done when:");
            for item in &result.done_when {
                let mark = match item.status {
                    Some(Status::Pass) => self.paint(Status::Pass, "[met]      "),
                    Some(Status::Skipped) => self.paint(Status::Skipped, "[skipped]  "),
                    Some(status) => self.paint(status, "[not met]  "),
                    None => "[unchecked]".to_owned(),
                };
                let note = if item.status.is_none() {
                    "  (not checked mechanically: check it yourself)"
                } else {
                    ""
                };
                eprintln!("    {mark} {}{note}", item.text);
            }
        }
        let build_ms: u64 = result
            .steps
            .iter()
            .filter(|s| s.kind == "build")
            .map(|s| s.duration_ms)
            .sum();
        let build = if build_ms > 0 {
            format!(" (+ {:.1}s untimed build)", build_ms as f64 / 1000.0)
        } else {
            String::new()
        };
        eprintln!(
            "  {} {}: {}/{} steps passed in {:.1}s{build} (logs: {})",
            self.paint(result.status, result.status.word()),
            result.id,
            result.points,
            result.max_points,
            result.duration_ms.saturating_sub(build_ms) as f64 / 1000.0,
            log_dir.display()
        );
    }
}

/// The plain-text grade summary.
pub(crate) fn grade_text(report: &GradeReport) -> String {
    let mut out = String::new();
    for lesson in &report.lessons {
        out.push_str(&format!(
            "{:<5} {:<10} {:>3}/{:<3} {}\n",
            lesson.status.word(),
            lesson.id,
            lesson.points,
            lesson.max_points,
            lesson.title
        ));
        if let Some(step) = lesson.first_failure() {
            out.push_str(&format!(
                "      first failure: {} {}\n",
                step.kind, step.name
            ));
        } else if lesson.status == Status::Skipped {
            if let Some(message) = lesson.steps.first().and_then(|s| s.message.as_deref()) {
                out.push_str(&format!("      {message}\n"));
            }
        }
    }
    out.push_str(&format!(
        "{}: {}/{} points\n",
        report.status.word(),
        report.points,
        report.max_points
    ));
    out
}

/// GitHub Actions workflow commands: at most 10 error annotations (the per-step cap), plus a
/// markdown summary appended to `$GITHUB_STEP_SUMMARY`.
pub(crate) fn github(report: &GradeReport) {
    if std::env::var_os("GITHUB_ACTIONS").is_none() {
        return;
    }
    let escape = |text: &str| {
        text.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let failures = report
        .lessons
        .iter()
        .flat_map(|lesson| lesson.steps.iter().map(move |step| (lesson, step)))
        .filter(|(_, step)| matches!(step.status, Status::Fail | Status::Error));
    for (lesson, step) in failures.take(10) {
        let text = crate::results::step_text(step);
        println!(
            "::error file={},line={},title={}::{}",
            lesson.file,
            step.line.max(1),
            escape(&format!("{} {} {}", lesson.id, step.kind, step.name))
                .replace(',', "%2C")
                .replace(':', "%3A"),
            escape(text.trim_end())
        );
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        let mut summary = format!(
            "## Course grade: {} ({}/{} points)\n\n| lesson | status | points | first failure |\n|---|---|---|---|\n",
            report.status.word(),
            report.points,
            report.max_points
        );
        for lesson in &report.lessons {
            let failure = lesson
                .first_failure()
                .map_or(String::new(), |s| format!("{} `{}`", s.kind, s.name));
            summary.push_str(&format!(
                "| {} {} | {} | {}/{} | {} |\n",
                lesson.id,
                lesson.title,
                lesson.status.word(),
                lesson.points,
                lesson.max_points,
                failure
            ));
        }
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(summary.as_bytes());
        }
    }
}
