//! `cargo xtask`: the course runner.
//!
//! `cargo xtask lesson <id>` runs one lesson's Test / Expected / Prove steps, read from the lesson
//! file itself (the format is `course/FORMAT.md`); `list`, `grade`, `start`, `stop` and `reset`
//! build on it. Each subcommand's arguments live in this file or in their own module (`bench`),
//! so the modules can grow independently.

mod bench;
mod book;
mod client;
mod crash;
mod lesson;
mod process;
mod progress;
mod prove;
mod report;
mod results;
mod runner;
mod server;
mod soak;
mod starters;
mod student;
mod sys;
mod trace;

#[cfg(test)]
mod tests;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use lesson::Lesson;
use progress::Progress;
use report::Printer;
use results::{GradeReport, LessonResult, Status};
use runner::RunOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The course runner: runs a lesson's steps against the code, grades, and benchmarks.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    after_help = "Output: a command's report (lesson steps, the list, grade results) goes to stdout; \
notes about the run (what is being built, files written) and `grade`'s per-step progress go to \
stderr.\n\
Exit status: 0 when everything passed, 1 when something failed or could not run, 2 for a usage \
error (nothing was run), 130 when interrupted (every server started is stopped first), 141 when \
stdout was closed early (`| head`).\n\
Files: results are recorded in .course-progress only by `lesson` runs of your own started copy \
(COURSE_PROGRESS_FILE names another file); `grade` writes <target>/xtask/grade.json; builds \
honour CARGO_TARGET_DIR."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How lesson steps run; shared by `lesson` and `grade`.
#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Grade another server: a shell command with `{port}`, e.g. `--server './server {port}'`.
    /// The lesson's server arguments after the port (`--workers N`, `--queue N`, `--log`) are
    /// appended, or put where `{args}` stands. The `run` steps test the workspace's code, so they
    /// are shown as skipped (and still counted). `lesson` refuses a lesson without server steps;
    /// `grade` grades only the lessons the server can be the subject of.
    #[arg(long, value_name = "CMD")]
    server: Option<String>,
    /// With --server: pass the server only its port, none of the lesson's arguments.
    #[arg(long, requires = "server")]
    server_args_none: bool,
    /// Run every step even after one fails.
    #[arg(long)]
    keep_going: bool,
    /// Relay server and command output, prefixed by its source.
    #[arg(long, short)]
    verbose: bool,
    /// Grade the workspace's reference code even if the lesson is started (`lesson` only:
    /// `grade` grades the reference unless given `--student`).
    #[arg(long)]
    reference: bool,
}

