//! `cargo xtask`: the course runner's command line.
//!
//! This file only parses the command line and calls the command's function in the `xtask`
//! library (`lib.rs`): the learner's commands in `commands`, the course authors' in
//! `maintainer`. `lesson <id>` runs one lesson's Test / Expected / Prove steps, read from the
//! lesson file itself (the format is `course/FORMAT.md`); `list`, `grade`, `start`, `stop`,
//! `reset`, `hint` and `watch` build on it.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use xtask::{commands, maintainer};

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
(COURSE_PROGRESS_FILE names another file); every `lesson` run keeps its result in \
<target>/xtask/logs/<id>/result.json for `hint`, which remembers the stage it reached in \
<target>/xtask/hints/; `grade` writes <target>/xtask/grade.json; builds honour CARGO_TARGET_DIR."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one lesson's Test / Expected / Prove steps against the code.
    ///
    /// Example: `cargo xtask lesson w05-l04`, or against any server speaking the protocol:
    /// `cargo xtask lesson w05-l04 --server './handoff_server {port}'`, which runs
    /// `./handoff_server PORT --workers 2 --log` (the lesson's server arguments appended).
    Lesson {
        /// The lesson id, for example `w05-l04` (default: the one lesson you started).
        id: Option<String>,
        #[command(flatten)]
        run: commands::RunArgs,
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
        format: commands::Format,
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
        run: commands::RunArgs,
    },
    /// Starts a lesson: copies its starter to `student/<crate>/`, where you write your code.
    /// `student/` is a Cargo workspace of your copies: open it in your editor, and run
    /// `cargo test -p <crate>` there to test your copy.
    Start {
        /// The lesson id.
        id: String,
    },
    /// Leaves student mode for a lesson: `lesson` grades the reference again, and your copy in
    /// `student/<crate>/` stays as it is (`start` picks it up again).
    Stop {
        /// The lesson id (default: the one lesson you started).
        id: Option<String>,
    },
    /// Starts a started lesson over from its starter; your previous copy is kept in
    /// `student/.backup/`, and the command names the folder.
    Reset {
        /// The lesson id (default: the one lesson you started).
        id: Option<String>,
    },
    /// Shows hints for a lesson, one stage per call: first the step that failed in its last
    /// run (`cargo xtask lesson` keeps each run's result in `<target>/xtask/logs/<id>/result.json`)
    /// with the Common-mistakes rows that name it, then the lesson's whole Common-mistakes table,
    /// then where in the lesson to read. It says which run it read: whose code, and when.
    Hint {
        /// The lesson id (default: the one lesson you started).
        id: Option<String>,
        /// Show every stage at once.
        #[arg(long)]
        all: bool,
    },
    /// Runs a lesson, then runs it again each time a file of the code it grades (your copy in
    /// `student/<crate>/` once started, else the reference crate) or the lesson file is saved.
    /// Between runs it takes commands, each followed by Enter: `r` runs again, `h` shows the
    /// next hint, `n` the next lesson's `start` command, `q` quits. It needs a terminal on stdin
    /// (`--script` is the testing aid that reads the commands from a pipe); without one it says
    /// why and exits with status 2.
    Watch {
        /// The lesson id (default: the one lesson you started).
        id: Option<String>,
        #[command(flatten)]
        args: commands::WatchArgs,
    },
    /// Takes a week's self-check quiz (`course/wNN/quiz.md`), one question at a time: type the
    /// letter or the short answer; each answer is checked at once, with the key and why. The
    /// score is appended to `<target>/xtask/quiz/<week>.jsonl`. Without a week, lists the
    /// quizzes and your best scores.
    Quiz {
        /// The week, for example `w05`.
        week: Option<String>,
        /// Only check that every quiz follows course/FORMAT.md (section 8): one `Answer:` and one
        /// `Why:` per question, letters that name options. Asks nothing.
        #[arg(long, conflicts_with = "week")]
        check: bool,
    },
    /// Generates every starter from the `// starter:` markers in the reference crates (see
    /// course/FORMAT.md, section 5) and checks that each lesson's untouched starter compiles and
    /// fails its lesson (the reference passing is `grade`'s job), and that each lesson passes on
    /// its starter as a student has it on reaching the lesson: the bodies of the earlier lessons
    /// and its own written, the later lessons' still `todo!()`. A malformed marker is an error
    /// naming its file and line.
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
    Bench(xtask::BenchCommandArgs),
    /// Runs the W10 crash harness: `kv_server --data-dir` killed with SIGKILL at random moments
    /// under load (200 times by default) and at every failpoint of its log and checkpoint, each
    /// time restarted and checked: every acknowledged write present, each client's keys an
    /// unbroken run.
    Crash(xtask::crash::CrashArgs),
    /// Soaks `handoff_server` with syscall faults injected (`--cfg fault_injection`): mixed load,
    /// a flood, clients that vanish mid-pipeline and slow readers, for 10 minutes by default;
    /// samples RSS, fds and CPU and fails on growth, a leaked fd, a busy idle loop or a wrong
    /// byte. Not part of CI's default path.
    Soak(xtask::soak::SoakArgs),
    /// Renders course/ as a web book with mdBook: a page per lesson in course order, each with
    /// its `start` and `lesson` commands, every step labelled with what the runner checks, and
    /// each Done-when item with the steps that check it. Every link between the course's pages
    /// is checked first, and a broken one fails the build. mdBook (0.5) is the installed tool:
    /// when it is missing, `cargo install` installs it (a few minutes, once). The book is
    /// written to `<target>/xtask/book/html/`.
    Book(xtask::book::BookArgs),
}

