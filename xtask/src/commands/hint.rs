//! `cargo xtask hint [<id>] [--all]`: hints for a lesson, one stage at a time.
//!
//! The hints come from what is already there: the lesson's last saved run (see
//! [`crate::last_run`]) and the lesson file's Common-mistakes table. Stage 1 is the step that
//! failed in that run — its name and line, what the run said, and the Common-mistakes rows that
//! name it; stage 2 is the lesson's whole Common-mistakes table; after that there is nothing more
//! to give but the lesson itself. Each call shows the next stage (`--all`: every stage at once),
//! and the stage reached is remembered per lesson in `<target>/xtask/hints/<id>.json`, tied to
//! the run it was about, so a new run starts the stages again.

use super::shown;
use crate::last_run::{self, SavedRun};
use crate::lesson::{self, Lesson};
use crate::report;
use crate::results::{Status, StepResult, step_text};
use crate::workspace::{target_dir, workspace_root};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The stage of the failed step's hint.
const STEP_STAGE: u8 = 1;
/// The stage of the whole Common-mistakes table, the last one.
const TABLE_STAGE: u8 = 2;

/// How far the hints of one lesson have gone.
#[derive(Debug, Default, Serialize, Deserialize)]
struct HintState {
    /// The saved run the stages were about (its `saved_at`), `None` when there was none.
    run: Option<u64>,
    /// The last stage shown (0 for none).
    shown: u8,
}

impl HintState {
    /// The state file of a lesson.
    fn file(root: &Path, id: &str) -> PathBuf {
        target_dir(root)
            .join("xtask/hints")
            .join(format!("{id}.json"))
    }

    /// The lesson's state; a missing or unreadable file is a lesson with no hint shown yet.
    fn load(root: &Path, id: &str) -> Self {
        std::fs::read_to_string(Self::file(root, id))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Saves the lesson's state.
    fn save(&self, root: &Path, id: &str) -> anyhow::Result<()> {
        let path = Self::file(root, id);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(&path, serde_json::to_string(self)? + "\n")?;
        Ok(())
    }
}

/// `cargo xtask hint <id>`: the lesson's next stage of hints, or with `all` every stage.
pub fn hint_command(id: &str, all: bool) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let lesson = lesson::find(&root, id)?;
    let saved = last_run::load(&root, &lesson.front.id)?;
    let failed = saved.as_ref().and_then(|run| run.result.first_failure());
    report::outln(&which_run(&lesson, saved.as_ref()));

    // Stage 1 exists only when a step failed; a state about another run starts over.
    let first = if failed.is_some() {
        STEP_STAGE
    } else {
        TABLE_STAGE
    };
    let run = saved.as_ref().map(|run| run.saved_at);
    let state = HintState::load(&root, &lesson.front.id);
    let shown_before = if state.run == run { state.shown } else { 0 };
    let stages: Vec<u8> = if all {
        (first..=TABLE_STAGE).collect()
    } else {
        let next = (shown_before + 1).max(first);
        (next..=TABLE_STAGE).take(1).collect()
    };

    if stages.is_empty() {
        report::outln(&no_more_hints(&lesson, failed));
    }
    for &stage in &stages {
        report::outln("");
        match (stage, failed) {
            (STEP_STAGE, Some(step)) => report::outln(&step_hint(&lesson, step)),
            _ => report::outln(&table_hint(&lesson, stage == first)),
        }
    }
    if let Some(&last) = stages.last() {
        if last < TABLE_STAGE {
            report::outln(&format!(
                "\n(`cargo xtask hint {}` again shows the lesson's common mistakes; `--all` shows \
                 every hint at once)",
                lesson.front.id
            ));
        }
        let state = HintState {
            run,
            shown: shown_before.max(last),
        };
        // Only the next call's stage depends on it: a hint already printed stands without it.
        if let Err(error) = state.save(&root, &lesson.front.id) {
            eprintln!("warning: the hint stage reached is not remembered: {error:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The first line: which run the hints read, whose code it graded and when.
fn which_run(lesson: &Lesson, saved: Option<&SavedRun>) -> String {
    let id = &lesson.front.id;
    match saved {
        None => format!(
            "no saved run of {id}: `cargo xtask lesson {id}` runs it (and keeps its result for \
             `hint`); until then, the lesson's common mistakes"
        ),
        Some(run) => {
            let result = &run.result;
            let verdict = if result.status == Status::Pass {
                "it passed, so no step failed".to_owned()
            } else {
                format!(
                    "{} {}/{} steps",
                    result.status.word(),
                    result.points,
                    result.max_points
                )
            };
            format!(
                "hints for {id} from its last run, of {}, {}: {verdict}",
                run.subject.describe(),
                run.age()
            )
        }
    }
}

/// Stage 1: the failed step — where it is, what the run said, the rows that name it.
fn step_hint(lesson: &Lesson, step: &StepResult) -> String {
    let mut text = format!(
        "hint {STEP_STAGE} of {TABLE_STAGE} — the step that failed: {} {} ({})\n",
        step.kind,
        step.name,
        where_step_is(lesson, step)
    );
    // The run's own words, without the hints it printed then: the rows come from the lesson as
    // it is now, below.
    let said = step_text(&StepResult {
        hints: Vec::new(),
        ..step.clone()
    });
    for line in said.lines() {
        text.push_str(&format!("  {line}\n"));
    }
    let rows = lesson.hints_for(&step.name);
    if rows.is_empty() {
        text.push_str("  no Common-mistakes row names this step");
    } else {
        text.push_str("  Common-mistakes rows caught by this step:");
        for row in rows {
            text.push_str(&format!("\n  - {row}"));
        }
    }
    text
}

/// Where a step stands in the lesson file (the build has no line of its own).
fn where_step_is(lesson: &Lesson, step: &StepResult) -> String {
    if step.line == 0 {
        "before the lesson's steps".to_owned()
    } else {
        format!("{} line {}", lesson.path.display(), step.line)
    }
}

/// Stage 2: the lesson's whole Common-mistakes table; `first` when no stage 1 came before it.
fn table_hint(lesson: &Lesson, first: bool) -> String {
    let number = if first {
        String::from("hint")
    } else {
        format!("hint {TABLE_STAGE} of {TABLE_STAGE}")
    };
    let mut text = format!(
        "{number} — the lesson's common mistakes ({}):",
        lesson.path.display()
    );
    for row in &lesson.mistakes {
        let caught = if row.caught_by.is_empty() {
            "no step catches it: check it yourself".to_owned()
        } else {
            format!("caught by: {}", row.caught_by.join(", "))
        };
        text.push_str(&format!("\n  - {} — {} ({caught})", row.mistake, row.fix));
    }
    text
}

/// What is left when every stage was shown: the lesson itself.
fn no_more_hints(lesson: &Lesson, failed: Option<&StepResult>) -> String {
    let root = workspace_root();
    let file = shown(&root, &lesson.path);
    let step = failed.map_or_else(String::new, |step| {
        format!(
            ", then the step `{}` ({}) and what it checks",
            step.name,
            where_step_is(lesson, step)
        )
    });
    format!(
        "no more hints: read the lesson's `## Do` section again ({file}){step}; \
         `cargo xtask hint {} --all` shows every hint again",
        lesson.front.id
    )
}
