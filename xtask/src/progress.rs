//! A student's progress, keyed by lesson id (so renaming a lesson file loses nothing), kept in
//! the gitignored `.course-progress` file at the workspace root.

use crate::results::{LessonResult, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What is remembered about one lesson.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LessonProgress {
    /// `cargo xtask start` was run (a reset keeps the lesson started).
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

    /// Saves the file (written aside, then renamed, so a reader never sees half a file).
    pub(crate) fn save(&self, root: &Path) -> anyhow::Result<()> {
        let path = Self::path(root);
        let aside = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&aside, serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::rename(&aside, &path)?;
        Ok(())
    }

    /// Loads the file, applies `change`, and saves it at once, so runs that overlap (a long
    /// `grade` and a `start` in another terminal) lose as little of each other's progress as
    /// possible.
    pub(crate) fn update(root: &Path, change: impl FnOnce(&mut Progress)) -> anyhow::Result<()> {
        let mut progress = Self::load(root);
        change(&mut progress);
        progress.save(root)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{LessonResult, Status};

    #[test]
    fn progress_is_keyed_by_lesson_id_and_survives_a_reload() {
        let root = std::env::temp_dir().join(format!("xtask-progress-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let mut progress = Progress::load(&root);
        assert!(!progress.is_started("w05-l01"));
        progress
            .lessons
            .entry("w05-l01".into())
            .or_default()
            .started = true;
        let result = LessonResult {
            id: "w05-l01".into(),
            title: "t".into(),
            // The file name plays no part in the key: a renamed lesson keeps its progress.
            file: "course/w05/renamed.md".into(),
            status: Status::Fail,
            points: 3,
            max_points: 8,
            duration_ms: 1,
            steps: Vec::new(),
            done_when: Vec::new(),
        };
        progress.record(&result, true);
        progress.save(&root).unwrap();
        let reloaded = Progress::load(&root);
        let entry = &reloaded.lessons["w05-l01"];
        assert!(entry.started && entry.graded_student);
        assert_eq!(
            (entry.last_status.as_deref(), entry.points, entry.max_points),
            (Some("fail"), 3, 8)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