/// The subcommands for the course's authors rather than its learners: `--help` lists them under
/// their own heading, after the learner's.
const MAINTAINER_COMMANDS: [&str; 1] = ["starters"];

/// The command line, with the maintainer commands moved from the learner's list to a heading of
/// their own (clap lists every subcommand under one heading, so they are hidden there and listed
/// again, with their own one-line help, after it).
fn command_line() -> clap::Command {
    let mut command = Cli::command();
    let mut section = String::from("Maintainer commands:");
    for name in MAINTAINER_COMMANDS {
        command = command.mut_subcommand(name, |sub| {
            let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
            section.push_str(&format!("\n  {name:<9} {about}"));
            sub.hide(true)
        });
    }
    let after = command
        .get_after_help()
        .map(ToString::to_string)
        .unwrap_or_default();
    command.after_help(format!("{section}\n\n{after}"))
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command_line().get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Command::Lesson { run, .. } | Command::Grade { run, .. } = &cli.command {
        if let Err(message) = run.foreign_server() {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    }
    if let Err(error) = xtask::install_interrupt_handler() {
        eprintln!("warning: Ctrl-C will not stop servers cleanly: {error}");
    }
    // `lesson`, `stop`, `reset`, `hint` and `watch` without an id mean the one started lesson.
    let started =
        |id: Option<String>, command: &str| commands::lesson_id_or_started(id.as_deref(), command);
    let result = match cli.command {
        Command::Lesson {
            id,
            check_format: true,
            ..
        } => match started(id, "lesson") {
            Ok(id) => maintainer::check_format_command(&id),
            Err(message) => commands::usage_error(&message),
        },
        Command::Lesson { id, run, .. } => match started(id, "lesson") {
            Ok(id) => commands::lesson_command(&id, &run),
            Err(message) => commands::usage_error(&message),
        },
        Command::List => commands::list_command(),
        Command::Grade {
            week,
            format,
            repeat,
            out,
            student,
            run,
        } => commands::grade_command(
            week.as_deref(),
            format,
            repeat,
            out.as_deref(),
            student,
            &run,
        ),
        Command::Start { id } => commands::start_command(&id),
        Command::Stop { id } => match started(id, "stop") {
            Ok(id) => commands::stop_command(&id),
            Err(message) => commands::usage_error(&message),
        },
        Command::Reset { id } => match started(id, "reset") {
            Ok(id) => commands::reset_command(&id),
            Err(message) => commands::usage_error(&message),
        },
        Command::Hint { id, all } => match started(id, "hint") {
            Ok(id) => commands::hint_command(&id, all),
            Err(message) => commands::usage_error(&message),
        },
        Command::Watch { id, args } => match started(id, "watch") {
            Ok(id) => commands::watch_command(&id, &args),
            Err(message) => commands::usage_error(&message),
        },
        Command::Quiz { week, check } => xtask::quiz::quiz_command(week.as_deref(), check),
        Command::Starters {
            week,
            allow_missing,
            write,
        } => match write {
            Some(dir) => maintainer::write_starters_command(&dir),
            None => maintainer::starters_command(week.as_deref(), allow_missing),
        },
        Command::Bench(args) => xtask::bench_command(args),
        Command::Crash(args) => xtask::crash::run(&args),
        Command::Soak(args) => xtask::soak::run(&args),
        Command::Book(args) => xtask::book::run(&args),
    };
    // Interrupted: the servers were stopped on the way out, and the exit status says so, whether
    // the handler thread or this one got to the end first.
    if xtask::interrupted() {
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
