//! `cargo xtask watch` as a learner meets it: it runs the lesson, runs it again when a watched
//! file is replaced by rename (as editors save), with every server of the last run stopped
//! before the next one starts, answers `n` and `h` between runs, and falls back to polling when
//! asked; without a terminal on stdin it says why and exits 2.
//!
//! The runs grade the honest `foreign_server` example on `w05-l04` (about two seconds a run)
//! and watch a temporary folder given with `--also-watch`, so no test edits the workspace; the
//! commands come through `--script`, the testing aid that reads them from a pipe. Records go to
//! a temporary `CARGO_TARGET_DIR` and `COURSE_PROGRESS_FILE`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one watch test may take before the test stops it and fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// A temporary folder for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xtask-watch-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).expect("a scratch folder");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An example of this package, built by `cargo test`.
fn example(name: &str) -> PathBuf {
    test_support::example_path(name)
}

/// The server pid a step line names (`... is ready (0.01s) — pid 123, port 456`).
fn server_pid(line: &str) -> Option<u32> {
    let (_, after) = line.split_once("— pid ")?;
    after.split(',').next()?.trim().parse().ok()
}

/// Whether a process is alive (the runner reaps its servers, so a stopped one is gone).
fn alive(pid: u32) -> bool {
    test_support::Proc::of(pid).has("status")
}

/// Runs `watch` with two runs at most, types `n` and `h`, replaces a watched file by rename once
/// they have been answered after run 1, and checks the second run: it comes, names the file, and
/// no server of the first is alive while it runs. Returns everything the watch printed.
fn watch_reruns_after_a_rename(test: &str, extra: &[&str]) -> String {
    let scratch = Scratch::new(test);
    let watched = scratch.0.join("src");
    std::fs::write(watched.join("server.rs"), "// first\n").expect("a watched file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["watch", "w05-l04", "--server"])
        .arg(format!("{} {{port}}", example("foreign_server").display()))
        .arg("--also-watch")
        .arg(&watched)
        .args(["--max-runs", "2", "--script"])
        .args(extra)
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", scratch.0.join("progress"))
        .env("CARGO_TARGET_DIR", scratch.0.join("target"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start watch");
    // Answered after run 1; the file is replaced after that (see below), so run 2 follows them.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"n\nh\n").expect("type n and h");
    let stdout = child.stdout.take().expect("stdout");

    let mut printed = String::new();
    let mut first_run_pids = Vec::new();
    let mut second_run = false;
    let mut checked_during_second_run = 0;
    let deadline = Instant::now() + DEADLINE;
    std::thread::scope(|scope| {
        let (lines, received) = mpsc::channel();
        scope.spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = match received.recv_timeout(wait) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Killing the runner closes its stdout, which ends the reading thread.
                    let _ = child.kill();
                    panic!("watch did not finish in {DEADLINE:?}:\n{printed}");
                }
            };
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("hints for w05-l04 from its last run") {
                // An editor's save: a new file written beside the old one, renamed over it.
                // Made once `h` (typed after `n`) has been answered: the watcher's thread and
                // the thread reading stdin race to the runner's channel, so a save made while
                // the lines still wait to be read could start run 2 before them.
                let aside = watched.join(".server.rs.new");
                std::fs::write(&aside, "// second\n").expect("write aside");
                std::fs::rename(&aside, watched.join("server.rs")).expect("rename over");
            }
            if line.starts_with("watch: run 2") {
                second_run = true;
            }
            let pid = server_pid(&line);
            if !second_run {
                first_run_pids.extend(pid);
            } else if line.starts_with("watch: run 2") || pid.is_some() {
                // At the start of the second run, and while its own server runs, every server
                // of the first run is gone.
                let left: Vec<u32> = first_run_pids
                    .iter()
                    .copied()
                    .filter(|&p| alive(p))
                    .collect();
                assert!(
                    left.is_empty(),
                    "servers {left:?} of run 1 outlived it:\n{printed}"
                );
                checked_during_second_run += 1;
            }
        }
    });
    drop(stdin);
    let status = child.wait().expect("wait for watch");
    assert!(status.success(), "{status}:\n{printed}");
    assert!(
        !first_run_pids.is_empty(),
        "run 1 named its server:\n{printed}"
    );
    assert!(
        checked_during_second_run >= 2,
        "run 2 started a server:\n{printed}"
    );
    // The file replaced, and nothing else (its folder's own change adds nothing).
    let changed = format!(
        "watch: run 2 — changed: {}\n",
        watched.join("server.rs").display()
    );
    assert!(printed.contains(&changed), "{printed}");
    assert!(
        printed.contains("watch: stopping after 2 run(s) (--max-runs)"),
        "{printed}"
    );
    printed
}

