//! A student's progress, keyed by lesson id (so renaming a lesson file loses nothing), kept in
//! the gitignored `.course-progress` file at the workspace root (or the file named by
//! `COURSE_PROGRESS_FILE`, which tests point at a temporary file).
//!
//! Only a student's own `cargo xtask lesson` runs on their own copy record a result here: a run
//! of the reference (`--reference`, or a lesson not started), of another server (`--server`) or
//! of `grade` says nothing about the student's work, and `grade` writes its own results file.

use crate::results::{LessonResult, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What is remembered about one lesson.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LessonProgress {
    /// `cargo xtask start` was run and `cargo xtask stop` was not (a reset keeps the lesson
    /// started).
    pub(crate) started: bool,
    /// The last result: pass, fail, error.
    pub(crate) last_status: Option<String>,
    /// Steps passed last time.
    pub(crate) points: u32,
    /// Steps counted last time.
    pub(crate) max_points: u32,
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
    /// The progress file's path: `COURSE_PROGRESS_FILE` when set, else `.course-progress` at
    /// the workspace root.
    pub(crate) fn path(root: &Path) -> PathBuf {
        match std::env::var_os("COURSE_PROGRESS_FILE") {
            Some(file) if !file.is_empty() => PathBuf::from(file),
            _ => root.join(".course-progress"),
        }
    }

    /// Loads the file; a missing or unreadable file is an empty progress.
    pub(crate) fn load(root: &Path) -> Self {
        Self::load_from(&Self::path(root))
    }

    /// Loads a progress file by its path.
    pub(crate) fn load_from(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Saves a progress file by its path (written aside, then renamed, so a reader never sees
    /// half a file).
    pub(crate) fn save_to(&self, path: &Path) -> anyhow::Result<()> {
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".tmp{}", std::process::id()));
        std::fs::write(&aside, serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::rename(&aside, path)?;
        Ok(())
    }

    /// Loads the file, applies `change`, and saves it at once, so runs that overlap (a long
    /// `grade` and a `start` in another terminal) lose as little of each other's progress as
    /// possible.
    pub(crate) fn update(root: &Path, change: impl FnOnce(&mut Progress)) -> anyhow::Result<()> {
        let path = Self::path(root);
        let mut progress = Self::load_from(&path);
        change(&mut progress);
        progress.save_to(&path)
    }

    /// Whether a lesson is started.
    pub(crate) fn is_started(&self, id: &str) -> bool {
        self.lessons.get(id).is_some_and(|p| p.started)
    }

    /// The started lessons' ids, in id order (course order within a week).
    pub(crate) fn started(&self) -> Vec<String> {
        self.lessons
            .iter()
            .filter(|(_, progress)| progress.started)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Marks a lesson started (or, with `false`, stopped); its last result is kept either way.
    pub(crate) fn set_started(&mut self, id: &str, started: bool) {
        self.lessons.entry(id.to_owned()).or_default().started = started;
    }

    /// Records the result of a run of the student's own copy.
    pub(crate) fn record(&mut self, result: &LessonResult) {
        let entry = self.lessons.entry(result.id.clone()).or_default();
        entry.last_status = Some(
            match result.status {
                Status::Pass => "pass",
                Status::Fail => "fail",
                Status::Error => "error",
                Status::Skipped => "skipped",
                Status::NotApplicable => "not_applicable",
            }
            .to_owned(),
        );
        entry.points = result.points;
        entry.max_points = result.max_points;
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
        let mut progress = Progress::default();
        assert!(!progress.is_started("w05-l01"));
        progress.set_started("w05-l01", true);
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
        progress.record(&result);
        let file = root.join("progress.json");
        progress.save_to(&file).unwrap();
        let reloaded = Progress::load_from(&file);
        let entry = &reloaded.lessons["w05-l01"];
        assert!(entry.started);
        assert_eq!(
            (entry.last_status.as_deref(), entry.points, entry.max_points),
            (Some("fail"), 3, 8)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
