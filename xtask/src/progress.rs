//! A student's progress, keyed by lesson id (so renaming a lesson file loses nothing), kept in
//! the gitignored `.course-progress` file at the workspace root.

use crate::results::{LessonResult, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What is remembered about one lesson.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LessonProgress {
    /// `cargo xtask start` was run and no reset since... (a reset keeps it started).
    pub(crate) started: bool,
    /// The last result: pass, fail, error.
    pub(crate) last_status: Option<String>,
    /// Steps passed last time.
    pub(crate) points: u32,
    /// Steps counted last time.
    pub(crate) max_points: u32,
    /// Whether the last run graded the student's copy (true) or the reference.
    pub(crate) graded_student: bool,
    /// Seconds since the Unix epoch of the last run.
    pub(crate) at: u64,
}

/// The whole progress file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Per lesson id.
    pub(crate) lessons: BTreeMap<String, LessonProgress>,
}

impl Progress {
    /// The progress file's path.
    pub(crate) fn path(root: &Path) -> PathBuf {
        root.join(".course-progress")
    }

    /// Loads the file; a missing or unreadable file is an empty progress.
    pub(crate) fn load(root: &Path) -> Self {
        std::fs::read_to_string(Self::path(root))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Saves the file.
    pub(crate) fn save(&self, root: &Path) -> anyhow::Result<()> {
        std::fs::write(Self::path(root), serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    /// Whether a lesson is started.
    pub(crate) fn is_started(&self, id: &str) -> bool {
        self.lessons.get(id).is_some_and(|p| p.started)
    }

    /// Records a run's result.
    pub(crate) fn record(&mut self, result: &LessonResult, graded_student: bool) {
        let entry = self.lessons.entry(result.id.clone()).or_default();
        entry.last_status = Some(
            match result.status {
                Status::Pass => "pass",
                Status::Fail => "fail",
                Status::Error => "error",
                Status::Skipped => "skipped",
            }
            .to_owned(),
        );
        entry.points = result.points;
        entry.max_points = result.max_points;
        entry.graded_student = graded_student;
        entry.at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
    }
}
