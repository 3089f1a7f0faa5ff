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

mod links;
mod package;

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
/// student's files (otherwise a folder already there is kept as it is). Either way the copy is
/// then made a whole crate: every file of the reference crate the copy lacks is added, as given
/// code (a starter holds only the files with something to write, and a package needs them all).
pub(crate) fn install_starter(
    root: &Path,
    lesson: &Lesson,
    overwrite: bool,
) -> anyhow::Result<PathBuf> {
    let student = student_dir(root, lesson);
    if overwrite || !student.exists() {
        crate::starters::for_lesson(root, lesson)?.write_to(&student)?;
    }
    let crate_dir = crate::workspace::crate_dir(root, &lesson.front.krate)?;
    let reference = root.join(&crate_dir);
    copy_tree(&reference, &student, &|path| {
        path == Path::new("target") || links::is_markdown(path) || student.join(path).is_file()
    })?;
    // The READMEs sit one folder higher in the copy: their links out of the crate are mended.
    let copy_dir = student.strip_prefix(root).unwrap_or(&student);
    links::copy_markdown(root, &crate_dir, copy_dir)?;
    Ok(student)
}

/// Whether grading takes a file of a student's copy (`relative` to the copy's folder) from the
/// copy: its sources, yes; its tests (`tests/`, a `tests.rs` module), benchmarks, build output
/// and generated manifest come from the reference, so a lesson's checks are the course's own.
pub(crate) fn graded_from_copy(relative: &Path) -> bool {
    let reference_only = relative
        .iter()
        .any(|part| part == "tests" || part == "benches" || part == "target" || part == "tests.rs");
    !reference_only && relative != Path::new("Cargo.toml") && relative != Path::new("Cargo.lock")
}