impl RunArgs {
    /// The `--server` command, checked.
    fn foreign_server(&self) -> Result<Option<server::ForeignServer>, String> {
        self.server
            .as_deref()
            .map(|command| server::ForeignServer::new(command, !self.server_args_none))
            .transpose()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// One line per lesson and the total.
    Text,
    /// The result model: lessons, steps, checks and Done-when items.
    Json,
    /// JUnit XML: one test suite per lesson, one test case per step.
    Junit,
    /// GitHub Classroom's autograding result: one test per step, worth its `points=` weight.
    Classroom,
    /// Exercism's test-runner `results.json` (version 3): one test per step.
    Exercism,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one lesson's Test / Expected / Prove steps against the code.
    ///
    /// Example: `cargo xtask lesson w05-l04`, or against any server speaking the protocol:
    /// `cargo xtask lesson w05-l04 --server './handoff_server {port}'`, which runs
    /// `./handoff_server PORT --workers 2 --log` (the lesson's server arguments appended).
    Lesson {
        /// The lesson id, for example `w05-l04`.
        id: String,
        #[command(flatten)]
        run: RunArgs,
        /// Only check that the lesson file follows course/FORMAT.md.
        #[arg(long)]
        check_format: bool,
    },
    /// Lists every lesson in course order with the last result of your own copy.
    List,
    /// Grades every lesson (or one week) of the reference code, or with `--student` your
    /// started copies, and writes a results file. Records nothing in your progress.
    ///
    /// With `--server CMD`, only the lessons the foreign server can be the subject of: those
    /// whose servers run `handoff_server` (with `--week`, every lesson of that week with a server
    /// step); the others are reported as skipped, with the reason.
    Grade {
        /// Only this week, for example `w05`.
        #[arg(long)]
        week: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Run each lesson this many times in a row; it passes only if every run passes (a
        /// flakiness check).
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// Write the output here instead of stdout (a JSON results file is always written to
        /// `<target>/xtask/grade.json` as well). Its folder must exist.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Grade your copies (`student/<crate>/`) of the lessons you started, and only those.
        #[arg(long, conflicts_with = "server")]
        student: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Starts a lesson: copies its starter to `student/<crate>/`, where you write your code.
    Start {
        /// The lesson id.
        id: String,
    },
    /// Leaves student mode for a lesson: `lesson` grades the reference again, and your copy in
    /// `student/<crate>/` stays as it is (`start` picks it up again).
    Stop {
        /// The lesson id.
        id: String,
    },
    /// Starts a started lesson over from its starter; your previous copy is kept in
    /// `student/.backup/`, and the command names the folder.
    Reset {
        /// The lesson id.
        id: String,
    },
    /// Generates every starter from the `// starter:` markers in the reference crates (see
    /// course/FORMAT.md, section 5) and checks that each lesson's untouched starter compiles and
    /// fails its lesson (the reference passing is `grade`'s job). A malformed marker is an
    /// error naming its file and line.
    Starters {
        /// Only this week, for example `w05`.
        #[arg(long)]
        week: Option<String>,
        /// Report a lesson without a starter instead of failing on it.
        #[arg(long)]
        allow_missing: bool,
        /// Only write the generated starters, one folder each, to DIR (default
        /// target/xtask/starters), to read them; nothing is checked but the markers.
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "target/xtask/starters")]
        write: Option<PathBuf>,
    },
    /// Benchmarks the servers against each other.
    Bench(bench::BenchArgs),
    /// Runs the W10 crash harness: `kv_server --data-dir` killed with SIGKILL at random moments
    /// under load (200 times by default) and at every failpoint of its log and checkpoint, each
    /// time restarted and checked: every acknowledged write present, each client's keys an
    /// unbroken run.
    Crash(crash::CrashArgs),
    /// Soaks `handoff_server` with syscall faults injected (`--cfg fault_injection`): mixed load,
    /// a flood, clients that vanish mid-pipeline and slow readers, for 10 minutes by default;
    /// samples RSS, fds and CPU and fails on growth, a leaked fd, a busy idle loop or a wrong
    /// byte. Not part of CI's default path.
    Soak(soak::SoakArgs),
    /// Renders course/ as a web book with mdBook: a page per lesson in course order, each with
    /// its `start` and `lesson` commands, every step labelled with what the runner checks, and
    /// each Done-when item with the steps that check it. Every link between the course's pages
    /// is checked first, and a broken one fails the build. mdBook (0.5) is the installed tool:
    /// when it is missing, `cargo install` installs it (a few minutes, once). The book is
    /// written to `<target>/xtask/book/html/`.
    Book(book::BookArgs),
}

/// The workspace root (the folder above `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target folder, where builds, logs, the scratch workspace and results go: the
/// workspace's `target_directory` as `cargo metadata` reports it (so `CARGO_TARGET_DIR` and
/// `build.target-dir` in a cargo config are honoured), asked once per run.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    static WORKSPACE_TARGET: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if root != workspace_root() {
        return target_dir_from_env(root);
    }
    WORKSPACE_TARGET
        .get_or_init(|| cargo_target_directory(root).unwrap_or_else(|| target_dir_from_env(root)))
        .clone()
}

