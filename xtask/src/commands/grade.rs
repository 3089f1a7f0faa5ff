//! `cargo xtask grade`: every lesson (or one week) graded, with a results file and a report in
//! the format asked for.

use super::{
    RunArgs, check_week, exit_code, foreign_skip_reason, options_for, usage_error, your_crates,
};
use crate::lesson::{self, Lesson};
use crate::progress::Progress;
use crate::quiz;
use crate::report::{self, Printer};
use crate::results::{self, GradeReport, LessonResult, Status};
use crate::runner;
use crate::workspace::{target_dir, workspace_root};
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

/// The format `grade` writes its report in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One line per step, and a summary.
    Text,
    /// The results file's JSON.
    Json,
    /// JUnit XML, for CI.
    Junit,
    /// GitHub Classroom's autograding result: one test per step, worth its `points=` weight.
    Classroom,
    /// Exercism's test-runner `results.json` (version 3): one test per step.
    Exercism,
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
        for round in 1..=repeat {
            if repeat > 1 {
                eprintln!("\n{}: run {round} of {repeat}", lesson.front.id);
            }
            let options = options_for(root, lesson, run, student)?;
            if let Some(paths) = options.student_paths.as_ref().filter(|_| round == 1) {
                eprintln!(
                    "{}: grading your code in student/{}; {}",
                    lesson.front.id,
                    lesson.front.starter,
                    your_crates(paths)
                );
            }
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

/// `cargo xtask grade`: grades the lessons asked for, writes `<target>/xtask/grade.json`, and
/// reports in `format` to stdout or `out`.
pub fn grade_command(
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
    let mut results = grade_lessons(
        &root,
        &lessons,
        week,
        student,
        run,
        repeat,
        &Printer::for_progress(),
    )?;
    // Grading the course itself checks the graded weeks' quizzes too: a broken one is an error
    // of the course, as a broken lesson file is.
    if !student && run.server.is_none() {
        let mut weeks: Vec<String> = lessons.iter().map(|l| l.front.week().to_owned()).collect();
        weeks.dedup();
        for (week, error) in quiz::broken_quizzes(&root, &weeks) {
            eprintln!("\n{error}");
            results.push(one_step_result(
                (
                    format!("{week}-quiz"),
                    "(quiz file does not follow the format)".to_owned(),
                    format!("course/{week}/quiz.md"),
                ),
                Status::Error,
                ("quiz-format", "format"),
                error,
            ));
        }
    }
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
