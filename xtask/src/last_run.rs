//! The last run of each lesson, kept on disk: what `cargo xtask lesson` found, whose code it
//! graded and when, so `cargo xtask hint` (and `watch`) can say what failed without running the
//! lesson again.
//!
//! Every `lesson` run that ends (not one interrupted by Ctrl-C) replaces
//! `<target>/xtask/logs/<id>/result.json`, beside the run's logs: the lesson's result in the
//! results model's JSON (the same fields as a lesson of `grade --format json`), wrapped with the
//! subject and the time. Unlike the progress file it is written for runs of the reference and
//! of a foreign server too, since a hint about a failed step is as useful for those.

use crate::results::LessonResult;
use crate::workspace::target_dir;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whose code a run graded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Subject {
    /// The student's copy, in the folder named (relative to the workspace root).
    Student {
        /// The copy's folder, as the student sees it (`student/task_queue`).
        copy: String,
    },
    /// The workspace's reference crates.
    Reference,
    /// A foreign server, given with `--server`.
    Server {
        /// The `--server` command.
        command: String,
    },
}

impl Subject {
    /// The subject in words, for a sentence such as "the last run graded ...".
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Student { copy } => format!("your copy in {copy}"),
            Self::Reference => "the reference crates".to_owned(),
            Self::Server { command } => format!("the server `{command}`"),
        }
    }
}

/// One saved run: the file's whole content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedRun {
    /// Whose code the run graded.
    pub(crate) subject: Subject,
    /// When the run ended, in seconds since the Unix epoch.
    pub(crate) saved_at: u64,
    /// What the run found.
    pub(crate) result: LessonResult,
}

impl SavedRun {
    /// How long ago the run ended, in words ("42 s ago", "5 min ago").
    pub(crate) fn age(&self) -> String {
        ago(now_secs().saturating_sub(self.saved_at))
    }
}

/// The saved-run file of a lesson.
pub(crate) fn file(root: &Path, id: &str) -> PathBuf {
    target_dir(root)
        .join("xtask/logs")
        .join(id)
        .join("result.json")
}

/// Saves a run's result as the lesson's last run (written aside, then renamed, so a reader
/// never sees half a file).
pub(crate) fn save(root: &Path, result: &LessonResult, subject: Subject) -> anyhow::Result<()> {
    let path = file(root, &result.id);
    let folder = path.parent().context("a result file has a folder")?;
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let saved = SavedRun {
        subject,
        saved_at: now_secs(),
        result: result.clone(),
    };
    let aside = folder.join(format!(".result.json.tmp{}", std::process::id()));
    std::fs::write(&aside, serde_json::to_string_pretty(&saved)? + "\n")
        .with_context(|| format!("writing {}", aside.display()))?;
    std::fs::rename(&aside, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The lesson's last saved run: `Ok(None)` when there is none, an error when the file is there
/// but cannot be read (it names the file, so it can be removed).
pub(crate) fn load(root: &Path, id: &str) -> anyhow::Result<Option<SavedRun>> {
    let path = file(root, id);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let saved = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a saved lesson run", path.display()))?;
    Ok(Some(saved))
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// A duration in the coarsest unit that still says something.
fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_said_in_the_coarsest_unit_that_fits() {
        assert_eq!(ago(5), "5 s ago");
        assert_eq!(ago(125), "2 min ago");
        assert_eq!(ago(7300), "2 h ago");
        assert_eq!(ago(3 * 86_400 + 5), "3 days ago");
    }

    #[test]
    fn subjects_are_described_as_a_student_reads_them() {
        let copy = Subject::Student {
            copy: "student/task_queue".into(),
        };
        assert_eq!(copy.describe(), "your copy in student/task_queue");
        assert_eq!(Subject::Reference.describe(), "the reference crates");
        let json = serde_json::to_string(&copy).unwrap();
        assert_eq!(json, r#"{"kind":"student","copy":"student/task_queue"}"#);
        assert_eq!(serde_json::from_str::<Subject>(&json).unwrap(), copy);
    }
}
