//! The runner as a user meets it on the command line: where its output goes, how it ends when
//! the reader goes away, which mistakes it refuses before doing any work, and what it leaves in
//! the progress file (nothing, unless a student graded their own copy).
//!
//! Every run points `COURSE_PROGRESS_FILE` at a temporary file, so no test touches the real
//! progress record.

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A hang guard for one runner invocation; none of these runs takes more than a few seconds.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A temporary progress file for one test (not created: the tests check that it stays absent).
fn progress_file(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xtask-cli-{test}-{}", std::process::id()))
}

/// The runner with colours off and a temporary progress file.
fn runner(progress: &Path) -> Command {
    let mut command = Command::cargo_bin("xtask").expect("the xtask binary");
    command
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", progress)
        .timeout(TIMEOUT);
    command
}

/// The `broken_server` fixture, built by `cargo test` as an example of this package.
fn fixture() -> PathBuf {
    example("broken_server")
}

/// An example of this package, built by `cargo test`.
fn example(name: &str) -> PathBuf {
    test_support::example_path(name)
}

#[test]
fn grade_gives_an_honest_foreign_kv_server_every_point_of_w09() {
    let progress = progress_file("kv-grade");
    let output = runner(&progress)
        .args(["grade", "--week", "w09", "--format", "json", "--server"])
        .arg(format!(
            "{} {{port}}",
            example("foreign_kv_server").display()
        ))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON results");
    assert_eq!(json["status"], "pass", "{stdout}");
    assert!(json["max_points"].as_u64().unwrap() > 0, "{stdout}");
    assert_eq!(json["points"], json["max_points"], "{stdout}");
    // L01-L03 test the crate's own code and are left out; L04's `--lock` steps are not
    // applicable, and not counted.
    let lessons = json["lessons"].as_array().expect("lessons");
    let l04 = lessons
        .iter()
        .find(|l| l["id"] == "w09-l04")
        .expect("W09 L04 graded");
    assert_eq!(l04["points"], l04["max_points"], "{stdout}");
    let sharded = l04["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "sharded")
        .expect("the sharded step is listed");
    assert_eq!(sharded["status"], "not_applicable", "{stdout}");
    assert!(!progress.exists());
}

#[test]
fn list_into_a_closed_pipe_ends_quietly_with_status_141() {
    let progress = progress_file("pipe");
    // The reading end is closed before the runner starts, as `| head` closes it early: every
    // write to stdout fails with EPIPE, deterministically.
    let (reader, writer) = eventloop::sys::socketpair().expect("socketpair");
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("list")
        .env("COURSE_PROGRESS_FILE", &progress)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run the runner");
    assert_eq!(output.status.code(), Some(141));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "a closed pipe is no error to report"
    );
}

#[test]
fn list_prints_the_course_to_stdout() {
    let progress = progress_file("list");
    let output = runner(&progress).arg("list").output().expect("run");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("lesson "), "{stdout}");
    assert!(stdout.contains("w05-l01"), "{stdout}");
}

#[test]
fn help_lists_the_maintainer_commands_apart_from_the_learners() {
    let progress = progress_file("help");
    let output = runner(&progress).arg("--help").output().expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    let (learner, maintainer) = help
        .split_once("Maintainer commands:")
        .unwrap_or_else(|| panic!("no maintainer heading in:\n{help}"));
    let lists = |text: &str, command: &str| {
        text.lines()
            .any(|line| line.trim_start().starts_with(&format!("{command} ")))
    };
    for command in ["lesson", "list", "grade", "start", "stop", "reset"] {
        assert!(
            lists(learner, command),
            "{command} not a learner's command:\n{help}"
        );
        assert!(
            !lists(maintainer, command),
            "{command} listed as a maintainer's:\n{help}"
        );
    }
    assert!(lists(maintainer, "starters"), "{help}");
    assert!(!lists(learner, "starters"), "{help}");
    // Hidden from the first list, the command still runs.
    runner(&progress)
        .args(["starters", "--help"])
        .assert()
        .success();
}

