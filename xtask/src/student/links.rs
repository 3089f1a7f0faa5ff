//! The Markdown files a student's copy takes from the reference crate, with their links mended.
//!
//! A reference crate sits three folders deep (`crates/w10/wal/`) and a copy two
//! (`student/wal/`), so a README link that leaves the crate, `../../../course/w10/`, would point
//! outside the workspace from the copy. Each such link is resolved where the reference file is
//! and written again from where the copy's file is: `../../course/w10/`. Links inside the crate
//! (`src/lib.rs`, `#a-heading`) stay as they are, since the copy has the crate's layout, and so do
//! absolute ones (`https://…`, `/…`). Links are found as the book's link check finds them.

use crate::book::links::{link_spans, normalize};
use anyhow::Context;
use std::path::Path;

/// Writes every Markdown file of the reference crate (`crate_dir`, relative to `root`) that the
/// copy (`copy_dir`, relative to `root`) does not have yet, with its links mended; a file the
/// copy has is the student's and is left alone.
pub(crate) fn copy_markdown(root: &Path, crate_dir: &Path, copy_dir: &Path) -> anyhow::Result<()> {
    copy_markdown_under(root, crate_dir, copy_dir, Path::new(""))
}

fn copy_markdown_under(
    root: &Path,
    crate_dir: &Path,
    copy_dir: &Path,
    relative: &Path,
) -> anyhow::Result<()> {
    let from = root.join(crate_dir).join(relative);
    for entry in std::fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() && path != Path::new("target") {
            copy_markdown_under(root, crate_dir, copy_dir, &path)?;
        } else if kind.is_file() && is_markdown(&path) {
            let target = root.join(copy_dir).join(&path);
            if target.exists() {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())
                .with_context(|| format!("reading {}", entry.path().display()))?;
            let folder = path.parent().unwrap_or(Path::new(""));
            let mended = relink(&text, crate_dir, &copy_dir.join(folder), folder);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&target, mended)
                .with_context(|| format!("writing {}", target.display()))?;
        }
    }
    Ok(())
}

/// Whether a file of a crate is Markdown, which [`copy_markdown`] writes instead of a plain copy.
pub(crate) fn is_markdown(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "md")
}

