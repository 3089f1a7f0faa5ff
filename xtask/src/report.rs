//! Human output: the per-step report lines, colour on a terminal only, and the GitHub Actions
//! annotations and step summary.
//!
//! Where output goes: the report a command exists to print (a lesson's steps, `list`'s table,
//! `grade`'s results) goes to stdout, so `> out.txt` and `| head` get it; notes about the run
//! (what is being built, where files were written) go to stderr. `grade` prints its per-step
//! lines to stderr as progress, because its stdout is the results file (`--format json`).
//! A stdout closed early (`| head -3`) ends the runner quietly: see `out`.

pub(crate) mod classroom;
pub(crate) mod exercism;
mod per_step;

use crate::lesson::Lesson;
use crate::results::{GradeReport, LessonResult, Status, StepResult};
use std::io::{IsTerminal, Write};
use std::path::Path;

/// Writes `text` to stdout. When the reader has gone (`cargo xtask list | head -3`), the runner
/// stops what it started and exits at once with status 141, the status a shell reports for a
/// program ended by a closed pipe, printing nothing more.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            crate::process::exit_on_closed_stdout();
        }
        // Any other stdout failure (a full disk) is reported once, where it can still be read.
        eprintln!("error: writing to stdout: {error}");
        std::process::exit(1);
    }
}

/// [`out`] with a trailing newline.
pub(crate) fn outln(text: &str) {
    out(&format!("{text}\n"));
}

/// Whether NO_COLOR asks for plain text.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Where a [`Printer`]'s lines go.
#[derive(Debug, Clone)]
enum Sink {
    /// Nowhere (tests run lessons silently).
    Nowhere,
    /// stdout: the report is what the command prints.
    Stdout,
    /// stderr: the lines are progress next to a report printed elsewhere.
    Stderr,
    /// A buffer, for tests that read the report.
    Buffer(std::sync::Arc<std::sync::Mutex<String>>),
}

/// Prints a lesson's report as it runs, step by step.
#[derive(Debug, Clone)]
pub struct Printer {
    /// Where lines go.
    sink: Sink,
    /// Use ANSI colours.
    pub(crate) color: bool,
}

impl Printer {
    /// The report of `cargo xtask lesson`, on stdout: colour only on a TTY and when NO_COLOR is
    /// unset.
    pub fn for_terminal() -> Self {
        Self {
            sink: Sink::Stdout,
            color: std::io::stdout().is_terminal() && !no_color(),
        }
    }

    /// Progress lines on stderr, for `grade`, whose stdout carries the results.
    pub(crate) fn for_progress() -> Self {
        Self {
            sink: Sink::Stderr,
            color: std::io::stderr().is_terminal() && !no_color(),
        }
    }

    /// A printer that prints nothing.
    pub fn silent() -> Self {
        Self {
            sink: Sink::Nowhere,
            color: false,
        }
    }

    /// A printer that collects its lines in `buffer`, for a test or a tool that reads the report.
    pub fn to_buffer(buffer: std::sync::Arc<std::sync::Mutex<String>>) -> Self {
        Self {
            sink: Sink::Buffer(buffer),
            color: false,
        }
    }

    /// Whether the printer prints at all.
    fn enabled(&self) -> bool {
        !matches!(self.sink, Sink::Nowhere)
    }

    /// Prints one line to the printer's sink.
    fn line(&self, text: &str) {
        match &self.sink {
            Sink::Nowhere => {}
            Sink::Stdout => outln(text),
            Sink::Stderr => eprintln!("{text}"),
            Sink::Buffer(buffer) => {
                let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
                buffer.push_str(text);
                buffer.push('\n');
            }
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
            Status::NotApplicable => "2",
        };
        format!("\x1b[1;{code}m{text}\x1b[0m")
    }

    /// The lesson's title line.
    pub(crate) fn lesson_header(&self, lesson: &Lesson) {
        if self.enabled() {
            self.line(&format!(
                "\n{} — {}  ({})",
                lesson.front.id,
                lesson.front.title,
                lesson.path.display()
            ));
        }
    }

