//! The book's source, generated from `course/`: every markdown file of the course as a page at
//! the same path (so the course's relative links stay right), the lesson pages rewritten by
//! [`super::page`], the course's other files copied, a `SUMMARY.md` in course order, the
//! `book.toml` and the book's stylesheet.
//!
//! The lessons are read with the runner's own parser ([`crate::lesson::discover_all`]): a lesson
//! that breaks the format fails the book, as it fails `grade`, and the order of the summary is
//! the order `cargo xtask list` shows.

use super::BookDirs;
use super::links::{Targets, check, heading_anchors, links_in};
use super::page::lesson_page;
use super::quiz_page::quiz_page;
use crate::lesson::{self, Lesson};
use crate::quiz;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// What was generated, for the command's report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Generated {
    /// Pages in the book.
    pub(crate) pages: usize,
    /// Of which lessons.
    pub(crate) lessons: usize,
    /// Relative links between the course's pages and files, all checked.
    pub(crate) links: usize,
}

/// The book's stylesheet: the lesson box, the step labels and the Done-when marks.
const STYLESHEET: &str = "\
.xtask-lesson { border: 1px solid var(--quote-border); border-left: 4px solid #2b79a2; \
background: var(--quote-bg); padding: 0.2em 1em; margin: 1em 0; }
.xtask-lesson pre { margin: 0.5em 0; }
.xtask-step { border-left: 4px solid #6a9f3a; background: var(--quote-bg); padding: 0.1em 0.8em; \
margin: 1.2em 0 0.3em 0; font-size: 0.9em; }
.xtask-step ul { margin: 0.2em 0; }
.xtask-step-title { margin: 0.3em 0; font-weight: bold; }
.xtask-section { text-transform: uppercase; letter-spacing: 0.05em; }
.xtask-checked, .xtask-unchecked { font-size: 0.85em; padding: 0 0.4em; border-radius: 3px; \
background: var(--quote-bg); }
.xtask-unchecked { font-style: italic; }
.xtask-key { margin: 0.5em 0 1em 0; }
.xtask-key summary { cursor: pointer; font-size: 0.9em; }
";

/// One page of the book: its path under `course/` and the markdown mdBook gets.
struct Page {
    path: PathBuf,
    original: String,
    markdown: String,
    lesson: Option<Lesson>,
}

/// Generates the book's source in `dirs` from `workspace`'s `course/`.
pub(crate) fn generate(workspace: &Path, dirs: &BookDirs) -> anyhow::Result<Generated> {
    let course = workspace.join("course");
    let (lessons, broken) = lesson::discover_all(workspace)?;
    if let Some(file) = broken.first() {
        anyhow::bail!(
            "{} does not follow course/FORMAT.md: {}",
            file.path.display(),
            file.error
        );
    }
    let mut files = Vec::new();
    walk(&course, &course, &mut files)?;
    files.sort();

    let mut pages = Vec::new();
    let mut targets = Targets::default();
    let mut others = Vec::new();
    for file in files {
        if file.extension().is_some_and(|ext| ext == "md") {
            let original = std::fs::read_to_string(course.join(&file))
                .with_context(|| format!("reading course/{}", file.display()))?;
            let lesson = lessons
                .iter()
                .find(|l| l.path == Path::new("course").join(&file))
                .cloned();
            let mut anchors = heading_anchors(&original);
            let markdown = match (&lesson, quiz_week(&file)) {
                (Some(lesson), _) => {
                    anchors.extend(lesson.steps.iter().map(|s| format!("step-{}", s.name)));
                    lesson_page(&original, lesson)
                }
                // A week's quiz is read with the runner's parser: a broken one fails the book,
                // as it fails `grade`.
                (None, Some(week)) => {
                    let parsed = quiz::parse_quiz(&original)
                        .map_err(|error| anyhow::anyhow!("course/{}: {error}", file.display()))?;
                    quiz_page(&week, &parsed)
                }
                (None, None) => original.clone(),
            };
            targets.pages.insert(file.clone(), anchors);
            pages.push(Page {
                path: file,
                original,
                markdown,
                lesson,
            });
        } else {
            targets.files.insert(file.clone());
            others.push(file);
        }
    }

    let mut broken_links = Vec::new();
    let mut checked = 0;
    for page in &pages {
        for link in links_in(&page.original) {
            if link.dest.contains("://") || link.dest.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            if let Err(why) = check(&targets, &page.path, &link.dest) {
                broken_links.push(format!(
                    "course/{}:{}: broken link `{}`: {why}",
                    page.path.display(),
                    link.line,
                    link.dest
                ));
            }
        }
    }
    if !broken_links.is_empty() {
        anyhow::bail!(
            "{} broken link(s) in the course:\n  {}",
            broken_links.len(),
            broken_links.join("\n  ")
        );
    }

    if dirs.src.exists() {
        std::fs::remove_dir_all(&dirs.src)
            .with_context(|| format!("clearing {}", dirs.src.display()))?;
    }
    for page in &pages {
        write(&dirs.src.join(&page.path), &page.markdown)?;
    }
    for file in &others {
        let to = dirs.src.join(file);
        std::fs::create_dir_all(to.parent().context("a file's folder")?)?;
        std::fs::copy(course.join(file), &to)
            .with_context(|| format!("copying course/{}", file.display()))?;
    }
    write(&dirs.src.join("SUMMARY.md"), &summary(&pages, &lessons))?;
    let title = pages
        .iter()
        .find(|p| p.path == Path::new("README.md"))
        .and_then(|p| first_heading(&p.original))
        .unwrap_or_else(|| "The course".to_owned());
    write(&dirs.root.join("book.toml"), &book_toml(&title))?;
    write(&dirs.root.join("xtask.css"), STYLESHEET)?;
    Ok(Generated {
        pages: pages.len(),
        lessons: pages.iter().filter(|p| p.lesson.is_some()).count(),
        links: checked,
    })
}