/// `target_directory` from `cargo metadata`, if cargo can say.
fn cargo_target_directory(root: &Path) -> Option<PathBuf> {
    let metadata = cargo_metadata(root).ok()?;
    metadata["target_directory"].as_str().map(PathBuf::from)
}

/// The workspace's `cargo metadata` (its own packages, no dependencies), as JSON.
pub(crate) fn cargo_metadata(root: &Path) -> anyhow::Result<serde_json::Value> {
    let output = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// `CARGO_TARGET_DIR` when set (relative to the current folder, as cargo reads it), else
/// `target/` in `root`.
fn target_dir_from_env(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir().unwrap_or_default().join(dir)
            }
        }
        None => root.join("target"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Lesson { run, .. } | Command::Grade { run, .. } = &cli.command {
        if let Err(message) = run.foreign_server() {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    }
    if let Err(error) = process::install_interrupt_handler() {
        eprintln!("warning: Ctrl-C will not stop servers cleanly: {error}");
    }
    let result = match cli.command {
        Command::Lesson {
            id,
            run,
            check_format,
        } => lesson_command(&id, &run, check_format),
        Command::List => list_command(),
        Command::Grade {
            week,
            format,
            repeat,
            out,
            student,
            run,
        } => grade_command(
            week.as_deref(),
            format,
            repeat,
            out.as_deref(),
            student,
            &run,
        ),
        Command::Start { id } => start_command(&id),
        Command::Stop { id } => stop_command(&id),
        Command::Reset { id } => reset_command(&id),
        Command::Starters {
            week,
            allow_missing,
            write,
        } => match write {
            Some(dir) => write_starters_command(&dir),
            None => starters_command(week.as_deref(), allow_missing),
        },
        Command::Bench(args) => bench::run(args),
        Command::Crash(args) => crash::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::Book(args) => book::run(&args),
    };
    // Interrupted: the servers were stopped on the way out, and the exit status says so, whether
    // the handler thread or this one got to the end first.
    if process::interrupted() {
        return ExitCode::from(130);
    }
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A usage error: said on one line, exit status 2, nothing run.
fn usage_error(message: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(2))
}

/// The weeks the course has, in course order (`w04, w05`).
fn known_weeks(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut weeks: Vec<String> = Vec::new();
    for lesson in lesson::discover(root)? {
        let week = lesson.front.week().to_owned();
        if !weeks.contains(&week) {
            weeks.push(week);
        }
    }
    Ok(weeks)
}

/// Checks `--week` against the course's weeks; the error lists them.
fn check_week(root: &Path, week: Option<&str>) -> anyhow::Result<Result<(), String>> {
    let Some(week) = week else { return Ok(Ok(())) };
    let weeks = known_weeks(root)?;
    Ok(if weeks.iter().any(|w| w == week) {
        Ok(())
    } else {
        Err(format!(
            "--week {week}: the course has no such week; it has: {}",
            weeks.join(", ")
        ))
    })
}

/// Checks that `--out FILE` can be written before any lesson runs: its folder exists and it is
/// not itself a folder.
fn check_out_path(path: &Path) -> Result<(), String> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(format!(
            "--out {}: the folder {} does not exist",
            path.display(),
            folder.display()
        ));
    }
    if path.is_dir() {
        return Err(format!(
            "--out {}: is a folder; name a file in it",
            path.display()
        ));
    }
    Ok(())
}

