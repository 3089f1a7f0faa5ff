//! Runs a lesson: the build outside the timed window, then each step with its time limit.
//!
//! Servers, traces and background clients live in a `run_state::LessonRun` for the length of one lesson;
//! dropping it stops every server, so a failed or interrupted lesson leaves nothing behind.

use crate::client::{self, SentCounter};
use crate::lesson::pattern::{lines_match, split_lines};
use crate::lesson::{
    ClientStep, ExpectStatus, Lesson, RunStep, ServerStep, SignalStep, Step, StepKind, Stream,
    TraceStep,
};
use crate::process;
use crate::prove;
use crate::report::Printer;
use crate::results::{CheckResult, DoneResult, LessonResult, Outcome, Status, StepResult};
use crate::run_state::{Background, LessonRun};
use crate::server::{ForeignServer, Launch, RunningServer, StatsWorkers, indent};
use crate::trace::Trace;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to run lessons.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where commands run: the workspace, or a student's scratch copy of it.
    pub root: PathBuf,
    /// The cargo target folder builds go to (its `release/` goes first on `PATH`).
    pub target_dir: PathBuf,
    /// Where logs and traces are written.
    pub log_dir: PathBuf,
    /// `--server CMD`.
    pub server: Option<ForeignServer>,
    /// The folder `--server` commands run in (where the user typed the command).
    pub invocation_dir: PathBuf,
    /// Run every step even after a failure.
    pub keep_going: bool,
    /// `--quick`: `{full}` in a command expands to nothing instead of `--full`.
    pub quick: bool,
    /// Relay server and client output.
    pub verbose: bool,
    /// Build before the steps.
    pub build: bool,
    /// Set when a student's copy is graded: how to report its files by the student's paths.
    pub student_paths: Option<StudentPaths>,
}

/// Where a graded student's copies are, so reports name `student/<crate>/src/lib.rs` (the file
/// the student edits) rather than the scratch workspace's copy of it, or the reference's path
/// `crates/...`, whose line numbers belong to other code.
#[derive(Debug, Clone)]
pub struct StudentPaths {
    /// The scratch workspace the copies are graded in.
    pub scratch: PathBuf,
    /// Every crate whose files the student's copies replace in the scratch workspace: the graded
    /// lesson's, then the student's copies of the crates it builds on.
    pub copies: Vec<StudentCopy>,
}

/// One crate of the student's, laid over the reference's folder in the scratch workspace.
#[derive(Debug, Clone)]
pub struct StudentCopy {
    /// The crate's package name (`task_queue`).
    pub krate: String,
    /// The crate's folder relative to the workspace root (`crates/w05/task_queue`).
    pub crate_dir: PathBuf,
    /// The student's copy (`<root>/student/task_queue`).
    pub student: PathBuf,
    /// How the student's copy is named in reports (`student/task_queue`).
    pub shown_as: String,
}

impl StudentPaths {
    /// Rewrites the paths in compiler errors, panic messages and test output: a file of a crate
    /// that a student's copy holds is named by its path there, and the crate's folder by the
    /// copy's; any other file keeps the workspace path it has in the reference (the scratch
    /// workspace's copy is identical).
    pub(crate) fn rewrite(&self, text: &str) -> String {
        let mut scratch = self.scratch.display().to_string();
        scratch.push('/');
        let text = text.replace(&scratch, "");
        let text = self.rewrite_rerun_hints(&text);
        self.copies
            .iter()
            .fold(text, |text, copy| copy.rewrite(&text))
    }

    /// [`Self::rewrite`] for the output of `command`: a test binary of `cargo test -p CRATE`
    /// runs in its crate's folder, so its backtrace frames name files relative to it
    /// (`./src/server/tests.rs`); when CRATE is one of the student's, those are anchored to the
    /// crate's folder first and then named like every other path.
    pub(crate) fn rewrite_output(&self, command: &str, text: &str) -> String {
        let words: Vec<&str> = command.split_whitespace().collect();
        let tested = words
            .windows(2)
            .find(|pair| pair[0] == "-p" || pair[0] == "--package")
            .and_then(|pair| self.copies.iter().find(|copy| copy.krate == pair[1]));
        match tested {
            Some(copy) if command.contains("cargo test") => {
                let anchored = format!("at ./{}/", copy.crate_dir.display());
                let text = text
                    .replace("at ./src/", &format!("{anchored}src/"))
                    .replace("at ./tests/", &format!("{anchored}tests/"));
                self.rewrite(&text)
            }
            _ => self.rewrite(text),
        }
    }

