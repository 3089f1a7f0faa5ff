//! Student mode: starters, the student's working copy, and the scratch workspace it is graded in.
//!
//! A lesson's starter is generated from the reference crate's markers (see `starters`), laid out
//! as the crate's own folder. A started lesson's working copy is `student/<starter>/` (gitignored). Grading copies the workspace
//! to `target/xtask/scratch/workspace/` and lays the student's files over the crate's folder
//! there, so the reference under `crates/` is never touched and every other crate builds against
//! the student's code.

use crate::lesson::Lesson;
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
    root.join("target/xtask/scratch/workspace")
}

/// The scratch workspace's cargo target folder (kept between runs so rebuilds are incremental).
pub(crate) fn scratch_target(root: &Path) -> PathBuf {
    root.join("target/xtask/scratch/target")
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

/// Every workspace package with its folder, relative to the workspace root.
pub(crate) fn workspace_packages(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let output =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(root)
            .output()
            .context("running cargo metadata")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut packages = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let (Some(name), Some(manifest)) =
            (package["name"].as_str(), package["manifest_path"].as_str())
        else {
            continue;
        };
        let dir = Path::new(manifest)
            .parent()
            .context("manifest without a folder")?;
        packages.push((
            name.to_owned(),
            dir.strip_prefix(root).unwrap_or(dir).to_path_buf(),
        ));
    }
    Ok(packages)
}

/// The folder of a workspace package, relative to the workspace root.
pub(crate) fn crate_dir(root: &Path, krate: &str) -> anyhow::Result<PathBuf> {
    workspace_packages(root)?
        .into_iter()
        .find(|(name, _)| name == krate)
        .map(|(_, dir)| dir)
        .with_context(|| format!("no workspace package is named `{krate}`"))
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
    let crate_dir = crate_dir(root, &lesson.front.krate)?;
    // The crate's folder is rebuilt from the overlay alone plus the reference files it lacks.
    copy_tree(
        root,
        &scratch,
        &["target", ".git", "student", ".course-progress"],
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
}