/// Options for running a lesson: against the student's copy when `student` (its scratch
/// workspace), else against the workspace.
fn options_for(
    root: &Path,
    lesson: &Lesson,
    run: &RunArgs,
    student: bool,
) -> anyhow::Result<RunOptions> {
    let target = target_dir(root);
    let (work_root, build_target, student_paths) = if student {
        let overlay = student::student_dir(root, lesson);
        anyhow::ensure!(
            overlay.is_dir(),
            "lesson {} is started but {} is missing; run `cargo xtask reset {}`",
            lesson.front.id,
            overlay.display(),
            lesson.front.id
        );
        let scratch = student::prepare_scratch(root, lesson, &overlay)?;
        let paths = runner::StudentPaths {
            scratch: scratch.clone(),
            crate_dir: student::crate_dir(root, &lesson.front.krate)?,
            shown_as: shown(root, &overlay),
            student: overlay,
        };
        (scratch, student::scratch_target(root), Some(paths))
    } else {
        (root.to_path_buf(), target.clone(), None)
    };
    Ok(RunOptions {
        root: work_root,
        target_dir: build_target,
        log_dir: target.join("xtask/logs"),
        server: run.foreign_server().map_err(anyhow::Error::msg)?,
        invocation_dir: std::env::current_dir().unwrap_or_else(|_| root.to_path_buf()),
        keep_going: run.keep_going,
        verbose: run.verbose,
        build: true,
        student_paths,
    })
}

