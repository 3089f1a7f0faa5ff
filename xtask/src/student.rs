//! Student mode: starters, the student's working copy, and the scratch workspace it is graded in.
//!
//! A lesson's starter is generated from the reference crate's markers (see `starters`), laid out
//! as the crate's own folder. A started lesson's working copy is `student/<starter>/`
//! (gitignored); `start`, `stop` and `reset` move a lesson in and out of student mode
//! ([`start`], [`stop`], [`reset`]), and a reset keeps the copy it replaces under
//! `student/.backup/`. Grading copies the workspace to `<target>/xtask/scratch/workspace/`
//! (`<target>` is the cargo target folder) and lays the student's files over the crate's folder
//! there, so the reference under `crates/` is never touched and every other crate builds against
//! the student's code; the student's copies of the crates below it go over theirs too
//! ([`overlays`]), so a later lesson runs on what the student wrote earlier.

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

/// One of the student's copies, laid over its crate's folder in the scratch workspace.
#[derive(Debug, Clone)]
pub(crate) struct Overlay {
    /// The crate's package name.
    pub(crate) krate: String,
    /// The crate's folder, relative to the workspace root.
    pub(crate) crate_dir: PathBuf,
    /// The folder whose files replace the crate's (`student/<starter>/`, or a generated starter).
    pub(crate) dir: PathBuf,
}

/// The copies a started lesson is graded with: the lesson's own (`student/<starter>/`) first,
/// then, for every crate the lesson's crate builds on, the student's copy of it when a lesson
/// on that crate is started and its copy is there (the last such lesson in course order), so a
/// later lesson runs on the crates the student wrote earlier. A stopped lesson's copy is not
/// used: `stop` means "grade the reference".
pub(crate) fn overlays(root: &Path, lesson: &Lesson) -> anyhow::Result<Vec<Overlay>> {
    let packages = crate::workspace::workspace_packages(root)?;
    let dir_of = |krate: &str| {
        packages
            .iter()
            .find(|(name, _)| name == krate)
            .map(|(_, dir)| dir.clone())
            .with_context(|| format!("no workspace package is named `{krate}`"))
    };
    let mut overlays = vec![Overlay {
        krate: lesson.front.krate.clone(),
        crate_dir: dir_of(&lesson.front.krate)?,
        dir: student_dir(root, lesson),
    }];
    let below = crate::workspace::path_dependencies(root, &lesson.front.krate)?;
    let progress = Progress::load(root);
    // Course order, so a later lesson's copy of a crate replaces an earlier one's.
    let mut chosen: Vec<(String, PathBuf)> = Vec::new();
    for other in crate::lesson::discover(root)? {
        let krate = &other.front.krate;
        let dir = student_dir(root, &other);
        if !below.contains(krate) || !progress.is_started(&other.front.id) || !dir.is_dir() {
            continue;
        }
        chosen.retain(|(name, _)| name != krate);
        chosen.push((krate.clone(), dir));
    }
    for (krate, dir) in chosen {
        overlays.push(Overlay {
            crate_dir: dir_of(&krate)?,
            krate,
            dir,
        });
    }
    Ok(overlays)
}

/// What a student's copy never brings into the scratch workspace: build output, and the
/// manifest and lock file generated for the student's own workspace (the scratch workspace
/// builds every crate with the reference's manifest).
const NOT_OVERLAID: [&str; 3] = ["target", "Cargo.toml", "Cargo.lock"];

/// Builds (or refreshes) the scratch workspace: the workspace's files, with each overlay's files
/// in place of its crate's (the crate's other files from the reference).
///
/// Files are written only when their content changed, so cargo's fingerprints stay valid and a
/// second run rebuilds only what the student edited.
pub(crate) fn prepare_scratch(root: &Path, overlays: &[Overlay]) -> anyhow::Result<PathBuf> {
    let scratch = scratch_root(root);
    prepare_scratch_in(root, &scratch, overlays)?;
    Ok(scratch)
}

/// [`prepare_scratch`] into a given folder (a test's own, away from the cargo target folder).
fn prepare_scratch_in(root: &Path, scratch: &Path, overlays: &[Overlay]) -> anyhow::Result<()> {
    // A target folder inside the workspace under another name (`CARGO_TARGET_DIR=build`) is
    // build output too, and is not copied.
    let target = crate::workspace::target_dir(root);
    let target_name = target
        .strip_prefix(root)
        .ok()
        .and_then(|inside| inside.iter().next())
        .and_then(|name| name.to_str())
        .unwrap_or("target");
    let skipped_at_top = ["target", target_name, ".git", "student", ".course-progress"];
    // The overlaid crates' folders are left out here and put together below, so no file of
    // theirs is written twice (the reference's, then the student's) and made to look changed.
    copy_tree(root, scratch, &|path| {
        skipped_at_top.iter().any(|name| path == Path::new(name))
            || overlays.iter().any(|overlay| path == overlay.crate_dir)
    })?;
    for overlay in overlays {
        let to = scratch.join(&overlay.crate_dir);
        copy_tree(&overlay.dir, &to, &|path| {
            NOT_OVERLAID.iter().any(|name| path == Path::new(name))
        })?;
        copy_tree(&root.join(&overlay.crate_dir), &to, &|path| {
            path == Path::new("target")
                || (path != Path::new("Cargo.toml") && overlay.dir.join(path).is_file())
        })?;
    }
    Ok(())
}

