//! The learner's commands: `lesson`, `list`, `grade`, `start`, `stop`, `reset`, `hint` and
//! `watch`.
//!
//! Each is one function the binary calls with its parsed arguments; they share the checks of an
//! argument (`--week`), the way a usage error ends (status 2, nothing run), and how a lesson's
//! run options are put together for the reference or for the student's copy. The course
//! authors' commands are in [`crate::maintainer`].

mod grade;
mod hint;
mod watch;

pub use grade::{Format, grade_command};
pub use hint::hint_command;
pub use watch::{WatchArgs, watch_command};

use crate::last_run;
use crate::lesson::{self, Lesson};
use crate::process;
use crate::progress::Progress;
use crate::report::{self, Printer};
use crate::results::Status;
use crate::runner::{self, RunOptions};
use crate::server;
use crate::student;
use crate::workspace::{target_dir, workspace_root};
use std::path::Path;
use std::process::ExitCode;

/// How lesson steps run; shared by `lesson` and `grade`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Grade another server: a shell command with `{port}`, e.g. `--server './server {port}'`.
    /// The lesson's server arguments after the port (`--workers N`, `--queue N`, `--log`) are
    /// appended, or put where `{args}` stands. The `run` steps test the workspace's code, so they
    /// are shown as skipped (and still counted). `lesson` refuses a lesson without server steps;
    /// `grade` grades only the lessons the server can be the subject of.
    #[arg(long, value_name = "CMD")]
    pub server: Option<String>,
    /// With --server: pass the server only its port, none of the lesson's arguments.
    #[arg(long, requires = "server")]
    pub server_args_none: bool,
    /// Run every step even after one fails.
    #[arg(long)]
    pub keep_going: bool,
    /// Run the short form of the steps that have one (`{full}` in a command; FORMAT.md): the W06
    /// quest's flood with 2 s waves instead of the one-minute flood. CI passes it.
    #[arg(long)]
    pub quick: bool,
    /// Relay server and command output, prefixed by its source.
    #[arg(long, short)]
    pub verbose: bool,
    /// Grade the workspace's reference code even if the lesson is started (`lesson` only:
    /// `grade` grades the reference unless given `--student`).
    #[arg(long)]
    pub reference: bool,
}

impl RunArgs {
    /// The `--server` command, checked.
    pub fn foreign_server(&self) -> Result<Option<server::ForeignServer>, String> {
        self.server
            .as_deref()
            .map(|command| server::ForeignServer::new(command, !self.server_args_none))
            .transpose()
    }
}

/// A usage error: said on one line, exit status 2, nothing run.
pub fn usage_error(message: &str) -> anyhow::Result<ExitCode> {
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
pub(crate) fn check_week(root: &Path, week: Option<&str>) -> anyhow::Result<Result<(), String>> {
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

/// Options for running a lesson: against the student's copy when `student` (its scratch
/// workspace), else against the workspace.
pub(crate) fn options_for(
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
        let overlays = student::overlays(root, lesson)?;
        let scratch = student::prepare_scratch(root, &overlays)?;
        let copies = overlays
            .into_iter()
            .map(|overlay| runner::StudentCopy {
                shown_as: shown(root, &overlay.dir),
                krate: overlay.krate,
                crate_dir: overlay.crate_dir,
                student: overlay.dir,
            })
            .collect();
        let paths = runner::StudentPaths {
            scratch: scratch.clone(),
            copies,
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
        quick: run.quick,
        verbose: run.verbose,
        build: true,
        student_paths,
    })
}

/// Which crates of a graded run are the student's: "your crates: task_queue, handoff_server;
/// the rest is the reference".
pub(crate) fn your_crates(paths: &runner::StudentPaths) -> String {
    let names: Vec<&str> = paths
        .copies
        .iter()
        .map(|copy| copy.krate.as_str())
        .collect();
    format!(
        "your crates: {}; the rest is the reference",
        names.join(", ")
    )
}

/// The lesson a command without an id means: the one started lesson. None started, or several,
/// is a usage error that says which ids there are to choose from.
pub fn lesson_id_or_started(id: Option<&str>, command: &str) -> Result<String, String> {
    if let Some(id) = id {
        return Ok(id.to_owned());
    }
    let started = Progress::load(&workspace_root()).started();
    match started.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(format!(
            "`cargo xtask {command}` needs a lesson id: no lesson is started \
             (`cargo xtask list` shows them; `cargo xtask start <id>` starts one)"
        )),
        several => Err(format!(
            "`cargo xtask {command}` needs a lesson id: {} lessons are started ({}); name one",
            several.len(),
            several.join(", ")
        )),
    }
}

/// The lesson after `lesson` in course order, if any.
fn next_lesson(root: &Path, lesson: &Lesson) -> Option<Lesson> {
    let lessons = lesson::discover(root).ok()?;
    let at = lessons.iter().position(|l| l.front.id == lesson.front.id)?;
    lessons.into_iter().nth(at + 1)
}