/// `text`, a Markdown file in folder `folder` of the crate at `crate_dir`, with every link that
/// leaves the crate rewritten to reach the same file from `copy_folder`, the folder the copy's
/// file is in (both folders relative to the workspace root). Only real links are touched: a
/// `](` in code is text.
pub(crate) fn relink(text: &str, crate_dir: &Path, copy_folder: &Path, folder: &Path) -> String {
    // The destination follows the span's last `](` (`[text](dest)`, or `(dest "title")`, whose
    // title may repeat it); spans nest (an image inside a link), so the edits are put in text
    // order before they are made.
    let mut edits: Vec<(usize, usize, String)> = link_spans(text)
        .into_iter()
        .filter_map(|(span, dest)| {
            let mended = mended_target(&dest, crate_dir, copy_folder, folder)?;
            let opening = span.start + text[span.clone()].rfind("](")? + 2;
            let at = opening + text[opening..span.end].find(dest.as_str())?;
            Some((at, at + dest.len(), mended))
        })
        .collect();
    edits.sort_by_key(|(at, _, _)| *at);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, end, mended) in edits {
        out.push_str(&text[copied..at]);
        out.push_str(&mended);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether a link target is a path relative to its file (not an anchor, an absolute path or a
/// URL).
fn is_relative(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.starts_with('/')
        || target.contains(':'))
}

/// The link target as seen from the copy, or `None` when it stays as it is (not relative, or
/// inside the crate).
fn mended_target(
    target: &str,
    crate_dir: &Path,
    copy_folder: &Path,
    folder: &Path,
) -> Option<String> {
    if !is_relative(target) {
        return None;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    let resolved = normalize(&crate_dir.join(folder).join(path))?;
    if resolved.starts_with(crate_dir) {
        return None;
    }
    let mut mended = "../".repeat(copy_folder.components().count());
    mended.push_str(&resolved.to_string_lossy());
    if path.ends_with('/') && !mended.ends_with('/') {
        mended.push('/');
    }
    if let Some(fragment) = fragment {
        mended.push('#');
        mended.push_str(fragment);
    }
    Some(mended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mend(text: &str, crate_dir: &str, copy_dir: &str) -> String {
        relink(
            text,
            Path::new(crate_dir),
            Path::new(copy_dir),
            Path::new(""),
        )
    }

    #[test]
    fn a_link_out_of_the_crate_reaches_the_same_file_from_the_copy() {
        assert_eq!(
            mend(
                "the [lessons](../../../course/w10/) and [the figures](../../../BENCHMARKS.md#several-loops)",
                "crates/w10/wal",
                "student/wal"
            ),
            "the [lessons](../../course/w10/) and [the figures](../../BENCHMARKS.md#several-loops)"
        );
        // A sibling crate is reached through `crates/`.
        assert_eq!(
            mend(
                "[`epoll_server`](../epoll_server)",
                "crates/w04/eventloop",
                "student/eventloop"
            ),
            "[`epoll_server`](../../crates/w04/epoll_server)"
        );
    }

    #[test]
    fn links_inside_the_crate_anchors_urls_and_code_stay() {
        let text = "[docs](src/lib.rs) [up](#goal) [web](https://example.com/a) [abs](/etc) \
                    [mail](mailto:a@b) `[code](../../../x.md)`\n\n\
                    ```text\n[block](../../../x.md)\n```\n";
        assert_eq!(mend(text, "crates/w10/wal", "student/wal"), text);
    }

    #[test]
    fn a_titled_link_and_an_image_inside_a_link_are_mended() {
        assert_eq!(
            mend(
                "[t](../../../x.md \"a title\") [![alt](../../../logo.svg)](../../../course/) \
                 [same](../../../y.md \"../../../y.md\")",
                "crates/w10/wal",
                "student/wal"
            ),
            "[t](../../x.md \"a title\") [![alt](../../logo.svg)](../../course/) \
             [same](../../y.md \"../../../y.md\")"
        );
    }

    #[test]
    fn a_file_in_a_subfolder_is_mended_from_its_own_folder() {
        let folder = Path::new("src/sleep");
        let text = "[the crate](../../README.md) [the course](../../../../../course/README.md)";
        assert_eq!(
            relink(
                text,
                Path::new("crates/w05/thread_pool"),
                &Path::new("student/thread_pool").join(folder),
                folder
            ),
            "[the crate](../../README.md) [the course](../../../../course/README.md)"
        );
    }

    /// Every relative link of every crate's Markdown, mended for a copy at `student/<crate>/`,
    /// reaches a file or folder of the workspace from the copy's place.
    #[test]
    fn every_crate_markdown_link_resolves_from_a_copy() {
        let root = crate::workspace::workspace_root();
        let mut checked = 0;
        for (name, crate_dir) in crate::workspace::workspace_packages(&root).unwrap() {
            let copy_dir = Path::new("student").join(&name);
            let mut files = Vec::new();
            markdown_files(&root.join(&crate_dir), Path::new(""), &mut files);
            for file in files {
                let folder = file.parent().unwrap_or(Path::new("")).to_path_buf();
                let text = std::fs::read_to_string(root.join(&crate_dir).join(&file)).unwrap();
                let mended = relink(&text, &crate_dir, &copy_dir.join(&folder), &folder);
                for (_, target) in link_spans(&mended) {
                    if !is_relative(&target) {
                        continue;
                    }
                    let path = target.split('#').next().unwrap_or_default();
                    let Some(in_copy) = normalize(&copy_dir.join(&folder).join(path)) else {
                        panic!("{}: `{target}` climbs out of the workspace", file.display());
                    };
                    // Inside the copy, a path is the crate's own; outside, the workspace's.
                    let on_disk = match in_copy.strip_prefix(&copy_dir) {
                        Ok(inside) => root.join(&crate_dir).join(inside),
                        Err(_) => root.join(&in_copy),
                    };
                    assert!(
                        on_disk.exists(),
                        "{}/{}: `{target}` from {} is {}, which does not exist",
                        crate_dir.display(),
                        file.display(),
                        copy_dir.join(&folder).display(),
                        on_disk.display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "only {checked} links checked");
    }

    fn markdown_files(dir: &Path, relative: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir.join(relative)).unwrap() {
            let entry = entry.unwrap();
            let path = relative.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() && path != Path::new("target") {
                markdown_files(dir, &path, out);
            } else if is_markdown(&path) {
                out.push(path);
            }
        }
    }
}
