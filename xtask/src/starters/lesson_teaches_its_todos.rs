//! A tidy check of the course: a starter asks only for what its lesson teaches, and the lesson's
//! "Do" walks the student's own files rather than the reference.
//!
//! - Every `todo` or `empty` marker's hint starts with `Do N: `, and step N of its lesson's "Do"
//!   list names the fn in a backticked span (`push`, `TaskQueue::push`, `push(item)`). So no
//!   `todo!()` is a body the lesson never explains, and the hint in the student's editor says
//!   where it is explained.
//! - A "Do" step or paragraph that names a path under `crates/` (the reference) says, in the same
//!   step, that it is to be read "after you pass": the lesson guides a build, not a reading of the
//!   solution.

use super::{Action, fn_name, item_line, markers, rust_files};
use crate::lesson::Lesson;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The numbered steps of a lesson's `## Do` section, each with its continuation lines, and the
/// section's other paragraphs. Steps are keyed by their number.
#[derive(Debug, Default)]
struct DoSection {
    steps: BTreeMap<usize, String>,
    paragraphs: Vec<String>,
}

impl DoSection {
    /// Reads the `## Do` section of a lesson's markdown.
    fn parse(markdown: &str) -> Self {
        let mut section = Self::default();
        let mut inside = false;
        let mut current: Option<usize> = None;
        let mut paragraph = String::new();
        for line in markdown.lines() {
            if line.starts_with("## ") {
                if inside {
                    break;
                }
                inside = line.trim() == "## Do";
                continue;
            }
            if !inside {
                continue;
            }
            let number = line
                .split_once(". ")
                .filter(|(digits, _)| {
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
                .and_then(|(digits, _)| digits.parse::<usize>().ok());
            if let Some(number) = number {
                section.end_paragraph(&mut paragraph);
                current = Some(number);
                section.steps.insert(number, line.to_owned());
            } else if let Some(number) =
                current.filter(|_| line.starts_with(' ') || line.is_empty())
            {
                let step = section.steps.get_mut(&number).expect("the current step");
                step.push('\n');
                step.push_str(line);
            } else if line.trim().is_empty() {
                section.end_paragraph(&mut paragraph);
            } else {
                current = None;
                paragraph.push_str(line);
                paragraph.push('\n');
            }
        }
        section.end_paragraph(&mut paragraph);
        section
    }

    fn end_paragraph(&mut self, paragraph: &mut String) {
        if !paragraph.trim().is_empty() {
            self.paragraphs.push(std::mem::take(paragraph));
        }
        paragraph.clear();
    }

    /// Every step and paragraph, for checks that apply to each.
    fn blocks(&self) -> impl Iterator<Item = &String> {
        self.steps.values().chain(&self.paragraphs)
    }
}

/// Whether `text` has a backticked span that holds `name` as a whole word.
fn names_in_backticks(text: &str, name: &str) -> bool {
    text.split('`').skip(1).step_by(2).any(|span| {
        span.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == name)
    })
}

/// The step number a hint names (`Do 3: ...`).
fn hint_step(hint: &str) -> Option<usize> {
    let rest = hint.strip_prefix("Do ")?;
    let (digits, _) = rest.split_once(": ")?;
    digits.parse().ok()
}

/// What is wrong with one lesson's markers and "Do" section, as messages.
fn problems(root: &Path, krate_dir: &Path, lesson: &Lesson) -> Vec<String> {
    let markdown = std::fs::read_to_string(root.join(&lesson.path)).unwrap();
    let section = DoSection::parse(&markdown);
    let mut found = Vec::new();
    for block in section.blocks() {
        if block.contains("crates/") && !block.to_lowercase().contains("after you pass") {
            let first = block.lines().next().unwrap_or_default();
            found.push(format!(
                "{}: a Do step names the reference under `crates/` without saying it is to be \
                 read after you pass: `{first}`",
                lesson.path.display()
            ));
        }
    }
    let mut files = Vec::new();
    rust_files(&root.join(krate_dir), &mut files).unwrap();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for marker in markers(&text).unwrap() {
            let hint = match (&marker.lesson, &marker.action) {
                (id, Action::Todo(hint) | Action::Empty(hint)) if *id == lesson.front.id => hint,
                _ => continue,
            };
            let name = item_line(&lines, &marker)
                .ok()
                .and_then(|item| fn_name(lines[item]))
                .unwrap_or("?");
            let at = format!("{shown}:{}: `{name}`", marker.index + 1);
            let Some(step) = hint.as_deref().and_then(hint_step) else {
                found.push(format!(
                    "{at}: the hint does not start with `Do N: `, the Do step of {} that \
                     teaches it",
                    lesson.front.id
                ));
                continue;
            };
            match section.steps.get(&step) {
                None => found.push(format!(
                    "{at}: the hint names Do step {step}, which {} does not have",
                    lesson.path.display()
                )),
                Some(text) if !names_in_backticks(text, name) => found.push(format!(
                    "{at}: Do step {step} of {} does not name `{name}` in backticks",
                    lesson.path.display()
                )),
                Some(_) => {}
            }
        }
    }
    found
}