    /// A build command starting. Its time is reported as the `build` step's and apart from the
    /// steps' total, because no step's time limit covers it.
    pub(crate) fn building(&self, command: &str) {
        if self.enabled() {
            self.line(&format!("  ....  build: {command}"));
        }
    }

    /// One line of the build's own output (cargo's `Compiling ...` lines), as it arrives.
    pub(crate) fn build_output(&self, line: &str) {
        if self.enabled() && !crate::process::interrupted() {
            self.line(&format!("        | {line}"));
        }
    }

    /// Whether the printer prints anything (a silent printer needs no build output relayed).
    pub(crate) fn prints(&self) -> bool {
        self.enabled()
    }

    /// A background client step starting.
    pub(crate) fn background(&self, name: &str) {
        if self.enabled() {
            self.line(&format!("  ....  client {name}: running in the background"));
        }
    }

    /// One line per step with its time, then details for anything that did not pass.
    pub(crate) fn step(&self, step: &StepResult) {
        if !self.enabled() || crate::process::interrupted() {
            return;
        }
        let seconds = step.duration_ms as f64 / 1000.0;
        let label = if step.kind == step.name {
            step.kind.clone()
        } else {
            format!("{} {}", step.kind, step.name)
        };
        self.line(&format!(
            "  {}  {label:<32} {seconds:>7.2}s",
            self.paint(step.status, &format!("{:<5}", step.status.word()))
        ));
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
            self.line(&format!(
                "        {} {}{time}{}{}",
                self.paint(check.status, check.status.word()),
                check.name,
                if detail.is_empty() { "" } else { " — " },
                detail
            ));
        }
        if let Some(message) = &step.message {
            self.line(&format!("        {}", message.replace('\n', "\n        ")));
        }
        for hint in &step.hints {
            self.line(&format!("        hint: {hint}"));
        }
    }

    /// The Done-when items and the lesson's verdict, with the folder of the run's logs when it
    /// wrote any.
    pub(crate) fn lesson_footer(&self, result: &LessonResult, log_dir: Option<&Path>) {
        if !self.enabled() || crate::process::interrupted() {
            return;
        }
        if !result.done_when.is_empty() {
            self.line("  Done when:");
            for item in &result.done_when {
                let mark = match item.status {
                    Some(Status::Pass) => self.paint(Status::Pass, "[met]      "),
                    Some(Status::Skipped) => self.paint(Status::Skipped, "[skipped]  "),
                    Some(Status::NotApplicable) => self.paint(Status::NotApplicable, "[n/a]      "),
                    Some(status) => self.paint(status, "[not met]  "),
                    None => "[unchecked]".to_owned(),
                };
                let note = if item.status.is_none() {
                    "  (not checked mechanically: check it yourself)"
                } else {
                    ""
                };
                self.line(&format!("    {mark} {}{note}", item.text));
            }
        }
        let build_ms: u64 = result
            .steps
            .iter()
            .filter(|s| s.kind == "build")
            .map(|s| s.duration_ms)
            .sum();
        let build = if build_ms > 0 {
            format!(" (+ {:.1}s build)", build_ms as f64 / 1000.0)
        } else {
            String::new()
        };
        let logs = log_dir.map_or_else(String::new, |dir| format!(" (logs: {})", dir.display()));
        self.line(&format!(
            "  {} {}: {}/{} steps passed in {:.1}s{build}{logs}",
            self.paint(result.status, result.status.word()),
            result.id,
            result.points,
            result.max_points,
            result.duration_ms.saturating_sub(build_ms) as f64 / 1000.0,
        ));
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
        outln(&format!(
            "::error file={},line={},title={}::{}",
            lesson.file,
            step.line.max(1),
            escape(&format!("{} {} {}", lesson.id, step.kind, step.name))
                .replace(',', "%2C")
                .replace(':', "%3A"),
            escape(text.trim_end())
        ));
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