#[test]
fn watch_reruns_after_a_file_is_replaced_by_rename_with_the_first_runs_servers_stopped() {
    let printed = watch_reruns_after_a_rename("events", &[]);
    assert!(
        printed.contains("(file-system events, 300 ms of quiet before a run)"),
        "{printed}"
    );
    assert!(
        printed.contains("watch: the runs grade the server `"),
        "{printed}"
    );
    assert!(printed.contains("watch: commands: r re-run, h hint, n next lesson, q quit"));
    // `n` named the next lesson's start command, `h` read the run that had just ended.
    assert!(
        printed.contains("next: w05-l05 (") && printed.contains("`cargo xtask start w05-l05`"),
        "{printed}"
    );
    assert!(
        printed.contains("hints for w05-l04 from its last run, of the server `"),
        "{printed}"
    );
    assert_eq!(
        printed.matches("watch: PASS 11/11;").count(),
        2,
        "{printed}"
    );
}

#[test]
fn watch_polls_file_times_when_asked_and_says_so() {
    let printed = watch_reruns_after_a_rename("poll", &["--poll"]);
    assert!(printed.contains("(polling every 1s: --poll)"), "{printed}");
}

#[test]
fn watch_without_a_terminal_says_why_and_exits_2() {
    let scratch = Scratch::new("no-terminal");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["watch", "w05-l04"])
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", scratch.0.join("progress"))
        .env("CARGO_TARGET_DIR", scratch.0.join("target"))
        .stdin(Stdio::null())
        .output()
        .expect("run watch");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`cargo xtask watch` needs a terminal on stdin")
            && stderr.contains("stdin is not one"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing ran");
    assert!(!scratch.0.join("target/xtask/logs").exists(), "nothing ran");
}

#[test]
fn help_lists_watch_and_hint_and_names_script_as_a_testing_aid() {
    let help = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .output()
            .expect("run --help");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let top = help(&["--help"]);
    for command in ["watch ", "hint "] {
        assert!(
            top.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "{command}missing:\n{top}"
        );
    }
    let watch = help(&["watch", "--help"]);
    assert!(
        watch.contains("--script") && watch.contains("A testing aid"),
        "{watch}"
    );
    assert!(
        watch.contains("--max-runs <N>") && watch.contains("--poll"),
        "{watch}"
    );
}

#[test]
fn watch_refuses_a_server_on_a_lesson_without_server_steps_before_watching() {
    let scratch = Scratch::new("no-server-steps");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["watch", "w05-l01", "--script", "--server"])
        .arg(format!("{} {{port}}", example("foreign_server").display()))
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", scratch.0.join("progress"))
        .env("CARGO_TARGET_DIR", scratch.0.join("target"))
        .stdin(Stdio::piped())
        .output()
        .expect("run watch");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lesson w05-l01 has nothing to grade another server on"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("watch: "), "nothing is watched: {stdout}");
}

#[test]
fn watch_without_an_id_needs_exactly_one_started_lesson() {
    let scratch = Scratch::new("no-id");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["watch", "--script"])
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", scratch.0.join("progress"))
        .env("CARGO_TARGET_DIR", scratch.0.join("target"))
        .stdin(Stdio::null())
        .output()
        .expect("run watch");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`cargo xtask watch` needs a lesson id: no lesson is started"),
        "{stderr}"
    );
}
