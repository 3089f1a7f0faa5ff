//! The book's link check: every relative link of every page must reach a page of the book (and,
//! with `#anchor`, a heading or step on it) or a file the book carries.
//!
//! The course's pages link to each other with relative paths (`../PROTOCOL.md`), which mdBook
//! turns into links between the rendered pages; the generated book keeps `course/`'s layout so
//! those links stay right. What mdBook does not do is fail on a link to nothing, so this module
//! does, before mdBook runs, naming the file, the line and the link.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// The markdown options every page is read with (the lesson parser's, plus what mdBook renders).
pub(crate) fn options() -> Options {
    Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
}

/// One link of a page: where it is and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// Its 1-based line in the page.
    pub(crate) line: usize,
    /// Its destination as written.
    pub(crate) dest: String,
}

/// Every link and image of `text`, in order.
pub(crate) fn links_in(text: &str) -> Vec<Link> {
    let line_of = line_index(text);
    link_spans(text)
        .into_iter()
        .map(|(span, dest)| Link {
            line: line_of(span.start),
            dest,
        })
        .collect()
}

/// Every link and image of `text`, in order: the bytes it spans (`[text](dest)` whole) and its
/// destination as parsed.
pub(crate) fn link_spans(text: &str) -> Vec<(Range<usize>, String)> {
    Parser::new_ext(text, options())
        .into_offset_iter()
        .filter_map(|(event, range)| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some((range, dest_url.to_string()))
            }
            _ => None,
        })
        .collect()
}

/// A function from a byte offset of `text` to its 1-based line.
pub(crate) fn line_index(text: &str) -> impl Fn(usize) -> usize {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(at, _)| at + 1))
        .collect();
    move |offset| starts.partition_point(|&start| start <= offset)
}

/// The anchors mdBook gives a page's headings: the heading's text lowercased, spaces as `-`,
/// other punctuation dropped, a repeated one numbered (`-1`, `-2`).
pub(crate) fn heading_anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(text, options()) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                if let Some(text) = heading.take() {
                    let base = anchor_of(&text);
                    let mut anchor = base.clone();
                    let mut n = 0;
                    while anchors.contains(&anchor) {
                        n += 1;
                        anchor = format!("{base}-{n}");
                    }
                    anchors.push(anchor);
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(heading) = heading.as_mut() {
                    heading.push_str(&t);
                }
            }
            _ => {}
        }
    }
    anchors
}

/// mdBook's id for a heading's text.
fn anchor_of(text: &str) -> String {
    text.trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// What a link may point at: the book's pages (by path under `course/`) with their anchors, and
/// the other files it carries.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    /// Each page and the anchors on it.
    pub(crate) pages: BTreeMap<PathBuf, Vec<String>>,
    /// Every file the book carries that is not a page.
    pub(crate) files: BTreeSet<PathBuf>,
}

/// Checks one link of the page `page` (a path under `course/`); `Err` says what is wrong.
/// External links (`https:`, `mailto:`) are not followed.
pub(crate) fn check(targets: &Targets, page: &Path, dest: &str) -> Result<(), String> {
    if dest.contains("://") || dest.starts_with("mailto:") {
        return Ok(());
    }
    let (path, anchor) = match dest.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (dest, None),
    };
    let target = if path.is_empty() {
        page.to_path_buf()
    } else {
        let joined = page.parent().unwrap_or(Path::new("")).join(path);
        normalize(&joined).ok_or_else(|| {
            "it leads out of course/, and the book holds only the course".to_owned()
        })?
    };
    if let Some(anchors) = targets.pages.get(&target) {
        return match anchor {
            Some(anchor) if !anchors.iter().any(|a| a == anchor) => Err(format!(
                "{} has no heading or step with the anchor `#{anchor}`",
                target.display()
            )),
            _ => Ok(()),
        };
    }
    if targets.files.contains(&target) {
        return Ok(());
    }
    Err(format!("course/{} does not exist", target.display()))
}

/// `a/./b/../c` as `a/c`; `None` when `..` climbs above the start.
pub(crate) fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        let mut targets = Targets::default();
        targets
            .pages
            .insert("PROTOCOL.md".into(), vec!["the-wire-contract".into()]);
        targets.pages.insert(
            "w05/04-io-cpu-handoff.md".into(),
            vec!["goal".into(), "step-ten-clients".into()],
        );
        targets.files.insert("grading/gitlab-ci.yml".into());
        targets
    }

    #[test]
    fn links_resolve_between_pages_files_and_anchors() {
        let page = Path::new("w05/04-io-cpu-handoff.md");
        let targets = targets();
        for good in [
            "../PROTOCOL.md",
            "../PROTOCOL.md#the-wire-contract",
            "#step-ten-clients",
            "./04-io-cpu-handoff.md#goal",
            "../grading/gitlab-ci.yml",
            "https://example.org/nowhere.md",
        ] {
            assert_eq!(check(&targets, page, good), Ok(()), "{good}");
        }
        let missing = check(&targets, page, "../PROTOCL.md").unwrap_err();
        assert!(
            missing.contains("course/PROTOCL.md does not exist"),
            "{missing}"
        );
        let anchor = check(&targets, page, "../PROTOCOL.md#nope").unwrap_err();
        assert!(anchor.contains("#nope"), "{anchor}");
        let outside = check(&targets, page, "../../crates/x.rs").unwrap_err();
        assert!(outside.contains("out of course/"), "{outside}");
    }

    #[test]
    fn links_are_found_with_their_lines_and_headings_get_mdbook_anchors() {
        let text = "# The wire contract\n\nSee [it](a.md) and\n![img](b.png).\n\n## Goal: it!\n## Goal: it!\n";
        assert_eq!(
            links_in(text),
            [
                Link {
                    line: 3,
                    dest: "a.md".into()
                },
                Link {
                    line: 4,
                    dest: "b.png".into()
                }
            ]
        );
        assert_eq!(
            heading_anchors(text),
            ["the-wire-contract", "goal-it", "goal-it-1"]
        );
    }
}
