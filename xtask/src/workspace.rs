//! Where the workspace is: its root folder, its cargo target folder, and what `cargo metadata`
//! says about it.
//!
//! Every command and module asks here, so none of them reaches up into the binary for these
//! facts, and a test that runs the library sees the same folders as `cargo xtask` does.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The workspace root (the folder above `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target folder, where builds, logs, the scratch workspace and results go: the
/// workspace's `target_directory` as `cargo metadata` reports it (so `CARGO_TARGET_DIR` and
/// `build.target-dir` in a cargo config are honoured), asked once per run.
pub fn target_dir(root: &Path) -> PathBuf {
    static WORKSPACE_TARGET: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if root != workspace_root() {
        return target_dir_from_env(root);
    }
    WORKSPACE_TARGET
        .get_or_init(|| cargo_target_directory(root).unwrap_or_else(|| target_dir_from_env(root)))
        .clone()
}

/// `target_directory` from `cargo metadata`, if cargo can say.
fn cargo_target_directory(root: &Path) -> Option<PathBuf> {
    let metadata = cargo_metadata(root).ok()?;
    metadata["target_directory"].as_str().map(PathBuf::from)
}

/// The workspace's `cargo metadata` (its own packages, no dependencies), as JSON.
pub fn cargo_metadata(root: &Path) -> anyhow::Result<serde_json::Value> {
    let output = std::process::Command::new(cargo())
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
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The cargo that runs this command (`CARGO`, as cargo sets it for `cargo xtask`), else the one
/// on the `PATH`.
pub fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `CARGO_TARGET_DIR` when set (relative to the current folder, as cargo reads it), else
/// `target/` in `root`.
fn target_dir_from_env(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir().unwrap_or_default().join(dir)
            }
        }
        None => root.join("target"),
    }
}

/// Every workspace package with its folder, relative to the workspace root.
pub fn workspace_packages(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let metadata = cargo_metadata(root)?;
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
pub fn crate_dir(root: &Path, krate: &str) -> anyhow::Result<PathBuf> {
    workspace_packages(root)?
        .into_iter()
        .find(|(name, _)| name == krate)
        .map(|(_, dir)| dir)
        .with_context(|| format!("no workspace package is named `{krate}`"))
}

/// The workspace packages `krate` builds on, directly or through others (normal, build and
/// dev-dependencies alike), by name; `krate` itself is not among them.
pub fn path_dependencies(root: &Path, krate: &str) -> anyhow::Result<Vec<String>> {
    let metadata = cargo_metadata(root)?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let direct = |name: &str| -> Vec<String> {
        packages
            .iter()
            .filter(|package| package["name"].as_str() == Some(name))
            .flat_map(|package| {
                package["dependencies"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|dependency| dependency["path"].is_string())
            .filter_map(|dependency| dependency["name"].as_str().map(str::to_owned))
            .collect()
    };
    let mut found: Vec<String> = Vec::new();
    let mut to_visit = direct(krate);
    // Bounded by the number of packages: each is visited once.
    while let Some(name) = to_visit.pop() {
        if name == krate || found.contains(&name) {
            continue;
        }
        to_visit.extend(direct(&name));
        found.push(name);
    }
    Ok(found)
}
