//! The grading jobs a teacher copies from `course/grading/`: each parses as YAML, every
//! `cargo xtask` command in it is accepted by the runner exactly as written, and the GitHub
//! Classroom workflow's grade step, run as GitHub runs it against a test server, hands the
//! reporter step a Classroom result through the output the reporter is wired to read.

use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The workspace root, where `course/grading/` is.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A grading file, parsed.
fn load(name: &str) -> Value {
    let path = root().join("course/grading").join(name);
    let text = std::fs::read_to_string(&path).expect("grading file");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The built runner.
fn xtask() -> PathBuf {
    assert_cmd::cargo::cargo_bin("xtask")
}

/// An example of this package, built by `cargo test`.
fn example(name: &str) -> PathBuf {
    test_support::example_path(name)
}

/// A YAML mapping's string values (a job's `env:` or `variables:`).
fn strings(map: &Value) -> BTreeMap<String, String> {
    map.as_mapping()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits a shell command into words as `sh` would for the simple commands these files use:
/// quotes group, `$NAME` and `${NAME}` expand from `vars` (outside single quotes), `\` at a
/// line's end continues it.
fn shell_words(line: &str, vars: &BTreeMap<String, String>) -> Vec<String> {
    let text = line.replace("\\\n", " ");
    let mut words = Vec::new();
    let mut word = String::new();
    let mut has_word = false;
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\'' | '"', None) => {
                quote = Some(c);
                has_word = true;
            }
            (c, Some(q)) if c == q => quote = None,
            ('$', q) if q != Some('\'') => {
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if braced {
                    assert_eq!(chars.next(), Some('}'), "unclosed ${{ in {line}");
                }
                let value = vars
                    .get(&name)
                    .unwrap_or_else(|| panic!("`${name}` in `{line}` is not set"));
                if q.is_some() {
                    word.push_str(value);
                    has_word = true;
                } else {
                    // Unquoted, the value is split into words at its spaces, as by sh.
                    for v in value.chars() {
                        if v.is_whitespace() {
                            if has_word {
                                words.push(std::mem::take(&mut word));
                                has_word = false;
                            }
                        } else {
                            word.push(v);
                            has_word = true;
                        }
                    }
                }
            }
            (c, None) if c.is_whitespace() => {
                if has_word {
                    words.push(std::mem::take(&mut word));
                    has_word = false;
                }
            }
            (c, _) => {
                word.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        words.push(word);
    }
    words
}

/// Every `cargo xtask ...` command in a script, as written (continuation lines joined), from
/// `cargo` on.
fn xtask_commands(script: &str) -> Vec<String> {
    script
        .replace("\\\n", " ")
        .lines()
        .filter_map(|line| line.find("cargo xtask").map(|at| line[at..].to_owned()))
        .collect()
}

/// Runs a `cargo xtask` command as written but for its `--week`, set to one the course does not
/// have: the runner checks its arguments (clap's parse, the `--server` command, then the week)
/// before anything runs, so "no such week" means every flag and value before it was accepted.
fn assert_accepted(command: &str, vars: &BTreeMap<String, String>) {
    let words = shell_words(command, vars);
    assert_eq!(&words[..2], ["cargo", "xtask"], "{command}");
    let mut args: Vec<String> = words[2..].to_vec();
    let week = args
        .iter()
        .position(|w| w == "--week")
        .unwrap_or_else(|| panic!("`{command}` grades no single week"));
    args[week + 1] = "w99".to_owned();
    let output = Command::new(xtask())
        .args(&args)
        .env(
            "COURSE_PROGRESS_FILE",
            std::env::temp_dir().join("xtask-workflow-progress"),
        )
        .output()
        .expect("run the runner");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "`{command}`: {stderr}");
    assert!(
        stderr.contains("--week w99: the course has no such week"),
        "`{command}` was refused before its week was checked: {stderr}"
    );
}

/// Values for the variables a CI service sets itself.
fn service_vars(dir: &Path) -> BTreeMap<String, String> {
    let dir = dir.display().to_string();
    [
        ("GITHUB_WORKSPACE", dir.clone()),
        ("RUNNER_TEMP", dir.clone()),
        ("GITHUB_OUTPUT", format!("{dir}/output")),
        ("CI_PROJECT_DIR", dir),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The step of the GitHub workflow's job with `id`.
fn github_step<'a>(workflow: &'a Value, id: &str) -> &'a Value {
    workflow["jobs"]["grade"]["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|step| {
            step["id"].as_str() == Some(id)
                || step["uses"].as_str().is_some_and(|u| u.starts_with(id))
        })
        .unwrap_or_else(|| panic!("no step `{id}`"))
}