/// The week of a quiz page (`w05/quiz.md` is `w05`'s), or `None` for any other page.
fn quiz_week(file: &Path) -> Option<String> {
    let week = file.parent()?.to_str()?;
    (file.file_name()? == "quiz.md" && file.components().count() == 2).then(|| week.to_owned())
}

/// The summary line of `week`'s quiz page, if the week has one.
fn quiz_entry(pages: &[Page], week: &str) -> String {
    pages
        .iter()
        .find(|page| quiz_week(&page.path).as_deref() == Some(week))
        .map_or_else(String::new, |page| {
            format!("- [Self-check]({})\n", page.path.display())
        })
}

/// `SUMMARY.md`: the course's README first, then each week's lessons in course order, each week
/// ending with its self-check, then the other pages (the wire contract, the lesson format, ...)
/// as a reference part.
fn summary(pages: &[Page], lessons: &[Lesson]) -> String {
    let mut out = String::from("# Summary\n\n[The course](README.md)\n");
    let mut week = String::new();
    for lesson in lessons {
        let front = &lesson.front;
        if front.week() != week {
            if !week.is_empty() {
                out.push_str(&quiz_entry(pages, &week));
            }
            week = front.week().to_owned();
            let number = week.trim_start_matches('w').trim_start_matches('0');
            out.push_str(&format!("\n# Week {number}\n\n"));
        }
        let path = lesson.path.strip_prefix("course").unwrap_or(&lesson.path);
        out.push_str(&format!(
            "- [{}]({})\n",
            link_text(&lesson_title(lesson)),
            path.display()
        ));
    }
    if !week.is_empty() {
        out.push_str(&quiz_entry(pages, &week));
    }
    out.push_str("\n# Reference\n\n");
    let mut reference: Vec<&Page> = pages
        .iter()
        .filter(|p| {
            p.lesson.is_none() && p.path != Path::new("README.md") && quiz_week(&p.path).is_none()
        })
        .collect();
    // The two pages every lesson leans on come first.
    reference.sort_by_key(|p| {
        let rank = ["PROTOCOL.md", "FORMAT.md"]
            .iter()
            .position(|first| p.path == Path::new(first))
            .unwrap_or(2);
        (rank, p.path.clone())
    });
    for page in reference {
        let title =
            first_heading(&page.original).unwrap_or_else(|| page.path.display().to_string());
        out.push_str(&format!(
            "- [{}]({})\n",
            link_text(&title),
            page.path.display()
        ));
    }
    out
}

/// A lesson's entry in the summary: `L04 The IO-to-CPU handoff`, or the quest's own title.
fn lesson_title(lesson: &Lesson) -> String {
    let front = &lesson.front;
    let label = format!("L{:02}", front.order);
    // A title that names its own place (`L07 (beyond the quest): ...`) keeps it.
    let numbered =
        front.title.starts_with('L') && front.title[1..].starts_with(|c: char| c.is_ascii_digit());
    if front.id.ends_with("-quest") || numbered {
        front.title.clone()
    } else {
        format!("{label} {}", front.title)
    }
}

