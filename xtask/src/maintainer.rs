//! The course authors' commands, kept apart from the learner's (as rustlings keeps `dev`):
//! `starters` generates every starter from the reference crates' markers and checks that each
//! untouched starter compiles and fails its lesson, and that each lesson passes on the staged
//! starter (its own and the earlier lessons' bodies written, the later ones' still `todo!()`);
//! `starters --write` only writes them out to be read, and `lesson --check-format` checks that a
//! lesson file follows `course/FORMAT.md`.

use crate::commands::{check_week, usage_error};
use crate::lesson;
use crate::report::{self, Printer};
use crate::results::{LessonResult, Status};
use crate::runner::{self, RunOptions};
use crate::starters;
use crate::student;
use crate::workspace::{self, target_dir, workspace_root};
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

/// `cargo xtask lesson <id> --check-format`: checks that the lesson file follows
/// `course/FORMAT.md` (finding and parsing it is the check) and says how many steps it has.
pub fn check_format_command(id: &str) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let lesson = lesson::find(&root, id)?;
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
    Ok(ExitCode::SUCCESS)
}

/// Builds the starter's crate in the scratch workspace with every target its tests need
/// (`cargo test --no-run`), failing with the compiler's first error lines if it does not build.
fn starter_compiles(scratch: &Path, target_dir: &Path, krate: &str) -> anyhow::Result<()> {
    let output = std::process::Command::new(workspace::cargo())
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

/// `cargo xtask starters --write DIR`: writes every generated starter to its own folder in `dir`.
pub fn write_starters_command(dir: &Path) -> anyhow::Result<ExitCode> {
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

/// `cargo xtask starters`: generates every starter and checks, for each lesson, that its untouched
/// starter compiles and fails it, and that the starter as a student has it on reaching the lesson
/// (earlier and own bodies written, later lessons' still `todo!()`) passes it.
pub fn starters_command(week: Option<&str>, allow_missing: bool) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    if let Err(message) = check_week(&root, week)? {
        return usage_error(&message);
    }
    let lessons = lesson::discover(&root)?;
    // Generating every starter checks every marker, whichever week is asked for.
    let generated = starters::generate_all(&root, &lessons)?;
    let mut wrong = Vec::new();
    for lesson in lessons
        .iter()
        .filter(|l| week.is_none_or(|w| l.front.week() == w))
    {
        let id = &lesson.front.id;
        let generated = generated
            .iter()
            .find(|s| s.name == lesson.front.starter && !s.files.is_empty());
        let Some(generated) = generated else {
            eprintln!(
                "{id}: no starter: no `// starter: <lesson-id> ...` marker of starter `{}` in crate `{}`",
                lesson.front.starter, lesson.front.krate
            );
            if !allow_missing {
                wrong.push(id.clone());
            }
            continue;
        };
        match grade_starter(&root, lesson, generated, "")? {
            Err(error) => {
                eprintln!(
                    "{id}: the untouched starter DOES NOT COMPILE against the reference's tests: {error:#}"
                );
                wrong.push(id.clone());
                continue;
            }
            Ok(result) if result.status == Status::Fail => eprintln!(
                "{id}: the untouched starter fails, as it must ({}/{} steps pass)",
                result.points, result.max_points
            ),
            Ok(result) => {
                eprintln!(
                    "{id}: the untouched starter DOES NOT FAIL ({}/{} steps pass)",
                    result.points, result.max_points
                );
                wrong.push(id.clone());
                continue;
            }
        }
        let Some(staged) = starters::staged_for(&root, &lessons, lesson)? else {
            continue;
        };
        let what = "with the bodies up to this lesson written and the later lessons' still todo!()";
        match grade_starter(&root, lesson, &staged, "-staged")? {
            Ok(result) if result.status == Status::Pass => eprintln!(
                "{id}: the starter {what} passes, as it must ({}/{} steps pass)",
                result.points, result.max_points
            ),
            Ok(result) => {
                let failed = result.first_failure().map_or_else(String::new, |step| {
                    format!(
                        "; step `{}` fails: {}",
                        step.name,
                        step.message.as_deref().unwrap_or("see its log")
                    )
                });
                eprintln!(
                    "{id}: the starter {what} DOES NOT PASS ({}/{} steps pass): the lesson needs a \
                     later lesson's body{failed}",
                    result.points, result.max_points
                );
                wrong.push(id.clone());
            }
            Err(error) => {
                eprintln!("{id}: the starter {what} DOES NOT COMPILE: {error:#}");
                wrong.push(id.clone());
            }
        }
    }
    if wrong.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("starters that break these rules: {}", wrong.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Lays `starter` alone over its crate in the scratch workspace (the check is about this starter,
/// not about the student's copies of the crates below it) and grades `lesson` on it, quickly.
/// The inner error is the compiler's when the starter does not build against the reference's
/// tests: such a starter would also "fail its lesson", for the wrong reason.
fn grade_starter(
    root: &Path,
    lesson: &lesson::Lesson,
    starter: &starters::Starter,
    suffix: &str,
) -> anyhow::Result<Result<LessonResult, anyhow::Error>> {
    let dir = student::generated_dir(root).join(format!("{}{suffix}", starter.name));
    starter.write_to(&dir)?;
    let overlay = student::Overlay {
        krate: lesson.front.krate.clone(),
        crate_dir: crate::workspace::crate_dir(root, &lesson.front.krate)?,
        dir,
    };
    let scratch = student::prepare_scratch(root, &[overlay])?;
    if let Err(error) = starter_compiles(
        &scratch,
        &student::scratch_target(root),
        &lesson.front.krate,
    ) {
        return Ok(Err(error));
    }
    let options = RunOptions {
        root: scratch,
        target_dir: student::scratch_target(root),
        log_dir: target_dir(root).join("xtask/logs/starters"),
        server: None,
        invocation_dir: root.to_path_buf(),
        keep_going: false,
        // An untouched starter fails long before a full-length step would matter, and CI grades
        // the reference with --quick too.
        quick: true,
        verbose: false,
        build: true,
        student_paths: None,
    };
    Ok(Ok(runner::run_lesson(lesson, &options, &Printer::silent())))
}