#[test]
fn server_on_a_lesson_without_server_steps_is_refused() {
    let progress = progress_file("no-server");
    let output = runner(&progress)
        .args([
            "lesson",
            "w05-l01",
            "--server",
            "target/release/handoff_server {port}",
        ])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("w05-l01 has nothing to grade another server on")
            && stderr.contains("w05-l04"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing ran, nothing is reported");
    assert!(!progress.exists());
}

#[test]
fn a_server_run_reports_on_stdout_counts_every_step_and_records_nothing() {
    let progress = progress_file("server-run");
    let format = runner(&progress)
        .args(["lesson", "w05-quest", "--check-format"])
        .output()
        .expect("run");
    let format_note = String::from_utf8_lossy(&format.stdout);
    let count = |before: &str| -> u32 {
        format_note
            .split_once(before)
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a step count after {before:?} in {format_note:?}"))
    };
    let (all, steps) = (count("("), count("steps, "));
    assert!(steps < all, "the quest has run steps: {format_note}");

    let output = runner(&progress)
        .args(["lesson", "w05-quest", "--server"])
        .arg(format!("{} {{port}}", fixture().display()))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // The `run` steps test the workspace's code: with --server they are shown, not applicable,
    // and the total is the steps that apply to a foreign server.
    assert!(stdout.contains("N/A    run "), "{stdout}");
    let verdict = stdout
        .lines()
        .find(|line| line.contains("PASS w05-quest: "))
        .unwrap_or_else(|| panic!("the verdict on stdout:\n{stdout}"));
    assert!(
        verdict.contains(&format!("/{steps} steps passed")),
        "the total is the file's {steps} steps for a foreign server: {verdict}"
    );
    assert!(
        !progress.exists(),
        "a --server run must leave the progress record untouched"
    );
}

#[test]
fn grade_refuses_an_unknown_week_and_lists_the_weeks() {
    let progress = progress_file("week");
    let output = runner(&progress)
        .args(["grade", "--week", "w99"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("w99") && stderr.contains("w04, w05"),
        "{stderr}"
    );
}

#[test]
fn grade_refuses_an_out_path_it_cannot_write_before_grading() {
    let progress = progress_file("out");
    let output = runner(&progress)
        .args([
            "grade",
            "--out",
            "/nonexistent/dir/x.xml",
            "--format",
            "junit",
        ])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        ["error: --out /nonexistent/dir/x.xml: the folder /nonexistent/dir does not exist"],
        "one line, and no lesson ran"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn stop_and_reset_refuse_a_lesson_that_is_not_started() {
    let progress = progress_file("not-started");
    for command in ["stop", "reset"] {
        let output = runner(&progress)
            .env("RUST_BACKTRACE", "1")
            .args([command, "w05-l01"])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(1), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // One clean line, never a backtrace, whatever RUST_BACKTRACE says.
        assert_eq!(
            stderr.lines().collect::<Vec<_>>(),
            ["error: lesson w05-l01 is not started (`cargo xtask start w05-l01` starts it)"],
            "{command}"
        );
    }
    assert!(!progress.exists(), "a refused command changes nothing");
}

#[test]
fn grade_grades_the_reference_even_when_a_lesson_is_started() {
    let progress = progress_file("grade-reference");
    // w04-l05 is started, but this test has no copy of it: grading the copy would be an error.
    std::fs::write(
        &progress,
        r#"{"lessons":{"w04-l05":{"started":true,"last_status":null,"points":0,"max_points":0,"at":0}}}"#,
    )
    .expect("write the progress file");
    let before = std::fs::read(&progress).expect("read it back");
    let output = runner(&progress)
        .args(["grade", "--week", "w04"])
        .output()
        .expect("run");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        stdout.contains(" w04-l05 ") && !stderr.contains("is started but"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(
        std::fs::read(&progress).expect("the progress file"),
        before,
        "grade records nothing"
    );

    // With --student it grades the copy, which is missing here.
    let output = runner(&progress)
        .args(["grade", "--week", "w04", "--student"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("w04-l05 is started but"), "{stderr}");
    std::fs::remove_file(&progress).expect("remove the progress file");
}

#[test]
fn cargo_target_dir_is_where_logs_go() {
    let progress = progress_file("target-dir");
    let target = std::env::temp_dir().join(format!("xtask-cli-target-{}", std::process::id()));
    let output = runner(&progress)
        .env("CARGO_TARGET_DIR", &target)
        .args(["lesson", "w05-l04", "--server"])
        .arg(format!("{} {{port}}", fixture().display()))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let logs = target.join("xtask/logs/w05-l04");
    let log_written = logs.join("main.log").is_file();
    let _ = std::fs::remove_dir_all(&target);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("(logs: {})", logs.display())),
        "{stdout}"
    );
    assert!(log_written, "the server's log is in {}", logs.display());
}

#[test]
fn a_lesson_whose_reader_goes_away_stops_its_server_and_ends_with_141() {
    use std::io::{BufRead as _, BufReader};
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    let progress = progress_file("lesson-pipe");
    let (reader, writer) = eventloop::sys::socketpair().expect("socketpair");
    let (reader, writer) = (UnixStream::from(reader), UnixStream::from(writer));
    // Blocking, like the pipe of a shell: the runner only ever fails on a reader that is gone.
    reader.set_nonblocking(false).expect("blocking reader");
    writer.set_nonblocking(false).expect("blocking writer");
    reader
        .set_read_timeout(Some(TIMEOUT))
        .expect("a read timeout");
    let mut runner = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["lesson", "w05-quest", "--server"])
        .arg(format!("{} {{port}}", fixture().display()))
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", &progress)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(writer)))
        .stderr(Stdio::null())
        .spawn()
        .expect("start the runner");
    // Read as `head` would, up to the server's line (`... is ready — pid N, port P`), then go.
    let server_pid = BufReader::new(&reader)
        .lines()
        .map_while(Result::ok)
        .take(100)
        .find_map(|line| {
            let (_, after) = line.split_once("— pid ")?;
            after.split(',').next()?.trim().parse::<u32>().ok()
        });
    drop(reader);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = runner.try_wait().expect("wait for the runner") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = runner.kill();
            let _ = runner.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let server_pid = server_pid.expect("the report named the server's pid");
    assert_eq!(status.and_then(|s| s.code()), Some(141));
    // The server was stopped before the runner left (and reaped by init once orphaned).
    let gone_by = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{server_pid}")).exists() && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !Path::new(&format!("/proc/{server_pid}")).exists(),
        "server {server_pid} outlived the runner"
    );
    assert!(!progress.exists());
}

#[test]
fn lesson_stop_and_reset_without_an_id_need_exactly_one_started_lesson() {
    let progress = progress_file("no-id");
    for command in ["lesson", "stop", "reset"] {
        let output = runner(&progress).arg(command).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("needs a lesson id: no lesson is started"),
            "{command}: {stderr}"
        );
    }
    std::fs::write(
        &progress,
        r#"{"lessons":{"w05-l01":{"started":true,"last_status":null,"points":0,"max_points":0,"at":0},"w05-l02":{"started":true,"last_status":null,"points":0,"max_points":0,"at":0}}}"#,
    )
    .expect("write the progress file");
    let output = runner(&progress).arg("stop").output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("2 lessons are started (w05-l01, w05-l02); name one"),
        "{stderr}"
    );
    // With one started lesson, `stop` means that one.
    std::fs::write(
        &progress,
        r#"{"lessons":{"w05-l02":{"started":true,"last_status":null,"points":0,"max_points":0,"at":0}}}"#,
    )
    .expect("write the progress file");
    let output = runner(&progress).arg("stop").output().expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.starts_with("w05-l02 stopped: "), "{stdout}");
    let after = std::fs::read_to_string(&progress).expect("read the progress file");
    assert!(after.contains(r#""started": false"#), "{after}");
    let _ = std::fs::remove_file(&progress);
}

#[test]
fn a_lesson_not_started_says_that_it_grades_the_reference() {
    let progress = progress_file("reference-said");
    let output = runner(&progress)
        .args(["lesson", "w10-l01"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "grading the reference crates, not your code: lesson w10-l01 is not started \
             (`cargo xtask start w10-l01` gives you its starter to write)"
        ),
        "{stderr}"
    );
    assert!(!progress.exists(), "a run of the reference records nothing");
}