/// Copies `from` into `to` recursively, leaving out every path (relative to `from`) that `skip`
/// names, and writing a file only when its content differs.
fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) -> anyhow::Result<()> {
    copy_tree_under(from, to, Path::new(""), skip)
}

fn copy_tree_under(
    from: &Path,
    to: &Path,
    relative: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> anyhow::Result<()> {
    let (from_dir, to_dir) = (from.join(relative), to.join(relative));
    std::fs::create_dir_all(&to_dir).with_context(|| format!("creating {}", to_dir.display()))?;
    for entry in
        std::fs::read_dir(&from_dir).with_context(|| format!("reading {}", from_dir.display()))?
    {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if skip(&path) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree_under(from, to, &path, skip)?;
        } else if kind.is_file() {
            let (source, target) = (entry.path(), to.join(&path));
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
        copy_tree(&from, &to, &|path| path == Path::new("target")).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("src/lib.rs")).unwrap(),
            "//! x"
        );
        assert!(!to.join("target").exists());
        let before = std::fs::metadata(to.join("src/lib.rs"))
            .unwrap()
            .modified()
            .unwrap();
        copy_tree(&from, &to, &|path| path == Path::new("target")).unwrap();
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

    /// A lesson file like [`LESSON`] with its own id and crate, written under `root/course/w05/`.
    fn write_lesson(root: &Path, id: &str, order: u32, krate: &str) -> Lesson {
        let text = LESSON
            .replace("id: w05-l01", &format!("id: {id}"))
            .replace("order: 1", &format!("order: {order}"))
            .replace("crate: queue", &format!("crate: {krate}"));
        std::fs::write(root.join(format!("course/w05/0{order}.md")), text).unwrap();
        crate::lesson::find(root, id).unwrap()
    }

    #[test]
    fn a_later_lesson_is_graded_on_the_students_copies_of_the_crates_below_it() {
        let root = std::env::temp_dir().join(format!("xtask-compose-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(root.with_extension("scratch"));
        let queue_lesson = lesson_in(&root);
        // A second crate, `server`, on top of `queue`, with a lesson of its own.
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"3\"\nmembers = [\"queue\", \"server\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("server/src")).unwrap();
        std::fs::write(
            root.join("server/Cargo.toml"),
            "[package]\nname = \"server\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nqueue = { path = \"../queue\" }\n",
        )
        .unwrap();
        std::fs::write(
            root.join("server/src/lib.rs"),
            "//! A server.\n\n// starter: w05-l04 todo\n/// Serves.\npub fn serve() -> u32 {\n    queue::answer()\n}\n",
        )
        .unwrap();
        let server_lesson = write_lesson(&root, "w05-l04", 4, "server");
        start(&root, &queue_lesson).unwrap();
        start(&root, &server_lesson).unwrap();
        let marker = "// the student's own queue\n";
        std::fs::write(root.join("student/queue/src/lib.rs"), marker).unwrap();

        // Outside the root: the scratch copy of the root must not contain itself.
        let scratch = root.with_extension("scratch");
        let krates = |overlays: &[Overlay]| -> Vec<String> {
            overlays.iter().map(|o| o.krate.clone()).collect()
        };
        let overlays = overlays(&root, &server_lesson).unwrap();
        assert_eq!(krates(&overlays), ["server", "queue"]);
        prepare_scratch_in(&root, &scratch, &overlays).unwrap();
        let scratch_queue = || std::fs::read_to_string(scratch.join("queue/src/lib.rs")).unwrap();
        assert_eq!(scratch_queue(), marker);
        let server = std::fs::read_to_string(scratch.join("server/src/lib.rs")).unwrap();
        assert!(server.contains("todo!(\"W05 L04: serve\")"), "{server}");
        // The scratch workspace builds with the reference's manifests, never the student's.
        assert_eq!(
            std::fs::read(scratch.join("server/Cargo.toml")).unwrap(),
            std::fs::read(root.join("server/Cargo.toml")).unwrap()
        );

        // The crate below is not graded with the one above it.
        assert_eq!(krates(&overlays_of(&root, &queue_lesson)), ["queue"]);
        // A stopped lesson's copy is the reference's again.
        stop(&root, &queue_lesson).unwrap();
        let overlays = overlays_of(&root, &server_lesson);
        assert_eq!(krates(&overlays), ["server"]);
        prepare_scratch_in(&root, &scratch, &overlays).unwrap();
        assert!(scratch_queue().contains("    42\n"), "{}", scratch_queue());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    fn overlays_of(root: &Path, lesson: &Lesson) -> Vec<Overlay> {
        overlays(root, lesson).unwrap()
    }
}