/// Text safe inside a summary link's brackets.
fn link_text(text: &str) -> String {
    text.replace('[', "\\[").replace(']', "\\]")
}

/// The text of the first level-1 heading.
fn first_heading(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("# "))
        .map(|title| title.trim().to_owned())
}

/// The book's configuration. mdBook's default preprocessors are off: `index` would rename each
/// `README.md` to `index.md` and break the course's links to them, and the course uses no
/// `{{#include}}`.
fn book_toml(title: &str) -> String {
    let title = title.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "# Generated by `cargo xtask book` from course/; edits here are overwritten.\n\
[book]\ntitle = \"{title}\"\nlanguage = \"en\"\nsrc = \"src\"\n\n\
[build]\nbuild-dir = \"html\"\ncreate-missing = false\nuse-default-preprocessors = false\n\n\
[output.html]\nadditional-css = [\"xtask.css\"]\nno-section-label = true\n"
    )
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().context("a file's folder")?)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Every file under `dir`, as paths relative to `base`.
fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(base, &path, out)?;
        } else {
            out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder for one test's book.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-book-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn dirs(at: &Path) -> BookDirs {
        BookDirs::new(at)
    }

    #[test]
    fn the_course_becomes_a_book_in_course_order_with_no_broken_link() {
        let root = crate::workspace_root();
        let out = scratch("course");
        let generated = generate(&root, &dirs(&out)).unwrap();
        let (lessons, _) = lesson::discover_all(&root).unwrap();
        assert_eq!(generated.lessons, lessons.len());
        assert!(generated.links > 20, "{generated:?}");
        let summary = std::fs::read_to_string(out.join("xtask/book/src/SUMMARY.md")).unwrap();
        // Every lesson is in the summary, in the order `cargo xtask list` shows.
        let mut at = 0;
        for lesson in &lessons {
            let path = lesson
                .path
                .strip_prefix("course")
                .unwrap()
                .display()
                .to_string();
            let found = summary[at..]
                .find(&format!("]({path})"))
                .unwrap_or_else(|| panic!("{path} missing or out of order in\n{summary}"));
            at += found;
        }
        assert!(summary.contains("- [L04 The IO-to-CPU handoff](w05/04-io-cpu-handoff.md)"));
        assert!(summary.contains("(w05/07-beyond-several-loops.md)"));
        assert!(!summary.contains("L08 L07"), "{summary}");
        // Every page is reachable: each markdown file of the book is in the summary.
        for page in std::fs::read_dir(out.join("xtask/book/src/w05")).unwrap() {
            let name = page.unwrap().file_name().into_string().unwrap();
            assert!(summary.contains(&format!("(w05/{name})")), "{name}");
        }
        assert!(
            out.join("xtask/book/src/grading/github-classroom.yml")
                .is_file()
        );
        // Each week ends with its self-check, the keys folded away on its page.
        assert!(
            summary.contains("(w05/07-beyond-several-loops.md)\n- [Self-check](w05/quiz.md)\n"),
            "{summary}"
        );
        let quiz = std::fs::read_to_string(out.join("xtask/book/src/w05/quiz.md")).unwrap();
        assert!(quiz.contains("<code>cargo xtask quiz w05</code>"), "{quiz}");
        assert!(!quiz.contains("\nAnswer: "), "{quiz}");
        assert_eq!(quiz.matches("<details").count(), 12, "{quiz}");
        let toml = std::fs::read_to_string(out.join("xtask/book/book.toml")).unwrap();
        assert!(toml.contains("use-default-preprocessors = false"), "{toml}");
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_broken_link_fails_the_book_naming_its_file_line_and_target() {
        let workspace = scratch("broken");
        std::fs::create_dir_all(workspace.join("course/w05")).unwrap();
        std::fs::write(
            workspace.join("course/README.md"),
            "# A course\n\nRead [the contract](PROTOCOL.md).\n",
        )
        .unwrap();
        std::fs::write(
            workspace.join("course/PROTOCOL.md"),
            "# Contract\n\nBack to [the start](README.md), then\n[nowhere](w05/missing.md).\n",
        )
        .unwrap();
        let error = generate(&workspace, &dirs(&workspace.join("target")))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "course/PROTOCOL.md:4: broken link `w05/missing.md`: course/w05/missing.md does not exist"
            ),
            "{error}"
        );
        assert!(error.starts_with("1 broken link(s)"), "{error}");
        // Nothing half-written is left for mdBook.
        assert!(!workspace.join("target/xtask/book/src").exists());
        std::fs::remove_dir_all(&workspace).unwrap();
    }
}