/// The student's copy of `krate` that grading and the student's workspace build on: the copy of
/// the last lesson on `krate`, in course order, whose copy is there (two starters of one crate,
/// W05's and W06's, have two copies; the later one holds the later work).
pub(crate) fn copy_of(root: &Path, lessons: &[Lesson], krate: &str) -> Option<PathBuf> {
    lessons
        .iter()
        .filter(|lesson| lesson.front.krate == krate)
        .map(|lesson| student_dir(root, lesson))
        .rfind(|dir| dir.is_dir())
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
/// then, for every crate the lesson's crate builds on, the student's copy of it where there is
/// one ([`copy_of`]), so a later lesson runs on the crates the student wrote earlier, as the
/// student's own workspace builds them.
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
    let lessons = crate::lesson::discover(root)?;
    for krate in crate::workspace::path_dependencies(root, &lesson.front.krate)? {
        if let Some(dir) = copy_of(root, &lessons, &krate) {
            overlays.push(Overlay {
                crate_dir: dir_of(&krate)?,
                krate,
                dir,
            });
        }
    }
    Ok(overlays)
}

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
        copy_tree(&overlay.dir, &to, &|path| !graded_from_copy(path))?;
        copy_tree(&root.join(&overlay.crate_dir), &to, &|path| {
            path == Path::new("target")
                || (graded_from_copy(path) && overlay.dir.join(path).is_file())
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
    package::write_workspace(root, &crate::lesson::discover(root)?)?;
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
    let dir = install_starter(root, lesson, false)?;
    package::write_workspace(root, &crate::lesson::discover(root)?)?;
    Ok((dir, backup))
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
        // Without the student's copy of the queue, the scratch queue is the reference's again.
        std::fs::remove_dir_all(root.join("student/queue")).unwrap();
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

    /// `cargo ARGS` in `dir`, building into `target` (never the workspace's own target folder).
    fn cargo_in(dir: &Path, target: &Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new(crate::workspace::cargo())
            .args(args)
            .arg("--offline")
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", target)
            .output()
            .unwrap()
    }

    /// Each package `cargo metadata` finds in `dir`, with its manifest, relative to `root`.
    fn packages_in(root: &Path, dir: &Path) -> Vec<(String, PathBuf)> {
        let output = cargo_in(
            dir,
            &root.join("student/target"),
            &["metadata", "--format-version", "1"],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let mut packages: Vec<(String, PathBuf)> = metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|package| {
                let manifest = Path::new(package["manifest_path"].as_str().unwrap());
                let name = package["name"].as_str().unwrap().to_owned();
                (name, manifest.strip_prefix(root).unwrap().to_path_buf())
            })
            .collect();
        packages.sort();
        packages
    }

    #[test]
    fn a_reference_crate_built_on_a_copied_crate_is_built_on_the_copy() {
        let root = std::env::temp_dir().join(format!("xtask-stand-in-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let queue_lesson = lesson_in(&root);
        // `support` is built on `queue`, and `queue`'s tests use `support`: with a copy of
        // `queue`, the reference `support` would bring the reference `queue` in beside it.
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"3\"\nmembers = [\"queue\", \"support\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("support/src")).unwrap();
        std::fs::write(
            root.join("support/Cargo.toml"),
            "[package]\nname = \"support\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nqueue = { path = \"../queue\" }\n",
        )
        .unwrap();
        std::fs::write(
            root.join("support/src/lib.rs"),
            "//! Test helpers.\n\n/// The queue's answer, doubled.\npub fn twice() -> u32 {\n    2 * queue::answer()\n}\n",
        )
        .unwrap();
        let manifest = std::fs::read_to_string(root.join("queue/Cargo.toml")).unwrap();
        std::fs::write(
            root.join("queue/Cargo.toml"),
            format!("{manifest}\n[dev-dependencies]\nsupport = {{ path = \"../support\" }}\n"),
        )
        .unwrap();
        let student = root.join("student");
        start(&root, &queue_lesson).unwrap();
        assert_eq!(
            packages_in(&root, &student),
            [
                (
                    "queue".to_owned(),
                    PathBuf::from("student/queue/Cargo.toml")
                ),
                (
                    "support".to_owned(),
                    PathBuf::from("student/.given/support/Cargo.toml")
                ),
            ]
        );
        let stand_in = std::fs::read_to_string(student.join(".given/support/Cargo.toml")).unwrap();
        assert!(
            stand_in.contains("path = \"../../../support/src/lib.rs\""),
            "{stand_in}"
        );
        assert!(
            stand_in.contains("queue = { path = \"../../queue\" }"),
            "{stand_in}"
        );
        let check = cargo_in(
            &student,
            &root.join("student/target"),
            &["check", "--workspace", "--all-targets"],
        );
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_students_copies_are_a_cargo_workspace_that_builds_on_their_own_crates() {
        let root = std::env::temp_dir().join(format!("xtask-package-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let queue_lesson = lesson_in(&root);
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"3\"\nmembers = [\"queue\", \"server\"]\n\n\
             [workspace.package]\nedition = \"2024\"\n\n\
             [workspace.lints.rust]\nmissing_docs = \"warn\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("server/src")).unwrap();
        std::fs::write(
            root.join("server/Cargo.toml"),
            "[package]\nname = \"server\"\nversion = \"0.1.0\"\nedition.workspace = true\n\n\
             [lints]\nworkspace = true\n\n[dependencies]\nqueue = { path = \"../queue\" }\n",
        )
        .unwrap();
        std::fs::write(
            root.join("server/src/lib.rs"),
            "//! A server.\n\n// starter: w05-l04 todo\n/// Serves.\npub fn serve() -> u32 {\n    queue::answer()\n}\n",
        )
        .unwrap();
        // A file with nothing to write is given with the copy, so the crate is whole.
        std::fs::write(root.join("server/src/given.rs"), "//! Given.\n").unwrap();
        let server_lesson = write_lesson(&root, "w05-l04", 4, "server");
        let student = root.join("student");

        // Started alone, the server's copy builds on the reference queue.
        start(&root, &server_lesson).unwrap();
        assert!(student.join("server/src/given.rs").is_file());
        let manifest = std::fs::read_to_string(student.join("server/Cargo.toml")).unwrap();
        assert!(
            manifest.contains("queue = { path = \"../../queue\" }"),
            "{manifest}"
        );
        assert!(manifest.contains("edition = \"2024\""), "{manifest}");
        assert!(
            manifest.contains("[lints.rust]\nmissing_docs = \"warn\""),
            "{manifest}"
        );
        assert_eq!(
            packages_in(&root, &student),
            [
                ("queue".to_owned(), PathBuf::from("queue/Cargo.toml")),
                (
                    "server".to_owned(),
                    PathBuf::from("student/server/Cargo.toml")
                ),
            ]
        );

        // Once the queue's lesson is started, the server's copy builds on the student's queue,
        // from the student's folder and from the crate's alike.
        start(&root, &queue_lesson).unwrap();
        let expected = [
            (
                "queue".to_owned(),
                PathBuf::from("student/queue/Cargo.toml"),
            ),
            (
                "server".to_owned(),
                PathBuf::from("student/server/Cargo.toml"),
            ),
        ];
        assert_eq!(packages_in(&root, &student), expected);
        assert_eq!(packages_in(&root, &student.join("server")), expected);
        let target = root.join("student/target");
        let check = cargo_in(&student, &target, &["check", "--workspace"]);
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );

        // A type error in the student's queue fails `cargo check` there.
        let lib = student.join("queue/src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        std::fs::write(
            &lib,
            format!("{text}\n/// Wrong.\npub fn wrong() -> u32 {{ \"no\" }}\n"),
        )
        .unwrap();
        let check = cargo_in(&student.join("queue"), &target, &["check"]);
        assert!(!check.status.success());
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert!(
            stderr.contains("mismatched types") && stderr.contains("src/lib.rs"),
            "{stderr}"
        );

        std::fs::remove_dir_all(&root).unwrap();
    }
}