    /// Cargo's "to rerun pass `-p CRATE ...`" names arguments for the workspace it ran in, the
    /// scratch copy; for one of the student's crates it becomes the command that reruns the
    /// tests on the student's copy.
    fn rewrite_rerun_hints(&self, text: &str) -> String {
        const HINT: &str = "to rerun pass `";
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(HINT) {
            let after = &rest[at + HINT.len()..];
            let Some(end) = after.find('`') else { break };
            let args = &after[..end];
            let copy = self.copies.iter().find(|copy| {
                args.strip_prefix("-p ")
                    .and_then(|args| args.strip_prefix(copy.krate.as_str()))
                    .is_some_and(|tail| tail.is_empty() || tail.starts_with(' '))
            });
            out.push_str(&rest[..at]);
            match copy {
                Some(copy) => out.push_str(&format!(
                    "to rerun on your copy: `cd {} && cargo test {args}`",
                    copy.shown_as
                )),
                None => out.push_str(&rest[at..at + HINT.len() + end + 1]),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

impl StudentCopy {
    /// Names this crate's files by the copy's paths where the copy holds them.
    fn rewrite(&self, text: &str) -> String {
        let crate_dir = self.crate_dir.display().to_string();
        let is_path_byte =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-');
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(&crate_dir) {
            // A path starts after a byte no path has, or after `./` that does (a backtrace
            // frame's `./crates/...`, relative to the folder the program ran in).
            let starts_after = |at: usize| at == 0 || !is_path_byte(rest.as_bytes()[at - 1]);
            let starts_a_path =
                starts_after(at) || (rest[..at].ends_with("./") && starts_after(at - 2));
            let after = &rest[at + crate_dir.len()..];
            let path_len = after.bytes().take_while(|&b| is_path_byte(b)).count();
            // `""` for the folder itself, `/src/lib.rs` for a file in it.
            let inside = &after[..path_len];
            let students = match inside.strip_prefix('/') {
                _ if !starts_a_path => false,
                None => inside.is_empty(),
                Some(file) => {
                    crate::student::graded_from_copy(Path::new(file))
                        && self.student.join(file).is_file()
                }
            };
            out.push_str(&rest[..at]);
            out.push_str(if students { &self.shown_as } else { &crate_dir });
            out.push_str(inside);
            rest = &after[path_len..];
        }
        out.push_str(rest);
        out
    }
}

impl StudentPaths {
    /// Whether `location` (a compiler message's `--> FILE:LINE:COL`, already rewritten) is in
    /// one of the student's copies.
    fn is_students(&self, location: &str) -> bool {
        let location = location.strip_prefix("./").unwrap_or(location);
        self.copies.iter().any(|copy| {
            location
                .strip_prefix(copy.shown_as.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// `text` (rewritten) with the compiler warnings of files the student does not own left
    /// out, and a line that says how many were.
    pub(crate) fn own_warnings_only(&self, text: &str) -> String {
        let mut own = OwnWarnings::default();
        let mut lines: Vec<String> = text.lines().flat_map(|line| own.line(self, line)).collect();
        lines.extend(own.finish(self));
        lines.extend(own.note());
        let mut out = lines.join("\n");
        if text.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

/// Keeps a graded copy's compiler warnings to the student's own files: a warning located in a
/// file the student does not own (a reference crate's, a test's) is the course's business, not
/// the student's, and is left out and counted, as is cargo's summary line for a crate that is
/// not the student's. Lines come one at a time, already named by the student's paths.
#[derive(Debug, Default)]
struct OwnWarnings {
    /// The lines of the warning being read, until its end shows where it is.
    block: Vec<String>,
    /// Warnings left out so far.
    left_out: usize,
}

impl OwnWarnings {
    /// Takes one line and returns the lines to show now.
    fn line(&mut self, paths: &StudentPaths, line: &str) -> Vec<String> {
        // A diagnostic's lines after its first are indented or numbered source lines, or its
        // `help:` and `note:`; cargo's status lines (`   Compiling x`) are indented too, but
        // start with a capital.
        let trimmed = line.trim_start();
        let status =
            trimmed.len() < line.len() && trimmed.starts_with(|c: char| c.is_ascii_uppercase());
        let continues = !status
            && (line.is_empty()
                || line.starts_with(|c: char| c == ' ' || c.is_ascii_digit())
                || line.starts_with("help:")
                || line.starts_with("note:"));
        if !self.block.is_empty() && continues {
            self.block.push(line.to_owned());
            return Vec::new();
        }
        let mut shown = self.finish(paths);
        match line.strip_prefix("warning: `") {
            // `warning: `eventloop` (lib) generated 2 warnings`: shown for the student's crates.
            Some(summary) if summary.contains(" generated ") => {
                let krate = summary.split('`').next().unwrap_or_default();
                if paths.copies.iter().any(|copy| copy.krate == krate) {
                    shown.push(line.to_owned());
                }
            }
            _ if line.starts_with("warning:") => self.block.push(line.to_owned()),
            _ => shown.push(line.to_owned()),
        }
        shown
    }

    /// Ends the warning being read: its lines if it is the student's (or says nowhere where it
    /// is), else nothing.
    fn finish(&mut self, paths: &StudentPaths) -> Vec<String> {
        let block = std::mem::take(&mut self.block);
        let location = block
            .iter()
            .find_map(|line| line.trim_start().strip_prefix("--> "));
        match location {
            Some(location) if !paths.is_students(location) => {
                self.left_out += 1;
                Vec::new()
            }
            _ => block,
        }
    }

    /// The line that says how many warnings were left out, if any were.
    fn note(&self) -> Option<String> {
        (self.left_out > 0).then(|| {
            format!(
                "({} compiler warning(s) in files that are not yours left out: the reference's \
                 code and the course's tests)",
                self.left_out
            )
        })
    }
}

/// `PATH` with the release target folder first.
fn path_env(options: &RunOptions) -> OsString {
    let mut paths = vec![options.target_dir.join("release")];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// Runs a whole lesson and reports each step through `printer` as it finishes.
///
/// Every step of the lesson file has a result, in file order (a background client's result is
/// listed where its `wait` step is, or at the end), so a lesson is always scored out of the same
/// total: its number of steps. A step that did not run is shown as skipped and scores nothing.
pub fn run_lesson(lesson: &Lesson, options: &RunOptions, printer: &Printer) -> LessonResult {
    let started = Instant::now();
    if options.verbose {
        client::VERBOSE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    printer.lesson_header(lesson);
    let mut report = StepReport {
        options,
        printer,
        steps: Vec::new(),
        failed: false,
    };
    if options.build && needs_build(lesson, options) {
        report.add(build(lesson, options, printer));
    }

    let log_dir = options.log_dir.join(&lesson.front.id);
    let _ = std::fs::create_dir_all(&log_dir);
    clear_logs(&log_dir);
    let mut lesson_run = LessonRun::default();
    lesson_run.data_dir = fresh_data_dir(&log_dir);
    for step in &lesson.steps {
        let step_started = Instant::now();
        let Some(outcome) = step_outcome(lesson, step, &log_dir, &mut lesson_run, &mut report)
        else {
            continue;
        };
        report.add(step_result(lesson, step, outcome, step_started.elapsed()));
    }
    // Background clients nobody waited for are collected and reported at the end.
    let pending: Vec<Background> = std::mem::take(&mut lesson_run.backgrounds)
        .into_values()
        .collect();
    for background in pending {
        report.add(finish_background(lesson, background));
    }
    stop_servers_and_write_logs(lesson, &mut lesson_run, &log_dir);
    drop(lesson_run);

    let steps = report.steps;
    let done_when = done_when_results(lesson, &steps);
    let (status, points, max_points) = score(&steps);
    debug_assert_eq!(
        max_points as usize,
        lesson
            .steps
            .iter()
            .filter(|s| options.server.is_none() || s.applies_to_foreign_server())
            .count()
    );
    let result = LessonResult {
        id: lesson.front.id.clone(),
        title: lesson.front.title.clone(),
        file: lesson.path.display().to_string(),
        status,
        points,
        max_points,
        duration_ms: started.elapsed().as_millis() as u64,
        steps,
        done_when,
    };
    printer.lesson_footer(&result, holds_logs(&log_dir).then_some(log_dir.as_path()));
    result
}

/// Removes the logs and traces an earlier run of the lesson left (the files at the top of its
/// folder), so the folder the report names holds this run's and no other.
fn clear_logs(log_dir: &Path) {
    for entry in std::fs::read_dir(log_dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether the run wrote a log or a trace: a lesson without servers or traces writes none, and
/// its report names no folder.
fn holds_logs(log_dir: &Path) -> bool {
    std::fs::read_dir(log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
}

/// The results of a lesson's steps so far, each printed as it is added, and whether one has
/// failed (after which the steps that follow are skipped, unless `--keep-going`).
struct StepReport<'a> {
    /// How the lesson runs: whose files the results name.
    options: &'a RunOptions,
    /// Where each result is printed.
    printer: &'a Printer,
    /// The results, in the order they were added.
    steps: Vec<StepResult>,
    /// Whether a step failed or could not run.
    failed: bool,
}

impl StepReport<'_> {
    /// Adds a result and prints it. Every result passes here, so in a student's copy every
    /// file is named by the student's paths.
    fn add(&mut self, result: StepResult) {
        let result = match &self.options.student_paths {
            Some(paths) => student_view(result, paths),
            None => result,
        };
        self.failed |= matches!(result.status, Status::Fail | Status::Error);
        self.printer.step(&result);
        self.steps.push(result);
    }
}

/// The outcome of one step of the file, or `None` for a background client, whose result is
/// reported where it is waited for (or at the end).
fn step_outcome(
    lesson: &Lesson,
    step: &Step,
    log_dir: &Path,
    lesson_run: &mut LessonRun,
    report: &mut StepReport<'_>,
) -> Option<Outcome> {
    let options = report.options;
    // Decided by the lesson file alone, before anything ran, so the total under `--server`
    // is the same whichever step fails.
    if options.server.is_some() && !step.applies_to_foreign_server() {
        return Some(Outcome::with(
            Status::NotApplicable,
            if matches!(step.kind, StepKind::Run(_)) {
                "not applicable with --server: it tests the workspace's own code"
            } else {
                "not applicable with --server: the lesson marks it reference-only"
            },
        ));
    }
    if report.failed && !options.keep_going {
        return Some(Outcome::with(
            Status::Skipped,
            "not run: an earlier step failed",
        ));
    }
    Some(match &step.kind {
        StepKind::Client(client) if client.background => {
            start_background(step, client, lesson_run, report.printer);
            return None;
        }
        StepKind::Wait(wait) => match lesson_run.backgrounds.remove(&wait.client) {
            Some(background) => {
                let client = finish_background(lesson, background);
                let waited = waited_for(&client);
                report.add(client);
                waited
            }
            None => Outcome::with(
                Status::Error,
                format!("the background client `{}` never started", wait.client),
            ),
        },
        _ => match settle_backgrounds(lesson_run, Instant::now() + step.timeout) {
            Err(outcome) => outcome,
            Ok(()) => run_step(lesson, step, options, log_dir, lesson_run),
        },
    })
}

/// Stops every server before the logs are written, so they are complete, and writes each
/// server's log into the lesson's log folder under the name its step gives it.
fn stop_servers_and_write_logs(lesson: &Lesson, lesson_run: &mut LessonRun, log_dir: &Path) {
    for (name, server) in &mut lesson_run.servers {
        server.stop();
        let log = lesson
            .steps
            .iter()
            .find_map(|s| match &s.kind {
                StepKind::Server(server_step) if s.name == *name => Some(server_step.log.clone()),
                _ => None,
            })
            .unwrap_or_else(|| name.clone());
        let _ = std::fs::write(log_dir.join(format!("{log}.log")), server.log_text());
    }
}

/// The Done-when items, each met when every step that checks it passed; unchecked when no step
/// does.
fn done_when_results(lesson: &Lesson, steps: &[StepResult]) -> Vec<DoneResult> {
    lesson
        .done_when
        .iter()
        .map(|item| {
            let status = (!item.checked_by.is_empty()).then(|| {
                Status::combine(item.checked_by.iter().map(|name| {
                    steps
                        .iter()
                        .find(|s| s.name == *name)
                        .map_or(Status::Skipped, |s| s.status)
                }))
            });
            DoneResult {
                text: item.text.clone(),
                status,
                checked_by: item.checked_by.clone(),
            }
        })
        .collect()
}

/// A lesson's status, points and total from its step results: one point per step of the file
/// that passed, out of every step of the file that applies (the build is not a step of the file;
/// under `--server` the reference-only steps are not applicable and not counted). Skipped steps
/// do not fail a lesson, but a lesson none of whose steps passed has not passed: it is skipped
/// (nothing was checked), or failed if anything failed.
pub(crate) fn score(steps: &[StepResult]) -> (Status, u32, u32) {
    let counted: Vec<&StepResult> = steps
        .iter()
        .filter(|s| s.kind != "build" && s.status != Status::NotApplicable)
        .collect();
    let points = counted.iter().filter(|s| s.status == Status::Pass).count() as u32;
    let max_points = counted.len() as u32;
    let status = Status::combine(steps.iter().map(|s| match s.status {
        Status::Skipped | Status::NotApplicable => Status::Pass,
        other => other,
    }));
    let status = if status == Status::Pass && points == 0 {
        Status::Skipped
    } else {
        status
    };
    (status, points, max_points)
}

/// The result of a `wait` step: that the background client it waits for came to an end (the
/// client's own checks are the client step's result).
fn waited_for(client: &StepResult) -> Outcome {
    match client.status {
        Status::Skipped => Outcome::with(
            Status::Skipped,
            format!("not run: the client `{}` did not run", client.name),
        ),
        _ => Outcome::from_checks(vec![CheckResult::new(
            format!("the background client `{}` finished", client.name),
            Status::Pass,
            None,
        )]),
    }
}

/// A step's result with every file path in its text named as the student sees it.
fn student_view(mut result: StepResult, paths: &StudentPaths) -> StepResult {
    for check in &mut result.checks {
        // A check of a command is named `$ COMMAND`, and its detail is the command's output.
        let command = check.name.strip_prefix("$ ").unwrap_or("").to_owned();
        check.name = paths.rewrite(&check.name);
        check.detail = check
            .detail
            .as_deref()
            .map(|text| paths.own_warnings_only(&paths.rewrite_output(&command, text)));
    }
    result.message = result.message.as_deref().map(|text| paths.rewrite(text));
    result
}

fn step_result(lesson: &Lesson, step: &Step, outcome: Outcome, elapsed: Duration) -> StepResult {
    let hints = if outcome.status == Status::Fail {
        lesson.hints_for(&step.name)
    } else {
        Vec::new()
    };
    StepResult {
        name: step.name.clone(),
        kind: step.kind.word().to_owned(),
        line: step.line,
        status: outcome.status,
        duration_ms: elapsed.as_millis() as u64,
        checks: outcome.checks,
        message: outcome.message,
        hints,
    }
}

/// Runs one step of the file that is neither a background client nor a wait (those are
/// [`run_lesson`]'s, since they span steps), within the step's time limit.
fn run_step(
    lesson: &Lesson,
    step: &Step,
    options: &RunOptions,
    log_dir: &Path,
    lesson_run: &mut LessonRun,
) -> Outcome {
    let deadline = Instant::now() + step.timeout;
    match &step.kind {
        StepKind::Run(run) => run_commands(run, options, deadline, &lesson_run.data_dir),
        StepKind::Server(server) => start_server(step, server, options, deadline, lesson_run),
        StepKind::Client(client) => run_client(client, deadline, lesson_run),
        StepKind::Wait(_) => unreachable!("handled by run_lesson"),
        StepKind::Signal(signal) => send_signal(signal, deadline, lesson_run),
        StepKind::Trace(trace) => attach_trace(step, trace, log_dir, deadline, lesson_run),
        StepKind::Prove(prove) => prove::run(lesson, prove, lesson_run, deadline),
    }
}

/// The server a step names, or the error outcome when no step started it.
fn started_server<'r>(
    lesson_run: &'r mut LessonRun,
    name: &str,
) -> Result<&'r mut RunningServer, Outcome> {
    lesson_run.servers.get_mut(name).ok_or_else(|| {
        Outcome::with(
            Status::Error,
            format!("the server `{name}` was not started"),
        )
    })
}

/// `console server`: starts the server (the lesson's, or the foreign one under `--server`) on a
/// free port and waits until it is ready; the lesson run keeps it, ready or not, for its log.
fn start_server(
    step: &Step,
    server: &ServerStep,
    options: &RunOptions,
    deadline: Instant,
    lesson_run: &mut LessonRun,
) -> Outcome {
    let port = match crate::server::free_port() {
        Ok(port) => port,
        Err(e) => return Outcome::with(Status::Error, format!("no free port: {e}")),
    };
    let (command, cwd) = match &options.server {
        Some(foreign) => (
            foreign.command(&server.command, port),
            options.invocation_dir.as_path(),
        ),
        None => (
            server.command.replace("{port}", &port.to_string()),
            options.root.as_path(),
        ),
    };
    let command = expand_placeholders(&command, &lesson_run.data_dir, options.quick);
    let path = path_env(options);
    let launch = Launch {
        log_name: &server.log,
        command: &command,
        cwd,
        path_env: &path,
        port,
        nofile: server.nofile,
        verbose: options.verbose,
    };
    let mut running = match RunningServer::start(&launch) {
        Ok(running) => running,
        Err(e) => {
            return Outcome::with(Status::Error, format!("could not start `{command}`: {e}"));
        }
    };
    let ready = running.wait_ready(&server.ready, deadline);
    let pid = running.pid();
    lesson_run.servers.insert(step.name.clone(), running);
    match ready {
        Ok(()) => Outcome::from_checks(vec![CheckResult::new(
            format!("`{command}` is ready"),
            Status::Pass,
            Some(format!("pid {pid}, port {port}")),
        )]),
        Err(message) => Outcome::from_checks(vec![CheckResult::new(
            format!("`{command}` becomes ready"),
            Status::Fail,
            Some(message),
        )]),
    }
}

/// `console client` (in the foreground): runs its rounds against a server that is still
/// running, with the server's output added when it dies meanwhile.
fn run_client(client: &ClientStep, deadline: Instant, lesson_run: &mut LessonRun) -> Outcome {
    let server = match started_server(lesson_run, &client.server) {
        Ok(server) => server,
        Err(outcome) => return outcome,
    };
    if let Some(status) = server.exited() {
        return Outcome::with(
            Status::Fail,
            format!(
                "the server `{}` is not running: it exited ({status}); its output:\n{}",
                client.server,
                indent(&server.log_text())
            ),
        );
    }
    let addr = server.addr();
    let stats_workers = server.stats_workers.clone();
    let sent = SentCounter::default();
    let outcome = run_clients(client, addr, deadline, &sent, &stats_workers);
    with_server_state(outcome, lesson_run.servers.get_mut(&client.server))
}

/// `console signal`: sends the signal; after SIGKILL, which cannot be caught, waits until the
/// process is gone.
fn send_signal(signal: &SignalStep, deadline: Instant, lesson_run: &mut LessonRun) -> Outcome {
    let server = match started_server(lesson_run, &signal.server) {
        Ok(server) => server,
        Err(outcome) => return outcome,
    };
    if let Some(status) = server.exited() {
        return Outcome::with(
            Status::Fail,
            format!(
                "the server had already exited ({status}) before SIG{}",
                signal.signal_name
            ),
        );
    }
    if let Err(e) = crate::sys::kill(server.pid(), signal.signal) {
        return Outcome::with(Status::Error, format!("kill failed: {e}"));
    }
    let sent = CheckResult::new(
        format!("SIG{} sent to `{}`", signal.signal_name, signal.server),
        Status::Pass,
        None,
    );
    if signal.signal_name != "KILL" {
        return Outcome::from_checks(vec![sent]);
    }
    // SIGKILL cannot be caught: the step ends when the process is gone, so a server the
    // next step starts on the same data folder never meets the dead one's lock or files.
    let gone = match server.wait_exit(deadline) {
        Some(status) => CheckResult::new(
            "the process is gone",
            Status::Pass,
            Some(status.to_string()),
        ),
        None => CheckResult::new(
            "the process is gone",
            Status::Fail,
            Some("still running after SIGKILL, at the step's timeout".to_owned()),
        ),
    };
    Outcome::from_checks(vec![sent, gone])
}

/// `console trace`: attaches strace to the server, recording into the step's file in the log
/// folder; skipped (never passed) where strace cannot run.
fn attach_trace(
    step: &Step,
    trace: &TraceStep,
    log_dir: &Path,
    deadline: Instant,
    lesson_run: &mut LessonRun,
) -> Outcome {
    let server_name = &trace.server;
    let server = match started_server(lesson_run, server_name) {
        Ok(server) => server,
        Err(outcome) => return outcome,
    };
    let file = log_dir.join(format!("{}.strace", step.name));
    let trace = Trace::attach(server.pid(), &file, deadline);
    let outcome = match &trace {
        Trace::Unavailable(reason) => Outcome::with(Status::Skipped, reason.clone()),
        _ => Outcome::from_checks(vec![CheckResult::new(
            format!("strace attached to `{server_name}`"),
            Status::Pass,
            Some(file.display().to_string()),
        )]),
    };
    lesson_run.traces.insert(step.name.clone(), trace);
    outcome
}

/// Adds the server's output to a failure when the server died during the step, or when it is
/// still running but reported a panic ([`with_server_output`]).
fn with_server_state(mut outcome: Outcome, server: Option<&mut RunningServer>) -> Outcome {
    if outcome.status == Status::Fail
        && let Some(server) = server
    {
        let exited = server.exited().map(|status| status.to_string());
        outcome.message = with_server_output(
            outcome.message.take(),
            exited.as_deref(),
            &server.log_text(),
        );
    }
    outcome
}

/// A failed step's message with what its server said: the whole story when the server died
/// (`exited`); when it still runs but its output (`log`) shows a panic, that output after the
/// message, since a worker that panicked (on a `todo!()`, say) leaves its client waiting for an
/// answer, and only the server's output says why.
fn with_server_output(message: Option<String>, exited: Option<&str>, log: &str) -> Option<String> {
    match exited {
        Some(status) => Some(format!(
            "the server died during this step ({status}); its output:\n{}",
            indent(log)
        )),
        None if log.contains("panicked") => {
            let note = format!(
                "the server is still running, but it reported a panic; its output:\n{}",
                indent(log)
            );
            Some(match message {
                Some(message) => format!("{message}\n{note}"),
                None => note,
            })
        }
        None => message,
    }
}

/// Runs every round of a client step; one check per round.
pub(crate) fn run_clients(
    step: &ClientStep,
    addr: std::net::SocketAddr,
    deadline: Instant,
    sent: &SentCounter,
    stats_workers: &StatsWorkers,
) -> Outcome {
    let mut checks = Vec::new();
    for round in 0..step.rounds {
        let round_started = Instant::now();
        let results: Vec<Result<Duration, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..step.clients)
                .map(|client| {
                    scope.spawn(move || {
                        client::run_client(step, addr, client, round, deadline, sent, stats_workers)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the client thread panicked".to_owned()))
                })
                .collect()
        });
        let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        let slowest = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .max()
            .copied()
            .unwrap_or_default();
        let name = if step.rounds > 1 {
            format!("round {}: {} client(s)", round + 1, step.clients)
        } else {
            format!("{} client(s)", step.clients)
        };
        if failures.is_empty() {
            let what = if step.reset {
                "sent and reset"
            } else {
                "answered"
            };
            checks.push(
                CheckResult::new(
                    name,
                    Status::Pass,
                    Some(format!("all {what}, slowest {} ms", slowest.as_millis())),
                )
                .timed(round_started.elapsed()),
            );
        } else {
            let mut detail = format!("{} of {} failed", failures.len(), step.clients);
            for failure in failures.iter().take(3) {
                detail.push_str("\n      ");
                detail.push_str(&failure.replace('\n', "\n      "));
            }
            if failures.len() > 3 {
                detail.push_str(&format!("\n      ... and {} more", failures.len() - 3));
            }
            checks.push(
                CheckResult::new(name, Status::Fail, Some(detail)).timed(round_started.elapsed()),
            );
            break;
        }
    }
    Outcome::from_checks(checks)
}

/// Waits until every background client has sent its requests, then 100 ms more so the server
/// has read them: the steps after a background client act on a server that holds its requests
/// (a `ping` while the workers are busy, a SIGTERM with requests in flight).
fn settle_backgrounds(lesson_run: &mut LessonRun, deadline: Instant) -> Result<(), Outcome> {
    let mut waited = false;
    for background in lesson_run.backgrounds.values_mut().filter(|b| !b.settled) {
        if !background.sent.wait_for(background.total, deadline) {
            return Err(Outcome::with(
                Status::Error,
                format!(
                    "background client `{}` did not finish sending in time",
                    background.step.name
                ),
            ));
        }
        background.settled = true;
        waited = true;
    }
    if waited {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn start_background(
    step: &Step,
    client: &ClientStep,
    lesson_run: &mut LessonRun,
    printer: &Printer,
) {
    let started = Instant::now();
    let sent = Arc::new(SentCounter::default());
    let total = client.clients * client.rounds;
    let deadline = started + step.timeout;
    let server = lesson_run
        .servers
        .get_mut(&client.server)
        .map(|s| (s.addr(), s.exited(), s.stats_workers.clone()));
    let (client, sent_for_thread) = (client.clone(), sent.clone());
    let handle = std::thread::spawn(move || match server {
        None => Outcome::with(
            Status::Error,
            format!("the server `{}` was not started", client.server),
        ),
        Some((_, Some(status), _)) => Outcome::with(
            Status::Fail,
            format!("the server `{}` is not running ({status})", client.server),
        ),
        Some((addr, None, stats_workers)) => {
            run_clients(&client, addr, deadline, &sent_for_thread, &stats_workers)
        }
    });
    printer.background(&step.name);
    lesson_run.backgrounds.insert(
        step.name.clone(),
        Background {
            handle,
            sent,
            total,
            started,
            step: step.clone(),
            settled: false,
        },
    );
}

fn finish_background(lesson: &Lesson, background: Background) -> StepResult {
    let outcome = background
        .handle
        .join()
        .unwrap_or_else(|_| Outcome::with(Status::Error, "the background client thread panicked"));
    step_result(
        lesson,
        &background.step,
        outcome,
        background.started.elapsed(),
    )
}

/// The lesson run's data folder, `{dir}`: `data/` beside its logs, emptied (a previous run's
/// files would be recovered by the first server), created, and named by its canonical path, so
/// the paths strace prints for its files start with it.
fn fresh_data_dir(log_dir: &Path) -> PathBuf {
    let dir = log_dir.join("data");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// `command` with every `{dir}` replaced by the lesson run's data folder, and every `{full}` by
/// `--full` (a step's complete form, minutes long) or, under `--quick`, by nothing.
fn expand_placeholders(command: &str, data_dir: &Path, quick: bool) -> String {
    command
        .replace("{dir}", &data_dir.display().to_string())
        .replace("{full}", if quick { "" } else { "--full" })
}

/// Runs the commands of a `run` step, sharing its deadline.
fn run_commands(
    run: &RunStep,
    options: &RunOptions,
    deadline: Instant,
    data_dir: &Path,
) -> Outcome {
    let mut checks = Vec::new();
    for (command, expected) in &run.commands {
        let name = format!("$ {command}");
        let command_started = Instant::now();
        let command = &expand_placeholders(command, data_dir, options.quick);
        let output = match run_shell(command, options, deadline, None) {
            Ok(output) => output,
            Err(message) => {
                checks.push(
                    CheckResult::new(name, Status::Fail, Some(message))
                        .timed(command_started.elapsed()),
                );
                break;
            }
        };
        let status_ok = match run.status {
            ExpectStatus::Code(code) => output.code == Some(code),
            ExpectStatus::Failure => output.code != Some(0),
        };
        let text = match run.stream {
            Stream::Stdout => output.stdout.clone(),
            Stream::Stderr => output.stderr.clone(),
            Stream::Both => [output.stdout.clone(), output.stderr.clone()].concat(),
        };
        let lines = split_lines(&text);
        let output_ok = expected.is_empty() || lines_match(expected, &lines);
        if status_ok && output_ok {
            checks
                .push(CheckResult::new(name, Status::Pass, None).timed(command_started.elapsed()));
            continue;
        }
        let mut detail = String::new();
        if !status_ok {
            let want = match run.status {
                ExpectStatus::Code(code) => format!("exit status {code}"),
                ExpectStatus::Failure => "a non-zero exit status".to_owned(),
            };
            let got = output.code.map_or_else(
                || "killed by a signal".to_owned(),
                |c| format!("exit status {c}"),
            );
            detail.push_str(&format!("expected {want}, got {got}\n"));
        }
        if !output_ok {
            detail.push_str("expected output:\n");
            for line in expected {
                detail.push_str("    ");
                detail.push_str(line.source());
                detail.push('\n');
            }
        }
        detail.push_str("got stdout:\n");
        detail.push_str(&indent(&String::from_utf8_lossy(&output.stdout)));
        if !output.stderr.is_empty() {
            detail.push_str("got stderr:\n");
            detail.push_str(&indent(&String::from_utf8_lossy(&output.stderr)));
        }
        checks.push(
            CheckResult::new(name, Status::Fail, Some(detail.trim_end().to_owned()))
                .timed(command_started.elapsed()),
        );
        break;
    }
    Outcome::from_checks(checks)
}

/// What a shell command did.
#[derive(Debug)]
struct ShellOutput {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// A callback each complete line of a child's output is shown to as it arrives.
type Relay<'a> = &'a (dyn Fn(&str) + Sync);

/// Runs `sh -c command` in its own process group, with the deadline enforced. With
/// `relay_stderr`, each line of its stderr is shown as it arrives (a build's progress).
fn run_shell(
    command: &str,
    options: &RunOptions,
    deadline: Instant,
    relay_stderr: Option<Relay<'_>>,
) -> Result<ShellOutput, String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&options.root)
        .env("PATH", path_env(options))
        .env("CARGO_TARGET_DIR", &options.target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    process::configure(&mut cmd, None);
    let mut child =
        process::spawn(&mut cmd).map_err(|e| format!("could not run `sh -c {command}`: {e}"))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let verbose = options.verbose;
    let relay_stdout = |line: &str| eprintln!("  [stdout] {line}");
    let relay_verbose_stderr = |line: &str| eprintln!("  [stderr] {line}");
    let relay_stdout: Option<Relay<'_>> = verbose.then_some(&relay_stdout);
    let relay_stderr = relay_stderr.or(verbose.then_some(&relay_verbose_stderr));
    let (out, err) = std::thread::scope(|scope| {
        let out = scope.spawn(move || collect(stdout.as_mut(), relay_stdout));
        let err = scope.spawn(move || collect(stderr.as_mut(), relay_stderr));
        let status = process::wait_until(&mut child, deadline);
        let timed_out = status.is_none();
        let status = if timed_out {
            process::stop_group(&mut child)
        } else {
            process::release_group(child.id());
            status
        };
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        ((out, status, timed_out), err)
    });
    let (stdout, status, timed_out) = out;
    if timed_out {
        return Err(format!(
            "timed out; output so far:\n{}{}",
            indent(&String::from_utf8_lossy(&stdout)),
            indent(&String::from_utf8_lossy(&err))
        ));
    }
    Ok(ShellOutput {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr: err,
    })
}

/// Reads a child's stream to its end; with `relay`, shows it each complete line as it arrives.
fn collect(stream: Option<&mut impl Read>, relay: Option<Relay<'_>>) -> Vec<u8> {
    let mut all = Vec::new();
    let Some(stream) = stream else { return all };
    let mut buf = [0u8; 8192];
    // Bytes of `all` already relayed: only whole lines are printed, however the child's writes
    // happen to be split.
    let mut relayed = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if let (Some(relay), Some(end)) = (relay, all.iter().rposition(|&b| b == b'\n')) {
                    if end >= relayed {
                        for line in String::from_utf8_lossy(&all[relayed..end]).lines() {
                            relay(line);
                        }
                        relayed = end + 1;
                    }
                }
            }
        }
    }
    if let Some(relay) = relay {
        if relayed < all.len() {
            relay(&String::from_utf8_lossy(&all[relayed..]));
        }
    }
    all
}

/// The first `count` lines of compiler output, indented: the first error is the one to read.
fn first_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: String = lines
        .iter()
        .take(count)
        .map(|line| format!("    {line}\n"))
        .collect();
    if lines.len() > count {
        out.push_str(&format!("    ... ({} more lines)\n", lines.len() - count));
    }
    out
}

/// Whether the lesson has anything to build.
fn needs_build(lesson: &Lesson, options: &RunOptions) -> bool {
    options.server.is_none()
        && lesson.steps.iter().any(|step| match &step.kind {
            StepKind::Server(_) => true,
            StepKind::Run(run) => run
                .commands
                .iter()
                .any(|(command, _)| prebuild_command(command).is_some()),
            _ => false,
        })
}

/// The build of the binaries the lesson's servers run, by name: a server need not live in the
/// lesson's crate (W04 L05 builds `eventloop`, and its `epoll_server` is a package of its own).
fn server_build_command(lesson: &Lesson) -> String {
    let mut command = String::from("cargo build --release");
    let mut programs: Vec<&str> = Vec::new();
    for step in &lesson.steps {
        if let StepKind::Server(server) = &step.kind {
            if let Some(program) = server.command.split_whitespace().next() {
                if !programs.contains(&program) {
                    programs.push(program);
                    command.push_str(" --bin ");
                    command.push_str(program);
                }
            }
        }
    }
    command
}

/// Builds the lesson's server binaries (release) and compiles its cargo commands, untimed.
fn build(lesson: &Lesson, options: &RunOptions, printer: &Printer) -> StepResult {
    let started = Instant::now();
    let mut commands: Vec<String> = Vec::new();
    if lesson.has_server() && options.server.is_none() {
        commands.push(server_build_command(lesson));
    }
    if options.server.is_none() {
        for step in &lesson.steps {
            if let StepKind::Run(run) = &step.kind {
                for (command, _) in &run.commands {
                    if let Some(prebuild) = prebuild_command(command) {
                        if !commands.contains(&prebuild) {
                            commands.push(prebuild);
                        }
                    }
                }
            }
        }
    }
    let mut checks = Vec::new();
    // Cargo's own lines (`Compiling task_queue ...`) are shown as they come, so a long first
    // build is visibly at work.
    // A student sees the warnings of their own files only (see `OwnWarnings`).
    let own_warnings = std::sync::Mutex::new(OwnWarnings::default());
    let show_line = |line: &str| match &options.student_paths {
        Some(paths) => {
            let shown = own_warnings
                .lock()
                .map(|mut own| own.line(paths, &paths.rewrite(line)))
                .unwrap_or_default();
            shown.iter().for_each(|line| printer.build_output(line));
        }
        None => printer.build_output(line),
    };
    let relay: Option<Relay<'_>> = printer.prints().then_some(&show_line);
    for command in commands {
        printer.building(&command);
        // No step's time limit covers the build, but it is bounded so a wedged build cannot
        // hang CI.
        let deadline = Instant::now() + Duration::from_secs(1800);
        let started = Instant::now();
        let check = match run_shell(&command, options, deadline, relay) {
            Ok(output) if output.code == Some(0) => {
                CheckResult::new(format!("$ {command}"), Status::Pass, None)
                    .timed(started.elapsed())
            }
            Ok(output) => CheckResult::new(
                format!("$ {command}"),
                Status::Fail,
                Some(format!(
                    "the build failed:\n{}",
                    first_lines(&String::from_utf8_lossy(&output.stderr), 40)
                )),
            ),
            Err(message) => CheckResult::new(format!("$ {command}"), Status::Fail, Some(message)),
        };
        let failed = check.status != Status::Pass;
        checks.push(check);
        if failed {
            break;
        }
    }
    if let (Some(paths), Ok(mut own)) = (&options.student_paths, own_warnings.lock()) {
        for line in own.finish(paths).iter().chain(own.note().iter()) {
            printer.build_output(line);
        }
    }
    let outcome = Outcome::from_checks(checks);
    StepResult {
        name: "build".to_owned(),
        kind: "build".to_owned(),
        line: 0,
        status: outcome.status,
        duration_ms: started.elapsed().as_millis() as u64,
        checks: outcome.checks,
        message: None,
        hints: Vec::new(),
    }
}

/// The compile-only form of a `cargo test` / `cargo build` command, if it is one.
pub(crate) fn prebuild_command(command: &str) -> Option<String> {
    // Leading `NAME=value` words (`RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo ...`)
    // are kept: they change what is built, so the compile-only run needs them too.
    let cargo_at = leading_assignments_end(command);
    let rest = command[cargo_at..].strip_prefix("cargo ")?;
    if rest.starts_with("build") {
        return Some(command.to_owned());
    }
    if !rest.starts_with("test") {
        return None;
    }
    // Test-binary arguments after `--` are not cargo's; `--no-run` goes before them.
    Some(match command.split_once(" -- ") {
        Some((cargo_part, _)) => format!("{cargo_part} --no-run"),
        None => format!("{command} --no-run"),
    })
}

/// Where the command proper starts, after any leading shell variable assignments (whose values
/// may be quoted and hold spaces).
fn leading_assignments_end(command: &str) -> usize {
    let bytes = command.as_bytes();
    let mut at = 0;
    loop {
        let name_len = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        if name_len == 0 || bytes[at].is_ascii_digit() || bytes.get(at + name_len) != Some(&b'=') {
            return at;
        }
        let mut i = at + name_len + 1;
        let mut quote = None;
        while i < bytes.len() {
            match (quote, bytes[i]) {
                (None, b'"' | b'\'') => quote = Some(bytes[i]),
                (Some(q), b) if b == q => quote = None,
                (None, b' ' | b'\t') => break,
                _ => {}
            }
            i += 1;
        }
        if quote.is_some() {
            return at;
        }
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        at = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_failed_steps_message_carries_the_servers_output_when_it_died_or_panicked() {
        let panicked = "kv_server: listening\nworker 7 panicked: not yet implemented\n";
        assert_eq!(
            with_server_output(Some("no answer".into()), Some("signal: 9"), "listening\n")
                .as_deref(),
            Some("the server died during this step (signal: 9); its output:\n    listening\n")
        );
        assert_eq!(
            with_server_output(Some("no answer".into()), None, panicked).as_deref(),
            Some(
                "no answer\nthe server is still running, but it reported a panic; its output:\n    \
                 kv_server: listening\n    worker 7 panicked: not yet implemented\n"
            )
        );
        assert!(
            with_server_output(None, None, panicked)
                .is_some_and(|message| message.starts_with("the server is still running"))
        );
        // A quiet server adds nothing.
        assert_eq!(
            with_server_output(Some("no answer".into()), None, "listening\n").as_deref(),
            Some("no answer")
        );
        assert_eq!(with_server_output(None, None, "listening\n"), None);
    }

    #[test]
    fn full_stands_for_the_complete_form_unless_quick() {
        let dir = Path::new("/data/run");
        assert_eq!(
            expand_placeholders("loadgen --flood {full} --dir {dir}", dir, false),
            "loadgen --flood --full --dir /data/run"
        );
        assert_eq!(
            expand_placeholders("loadgen --flood {full} --dir {dir}", dir, true),
            "loadgen --flood  --dir /data/run"
        );
    }

    #[test]
    fn student_paths_rewrite_scratch_and_relative_paths_of_the_copy_only() {
        let student =
            std::env::temp_dir().join(format!("xtask-student-paths-{}", std::process::id()));
        std::fs::create_dir_all(student.join("src")).unwrap();
        std::fs::write(student.join("src/lib.rs"), "").unwrap();
        let scratch = PathBuf::from("/tmp/target/xtask/scratch/workspace");
        let paths = StudentPaths {
            scratch: scratch.clone(),
            copies: vec![StudentCopy {
                krate: "task_queue".to_owned(),
                crate_dir: PathBuf::from("crates/w05/task_queue"),
                student: student.clone(),
                shown_as: "student/task_queue".to_owned(),
            }],
        };
        let text = format!(
            "Compiling task_queue v0.1.0 ({}/crates/w05/task_queue)\n\
             error[E0308]: x\n --> {}/crates/w05/task_queue/src/lib.rs:7:5\n at crates/w05/task_queue/src/main.rs:1 \
             and notcrates/w05/task_queue/src/lib.rs and crates/w04/eventloop/src/lib.rs:2 \
             and crates/w05/task_queue_extra/src/lib.rs",
            scratch.display(),
            scratch.display()
        );
        let rewritten = paths.rewrite(&text);
        std::fs::remove_dir_all(&student).unwrap();
        assert_eq!(
            rewritten,
            "Compiling task_queue v0.1.0 (student/task_queue)\n\
             error[E0308]: x\n --> student/task_queue/src/lib.rs:7:5\n at crates/w05/task_queue/src/main.rs:1 \
             and notcrates/w05/task_queue/src/lib.rs and crates/w04/eventloop/src/lib.rs:2 \
             and crates/w05/task_queue_extra/src/lib.rs"
        );
    }

    #[test]
    fn rerun_hints_and_backtrace_frames_name_the_students_copy() {
        let student =
            std::env::temp_dir().join(format!("xtask-student-frames-{}", std::process::id()));
        std::fs::create_dir_all(student.join("src/server")).unwrap();
        std::fs::write(student.join("src/server.rs"), "").unwrap();
        std::fs::write(student.join("src/server/tests.rs"), "").unwrap();
        let paths = StudentPaths {
            scratch: PathBuf::from("/tmp/target/xtask/scratch/workspace"),
            copies: vec![StudentCopy {
                krate: "handoff_server".to_owned(),
                crate_dir: PathBuf::from("crates/w05/handoff_server"),
                student: student.clone(),
                shown_as: "student/handoff_server".to_owned(),
            }],
        };
        let output = "   4: handoff_server::server::tests::capped\n             at ./src/server/tests.rs:62:5\n\
                      \x20  5: handoff_server::server::Core::submit\n             at ./src/server.rs:196:9\n\
                      error: test failed, to rerun pass `-p handoff_server --bin handoff_server`\n\
                      error: test failed, to rerun pass `-p eventloop --lib`\n";
        let command = "cargo test -p handoff_server --bin handoff_server -- server::";
        let rewritten = paths.rewrite_output(command, output);
        // A server run from the workspace's root names its frames from there.
        let frame = paths.rewrite("at ./crates/w05/handoff_server/src/server.rs:10:1");
        std::fs::remove_dir_all(&student).unwrap();
        // The tests are the course's own, from the reference; the code is the student's.
        assert!(
            rewritten.contains("at ./crates/w05/handoff_server/src/server/tests.rs:62:5"),
            "{rewritten}"
        );
        assert!(
            rewritten.contains("at ./student/handoff_server/src/server.rs:196:9"),
            "{rewritten}"
        );
        assert!(
            rewritten.contains(
                "to rerun on your copy: `cd student/handoff_server && cargo test -p handoff_server --bin handoff_server`"
            ),
            "{rewritten}"
        );
        assert!(
            rewritten.contains("to rerun pass `-p eventloop --lib`"),
            "{rewritten}"
        );
        assert_eq!(frame, "at ./student/handoff_server/src/server.rs:10:1");
    }

    #[test]
    fn only_the_students_own_files_warnings_are_shown() {
        let paths = StudentPaths {
            scratch: PathBuf::from("/tmp/scratch"),
            copies: vec![StudentCopy {
                krate: "task_queue".to_owned(),
                crate_dir: PathBuf::from("crates/w05/task_queue"),
                student: PathBuf::from("/nowhere"),
                shown_as: "student/task_queue".to_owned(),
            }],
        };
        let build = "   Compiling eventloop v0.1.0\n\
                     warning: function `helper` is never used\n  --> crates/w04/eventloop/src/sys.rs:9:4\n   |\n\
                     9 | fn helper() {}\n   |    ^^^^^^\n\
                     help: remove it\n\n\
                     \x20  Compiling task_queue v0.1.0\n\
                     warning: `eventloop` (lib) generated 1 warning\n\
                     warning: unused variable: `x`\n  --> student/task_queue/src/lib.rs:3:9\n   |\n\
                     warning: `task_queue` (lib) generated 1 warning\n\
                     \x20   Finished `dev` profile\n";
        let shown = paths.own_warnings_only(build);
        assert_eq!(
            shown,
            "   Compiling eventloop v0.1.0\n\
             \x20  Compiling task_queue v0.1.0\n\
             warning: unused variable: `x`\n  --> student/task_queue/src/lib.rs:3:9\n   |\n\
             warning: `task_queue` (lib) generated 1 warning\n\
             \x20   Finished `dev` profile\n\
             (1 compiler warning(s) in files that are not yours left out: the reference's code and \
             the course's tests)\n"
        );
    }

    #[test]
    fn a_lesson_with_no_step_that_ran_does_not_pass() {
        let skipped = |name: &str, kind: &str| crate::results::StepResult {
            name: name.to_owned(),
            kind: kind.to_owned(),
            line: 1,
            status: Status::Skipped,
            duration_ms: 0,
            checks: Vec::new(),
            message: Some("not run".to_owned()),
            hints: Vec::new(),
        };
        let mut steps = vec![skipped("a", "run"), skipped("b", "run")];
        assert_eq!(score(&steps), (Status::Skipped, 0, 2));
        steps[0].status = Status::Pass;
        assert_eq!(score(&steps), (Status::Pass, 1, 2));
        // The build is no step of the file: it neither scores nor makes a lesson pass.
        let mut build = skipped("build", "build");
        build.status = Status::Pass;
        assert_eq!(
            score(&[build, skipped("a", "run")]),
            (Status::Skipped, 0, 1)
        );
    }

    #[test]
    fn prebuild_commands() {
        assert_eq!(
            prebuild_command(
                "RUSTFLAGS=\"--cfg loom\" CARGO_TARGET_DIR=target/loom cargo test --release -p a --lib -- loom"
            )
            .as_deref(),
            Some("RUSTFLAGS=\"--cfg loom\" CARGO_TARGET_DIR=target/loom cargo test --release -p a --lib --no-run")
        );
        assert_eq!(prebuild_command("X=1 echo cargo test"), None);
        assert_eq!(
            prebuild_command("cargo test -p a").as_deref(),
            Some("cargo test -p a --no-run")
        );
        assert_eq!(
            prebuild_command("cargo test -p a -- --nocapture x").as_deref(),
            Some("cargo test -p a --no-run")
        );
        assert_eq!(
            prebuild_command("cargo build -p a").as_deref(),
            Some("cargo build -p a")
        );
        assert_eq!(prebuild_command("handoff_server --help"), None);
    }
}
