//! Student mode: starters, the student's working copy, and the scratch workspace it is graded in.
//!
//! A lesson's starter is generated from the reference crate's markers (see `starters`), laid out
//! as the crate's own folder. A started lesson's working copy is `student/<starter>/`
//! (gitignored); `start`, `stop` and `reset` move a lesson in and out of student mode
//! ([`start`], [`stop`], [`reset`]), and a reset keeps the copy it replaces under
//! `student/.backup/`. Grading copies the workspace to `<target>/xtask/scratch/workspace/`
//! (`<target>` is the cargo target folder) and lays the student's files over the crate's folder
//! there, so the reference under `crates/` is never touched and every other crate builds against
//! the student's code.

use crate::lesson::Lesson;
use crate::progress::Progress;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where `cargo xtask starters` writes the starters it checks (and `--write` by default).
pub(crate) fn generated_dir(root: &Path) -> PathBuf {
    root.join("target/xtask/starters")
}

/// The student's working copy of a lesson's crate.
pub(crate) fn student_dir(root: &Path, lesson: &Lesson) -> PathBuf {
    root.join("student").join(&lesson.front.starter)
}

/// The scratch workspace's root.
pub(crate) fn scratch_root(root: &Path) -> PathBuf {
    crate::workspace::target_dir(root).join("xtask/scratch/workspace")
}

/// The scratch workspace's cargo target folder (kept between runs so rebuilds are incremental).
pub(crate) fn scratch_target(root: &Path) -> PathBuf {
    crate::workspace::target_dir(root).join("xtask/scratch/target")
}

/// Generates the lesson's starter into the student's folder; `overwrite` replaces the
/// student's files (otherwise a folder already there is kept as it is).
pub(crate) fn install_starter(
    root: &Path,
    lesson: &Lesson,
    overwrite: bool,
) -> anyhow::Result<PathBuf> {
    let student = student_dir(root, lesson);
    if student.exists() && !overwrite {
        return Ok(student);
    }
    crate::starters::for_lesson(root, lesson)?.write_to(&student)?;
    Ok(student)
}

/// Builds (or refreshes) the scratch workspace with `overlay` laid over the crate's folder.
///
/// Files are written only when their content changed, so cargo's fingerprints stay valid and a
/// second run rebuilds only what the student edited.
pub(crate) fn prepare_scratch(
    root: &Path,
    lesson: &Lesson,
    overlay: &Path,
) -> anyhow::Result<PathBuf> {
    let scratch = scratch_root(root);
    let crate_dir = crate::workspace::crate_dir(root, &lesson.front.krate)?;
    // The crate's folder is rebuilt from the overlay alone plus the reference files it lacks.
    // A target folder inside the workspace under another name (`CARGO_TARGET_DIR=build`) is
    // build output too, and is not copied.
    let target = crate::workspace::target_dir(root);
    let target_name = target
        .strip_prefix(root)
        .ok()
        .and_then(|inside| inside.iter().next())
        .and_then(|name| name.to_str())
        .unwrap_or("target");
    copy_tree(
        root,
        &scratch,
        &["target", target_name, ".git", "student", ".course-progress"],
    )?;
    copy_tree(overlay, &scratch.join(&crate_dir), &["target"])?;
    Ok(scratch)
}

/// Copies `from` into `to` recursively, skipping top-level names in `skip`, writing a file only
/// when its content differs.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &target, &[])?;
        } else if kind.is_file() {
            let bytes = std::fs::read(&source)?;
            if std::fs::read(&target).ok().as_deref() != Some(bytes.as_slice()) {
                std::fs::write(&target, bytes)
                    .with_context(|| format!("writing {}", target.display()))?;
            }
        }
    }
    Ok(())
}

/// Starts a lesson: copies its starter to the student's folder unless a copy is there already
/// (a lesson stopped and started again keeps the student's work), and marks it started in the
/// progress file. Returns the folder and whether an existing copy was kept.
pub(crate) fn start(root: &Path, lesson: &Lesson) -> anyhow::Result<(PathBuf, bool)> {
    let kept = student_dir(root, lesson).is_dir();
    let dir = install_starter(root, lesson, false)?;
    Progress::update(root, |progress| {
        progress.set_started(&lesson.front.id, true)
    })?;
    Ok((dir, kept))
}

/// Stops a started lesson: `lesson` grades the reference again. The student's copy is left as
/// it is. Returns the copy's folder.
pub(crate) fn stop(root: &Path, lesson: &Lesson) -> anyhow::Result<PathBuf> {
    ensure_started(root, lesson)?;
    Progress::update(root, |progress| {
        progress.set_started(&lesson.front.id, false)
    })?;
    Ok(student_dir(root, lesson))
}

/// Resets a started lesson to its starter, moving the student's copy to a backup folder first.
/// Returns the student's folder and the backup's, if there was a copy to keep.
pub(crate) fn reset(root: &Path, lesson: &Lesson) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
    ensure_started(root, lesson)?;
    let dir = student_dir(root, lesson);
    let backup = if dir.exists() {
        let backup = backup_dir(root, lesson);
        std::fs::create_dir_all(backup.parent().context("backup folder")?)?;
        std::fs::rename(&dir, &backup)
            .with_context(|| format!("moving {} to {}", dir.display(), backup.display()))?;
        Some(backup)
    } else {
        None
    };
    Ok((install_starter(root, lesson, false)?, backup))
}