#[test]
fn the_github_workflow_grades_with_classroom_points_and_wires_them_to_the_reporter() {
    let workflow = load("github-classroom.yml");
    let env = strings(&workflow["env"]);
    for key in ["COURSE_REPOSITORY", "COURSE_REF", "WEEK", "BUILD", "SERVER"] {
        assert!(env.contains_key(key), "the workflow sets no {key}");
    }
    assert!(env["SERVER"].contains("{port}"));
    let grade = github_step(&workflow, "grade");
    let script = grade["run"].as_str().expect("the grade step's script");
    let commands = xtask_commands(script);
    assert_eq!(commands.len(), 1, "{script}");
    assert!(commands[0].contains("--format classroom"), "{script}");
    let scratch = std::env::temp_dir().join(format!("xtask-workflow-{}", std::process::id()));
    let mut vars = env.clone();
    vars.extend(service_vars(&scratch));
    assert_accepted(&commands[0], &vars);

    // The reporter reads `<RUNNER>_RESULTS` for each runner it is given, base64-encoded JSON.
    let reporter = github_step(
        &workflow,
        "classroom-resources/autograding-grading-reporter@",
    );
    let runners = reporter["with"]["runners"].as_str().expect("runners");
    assert_eq!(runners, "grade");
    let reporter_env = strings(&reporter["env"]);
    assert_eq!(
        reporter_env
            .get(&format!("{}_RESULTS", runners.to_uppercase()))
            .map(String::as_str),
        Some("${{ steps.grade.outputs.result }}")
    );

    // The grade step itself, as GitHub runs it (`bash -e`), with a teacher's SERVER: the test
    // server, started from the "submission" folder where it lives, and `cargo xtask` the runner.
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("bin")).unwrap();
    std::os::unix::fs::symlink(
        example("broken_server").parent().unwrap(),
        scratch.join("submission"),
    )
    .unwrap();
    let cargo = scratch.join("bin/cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\n[ \"$1\" = xtask ] || exit 97\nshift\nexec '{}' \"$@\"\n",
            xtask().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let target = scratch.join("target");
    let path = format!(
        "{}:{}",
        scratch.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut run = assert_cmd::Command::new("bash");
    run.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(&scratch)
        .envs(&env)
        .envs(service_vars(&scratch))
        // A planted bug: the grade fails, and the points still reach the reporter.
        .env("SERVER", "./broken_server {port} --bug out-of-order")
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target)
        .env("COURSE_PROGRESS_FILE", scratch.join("progress"))
        .env_remove("GITHUB_ACTIONS")
        .timeout(Duration::from_secs(300));
    let output = run.output().expect("run the grade step");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The planted bug fails the grade, and the step still succeeds, so the points reach the
    // reporter.
    assert!(output.status.success(), "{stderr}");
    let written = std::fs::read_to_string(scratch.join("output")).expect("the step's outputs");
    let encoded = written
        .lines()
        .find_map(|line| line.strip_prefix("result="))
        .expect("a `result` output");
    // Decoded by the same tool the workflow's reporter step would use, from a file.
    let encoded_file = scratch.join("result.b64");
    std::fs::write(&encoded_file, encoded).expect("write the encoded result");
    let decoded = Command::new("base64")
        .arg("-d")
        .arg(&encoded_file)
        .output()
        .expect("base64 -d");
    let result: serde_json::Value =
        serde_json::from_slice(&decoded.stdout).expect("Classroom JSON");
    assert_eq!(result["status"], "fail", "{result}");
    let max = result["max_score"].as_u64().unwrap();
    let scored: u64 = result["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["score"].as_u64().unwrap())
        .sum();
    assert!(max > 0 && scored > 0 && scored < max, "{scored}/{max}");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn the_gitlab_job_grades_with_a_junit_report_it_publishes() {
    let ci = load("gitlab-ci.yml");
    let job = &ci["grade"];
    let vars = strings(&job["variables"]);
    for key in ["COURSE_REPOSITORY", "COURSE_REF", "WEEK", "BUILD", "SERVER"] {
        assert!(vars.contains_key(key), "the job sets no {key}");
    }
    let script: Vec<&str> = job["script"]
        .as_sequence()
        .expect("script")
        .iter()
        .map(|line| line.as_str().expect("a script line"))
        .collect();
    let commands: Vec<String> = script
        .iter()
        .flat_map(|line| xtask_commands(line))
        .collect();
    assert_eq!(commands.len(), 1, "{script:?}");
    let scratch = std::env::temp_dir();
    let mut all = vars.clone();
    all.extend(service_vars(&scratch));
    assert_accepted(&commands[0], &all);
    // The report it publishes is the file the command writes.
    let words = shell_words(&commands[0], &all);
    let flag = |name: &str| {
        words
            .iter()
            .position(|w| w == name)
            .map(|at| words[at + 1].clone())
    };
    assert_eq!(flag("--format").as_deref(), Some("junit"));
    let out = flag("--out").expect("--out");
    let report = job["artifacts"]["reports"]["junit"]
        .as_str()
        .expect("a JUnit report");
    assert_eq!(Path::new(&out), scratch.join(report), "{out} vs {report}");
    assert_eq!(job["artifacts"]["when"].as_str(), Some("always"));
}

#[test]
fn the_shell_word_splitter_expands_as_sh_does() {
    let vars: BTreeMap<String, String> = [("A".to_owned(), "x y".to_owned())].into_iter().collect();
    assert_eq!(
        shell_words("cmd \"$A/z\" '$A' ${A}b \\\n --f", &vars),
        ["cmd", "x y/z", "$A", "x", "yb", "--f"]
    );
}
