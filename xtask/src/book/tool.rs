//! mdBook as an installed tool: found on `PATH` or in cargo's `bin` folder, installed with
//! `cargo install` when missing (with cargo's progress on the terminal), and run as a child
//! process in a group of its own, so Ctrl-C stops it with the runner.
//!
//! The install asks for mdBook 0.5 with only its `search` feature: the book needs the renderer
//! and its search box, and leaving out the `serve` and `watch` features (an HTTP stack and a file
//! watcher) leaves 130 crates to build instead of 191 (`cargo tree` of mdBook 0.5.4); the build
//! took 7 min 54 s on a shared 2-core machine. Without `serve`, `cargo xtask book --serve` uses
//! the runner's own static server.

use super::BookDirs;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `cargo install` arguments that install the mdBook the book is made for.
pub(crate) const INSTALL_ARGS: [&str; 8] = [
    "install",
    "mdbook",
    "--version",
    "^0.5",
    "--locked",
    "--no-default-features",
    "--features",
    "search",
];

/// The installed `mdbook`, or the one just installed; with `install` false, an error saying how
/// to install it.
pub(crate) fn find_or_install(install: bool) -> anyhow::Result<PathBuf> {
    if let Some(found) = find() {
        return Ok(found);
    }
    let command = format!("cargo {}", INSTALL_ARGS.join(" "));
    anyhow::ensure!(
        install,
        "mdbook is not installed: install it with `{command}` (a few minutes' build), or let \
         `cargo xtask book` do it (without --no-install)"
    );
    eprintln!("book: mdbook is not installed; installing it: {command}");
    let started = std::time::Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build_dir = crate::target_dir(&crate::workspace_root()).join("xtask/mdbook-install");
    let status = crate::process::output(
        Command::new(cargo)
            .args(INSTALL_ARGS)
            .arg("--target-dir")
            .arg(&build_dir),
    )
    .context("running cargo install")?
    .status;
    anyhow::ensure!(
        status.success(),
        "`{command}` failed ({status}); install mdBook by hand and run `cargo xtask book` again"
    );
    eprintln!(
        "book: mdbook installed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    find().context("mdbook was installed but is not on PATH nor in cargo's bin folder")
}

/// `mdbook` on `PATH`, else in cargo's `bin` folder (`$CARGO_HOME/bin`, `~/.cargo/bin`), where
/// `cargo install` puts it even when that folder is not on `PATH`.
pub(crate) fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("mdbook"))
        .find(|candidate| candidate.is_file())
}

/// `mdbook build` of the generated book; its own output shows.
pub(crate) fn build(mdbook: &Path, dirs: &BookDirs) -> anyhow::Result<()> {
    let status = crate::process::output(Command::new(mdbook).arg("build").arg(&dirs.root))
        .with_context(|| format!("running {}", mdbook.display()))?
        .status;
    anyhow::ensure!(status.success(), "mdbook build failed ({status})");
    Ok(())
}

/// Whether the installed mdBook was built with its `serve` command.
pub(crate) fn has_serve(mdbook: &Path) -> bool {
    Command::new(mdbook)
        .args(["serve", "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `mdbook serve` on 127.0.0.1, until it ends or Ctrl-C stops it.
pub(crate) fn serve(mdbook: &Path, dirs: &BookDirs, port: u16) -> anyhow::Result<()> {
    eprintln!("book: serving with mdbook serve on http://127.0.0.1:{port}/ (Ctrl-C stops)");
    let status = crate::process::output(Command::new(mdbook).arg("serve").arg(&dirs.root).args([
        "--hostname",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]))?
    .status;
    anyhow::ensure!(status.success(), "mdbook serve failed ({status})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI installs mdBook in the background before the book step, with these same arguments:
    /// a change here must reach `.ci/run`, or CI would install another version than the book's.
    #[test]
    fn ci_installs_the_mdbook_the_book_is_made_for() {
        let ci = std::fs::read_to_string(crate::workspace_root().join(".ci/run")).unwrap();
        let joined: String = ci
            .replace("\\\n", " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let expected = format!("cargo {}", INSTALL_ARGS.join(" "));
        assert!(joined.contains(&expected), "`{expected}` is not in .ci/run");
    }
}