fn ensure_started(root: &Path, lesson: &Lesson) -> anyhow::Result<()> {
    let id = &lesson.front.id;
    anyhow::ensure!(
        Progress::load(root).is_started(id),
        "lesson {id} is not started (`cargo xtask start {id}` starts it)"
    );
    Ok(())
}

/// A backup folder name not taken yet: `student/.backup/<crate>-<unix seconds>[-n]`.
fn backup_dir(root: &Path, lesson: &Lesson) -> PathBuf {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = root
        .join("student/.backup")
        .join(format!("{}-{seconds}", lesson.front.starter));
    // Bounded: a handful of resets within the same second is the most there can be.
    let numbered = (1..1000).map(|n| {
        let mut name = base.as_os_str().to_owned();
        name.push(format!("-{n}"));
        PathBuf::from(name)
    });
    std::iter::once(base.clone())
        .chain(numbered)
        .find(|path| !path.exists())
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_skips_and_keeps_unchanged_files() {
        let base = std::env::temp_dir().join(format!("xtask-copy-{}", std::process::id()));
        let (from, to) = (base.join("from"), base.join("to"));
        std::fs::create_dir_all(from.join("src")).unwrap();
        std::fs::create_dir_all(from.join("target")).unwrap();
        std::fs::write(from.join("src/lib.rs"), "//! x").unwrap();
        std::fs::write(from.join("target/junk"), "x").unwrap();
        copy_tree(&from, &to, &["target"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("src/lib.rs")).unwrap(),
            "//! x"
        );
        assert!(!to.join("target").exists());
        let before = std::fs::metadata(to.join("src/lib.rs"))
            .unwrap()
            .modified()
            .unwrap();
        copy_tree(&from, &to, &["target"]).unwrap();
        let after = std::fs::metadata(to.join("src/lib.rs"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after, "an unchanged file must not be rewritten");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A one-crate workspace under `root` with one lesson whose starter blanks one fn, and that
    /// lesson.
    fn lesson_in(root: &Path) -> Lesson {
        use crate::lesson::FrontMatter;
        std::fs::create_dir_all(root.join("queue/src")).unwrap();
        std::fs::create_dir_all(root.join("course/w05")).unwrap();
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"3\"\nmembers = [\"queue\"]\n",
        )
        .unwrap();
        std::fs::write(
            root.join("queue/Cargo.toml"),
            "[package]\nname = \"queue\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("queue/src/lib.rs"),
            "//! A queue.\n\n// starter: w05-l01 todo\n/// The answer.\npub fn answer() -> u32 {\n    42\n}\n",
        )
        .unwrap();
        std::fs::write(root.join("course/w05/01.md"), LESSON).unwrap();
        Lesson {
            path: PathBuf::from("course/w05/01.md"),
            front: FrontMatter {
                id: "w05-l01".into(),
                title: "t".into(),
                order: 1,
                krate: "queue".into(),
                duration: "60 min".into(),
                starter: "queue".into(),
            },
            steps: Vec::new(),
            done_when: Vec::new(),
            mistakes: Vec::new(),
        }
    }

    /// The smallest lesson file that follows course/FORMAT.md, for `lesson_in`.
    const LESSON: &str = "---\nid: w05-l01\ntitle: t\norder: 1\ncrate: queue\nduration: 60 min\n---\n\n\
# T\n\n## Goal\n\nx\n\n## What you build\n\nx\n\n## Why it matters\n\nx\n\n## Do\n\nx\n\n\
## Test\n\n```console run name=unit\n$ true\n```\n\n## Expected\n\nx\n\n## Prove\n\nx\n\n\
## Done when\n\n- x\n\n## Common mistakes\n\n| Mistake | Fix | Caught by |\n|---|---|---|\n\
| a | b | |\n\n## Diagram\n\n```text\nx\n```\n";

    #[test]
    fn start_stop_and_reset_move_a_lesson_in_and_out_of_student_mode() {
        let root = std::env::temp_dir().join(format!("xtask-student-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let lesson = lesson_in(&root);
        let started = |root: &Path| Progress::load(root).is_started("w05-l01");

        // Neither stop nor reset starts a lesson that is not started.
        assert!(stop(&root, &lesson).is_err());
        assert!(reset(&root, &lesson).is_err());
        assert!(!student_dir(&root, &lesson).exists() && !started(&root));

        let (dir, kept) = start(&root, &lesson).unwrap();
        assert!(!kept && started(&root));
        std::fs::write(dir.join("src/lib.rs"), "my work").unwrap();

        // Stop keeps the copy; starting again picks it up.
        assert_eq!(stop(&root, &lesson).unwrap(), dir);
        assert!(!started(&root));
        assert_eq!(
            std::fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
            "my work"
        );
        let (_, kept) = start(&root, &lesson).unwrap();
        assert!(kept && started(&root));
        assert_eq!(
            std::fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
            "my work"
        );

        // Reset brings the starter back and keeps the work in the backup it names.
        let (dir, backup) = reset(&root, &lesson).unwrap();
        let backup = backup.expect("a backup of the copy");
        assert!(backup.starts_with(root.join("student/.backup")));
        assert!(
            std::fs::read_to_string(dir.join("src/lib.rs"))
                .unwrap()
                .contains("todo!(\"W05 L01: answer\")")
        );
        assert_eq!(
            std::fs::read_to_string(backup.join("src/lib.rs")).unwrap(),
            "my work"
        );
        // A second reset in the same second takes a new name.
        let (_, second) = reset(&root, &lesson).unwrap();
        assert_ne!(second.unwrap(), backup);
        assert!(started(&root));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
