//! `grade --format classroom` and `grade --format exercism` as a teacher's workflow meets them:
//! a foreign server graded on W05, each result checked against the shape its consumer publishes
//! (GitHub Classroom's autograding result; Exercism's test-runner interface, version 3), and a
//! planted bug costing exactly the points of the steps it fails.
//!
//! Every run gets a target folder of its own (`CARGO_TARGET_DIR`), so its `grade.json` and
//! server logs are its own; the runs take turns, so no two servers compete for the two cores
//! while a lesson times its steps.

use assert_cmd::Command;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// A hang guard for one grading run; a W05 run takes about 10 s.
const TIMEOUT: Duration = Duration::from_secs(300);

/// One grading run at a time (see the module's documentation).
static RUNS: Mutex<()> = Mutex::new(());

/// An example of this package, built by `cargo test`.
fn example(name: &str) -> PathBuf {
    test_support::example_path(name)
}

/// What one grading run left: its stdout parsed, and its `grade.json`.
struct Run {
    output: Value,
    grade: Value,
}

/// `cargo xtask grade --week w05 --keep-going --format FORMAT --server 'broken_server [--bug
/// BUG] {port}'`: every step runs, so a bug costs only the steps it breaks.
fn grade_w05(format: &str, bug: Option<&str>, test: &str) -> Run {
    let target = std::env::temp_dir().join(format!("xtask-formats-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target).expect("target folder");
    let server = match bug {
        None => format!("{} {{port}}", example("broken_server").display()),
        Some(bug) => format!(
            "{} --bug {bug} {{port}}",
            example("broken_server").display()
        ),
    };
    let _turn = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let output = Command::cargo_bin("xtask")
        .expect("the xtask binary")
        .env("NO_COLOR", "1")
        .env("CARGO_TARGET_DIR", &target)
        .env("COURSE_PROGRESS_FILE", target.join("progress"))
        .env_remove("GITHUB_ACTIONS")
        .args(["grade", "--week", "w05", "--keep-going", "--format", format])
        .args(["--server", &server])
        .timeout(TIMEOUT)
        .output()
        .expect("run the grader");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let parsed: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{format} output is not JSON ({e}):\n{stdout}\n{stderr}"));
    let grade = std::fs::read_to_string(target.join("xtask/grade.json")).expect("grade.json");
    let grade: Value = serde_json::from_str(&grade).expect("grade.json is JSON");
    let _ = std::fs::remove_dir_all(&target);
    Run {
        output: parsed,
        grade,
    }
}

/// The value of `key` in `object`, which the shape requires.
fn required<'a>(object: &'a Value, key: &str, shape: &str) -> &'a Value {
    object
        .get(key)
        .unwrap_or_else(|| panic!("{shape}: required key `{key}` is missing in {object}"))
}

fn is_status(value: &Value) -> bool {
    matches!(value.as_str(), Some("pass" | "fail" | "error"))
}

/// GitHub Classroom's autograding result, as its graders write it and its reporter reads it:
/// `{version, status, max_score, tests: [{name, status, score, message, test_code, filename,
/// line_no, duration}]}`, the reporter summing `score` against `max_score`.
fn assert_classroom_shape(result: &Value) {
    let shape = "classroom";
    assert!(required(result, "version", shape).is_u64(), "{result}");
    assert!(is_status(required(result, "status", shape)), "{result}");
    let max_score = required(result, "max_score", shape)
        .as_u64()
        .expect("max_score");
    let tests = required(result, "tests", shape).as_array().expect("tests");
    let mut scored = 0;
    for test in tests {
        assert!(required(test, "name", shape).is_string(), "{test}");
        assert!(is_status(required(test, "status", shape)), "{test}");
        let score = required(test, "score", shape).as_u64().expect("score");
        scored += score;
        let message = required(test, "message", shape);
        assert!(message.is_string() || message.is_null(), "{test}");
        assert!(required(test, "test_code", shape).is_string(), "{test}");
        assert!(required(test, "filename", shape).is_string(), "{test}");
        assert!(required(test, "line_no", shape).is_u64(), "{test}");
        assert!(required(test, "duration", shape).is_u64(), "{test}");
        if test["status"] != "pass" {
            assert_eq!(score, 0, "a test that did not pass scores nothing: {test}");
            assert!(
                message.is_string(),
                "a test that did not pass says why: {test}"
            );
        }
    }
    assert!(scored <= max_score, "{result}");
}

/// Exercism's `results.json`, version 3: `{version, status, message, tests: [{name, status,
/// message, output, test_code, task_id}]}`; `message` required when `status` is `error`, a
/// test's `output` at most 500 characters, `task_id` a number.
fn assert_exercism_shape(result: &Value) {
    let shape = "exercism";
    assert_eq!(required(result, "version", shape), 3, "{result}");
    let status = required(result, "status", shape);
    assert!(is_status(status), "{result}");
    match result.get("message") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => assert_ne!(status, "error", "an error says why: {result}"),
        Some(other) => panic!("message must be a string or null, not {other}"),
    }
    let tests = required(result, "tests", shape).as_array().expect("tests");
    for test in tests {
        assert!(required(test, "name", shape).is_string(), "{test}");
        assert!(is_status(required(test, "status", shape)), "{test}");
        assert!(required(test, "test_code", shape).is_string(), "{test}");
        for optional in ["message", "output"] {
            let value = test.get(optional).unwrap_or(&Value::Null);
            assert!(value.is_string() || value.is_null(), "{test}");
        }
        if let Some(output) = test.get("output").and_then(Value::as_str) {
            assert!(
                output.chars().count() <= 500,
                "output over 500 chars: {test}"
            );
        }
        if let Some(task) = test.get("task_id") {
            assert!(task.is_u64(), "{test}");
        }
    }
}

