//! `cargo xtask hint` as a learner meets it: every `lesson` run leaves its result for it, and
//! each call gives the next stage — the step that failed in that run with the Common-mistakes
//! rows that name it, then the lesson's whole table, then only the lesson — or every stage with
//! `--all`; a new run starts the stages again, and without a run there is the table. A run of
//! the reference is saved as such.
//!
//! Each test points `COURSE_PROGRESS_FILE` at a temporary file, and each but the reference run's
//! points `CARGO_TARGET_DIR` (where the results and the hint stages are kept) at a temporary
//! folder too; the reference run uses the built workspace, and only writes that lesson's result.

use assert_cmd::Command;
use std::path::PathBuf;
use std::time::Duration;

/// A hang guard for one runner invocation; none of these takes more than a few seconds.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The lesson these tests read: its `ten-clients` step fails on a server that closes on EOF.
const LESSON: &str = "w05-l04";

/// A temporary folder for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xtask-hint-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        Self(dir)
    }

    fn target(&self) -> PathBuf {
        self.0.join("target")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The runner with colours off and its records in `scratch`.
fn runner(scratch: &Scratch) -> Command {
    let mut command = Command::cargo_bin("xtask").expect("the xtask binary");
    command
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", scratch.0.join("progress"))
        .env("CARGO_TARGET_DIR", scratch.target())
        .timeout(TIMEOUT);
    command
}

/// `cargo xtask hint <args>`: its stdout, after checking that it succeeded.
fn hint(scratch: &Scratch, args: &[&str]) -> String {
    let output = runner(scratch)
        .arg("hint")
        .args(args)
        .output()
        .expect("run hint");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// An example of this package, built by `cargo test`.
fn example(name: &str) -> PathBuf {
    test_support::example_path(name)
}

/// Words of stage 1 (the failed step and its row), of stage 2 (a row no failed step names) and
/// of the end.
const STEP_STAGE: &str = "hint 1 of 2 — the step that failed: client ten-clients";
const STEP_ROW: &str = "- Closing a connection as soon as recv returns 0";
const TABLE_STAGE: &str = "hint 2 of 2 — the lesson's common mistakes";
const TABLE_ROW: &str = "- Hashing the wrong bytes for compute";
const NO_MORE: &str = "no more hints: read the lesson's `## Do` section again";

#[test]
fn hint_gives_the_failed_step_of_the_saved_run_then_the_table_then_the_lesson() {
    let scratch = Scratch::new("stages");
    // No run yet: it says so and gives the table at once; there is nothing after it.
    let first = hint(&scratch, &[LESSON]);
    assert!(first.starts_with("no saved run of w05-l04"), "{first}");
    assert!(
        first.contains(TABLE_ROW) && first.contains(STEP_ROW),
        "{first}"
    );
    assert!(hint(&scratch, &[LESSON]).contains(NO_MORE));

    // A failing run is saved, whoever's code it graded (here a foreign server's).
    let server = format!(
        "{} --bug drop-on-half-close {{port}}",
        example("broken_server").display()
    );
    let run = runner(&scratch)
        .args(["lesson", LESSON, "--server", &server])
        .output()
        .expect("run the lesson");
    assert_eq!(
        run.status.code(),
        Some(1),
        "the planted bug fails the lesson"
    );
    let saved = scratch.target().join("xtask/logs/w05-l04/result.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("the saved result"))
            .expect("JSON");
    assert_eq!(json["subject"]["kind"], "server");
    assert_eq!(json["result"]["status"], "fail");

    // Stage 1: the run it read, the failed step with its line and what the run said, its row.
    let stage1 = hint(&scratch, &[LESSON]);
    assert!(
        stage1.starts_with(&format!(
            "hints for w05-l04 from its last run, of the server `{server}`, "
        )),
        "{stage1}"
    );
    assert!(stage1.contains("FAIL 2/11 steps"), "{stage1}");
    assert!(stage1.contains(STEP_STAGE), "{stage1}");
    assert!(
        stage1.contains("(course/w05/04-io-cpu-handoff.md line "),
        "{stage1}"
    );
    // What the run said of the first failing client: which clients fail depends on how their
    // half-closes race the server's answers, so the line is matched without its client.
    assert!(
        stage1.contains(": expected `result: ")
            && stage1.contains("`, got nothing (no more response lines)"),
        "{stage1}"
    );
    assert!(stage1.contains(STEP_ROW), "{stage1}");
    assert!(
        !stage1.contains(TABLE_ROW),
        "stage 1 is the step's rows only: {stage1}"
    );

    // Stage 2: the whole table; then nothing but the lesson, naming the step.
    let stage2 = hint(&scratch, &[LESSON]);
    assert!(
        stage2.contains(TABLE_STAGE) && stage2.contains(TABLE_ROW),
        "{stage2}"
    );
    assert!(!stage2.contains(STEP_STAGE), "{stage2}");
    let end = hint(&scratch, &[LESSON]);
    assert!(end.contains(NO_MORE), "{end}");
    assert!(end.contains("then the step `ten-clients`"), "{end}");

    // `--all`: every stage at once, even after the end.
    let all = hint(&scratch, &[LESSON, "--all"]);
    assert!(
        all.contains(STEP_STAGE) && all.contains(TABLE_STAGE),
        "{all}"
    );

    // A newer run (planted: the student's copy, as `lesson` saves it) starts the stages again.
    let mut newer = json.clone();
    newer["subject"] = serde_json::json!({"kind": "student", "copy": "student/handoff_server"});
    newer["saved_at"] = serde_json::json!(json["saved_at"].as_u64().unwrap() + 1);
    std::fs::write(&saved, newer.to_string()).expect("plant a newer result");
    let again = hint(&scratch, &[LESSON]);
    assert!(
        again.starts_with(
            "hints for w05-l04 from its last run, of your copy in student/handoff_server, "
        ),
        "{again}"
    );
    assert!(again.contains(STEP_STAGE), "{again}");
}

#[test]
fn hint_without_an_id_needs_exactly_one_started_lesson() {
    let scratch = Scratch::new("no-id");
    let output = runner(&scratch).arg("hint").output().expect("run hint");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`cargo xtask hint` needs a lesson id: no lesson is started"),
        "{stderr}"
    );
    std::fs::write(
        scratch.0.join("progress"),
        r#"{"lessons":{"w05-l04":{"started":true,"last_status":null,"points":0,"max_points":0,"at":0}}}"#,
    )
    .expect("write the progress file");
    let stdout = hint(&scratch, &[]);
    assert!(stdout.starts_with("no saved run of w05-l04"), "{stdout}");
}

#[test]
fn a_run_of_the_reference_is_saved_as_one_of_the_reference() {
    // The workspace's own target folder, where the reference is already built (a fresh one would
    // build every crate first); the progress file stays temporary, so nothing is started.
    let scratch = Scratch::new("reference");
    let mut lesson = Command::cargo_bin("xtask").expect("the xtask binary");
    let run = lesson
        .env("NO_COLOR", "1")
        .env("COURSE_PROGRESS_FILE", scratch.0.join("progress"))
        .args(["lesson", "w10-l01"])
        .timeout(TIMEOUT)
        .output()
        .expect("run the lesson");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    // A lesson of `run` steps writes no log, so the report names no logs folder; the saved
    // result is in the lesson's logs folder all the same.
    let logs = xtask::target_dir(&xtask::workspace_root()).join("xtask/logs/w10-l01");
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(logs.join("result.json")).expect("the saved result"),
    )
    .expect("JSON");
    assert_eq!(saved["subject"], serde_json::json!({"kind": "reference"}));
    assert_eq!(saved["result"]["id"], "w10-l01");
    assert_eq!(saved["result"]["status"], "pass");
}