/// The line that names the lesson after `lesson` and its `start` command, if there is one.
fn next_start_line(root: &Path, lesson: &Lesson) -> Option<String> {
    let next = next_lesson(root, lesson)?;
    Some(format!(
        "next: {} ({}): `cargo xtask start {}`",
        next.front.id, next.front.title, next.front.id
    ))
}

/// Whether a `lesson` run grades the student's copy: the lesson is started, and neither
/// `--reference` nor `--server` asks for other code.
fn grades_student_copy(root: &Path, lesson: &Lesson, run: &RunArgs) -> bool {
    Progress::load(root).is_started(&lesson.front.id) && !run.reference && run.server.is_none()
}

/// Whose code a `lesson` run grades, as its saved result records it.
fn run_subject(root: &Path, lesson: &Lesson, run: &RunArgs, student: bool) -> last_run::Subject {
    match &run.server {
        Some(command) => last_run::Subject::Server {
            command: command.clone(),
        },
        None if student => last_run::Subject::Student {
            copy: shown(root, &student::student_dir(root, lesson)),
        },
        None => last_run::Subject::Reference,
    }
}

/// `cargo xtask lesson <id>`: runs one lesson's steps against the reference, or against the
/// student's copy when the lesson is started (recording the result in the progress file), or
/// against a foreign server with `--server`.
pub fn lesson_command(id: &str, run: &RunArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let lesson = lesson::find(&root, id)?;
    if let Some(reason) = run
        .server
        .as_ref()
        .and_then(|_| foreign_skip_reason(&lesson, true))
    {
        return usage_error(&format!(
            "--server: lesson {} has nothing to grade another server on: {reason}; lessons \
             another server can be graded on: {}",
            lesson.front.id,
            lesson::discover(&root)?
                .iter()
                .filter(|l| foreign_skip_reason(l, true).is_none())
                .map(|l| l.front.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let graded_student = grades_student_copy(&root, &lesson, run);
    let options = options_for(&root, &lesson, run, graded_student)?;
    if let Some(paths) = options.student_paths.as_ref().filter(|_| graded_student) {
        eprintln!(
            "grading your code in student/{} (use --reference for the reference); {}",
            lesson.front.starter,
            your_crates(paths)
        );
    } else if run.server.is_none() {
        // Without this line a student who forgot `start` reads the reference's PASS as theirs.
        eprintln!(
            "grading the reference crates, not your code: {}",
            if run.reference {
                "--reference".to_owned()
            } else {
                let copy = student::student_dir(&root, &lesson);
                let shown_copy = copy.is_dir().then(|| shown(&root, &copy));
                not_started_reason(&lesson.front.id, shown_copy.as_deref())
            }
        );
    }
    let result = runner::run_lesson(&lesson, &options, &Printer::for_terminal());
    // Only the student's own copy makes progress; an interrupted run has no result to record.
    if graded_student && !process::interrupted() {
        Progress::update(&root, |progress| progress.record(&result))?;
    }
    // Every run that ended is kept for `hint`, whoever's code it graded.
    if !process::interrupted() {
        let subject = run_subject(&root, &lesson, run, graded_student);
        if let Err(error) = last_run::save(&root, &result, subject) {
            // The grade stands without it; only `hint` loses what it would have read.
            eprintln!("warning: this run's result is not saved for `cargo xtask hint`: {error:#}");
        }
    }
    if graded_student && result.status == Status::Pass {
        if let Some(line) = next_start_line(&root, &lesson) {
            report::outln(&line);
        }
    }
    Ok(exit_code(result.status))
}

/// Success only when everything passed: a lesson none of whose steps ran has not passed.
pub(crate) fn exit_code(status: Status) -> ExitCode {
    if status == Status::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `cargo xtask list`: every lesson in course order with the last result of the learner's own
/// copy, and every lesson file that does not follow the format.
pub fn list_command() -> anyhow::Result<ExitCode> {
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
pub fn foreign_skip_reason(lesson: &Lesson, week_asked: bool) -> Option<String> {
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
    // A lesson whose every server step is reference-only starts its servers with flags the wire
    // contract does not define (W05 L07's `--loops`): nothing in it applies to another server.
    let server_steps = lesson
        .steps
        .iter()
        .filter(|step| matches!(step.kind, lesson::StepKind::Server(_)));
    if server_steps.clone().all(|step| step.reference_only) {
        return Some(
            "its servers run with flags the wire contract does not define (its server steps are \
             reference-only): it grades the workspace's own server"
                .to_owned(),
        );
    }
    match programs.iter().find(|program| **program != PROTOCOL_SERVER) {
        Some(other) if !week_asked => Some(format!(
            "its server is `{other}`, not `{PROTOCOL_SERVER}`; `--week {}` grades it",
            lesson.front.week()
        )),
        _ => None,
    }
}

/// A path as the student sees it: relative to the workspace root when inside it.
pub(crate) fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `cargo xtask start <id>`: copies the lesson's starter to `student/<crate>/`.
pub fn start_command(id: &str) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let lesson = lesson::find(&root, id)?;
    let already = Progress::load(&root).is_started(&lesson.front.id);
    let (dir, kept) = student::start(&root, &lesson)?;
    // A copy that is already there is the student's own work: from an earlier start of this
    // lesson, or from an earlier lesson on the same crate (W05 L04 and L05 share one).
    let verb = match (already, kept) {
        (true, _) => "is already started",
        (false, true) => "started on the copy you already have",
        (false, false) => "started",
    };
    report::outln(&format!(
        "{} {verb}: your code is in {}",
        lesson.front.id,
        shown(&root, &dir)
    ));
    report::outln(&format!(
        "student/ is a Cargo workspace of your copies: open it in your editor; \
         `cd student && cargo test -p {}` runs the crate's own tests on your copy",
        lesson.front.krate
    ));
    report::outln(&format!(
        "read {} and run `cargo xtask lesson {}` to check your work (`cargo xtask stop {}` \
         leaves student mode)",
        lesson.path.display(),
        lesson.front.id,
        lesson.front.id
    ));
    if let Some(line) = also_started_line(&lesson.front.id, &Progress::load(&root).started()) {
        report::outln(&line);
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a run grades the reference: lesson `id` is not started; `start` either gives a starter,
/// or, when the student already has a copy of its crate (from an earlier lesson on it), starts
/// on that copy, which it never overwrites.
fn not_started_reason(id: &str, copy: Option<&str>) -> String {
    match copy {
        Some(copy) => format!(
            "lesson {id} is not started (`cargo xtask start {id}` starts it on your copy in {copy})"
        ),
        None => format!(
            "lesson {id} is not started (`cargo xtask start {id}` gives you its starter to write)"
        ),
    }
}

/// When lessons other than `id` are still started, the line that says so: the commands that
/// take the one started lesson by default now need an id (see [`lesson_id_or_started`]).
fn also_started_line(id: &str, started: &[String]) -> Option<String> {
    let others: Vec<&str> = started
        .iter()
        .map(String::as_str)
        .filter(|other| *other != id)
        .collect();
    let (verb, stop) = match others.as_slice() {
        [] => return None,
        [other] => ("is", format!("`cargo xtask stop {other}` stops it")),
        _ => ("are", "`cargo xtask stop <id>` stops one".to_owned()),
    };
    Some(format!(
        "{} {verb} started too, so `lesson`, `hint`, `watch`, `stop` and `reset` need the lesson's \
         id: `cargo xtask lesson {id}` ({stop})",
        others.join(", ")
    ))
}

/// `cargo xtask stop <id>`: leaves student mode; the copy stays.
pub fn stop_command(id: &str) -> anyhow::Result<ExitCode> {
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

/// `cargo xtask reset <id>`: starts a started lesson over from its starter, keeping the old copy.
pub fn reset_command(id: &str) -> anyhow::Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lesson_not_started_names_the_copy_start_would_pick_up() {
        assert_eq!(
            not_started_reason("w10-l01", None),
            "lesson w10-l01 is not started (`cargo xtask start w10-l01` gives you its starter to \
             write)"
        );
        assert_eq!(
            not_started_reason("w10-l01", Some("student/wal")),
            "lesson w10-l01 is not started (`cargo xtask start w10-l01` starts it on your copy in \
             student/wal)"
        );
    }

    #[test]
    fn starting_a_lesson_says_which_others_are_still_started() {
        let ids = |list: &[&str]| list.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
        assert_eq!(also_started_line("w10-l02", &ids(&["w10-l02"])), None);
        assert_eq!(also_started_line("w10-l02", &[]), None);
        assert_eq!(
            also_started_line("w10-l02", &ids(&["w10-l01", "w10-l02"])).as_deref(),
            Some(
                "w10-l01 is started too, so `lesson`, `hint`, `watch`, `stop` and `reset` need \
                 the lesson's id: `cargo xtask lesson w10-l02` (`cargo xtask stop w10-l01` stops \
                 it)"
            )
        );
        let several =
            also_started_line("w10-l02", &ids(&["w05-l01", "w10-l01", "w10-l02"])).expect("a line");
        assert!(
            several.starts_with("w05-l01, w10-l01 are started too")
                && several.ends_with("(`cargo xtask stop <id>` stops one)"),
            "{several}"
        );
    }

    #[test]
    fn the_next_lesson_is_the_following_one_in_course_order() {
        let root = workspace_root();
        let lesson = |id: &str| lesson::find(&root, id).unwrap();
        let next = |id: &str| next_lesson(&root, &lesson(id)).map(|l| l.front.id);
        assert_eq!(next("w05-l01").as_deref(), Some("w05-l02"));
        assert_eq!(next("w04-l05").as_deref(), Some("w05-l01"));
        let last = lesson::discover(&root).unwrap().pop().unwrap();
        assert_eq!(next_lesson(&root, &last).map(|l| l.front.id), None);
    }
}