/// Every test's score by name.
fn scores(result: &Value) -> BTreeMap<String, u64> {
    result["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["score"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn classroom_lists_every_step_with_points_and_a_bug_loses_exactly_its_failed_steps() {
    let clean = grade_w05("classroom", None, "clean");
    assert_classroom_shape(&clean.output);
    // Every step the run graded is a test, at its line in its lesson file, and no other.
    let mut graded = Vec::new();
    for lesson in clean.grade["lessons"].as_array().expect("lessons") {
        for step in lesson["steps"].as_array().expect("steps") {
            if !matches!(step["status"].as_str(), Some("not_applicable"))
                && step["kind"] != "select"
            {
                graded.push((
                    format!(
                        "{} {} {}",
                        lesson["id"].as_str().unwrap(),
                        step["kind"].as_str().unwrap(),
                        step["name"].as_str().unwrap()
                    ),
                    lesson["file"].clone(),
                    step["line"].clone(),
                ));
            }
        }
    }
    let tests: Vec<(String, Value, Value)> = clean.output["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["filename"].clone(),
                t["line_no"].clone(),
            )
        })
        .collect();
    assert_eq!(tests, graded, "{}", clean.output);
    assert!(
        tests.len() > 20,
        "W05's server lessons have many steps: {}",
        clean.output
    );
    assert!(tests.iter().all(|(_, _, line)| line.as_u64() > Some(0)));
    // Points: one per step (no W05 step sets `points=`), as many as grade's own points.
    assert_eq!(clean.output["max_score"], clean.grade["max_points"]);
    let clean_scores = scores(&clean.output);
    assert_eq!(
        clean_scores.values().sum::<u64>(),
        clean.grade["points"].as_u64().unwrap()
    );

    let bugged = grade_w05("classroom", Some("drop-on-half-close"), "bugged");
    assert_classroom_shape(&bugged.output);
    assert_eq!(bugged.output["max_score"], clean.output["max_score"]);
    assert_eq!(bugged.output["status"], "fail");
    let bugged_scores = scores(&bugged.output);
    assert_eq!(
        bugged_scores.keys().collect::<Vec<_>>(),
        clean_scores.keys().collect::<Vec<_>>()
    );
    let failed: Vec<&Value> = bugged.output["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] != "pass" && clean_scores[t["name"].as_str().unwrap()] > 0)
        .collect();
    assert!(
        !failed.is_empty(),
        "the planted bug fails no step: {}",
        bugged.output
    );
    // The half-close bug is caught by the half-close steps (and those named in the lesson's
    // Common mistakes), never by an unrelated step.
    assert!(
        failed
            .iter()
            .any(|t| t["name"] == "w05-l04 client ten-clients"),
        "{failed:?}"
    );
    let lost: u64 = failed
        .iter()
        .map(|t| clean_scores[t["name"].as_str().unwrap()])
        .sum();
    let clean_total: u64 = clean_scores.values().sum();
    let bugged_total: u64 = bugged_scores.values().sum();
    assert_eq!(clean_total - bugged_total, lost, "{}", bugged.output);
    for (name, score) in &bugged_scores {
        let failed_here = failed.iter().any(|t| t["name"] == name.as_str());
        if !failed_here {
            assert_eq!(score, &clean_scores[name], "{name} changed without failing");
        }
    }
}

#[test]
fn exercism_results_follow_the_interface_with_the_server_log_as_output() {
    let run = grade_w05("exercism", Some("drop-on-half-close"), "exercism");
    let results = &run.output;
    assert_exercism_shape(results);
    assert_eq!(results["status"], "fail", "{results}");
    assert!(results["message"].is_null(), "{results}");
    let tests = results["tests"].as_array().unwrap();
    let ten = tests
        .iter()
        .find(|t| t["name"] == "w05-l04 client ten-clients")
        .expect("the failed step is a test");
    assert_eq!(ten["status"], "fail");
    // The step's block, as the lesson shows it, is the test's code.
    let code = ten["test_code"].as_str().unwrap();
    assert!(
        code.starts_with("console client name=ten-clients"),
        "{code}"
    );
    assert!(code.contains("\n> "), "{code}");
    // The server's log is the output, its end, within the interface's limit.
    let output = ten["output"].as_str().expect("output");
    assert!(
        !output.is_empty() && output.chars().count() <= 500,
        "{output}"
    );
    // Each lesson is one task, numbered in grading order.
    let first = tests.first().unwrap();
    assert_eq!(first["task_id"], 1, "{first}");
    let last_task = tests.last().unwrap()["task_id"].as_u64().unwrap();
    let lessons = run.grade["lessons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["max_points"].as_u64() > Some(0))
        .count() as u64;
    assert_eq!(last_task, lessons);
}