#[test]
fn every_todo_is_taught_by_a_do_step_of_its_lesson_that_its_hint_names() {
    let root = crate::workspace::workspace_root();
    let packages = crate::workspace::workspace_packages(&root).unwrap();
    let mut found = Vec::new();
    for lesson in crate::lesson::discover(&root).unwrap() {
        let Some((_, dir)) = packages
            .iter()
            .find(|(name, _)| *name == lesson.front.krate)
        else {
            continue;
        };
        found.extend(problems(&root, dir, &lesson));
    }
    assert!(found.is_empty(), "\n{}", found.join("\n"));
}

#[test]
fn the_do_section_is_read_step_by_step() {
    let markdown = "# T\n\n## Do\n\nFirst a paragraph about `crates/x`.\n\n1. Write `push` in \
                    `student/q/src/lib.rs`:\n   lock, then `TaskQueue::pop(&self)`.\n\n   ```rust\n   \
                    let x = 1;\n   ```\n2. Read `crates/q` after you pass.\n\n## Test\n\n3. Not Do.\n";
    let section = DoSection::parse(markdown);
    assert_eq!(section.steps.len(), 2);
    assert!(names_in_backticks(&section.steps[&1], "push"));
    assert!(names_in_backticks(&section.steps[&1], "pop"));
    assert!(!names_in_backticks(&section.steps[&1], "lock"));
    assert!(section.steps[&1].contains("let x = 1;"));
    assert!(section.steps[&2].contains("after you pass"));
    assert_eq!(section.paragraphs.len(), 1);
    assert!(!names_in_backticks("`push_with`", "push"));
    assert_eq!(hint_step("Do 12: lock, then push"), Some(12));
    assert_eq!(hint_step("push"), None);
    assert_eq!(hint_step("Do two: push"), None);
}

#[test]
fn a_hint_without_its_step_a_step_that_does_not_name_the_fn_and_an_early_reference_are_reported() {
    use crate::lesson::FrontMatter;
    let root = std::env::temp_dir().join(format!("xtask-do-steps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("q/src")).unwrap();
    std::fs::write(
        root.join("q/src/lib.rs"),
        "//! Q.\n\n// starter: w05-l01 todo \"Do 1: lock, then push\"\n/// Push.\npub fn push() {}\n\n\
         // starter: w05-l01 todo \"Do 2: pop\"\n/// Pop.\npub fn pop() {}\n\n\
         // starter: w05-l01 todo \"close it\"\n/// Close.\npub fn close() {}\n\n\
         // starter: w05-l01 todo \"Do 9: drain\"\n/// Drain.\npub fn drain() {}\n",
    )
    .unwrap();
    std::fs::write(
        root.join("lesson.md"),
        "# L\n\n## Do\n\n1. Write `TaskQueue::push(item)` in `student/q/src/lib.rs`.\n\
         2. Write the other end, then read `crates/q/src/lib.rs`.\n\n## Test\n",
    )
    .unwrap();
    let lesson = Lesson {
        path: PathBuf::from("lesson.md"),
        front: FrontMatter {
            id: "w05-l01".into(),
            title: "t".into(),
            order: 1,
            krate: "q".into(),
            duration: "1 min".into(),
            starter: "q".into(),
        },
        steps: Vec::new(),
        done_when: Vec::new(),
        mistakes: Vec::new(),
    };
    let found = problems(&root, Path::new("q"), &lesson);
    std::fs::remove_dir_all(&root).unwrap();
    let expect = [
        "names the reference under `crates/`",
        "`pop`: Do step 2 of lesson.md does not name `pop`",
        "`close`: the hint does not start with `Do N: `",
        "`drain`: the hint names Do step 9, which lesson.md does not have",
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for (message, expected) in found.iter().zip(expect) {
        assert!(message.contains(expected), "{message} lacks {expected}");
    }
}
