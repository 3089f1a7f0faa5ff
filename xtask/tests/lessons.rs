//! End-to-end tests of the runner: the course's server lessons, executed from the lesson files,
//! must reject each planted mistake of the `broken_server` fixture (W05) and of the
//! `foreign_kv_server` fixture (W09) with the step its Common-mistakes row names, must give the
//! honest foreign servers full points out of the steps that apply to them, and must pass the real
//! `handoff_server` five runs in a row.
//!
//! Lesson runs are serialised (one at a time) because several steps measure time or CPU use;
//! running them side by side on a small machine would test the machine, not the server.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use xtask::lesson::{self, Lesson};
use xtask::report::Printer;
use xtask::results::{LessonResult, Status};
use xtask::runner::{self, RunOptions};
use xtask::server::ForeignServer;

/// One lesson run at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

/// The profile folder this test binary was built into (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/xtask-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("profile folder")
        .to_path_buf()
}

/// The planted-mistakes fixture, built by `cargo test` as an example of this package.
fn fixture() -> PathBuf {
    example("broken_server")
}

/// An example of this package, built by `cargo test`.
fn example(name: &str) -> PathBuf {
    test_support::example_path(name)
}

/// The real server, built once (debug, sharing this test build's dependencies).
fn handoff_server() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile = profile_dir();
        let target = profile.parent().expect("target folder");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "handoff_server", "--bins"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(xtask::workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building handoff_server failed");
        profile.join("handoff_server")
    })
}

fn lesson(id: &str) -> Lesson {
    lesson::find(&xtask::workspace_root(), id).unwrap()
}

/// Runs a lesson against `server` (a `--server` command), stopping at the first failure.
fn run(id: &str, server: String) -> LessonResult {
    run_with(id, server, true)
}