fn lesson_command(id: &str, run: &RunArgs, check_format: bool) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let lesson = lesson::find(&root, id)?;
    if check_format {
        report::outln(&format!(
            "{}: follows course/FORMAT.md ({} steps, {} of them for a foreign server)",
            lesson.path.display(),
            lesson.steps.len(),
            lesson
                .steps
                .iter()
                .filter(|s| s.applies_to_foreign_server())
                .count()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if run.server.is_some() && foreign_skip_reason(&lesson, true).is_some() {
        return usage_error(&format!(
            "--server: lesson {} has no server steps, so there is nothing to grade another \
             server on (its steps test the workspace's own code); lessons with server steps: {}",
            lesson.front.id,
            lesson::discover(&root)?
                .iter()
                .filter(|l| l.has_server())
                .map(|l| l.front.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let progress = Progress::load(&root);
    let graded_student =
        progress.is_started(&lesson.front.id) && !run.reference && run.server.is_none();
    let options = options_for(&root, &lesson, run, graded_student)?;
    if graded_student {
        eprintln!(
            "grading your code in student/{} (use --reference for the reference)",
            lesson.front.starter
        );
    }
    let result = runner::run_lesson(&lesson, &options, &Printer::for_terminal());
    // Only the student's own copy makes progress; an interrupted run has no result to record.
    if graded_student && !process::interrupted() {
        Progress::update(&root, |progress| progress.record(&result))?;
    }
    Ok(exit_code(result.status))
}

/// Success only when everything passed: a lesson none of whose steps ran has not passed.
fn exit_code(status: Status) -> ExitCode {
    if status == Status::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn list_command() -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let progress = Progress::load(&root);
    report::outln(&format!(
        "{:<11} {:<9} {:<8} {:<8} {:<9} title (file)",
        "lesson", "last", "points", "started", "duration"
    ));
    let (lessons, broken) = lesson::discover_all(&root)?;
    for lesson in lessons {
        let entry = progress.lessons.get(&lesson.front.id);
        let last = entry
            .and_then(|e| e.last_status.clone())
            .unwrap_or_else(|| "-".to_owned());
        let points = entry
            .filter(|e| e.last_status.is_some())
            .map_or("-".to_owned(), |e| format!("{}/{}", e.points, e.max_points));
        let started = if entry.is_some_and(|e| e.started) {
            "yes"
        } else {
            "no"
        };
        report::outln(&format!(
            "{:<11} {:<9} {:<8} {:<8} {:<9} {} ({})",
            lesson.front.id,
            last,
            points,
            started,
            lesson.front.duration,
            lesson.front.title,
            lesson.path.display()
        ));
    }
    for file in &broken {
        report::outln(&format!(
            "{:<11} {:<9} {} does not follow course/FORMAT.md: {}",
            "?",
            "broken",
            file.path.display(),
            file.error
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The server the protocol names: a lesson whose servers all run it is a "server lesson", whose
/// subject any server of the protocol can be.
const PROTOCOL_SERVER: &str = "handoff_server";

/// Why `grade --server` leaves `lesson` out, or `None` when the foreign server can be its subject:
/// a lesson without a server step tests the crate's own code; a lesson of another server (W04's
/// single-threaded `epoll_server`) is graded only when its week is asked for with `--week`.
fn foreign_skip_reason(lesson: &Lesson, week_asked: bool) -> Option<String> {
    let programs: Vec<&str> = lesson
        .steps
        .iter()
        .filter_map(|step| match &step.kind {
            lesson::StepKind::Server(server) => {
                Some(server::lesson_server_program(&server.command))
            }
            _ => None,
        })
        .collect();
    if programs.is_empty() {
        return Some("it has no server step: it tests the crate's own code".to_owned());
    }
    match programs.iter().find(|program| **program != PROTOCOL_SERVER) {
        Some(other) if !week_asked => Some(format!(
            "its server is `{other}`, not `{PROTOCOL_SERVER}`; `--week {}` grades it",
            lesson.front.week()
        )),
        _ => None,
    }
}

/// A lesson result made of one step that says why (a lesson left out, or a broken lesson file).
fn one_step_result(
    (id, title, file): (String, String, String),
    status: Status,
    (name, kind): (&str, &str),
    message: String,
) -> LessonResult {
    LessonResult {
        id,
        title,
        file,
        status,
        points: 0,
        max_points: 0,
        duration_ms: 0,
        steps: vec![results::StepResult {
            name: name.to_owned(),
            kind: kind.to_owned(),
            line: 0,
            status,
            duration_ms: 0,
            checks: Vec::new(),
            message: Some(message),
            hints: Vec::new(),
        }],
        done_when: Vec::new(),
    }
}

/// The lessons `grade` runs: the week's lessons; only the started ones with `--student`. With
/// `--server`, [`grade_lessons`] reports those the foreign server cannot be the subject of as
/// skipped, with the reason.
fn lessons_to_grade(root: &Path, week: Option<&str>, student: bool) -> anyhow::Result<Vec<Lesson>> {
    let progress = Progress::load(root);
    Ok(lesson::discover(root)?
        .into_iter()
        .filter(|l| week.is_none_or(|w| l.front.week() == w))
        .filter(|l| !student || progress.is_started(&l.front.id))
        .collect())
}

/// Runs lessons for `grade`, recording nothing in the progress file: with `--server` only those
/// the foreign server can be the subject of. With `repeat` above 1 each lesson runs that many
/// times in a row and its result is the first run that did not pass (or the last run).
fn grade_lessons(
    root: &Path,
    lessons: &[Lesson],
    week: Option<&str>,
    student: bool,
    run: &RunArgs,
    repeat: u32,
    printer: &Printer,
) -> anyhow::Result<Vec<LessonResult>> {
    let (_, broken) = lesson::discover_all(root)?;
    let mut results = Vec::new();
    for lesson in lessons {
        if run.server.is_some()
            && let Some(reason) = foreign_skip_reason(lesson, week.is_some())
        {
            eprintln!("{}: not graded with --server: {reason}", lesson.front.id);
            let front = &lesson.front;
            results.push(one_step_result(
                (
                    front.id.clone(),
                    front.title.clone(),
                    lesson.path.display().to_string(),
                ),
                Status::Skipped,
                ("foreign-server", "select"),
                format!("not graded with --server: {reason}"),
            ));
            continue;
        }
        if student {
            eprintln!(
                "{}: grading your code in student/{}",
                lesson.front.id, lesson.front.starter
            );
        }
        for round in 1..=repeat {
            if repeat > 1 {
                eprintln!("\n{}: run {round} of {repeat}", lesson.front.id);
            }
            let options = options_for(root, lesson, run, student)?;
            let result = runner::run_lesson(lesson, &options, printer);
            let passed = matches!(result.status, Status::Pass | Status::Skipped);
            if !passed || round == repeat {
                if !passed && repeat > 1 {
                    eprintln!("{}: run {round} of {repeat} did not pass", lesson.front.id);
                }
                results.push(result);
                break;
            }
        }
    }
    anyhow::ensure!(
        results.iter().any(|r| r.status != Status::Skipped) || run.server.is_none(),
        "no lesson to grade with --server{}: every lesson was left out (see above)",
        week.map_or_else(String::new, |w| format!(" in {w}"))
    );
    // A lesson file that breaks the format is an error of the course, graded as such.
    for file in broken {
        eprintln!(
            "\n{}: does not follow course/FORMAT.md: {}",
            file.path.display(),
            file.error
        );
        let id = file
            .path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let title = "(lesson file does not follow the format)".to_owned();
        results.push(one_step_result(
            (id, title, file.path.display().to_string()),
            Status::Error,
            ("format", "format"),
            file.error,
        ));
    }
    Ok(results)
}

fn grade_command(
    week: Option<&str>,
    format: Format,
    repeat: u32,
    out: Option<&Path>,
    student: bool,
    run: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    // Every argument is checked before the first lesson runs: a mistake costs no grading time.
    if let Err(message) = check_week(&root, week)? {
        return usage_error(&message);
    }
    if let Some(Err(message)) = out.map(check_out_path) {
        return usage_error(&message);
    }
    if run.reference {
        return usage_error("--reference: `grade` grades the reference already (unless --student)");
    }
    let lessons = lessons_to_grade(&root, week, student)?;
    if lessons.is_empty() {
        return usage_error(if student {
            "--student: no lesson is started (`cargo xtask start <id>` starts one)"
        } else {
            "no lesson to grade"
        });
    }
    let results = grade_lessons(
        &root,
        &lessons,
        week,
        student,
        run,
        repeat,
        &Printer::for_progress(),
    )?;
    let report = GradeReport::new(results, run.server.clone());
    let results_file = target_dir(&root).join("xtask/grade.json");
    std::fs::create_dir_all(results_file.parent().context("results folder")?)?;
    std::fs::write(&results_file, report.to_json())?;
    let rendered = match format {
        Format::Text => report::grade_text(&report),
        Format::Json => report.to_json(),
        Format::Junit => report.to_junit()?,
        Format::Classroom => report::classroom::render(&report, &lessons),
        Format::Exercism => {
            report::exercism::render(&report, &lessons, &target_dir(&root).join("xtask/logs"))
        }
    };
    match out {
        Some(path) => {
            std::fs::write(path, &rendered)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} (and {})", path.display(), results_file.display());
        }
        None => report::out(&rendered),
    }
    report::github(&report);
    eprintln!(
        "\n{}",
        report::grade_text(&report)
            .lines()
            .last()
            .unwrap_or_default()
    );
    Ok(exit_code(report.status))
}

/// A path as the student sees it: relative to the workspace root when inside it.
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn start_command(id: &str) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let lesson = lesson::find(&root, id)?;
    let already = Progress::load(&root).is_started(&lesson.front.id);
    let (dir, kept) = student::start(&root, &lesson)?;
    let verb = match (already, kept) {
        (true, _) => "is already started",
        (false, true) => "started again with your copy",
        (false, false) => "started",
    };
    report::outln(&format!(
        "{} {verb}: your code is in {}",
        lesson.front.id,
        shown(&root, &dir)
    ));
    report::outln(&format!(
        "read {} and run `cargo xtask lesson {}` to check your work (`cargo xtask stop {}` \
         leaves student mode)",
        lesson.path.display(),
        lesson.front.id,
        lesson.front.id
    ));
    Ok(ExitCode::SUCCESS)
}

fn stop_command(id: &str) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let lesson = lesson::find(&root, id)?;
    let dir = student::stop(&root, &lesson)?;
    report::outln(&format!(
        "{} stopped: `cargo xtask lesson {}` grades the reference again; your copy stays in {} \
         (`cargo xtask start {}` picks it up again)",
        lesson.front.id,
        lesson.front.id,
        shown(&root, &dir),
        lesson.front.id
    ));
    Ok(ExitCode::SUCCESS)
}

fn reset_command(id: &str) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let lesson = lesson::find(&root, id)?;
    let (dir, backup) = student::reset(&root, &lesson)?;
    report::outln(&format!(
        "{} reset: {} holds the starter again",
        lesson.front.id,
        shown(&root, &dir)
    ));
    if let Some(backup) = backup {
        report::outln(&format!(
            "your previous copy is kept in {}",
            shown(&root, &backup)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds the starter's crate in the scratch workspace with every target its tests need
/// (`cargo test --no-run`), failing with the compiler's first error lines if it does not build.
fn starter_compiles(scratch: &Path, target_dir: &Path, krate: &str) -> anyhow::Result<()> {
    let output = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args(["test", "--no-run", "--quiet", "-p", krate])
        .current_dir(scratch)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .context("running cargo")?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first_errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error"))
        .take(3)
        .collect();
    anyhow::bail!("{}", first_errors.join("; "))
}

fn write_starters_command(dir: &Path) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    for starter in starters::generate_all(&root, &lesson::discover(&root)?)? {
        let target = dir.join(&starter.name);
        starter.write_to(&target)?;
        eprintln!(
            "{}: {} files (over crate {}) in {}",
            starter.name,
            starter.files.len(),
            starter.krate,
            target.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn starters_command(week: Option<&str>, allow_missing: bool) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    if let Err(message) = check_week(&root, week)? {
        return usage_error(&message);
    }
    let lessons = lesson::discover(&root)?;
    // Generating every starter checks every marker, whichever week is asked for.
    let generated = starters::generate_all(&root, &lessons)?;
    let mut wrong = Vec::new();
    for lesson in lessons
        .into_iter()
        .filter(|l| week.is_none_or(|w| l.front.week() == w))
    {
        let generated = generated
            .iter()
            .find(|s| s.name == lesson.front.starter && !s.files.is_empty());
        let Some(generated) = generated else {
            eprintln!(
                "{}: no starter: no `// starter: <lesson-id> ...` marker of starter `{}` in crate `{}`",
                lesson.front.id, lesson.front.starter, lesson.front.krate
            );
            if !allow_missing {
                wrong.push(lesson.front.id.clone());
            }
            continue;
        };
        let starter = student::generated_dir(&root).join(&generated.name);
        generated.write_to(&starter)?;
        let scratch = student::prepare_scratch(&root, &lesson, &starter)?;
        // A starter that does not compile would also "fail its lesson", for the wrong reason:
        // the point is that it compiles against the reference's tests and then fails them.
        if let Err(error) = starter_compiles(
            &scratch,
            &student::scratch_target(&root),
            &lesson.front.krate,
        ) {
            eprintln!(
                "{}: the untouched starter DOES NOT COMPILE against the reference's tests: {error:#}",
                lesson.front.id
            );
            wrong.push(lesson.front.id.clone());
            continue;
        }
        let options = RunOptions {
            root: scratch,
            target_dir: student::scratch_target(&root),
            log_dir: target_dir(&root).join("xtask/logs/starters"),
            server: None,
            invocation_dir: root.clone(),
            keep_going: false,
            verbose: false,
            build: true,
            student_paths: None,
        };
        let result = runner::run_lesson(&lesson, &options, &Printer::silent());
        let verdict = if result.status == Status::Fail {
            "fails, as it must"
        } else {
            "DOES NOT FAIL"
        };
        eprintln!(
            "{}: the untouched starter {verdict} ({}/{} steps pass)",
            lesson.front.id, result.points, result.max_points
        );
        if result.status != Status::Fail {
            wrong.push(lesson.front.id.clone());
        }
    }
    if wrong.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "starters that do not fail their lesson: {}",
            wrong.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}