/// Runs a lesson against `server`, with or without the lesson's server arguments.
fn run_with(id: &str, server: String, lesson_args: bool) -> LessonResult {
    let server = ForeignServer::new(&server, lesson_args).expect("a valid --server command");
    let lesson = lesson(id);
    let root = xtask::workspace_root();
    let log_dir = std::env::temp_dir().join(format!("xtask-test-logs-{}", std::process::id()));
    let options = RunOptions {
        root: root.clone(),
        target_dir: profile_dir().parent().unwrap().to_path_buf(),
        log_dir: log_dir.clone(),
        server: Some(server),
        invocation_dir: root,
        keep_going: false,
        quick: true,
        verbose: false,
        build: false,
        student_paths: None,
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let result = runner::run_lesson(&lesson, &options, &Printer::silent());
    let _ = std::fs::remove_dir_all(log_dir.join(id));
    result
}

/// The fixture with `bug` planted, in the documented `--server` form: the lesson's server
/// arguments are appended after the port.
fn broken(bug: &str) -> String {
    format!("{} --bug {bug} {{port}}", fixture().display())
}

/// Everything a failed step says, for assertions and for the test's own failure message.
fn describe(result: &LessonResult) -> String {
    let mut text = format!(
        "{} {:?} {}/{}\n",
        result.id, result.status, result.points, result.max_points
    );
    for step in &result.steps {
        text.push_str(&format!(
            "  {:?} {} {}\n",
            step.status, step.kind, step.name
        ));
        if step.status != Status::Pass {
            text.push_str(&xtask::results::step_text(step));
        }
    }
    text
}

/// Asserts that `bug` makes `lesson` fail first at `step`, with `message` in its report and the
/// step's Common-mistakes hint attached.
fn assert_rejected(bug: &str, lesson: &str, step: &str, message: &str) {
    let result = run(lesson, broken(bug));
    let report = describe(&result);
    assert_eq!(
        result.status,
        Status::Fail,
        "bug {bug} was not rejected:\n{report}"
    );
    let failed = result.first_failure().expect("a failing step");
    assert_eq!(
        failed.name, step,
        "bug {bug} was caught by the wrong step:\n{report}"
    );
    let text = xtask::results::step_text(failed);
    assert!(
        text.contains(message),
        "bug {bug}: expected `{message}` in the report:\n{report}"
    );
    assert!(
        !failed.hints.is_empty(),
        "bug {bug}: step {step} failed without a hint:\n{report}"
    );
}

#[test]
fn the_fixture_without_a_bug_passes_every_server_lesson() {
    for id in SERVER_LESSONS {
        let result = run(id, broken("none"));
        assert!(
            matches!(result.status, Status::Pass),
            "{}",
            describe(&result)
        );
        assert_full_marks_out_of_the_applicable_steps(&result);
    }
}

/// Asserts that `result`, a `--server` run, passed every step that applies to a foreign server,
/// out of a total the lesson file fixes: its steps, less the reference-only ones (the `run`
/// steps among them), which are there, reported not applicable.
fn assert_full_marks_out_of_the_applicable_steps(result: &LessonResult) {
    let id = &result.id;
    let lesson = lesson(id);
    let applicable = lesson
        .steps
        .iter()
        .filter(|s| s.applies_to_foreign_server())
        .count();
    assert_eq!(result.max_points as usize, applicable, "{id}");
    assert_eq!(result.points, result.max_points, "{}", describe(result));
    let names: Vec<&str> = result.steps.iter().map(|s| s.name.as_str()).collect();
    for step in &lesson.steps {
        assert!(
            names.contains(&step.name.as_str()),
            "{id}: {} missing",
            step.name
        );
        let shown = result.steps.iter().find(|s| s.name == step.name).unwrap();
        if !step.applies_to_foreign_server() {
            assert_eq!(shown.status, Status::NotApplicable, "{id}: {}", step.name);
        }
    }
}

/// The server lessons' ids, in course order.
const SERVER_LESSONS: [&str; 4] = ["w05-l04", "w05-l05", "w05-l06", "w05-quest"];

/// Every lesson whose servers all run `handoff_server`: W05's and W06's (the overload controls
/// are flags of the same server), which `grade --server` grades without `--week`.
const HANDOFF_SERVER_LESSONS: [&str; 11] = [
    "w05-l04",
    "w05-l05",
    "w05-l06",
    "w05-quest",
    "w06-l01",
    "w06-l02",
    "w06-l03",
    "w06-l04",
    "w06-l05",
    "w06-l06",
    "w06-quest",
];

#[test]
fn an_honest_foreign_server_passes_every_server_lesson_in_the_documented_form() {
    let server = format!("{} {{port}}", example("foreign_server").display());
    for id in SERVER_LESSONS {
        let result = run(id, server.clone());
        assert_eq!(result.status, Status::Pass, "{}", describe(&result));
    }
}

#[test]
fn the_args_placeholder_puts_the_lesson_arguments_after_flags_of_its_own() {
    // `{args}` is only the lesson's arguments after the port, so the command can add its own.
    let server = format!(
        "{} {{port}} {{args}} --queue 4096",
        example("foreign_server").display()
    );
    let result = run("w05-l04", server);
    assert_eq!(result.status, Status::Pass, "{}", describe(&result));
}

#[test]
fn without_the_lesson_arguments_the_foreign_server_fails_where_they_matter() {
    // The lesson asks for `--workers 2 --log`; with --server-args-none the server never logs,
    // so the log checks fail: the arguments really reach the server in the documented form.
    let server = format!("{} {{port}}", example("foreign_server").display());
    let result = run_with("w05-l04", server, false);
    assert_eq!(result.status, Status::Fail, "{}", describe(&result));
    let failed = result.first_failure().expect("a failing step");
    assert_eq!(failed.name, "thread-ids", "{}", describe(&result));
}

#[test]
fn the_server_step_reports_the_exact_command_it_ran() {
    let program = example("foreign_server");
    let result = run("w05-l04", format!("{} {{port}}", program.display()));
    let server = result
        .steps
        .iter()
        .find(|step| step.kind == "server")
        .expect("a server step");
    let check = &server.checks[0].name;
    assert!(
        check.starts_with(&format!("`{} ", program.display()))
            && check.contains(" --workers 2 --log`"),
        "{check}"
    );
}

#[test]
fn grade_with_a_foreign_server_keeps_only_the_lessons_it_can_be_the_subject_of() {
    let (lessons, _) = lesson::discover_all(&xtask::workspace_root()).unwrap();
    let graded: Vec<&str> = lessons
        .iter()
        .filter(|l| xtask::commands::foreign_skip_reason(l, false).is_none())
        .map(|l| l.front.id.as_str())
        .collect();
    assert_eq!(graded, HANDOFF_SERVER_LESSONS);
    let w04 = lesson("w04-l05");
    let reason =
        xtask::commands::foreign_skip_reason(&w04, false).expect("left out without --week");
    assert!(
        reason.contains("`epoll_server`") && reason.contains("--week w04"),
        "{reason}"
    );
    assert_eq!(xtask::commands::foreign_skip_reason(&w04, true), None);
    let reason =
        xtask::commands::foreign_skip_reason(&lesson("w05-l01"), true).expect("no server step");
    assert!(reason.contains("no server step"), "{reason}");
    // W05 L07 starts its server with `--loops`, which only the workspace's server has.
    let reason = xtask::commands::foreign_skip_reason(&lesson("w05-l07"), true)
        .expect("every server step reference-only");
    assert!(reason.contains("reference-only"), "{reason}");
}

#[test]
fn the_real_server_passes_five_runs_in_a_row() {
    let server = format!("{} {{port}}", handoff_server().display());
    for round in 1..=5 {
        for id in SERVER_LESSONS {
            let result = run(id, server.clone());
            assert_eq!(
                result.status,
                Status::Pass,
                "run {round}:\n{}",
                describe(&result)
            );
        }
    }
}

#[test]
fn dropping_owed_answers_on_half_close_is_rejected() {
    assert_rejected(
        "drop-on-half-close",
        "w05-l04",
        "ten-clients",
        "got nothing",
    );
}

#[test]
fn a_wrong_hash_is_caught_with_the_hashing_hint_not_the_half_close_one() {
    assert_rejected("wrong-hash", "w05-l04", "one-client", "result: ");
    let result = run("w05-l04", broken("wrong-hash"));
    let hints = result.first_failure().expect("a failure").hints.join("\n");
    assert!(
        hints.contains("wrong bytes") && !hints.contains("recv` returns 0"),
        "{hints}"
    );
}

#[test]
fn computing_on_the_loop_is_rejected() {
    assert_rejected(
        "compute-on-loop",
        "w05-l04",
        "ping-while-busy",
        "more than the 250 ms allowed",
    );
}

#[test]
fn a_worker_touching_a_client_socket_is_rejected_or_skipped_without_strace() {
    let result = run("w05-l04", broken("worker-writes-socket"));
    let report = describe(&result);
    let step = result
        .steps
        .iter()
        .find(|s| s.name == "workers-off-sockets")
        .expect("the step ran");
    let strace = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if strace
        && result
            .steps
            .iter()
            .all(|s| s.name != "io" || s.status == Status::Pass)
    {
        assert_eq!(step.status, Status::Fail, "{report}");
        assert!(
            xtask::results::step_text(step).contains("made system calls on client sockets"),
            "{report}"
        );
        assert_eq!(
            result.first_failure().map(|s| s.name.as_str()),
            Some("workers-off-sockets"),
            "{report}"
        );
    } else {
        // Never claimed: the check is reported as skipped, not passed.
        assert_eq!(step.status, Status::Skipped, "{report}");
    }
}

#[test]
fn delivering_to_the_wrong_client_after_fd_reuse_is_rejected() {
    assert_rejected(
        "fd-reuse",
        "w05-l06",
        "reused-fd",
        "got `result: slept 300ms`",
    );
}

#[test]
fn out_of_order_answers_are_rejected() {
    assert_rejected(
        "out-of-order",
        "w05-l06",
        "pipelined-order",
        "expected `result: slept 300ms`",
    );
}

#[test]
fn exiting_on_sigterm_without_draining_is_rejected() {
    assert_rejected("no-drain", "w05-quest", "in-flight", "got nothing");
}

#[test]
fn leaking_a_descriptor_per_connection_is_rejected() {
    assert_rejected(
        "fd-leak",
        "w05-l06",
        "no-fd-leak",
        "a descriptor outlives its connection",
    );
}

#[test]
fn dying_on_a_task_panic_is_rejected() {
    assert_rejected(
        "panic-kills",
        "w05-quest",
        "panic-isolation",
        "ERROR: task panicked: boom",
    );
}

#[test]
fn keeping_the_cr_of_crlf_is_rejected() {
    assert_rejected("keep-cr", "w05-l06", "crlf", "request 1 `compute crlf\\r`");
}

#[test]
fn dropping_a_final_line_without_newline_is_rejected() {
    assert_rejected(
        "drop-final-line",
        "w05-l06",
        "final-line",
        "request 2 `compute last`",
    );
}

#[test]
fn an_off_by_one_line_limit_is_rejected() {
    assert_rejected(
        "off-by-one",
        "w05-l06",
        "line-limit",
        "got `ERROR: line too long`",
    );
}

#[test]
fn spinning_on_emfile_is_rejected() {
    assert_rejected(
        "spin-on-emfile",
        "w05-quest",
        "no-spin-on-emfile",
        "it spins",
    );
}

#[test]
fn a_server_that_dies_at_start_fails_fast_with_its_output() {
    let result = run(
        "w05-l04",
        "sh -c 'echo cannot bind >&2; exit 3' {port}".to_owned(),
    );
    let failed = result.first_failure().expect("a failure");
    assert_eq!(failed.name, "main");
    let text = xtask::results::step_text(failed);
    assert!(
        text.contains("exited") && text.contains("cannot bind"),
        "{}",
        describe(&result)
    );
    assert!(
        failed.duration_ms < 5_000,
        "it must fail fast, not wait for the timeout"
    );
}

/// A lesson made of `console run` steps only.
const RUN_STEPS_LESSON: &str = r#"---
id: w09-l01
title: "Run steps"
order: 1
crate: xtask
duration: 5 min
---

## Goal
g
## What you build
w
## Why it matters
y
## Do
d
## Test

```console run name=echo
$ printf 'a\nhello world\nb\n'
...
hello [..]
...
```

```console run name=fails status=fail
$ exit 3
```

## Expected

```console run name=wrong
$ echo nope
yes
```

## Prove

```console run name=never
$ echo never
```

## Done when
- Output matches. (checked by: echo)
- Looks nice.
## Common mistakes
| Mistake | Fix | Caught by |
|---|---|---|
| Printing nope | Print yes | `wrong` |
## Diagram
```text
a -> b
```
"#;

/// Runs a lesson text in-process in a scratch folder.
fn run_local_lesson(text: &str, keep_going: bool) -> LessonResult {
    run_local_lesson_as(text, keep_going, None)
}

/// [`run_local_lesson`], grading a student's copy whose files are reported by `student_paths`.
fn run_local_lesson_as(
    text: &str,
    keep_going: bool,
    student_paths: Option<runner::StudentPaths>,
) -> LessonResult {
    let lesson = xtask::lesson::parse::parse_lesson(text, Path::new("run.md")).unwrap();
    let scratch = std::env::temp_dir().join(format!(
        "xtask-run-steps-{}-{keep_going}-{}",
        std::process::id(),
        student_paths.is_some()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let options = RunOptions {
        root: scratch.clone(),
        target_dir: scratch.join("target"),
        log_dir: scratch.join("logs"),
        server: None,
        invocation_dir: scratch.clone(),
        keep_going,
        quick: true,
        verbose: false,
        build: true,
        student_paths,
    };
    let result = runner::run_lesson(&lesson, &options, &Printer::silent());
    std::fs::remove_dir_all(&scratch).unwrap();
    result
}

#[test]
fn a_run_that_writes_no_log_names_no_logs_folder_and_keeps_no_earlier_ones() {
    let lesson = xtask::lesson::parse::parse_lesson(RUN_STEPS_LESSON, Path::new("run.md")).unwrap();
    let scratch = std::env::temp_dir().join(format!("xtask-no-logs-{}", std::process::id()));
    let logs = scratch.join("logs");
    // A log an earlier run left is not this run's.
    std::fs::create_dir_all(logs.join("w09-l01")).unwrap();
    std::fs::write(logs.join("w09-l01/main.log"), "an earlier run").unwrap();
    let options = RunOptions {
        root: scratch.clone(),
        target_dir: scratch.join("target"),
        log_dir: logs.clone(),
        server: None,
        invocation_dir: scratch.clone(),
        keep_going: true,
        quick: true,
        verbose: false,
        build: true,
        student_paths: None,
    };
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    runner::run_lesson(&lesson, &options, &Printer::to_buffer(printed.clone()));
    let stale = logs.join("w09-l01/main.log").exists();
    std::fs::remove_dir_all(&scratch).unwrap();
    let printed = printed.lock().unwrap().clone();
    assert!(printed.contains("w09-l01: 3/4 steps passed"), "{printed}");
    assert!(!printed.contains("(logs:"), "{printed}");
    assert!(!stale, "the earlier run's log is removed");
}

#[test]
fn keep_going_runs_the_steps_after_a_failure() {
    let result = run_local_lesson(RUN_STEPS_LESSON, true);
    let never = result.steps.iter().find(|s| s.name == "never").unwrap();
    assert_eq!(never.status, Status::Pass, "{}", describe(&result));
    assert_eq!(
        result.status,
        Status::Fail,
        "one failure still fails the lesson"
    );
    assert_eq!((result.points, result.max_points), (3, 4));
}

/// Run steps: output with wildcards, exit statuses, hints, Done-when, points.
#[test]
fn run_steps_match_output_and_status_and_report_hints() {
    let result = run_local_lesson(RUN_STEPS_LESSON, false);
    let report = describe(&result);
    let statuses: Vec<(&str, Status)> = result
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("echo", Status::Pass),
            ("fails", Status::Pass),
            ("wrong", Status::Fail),
            ("never", Status::Skipped)
        ],
        "{report}"
    );
    let wrong = result.first_failure().unwrap();
    let text = xtask::results::step_text(wrong);
    assert!(
        text.contains("expected output:") && text.contains("yes") && text.contains("nope"),
        "{report}"
    );
    assert_eq!(wrong.hints, ["Printing nope — Print yes"]);
    assert_eq!((result.points, result.max_points), (2, 4));
    assert_eq!(result.done_when[0].status, Some(Status::Pass));
    assert_eq!(
        result.done_when[1].status, None,
        "an item without steps is never claimed"
    );
}

/// A lesson whose one step fails the way a starter's `todo!()` does, naming the crate's files.
const PANIC_LESSON: &str = r#"---
id: w09-l02
title: "A panic"
order: 2
crate: xtask
duration: 5 min
---

## Goal
g
## What you build
w
## Why it matters
y
## Do
d
## Test

```console run name=panics
$ printf 'thread panicked at crates/w05/task_queue/src/lib.rs:148:9:\nnot yet implemented\n' >&2; printf -- '--> crates/w05/task_queue/tests/contract.rs:3:1\n'; exit 101
```

## Expected
## Prove
## Done when
- It passes. (checked by: panics)
## Common mistakes
| Mistake | Fix | Caught by |
|---|---|---|
| Leaving todo!() | Write the code | `panics` |
## Diagram
```text
a -> b
```
"#;

#[test]
fn a_student_panic_names_the_students_file() {
    let student = std::env::temp_dir().join(format!("xtask-student-copy-{}", std::process::id()));
    std::fs::create_dir_all(student.join("src")).unwrap();
    std::fs::write(student.join("src/lib.rs"), "//! the student's code\n").unwrap();
    let paths = runner::StudentPaths {
        scratch: std::env::temp_dir().join("no-such-scratch"),
        copies: vec![runner::StudentCopy {
            krate: "task_queue".to_owned(),
            crate_dir: PathBuf::from("crates/w05/task_queue"),
            student: student.clone(),
            shown_as: "student/task_queue".to_owned(),
        }],
    };
    let result = run_local_lesson_as(PANIC_LESSON, false, Some(paths));
    std::fs::remove_dir_all(&student).unwrap();
    let failed = result.first_failure().expect("the step fails");
    let text = xtask::results::step_text(failed);
    assert!(
        text.contains("panicked at student/task_queue/src/lib.rs:148:9"),
        "{text}"
    );
    assert!(!text.contains("crates/w05/task_queue/src/lib.rs"), "{text}");
    // A file the student's copy does not hold is the reference's, and keeps its path.
    assert!(
        text.contains("crates/w05/task_queue/tests/contract.rs:3:1"),
        "{text}"
    );
}

/// A lesson whose one step is a `cargo build`, which the runner builds first, untimed.
const BUILD_LESSON: &str = r#"---
id: w09-l03
title: "A build"
order: 3
crate: xtask
duration: 5 min
---

## Goal
g
## What you build
w
## Why it matters
y
## Do
d
## Test

```console run name=builds
$ cargo build --offline
```

## Expected
## Prove
## Done when
- It builds. (checked by: builds)
## Common mistakes
| Mistake | Fix | Caught by |
|---|---|---|
| A typo | Fix it | `builds` |
## Diagram
```text
a -> b
```
"#;

#[test]
fn the_build_shows_cargo_at_work_and_reports_its_time_once() {
    let lesson = xtask::lesson::parse::parse_lesson(BUILD_LESSON, Path::new("build.md")).unwrap();
    let scratch = std::env::temp_dir().join(format!("xtask-build-{}", std::process::id()));
    std::fs::create_dir_all(scratch.join("src")).unwrap();
    std::fs::write(
        scratch.join("Cargo.toml"),
        "[package]\nname = \"tiny_build\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(scratch.join("src/lib.rs"), "//! tiny\n").unwrap();
    let options = RunOptions {
        root: scratch.clone(),
        target_dir: scratch.join("target"),
        log_dir: scratch.join("logs"),
        server: None,
        invocation_dir: scratch.clone(),
        keep_going: false,
        quick: true,
        verbose: false,
        build: true,
        student_paths: None,
    };
    let report = std::sync::Arc::new(Mutex::new(String::new()));
    let result = runner::run_lesson(&lesson, &options, &Printer::to_buffer(report.clone()));
    std::fs::remove_dir_all(&scratch).unwrap();
    let report = report.lock().unwrap().clone();
    assert_eq!(result.status, Status::Pass, "{report}");
    // Said before it starts, then cargo's own lines as they come.
    assert!(
        report.contains("build: cargo build --offline\n"),
        "{report}"
    );
    assert!(
        report.contains("| ") && report.contains("Compiling tiny_build"),
        "{report}"
    );
    // One build time, the same in the build line and the verdict.
    let build = result.steps.iter().find(|s| s.kind == "build").unwrap();
    let seconds = format!("{:.1}s build)", build.duration_ms as f64 / 1000.0);
    assert!(report.contains(&seconds), "{seconds} in:\n{report}");
    assert!(!report.contains("not timed"), "{report}");
    // The build is no step of the file: 1/1, not 2/2.
    assert_eq!((result.points, result.max_points), (1, 1));
}

/// A lesson mixing steps a foreign server is graded on with reference-only ones.
const REFERENCE_ONLY_LESSON: &str = r#"---
id: w09-l04
title: "Reference-only steps"
order: 4
crate: xtask
duration: 5 min
---

## Goal
g
## What you build
w
## Why it matters
y
## Do
d
## Test

```console run name=unit
$ true
```

```console server name=main
$ handoff_server {port} --workers 2
```

```console client name=ping server=main
> ping
< pong
```

## Expected

```console client name=wrong server=main
> ping
< PONG
```

```console server name=flagged reference-only
$ handoff_server {port} --reference-flag
```

```console client name=flagged-ping server=flagged reference-only
> ping
< pong
```

## Prove

```console prove name=alive server=main
alive
```

## Done when
- Pings. (checked by: ping)
- Pings with the reference flag. (checked by: flagged-ping)
## Common mistakes
| Mistake | Fix | Caught by |
|---|---|---|
| Shouting | Do not | `wrong` |
## Diagram
```text
a -> b
```
"#;

/// Runs a lesson text against the honest foreign handoff server, with `keep_going` or not.
fn run_local_lesson_with_foreign_server(text: &str, keep_going: bool) -> LessonResult {
    let lesson = xtask::lesson::parse::parse_lesson(text, Path::new("ref.md")).unwrap();
    let server = format!("{} {{port}}", example("foreign_server").display());
    let scratch = std::env::temp_dir().join(format!(
        "xtask-reference-only-{}-{keep_going}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let options = RunOptions {
        root: scratch.clone(),
        target_dir: scratch.join("target"),
        log_dir: scratch.join("logs"),
        server: Some(ForeignServer::new(&server, true).unwrap()),
        invocation_dir: scratch.clone(),
        keep_going,
        quick: true,
        verbose: false,
        build: false,
        student_paths: None,
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let result = runner::run_lesson(&lesson, &options, &Printer::silent());
    std::fs::remove_dir_all(&scratch).unwrap();
    result
}

#[test]
fn under_a_foreign_server_reference_only_steps_are_not_applicable_and_not_counted() {
    for keep_going in [false, true] {
        let result = run_local_lesson_with_foreign_server(REFERENCE_ONLY_LESSON, keep_going);
        let report = describe(&result);
        let statuses: Vec<(&str, Status)> = result
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.status))
            .collect();
        let after_failure = if keep_going {
            Status::Pass
        } else {
            Status::Skipped
        };
        assert_eq!(
            statuses,
            [
                ("unit", Status::NotApplicable),
                ("main", Status::Pass),
                ("ping", Status::Pass),
                ("wrong", Status::Fail),
                ("flagged", Status::NotApplicable),
                ("flagged-ping", Status::NotApplicable),
                ("alive", after_failure),
            ],
            "{report}"
        );
        // The total is fixed by the file (four steps apply), whichever step failed.
        let points = if keep_going { 3 } else { 2 };
        assert_eq!((result.points, result.max_points), (points, 4), "{report}");
        assert_eq!(result.status, Status::Fail, "{report}");
        assert_eq!(result.done_when[0].status, Some(Status::Pass));
        assert_eq!(result.done_when[1].status, Some(Status::NotApplicable));
        let json: serde_json::Value =
            serde_json::from_str(&xtask::results::GradeReport::new(vec![result], None).to_json())
                .unwrap();
        assert_eq!(json["max_points"], 4);
        assert_eq!(json["lessons"][0]["steps"][4]["status"], "not_applicable");
    }
}

/// A lesson that signals a server which has already exited: SIGTERM drains it, then SIGINT
/// finds it gone.
const LATE_SIGNAL_LESSON: &str = r#"---
id: w05-l05
title: "A late signal"
order: 5
crate: xtask
duration: 5 min
---

## Goal
g
## What you build
w
## Why it matters
y
## Do
d
## Test

```console server name=main
$ handoff_server {port}
```

```console signal name=term server=main signal=TERM
```

```console prove name=drained server=main
exits 0 within 3s
```

## Expected

```console signal name=late-int server=main signal=INT
```

## Prove
## Done when
- Signals. (checked by: term, late-int)
## Common mistakes
| Mistake | Fix | Caught by |
|---|---|---|
| Signalling late | Do not | `late-int` |
## Diagram
```text
a -> b
```
"#;

#[test]
fn a_signal_to_a_server_that_already_exited_names_the_signal_it_was_to_send() {
    let result = run_local_lesson_with_foreign_server(LATE_SIGNAL_LESSON, false);
    let report = describe(&result);
    let late = result
        .steps
        .iter()
        .find(|step| step.name == "late-int")
        .expect("the late-int step");
    assert_eq!(late.status, Status::Fail, "{report}");
    let text = xtask::results::step_text(late);
    assert!(
        text.contains("had already exited") && text.contains("before SIGINT"),
        "the message names the signal the step sends:\n{report}"
    );
    assert!(!text.contains("SIGTERM"), "{report}");
}

/// The W09 lessons with server steps, in course order.
const KV_SERVER_LESSONS: [&str; 4] = ["w09-l04", "w09-l05", "w09-l06", "w09-quest"];

/// The foreign KV server, honest or with `bug` planted, in the documented `--server` form.
fn foreign_kv(bug: Option<&str>) -> String {
    let program = example("foreign_kv_server");
    match bug {
        None => format!("{} {{port}}", program.display()),
        Some(bug) => format!("{} --bug {bug} {{port}}", program.display()),
    }
}

#[test]
fn an_honest_foreign_kv_server_scores_full_points_in_every_w09_server_lesson() {
    for id in KV_SERVER_LESSONS {
        let result = run(id, foreign_kv(None));
        assert_eq!(result.status, Status::Pass, "{}", describe(&result));
        assert_full_marks_out_of_the_applicable_steps(&result);
    }
    // W09 L04's `--lock` steps are the reference's own: not applicable, not counted.
    let result = run("w09-l04", foreign_kv(None));
    let sharded = result.steps.iter().find(|s| s.name == "sharded").unwrap();
    assert_eq!(
        sharded.status,
        Status::NotApplicable,
        "{}",
        describe(&result)
    );
}

#[test]
fn a_kv_server_that_refuses_unknown_flags_is_never_passed_one() {
    // The contract's rule: a flag a server does not implement is refused with status 2. The
    // lessons pass a foreign server only the protocol's flags, so none of its server steps
    // meets that refusal.
    let output = std::process::Command::new(example("foreign_kv_server"))
        .args(["0", "--lock", "sharded:16"])
        .output()
        .expect("run the server");
    assert_eq!(output.status.code(), Some(2));
    for id in KV_SERVER_LESSONS {
        for step in lesson(id)
            .steps
            .iter()
            .filter(|s| s.applies_to_foreign_server())
        {
            if let xtask::lesson::StepKind::Server(server) = &step.kind {
                let args: Vec<&str> = server.command.split_whitespace().skip(2).collect();
                let mut words = args.iter();
                while let Some(word) = words.next() {
                    assert!(
                        matches!(*word, "--workers" | "--queue" | "--log"),
                        "{id}: step {} passes `{word}`, which the KV contract does not define",
                        step.name
                    );
                    if *word != "--log" {
                        words.next();
                    }
                }
            }
        }
    }
}

/// Asserts that the foreign KV server with `bug` planted fails `lesson` first at `step`, and
/// that a Common-mistakes row of the lesson names that step (its hint is attached).
fn assert_kv_rejected(bug: &str, lesson: &str, steps: &[&str]) {
    let result = run(lesson, foreign_kv(Some(bug)));
    let report = describe(&result);
    assert_eq!(
        result.status,
        Status::Fail,
        "bug {bug} was not rejected:\n{report}"
    );
    let failed = result.first_failure().expect("a failing step");
    assert!(
        steps.contains(&failed.name.as_str()),
        "bug {bug} was caught by {}, not by {steps:?}:\n{report}",
        failed.name
    );
    assert!(
        !failed.hints.is_empty(),
        "bug {bug}: step {} failed without a hint:\n{report}",
        failed.name
    );
}

#[test]
fn kv_batches_launched_at_once_are_rejected() {
    // L04's row names `writers`, `read-your-writes`: the first to meet the race is `writers`.
    assert_kv_rejected(
        "batches-at-once",
        "w09-l04",
        &["writers", "read-your-writes"],
    );
    assert_kv_rejected("batches-at-once", "w09-quest", &["mixed-load"]);
}

#[test]
fn kv_stats_and_errors_answered_on_the_loop_are_rejected() {
    assert_kv_rejected("stats-on-loop", "w09-l04", &["on-the-pool"]);
}

#[test]
fn a_kv_table_without_its_lock_is_rejected() {
    assert_kv_rejected("no-lock", "w09-l04", &["writers", "exact-count"]);
}

#[test]
fn a_kv_worker_writing_a_client_socket_is_rejected_or_skipped_without_strace() {
    let result = run("w09-l04", foreign_kv(Some("worker-writes-socket")));
    let report = describe(&result);
    let step = result
        .steps
        .iter()
        .find(|s| s.name == "workers-off-sockets")
        .expect("the step ran");
    let traced = result
        .steps
        .iter()
        .any(|s| s.name == "io" && s.status == Status::Pass);
    if traced {
        assert_eq!(step.status, Status::Fail, "{report}");
        assert_eq!(
            result.first_failure().map(|s| s.name.as_str()),
            Some("workers-off-sockets"),
            "{report}"
        );
        assert!(!step.hints.is_empty(), "{report}");
    } else {
        // Never claimed: the check is reported as skipped, not passed.
        assert_eq!(step.status, Status::Skipped, "{report}");
    }
}

#[test]
fn kv_answers_in_completion_order_are_rejected() {
    assert_kv_rejected(
        "completion-order",
        "w09-l05",
        &["pipelined", "ten-pipelines"],
    );
}

#[test]
fn a_kv_server_that_never_expires_is_rejected() {
    assert_kv_rejected("no-expiry", "w09-l05", &["lazy-expiry"]);
}

#[test]
fn a_kv_server_without_a_sweep_is_rejected() {
    assert_kv_rejected("no-sweep", "w09-l05", &["swept"]);
}

#[test]
fn a_kv_server_closing_on_any_error_is_rejected() {
    assert_kv_rejected("close-on-error", "w09-l06", &["errors"]);
}

#[test]
fn a_kv_server_dropping_the_final_line_is_rejected() {
    assert_kv_rejected("drop-final-line", "w09-l06", &["half-close"]);
}

#[test]
fn a_kv_server_keeping_the_cr_is_rejected() {
    assert_kv_rejected("keep-cr", "w09-l06", &["crlf"]);
}

#[test]
fn a_kv_server_with_an_off_by_one_line_limit_is_rejected() {
    assert_kv_rejected("off-by-one", "w09-l06", &["longest-line"]);
}

#[test]
fn a_kv_server_not_counting_line_too_long_is_rejected() {
    assert_kv_rejected("uncounted-too-long", "w09-l06", &["still-serving"]);
}

#[test]
fn a_kv_server_exiting_at_sigterm_without_draining_is_rejected() {
    assert_kv_rejected("no-drain", "w09-l06", &["in-flight"]);
    assert_kv_rejected("no-drain", "w09-quest", &["in-flight"]);
}

#[test]
fn a_kv_server_joining_its_pool_before_draining_is_rejected() {
    assert_kv_rejected("join-first", "w09-l06", &["clean-exit"]);
}

#[test]
fn kv_stats_counted_on_the_loop_are_rejected() {
    assert_kv_rejected("loop-counts", "w09-quest", &["exact-count"]);
}

#[test]
fn a_kv_sweep_thread_breaks_the_thread_budget() {
    assert_kv_rejected("sweep-thread", "w09-quest", &["thread-budget"]);
}

/// The W10 lessons with server steps: they grade a durable KV server (`--data-dir {dir}`).
const DURABLE_SERVER_LESSONS: [&str; 2] = ["w10-l06", "w10-quest"];

#[test]
fn an_honest_foreign_durable_kv_server_scores_full_points_in_every_w10_server_lesson() {
    for id in DURABLE_SERVER_LESSONS {
        let result = run(id, foreign_kv(None));
        assert_eq!(result.status, Status::Pass, "{}", describe(&result));
        assert_full_marks_out_of_the_applicable_steps(&result);
    }
}

#[test]
fn a_durable_kv_server_exiting_at_sigterm_without_draining_is_rejected() {
    assert_kv_rejected("no-drain", "w10-quest", &["in-flight"]);
}

#[test]
fn a_durable_kv_server_that_does_not_log_deletions_is_rejected() {
    assert_kv_rejected("no-del-records", "w10-l06", &["after-kill"]);
}

#[test]
fn a_durable_kv_server_whose_loop_touches_the_log_is_rejected_or_skipped_without_strace() {
    let result = run("w10-quest", foreign_kv(Some("log-on-loop")));
    let report = describe(&result);
    let step = result
        .steps
        .iter()
        .find(|s| s.name == "loop-off-disk")
        .expect("the step ran");
    let traced = result
        .steps
        .iter()
        .any(|s| s.name == "io" && s.status == Status::Pass);
    if traced {
        assert_eq!(step.status, Status::Fail, "{report}");
        assert_eq!(
            result.first_failure().map(|s| s.name.as_str()),
            Some("loop-off-disk"),
            "{report}"
        );
        assert!(!step.hints.is_empty(), "{report}");
    } else {
        assert_eq!(step.status, Status::Skipped, "{report}");
    }
}

#[test]
fn every_planted_kv_mistake_named_by_a_row_is_in_a_test() {
    // Every row of W09 L04-L06, the W09 quest, W10 L06 and the W10 quest that names a step
    // that applies to a foreign server has a switch above; this keeps the tables and the
    // switches in step.
    let covered: [(&str, &str); 23] = [
        ("w09-l04", "writers"),
        ("w09-l04", "read-your-writes"),
        ("w09-l04", "on-the-pool"),
        ("w09-l04", "workers-off-sockets"),
        ("w09-l04", "exact-count"),
        ("w09-l05", "pipelined"),
        ("w09-l05", "ten-pipelines"),
        ("w09-l05", "lazy-expiry"),
        ("w09-l05", "swept"),
        ("w09-l06", "errors"),
        ("w09-l06", "still-serving"),
        ("w09-l06", "half-close"),
        ("w09-l06", "crlf"),
        ("w09-l06", "longest-line"),
        ("w09-l06", "in-flight"),
        ("w09-l06", "clean-exit"),
        ("w09-quest", "mixed-load"),
        ("w09-quest", "exact-count"),
        ("w09-quest", "thread-budget"),
        ("w09-quest", "in-flight"),
        ("w10-l06", "after-kill"),
        ("w10-quest", "loop-off-disk"),
        ("w10-quest", "in-flight"),
    ];
    for id in KV_SERVER_LESSONS.iter().chain(&DURABLE_SERVER_LESSONS) {
        let id = *id;
        let lesson = lesson(id);
        for mistake in &lesson.mistakes {
            let applicable: Vec<&String> = mistake
                .caught_by
                .iter()
                .filter(|name| {
                    lesson
                        .steps
                        .iter()
                        .any(|s| s.name == **name && s.applies_to_foreign_server())
                })
                .collect();
            if applicable.is_empty() {
                continue;
            }
            assert!(
                applicable
                    .iter()
                    .any(|name| covered.contains(&(id, name.as_str()))),
                "{id}: the row `{}` names {applicable:?}, and no planted switch is tested there",
                mistake.mistake
            );
        }
    }
}
