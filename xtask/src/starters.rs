//! Starter code, generated from the reference crates.
//!
//! There is one copy of every API: the reference crate. A lesson author marks, in the reference
//! source, what the student writes, with a line comment right above an item (above its doc
//! comments and attributes, at the item's own indentation):
//!
//! ```text
//! // starter: w05-l01 todo "wait on `not_full` in a while loop, then push"
//! pub fn push(&self, item: T) -> Result<(), PushError<T>> { ... }
//!
//! // starter: w05-l01 remove
//! fn push_with(&self, item: T, patience: Patience) -> Result<usize, (Refusal, T)> { ... }
//! ```
//!
//! - `todo "HINT"` (the hint is optional): the fn keeps its docs and signature, and its body
//!   becomes `todo!("W05 L01: HINT")` (without a hint, the fn's name), labelled with the lesson
//!   the marker names.
//! - `empty "HINT"`: like `todo`, but the body is only the hint, as a comment: for a `Drop` impl,
//!   whose `todo!()` would panic again while a failing test unwinds, and abort the test binary.
//! - `remove`: the item, with its docs and attributes, is left out of the starter (private
//!   helpers that would give the answer away).
//!
//! A marker names a lesson, and the lesson's starter (front matter `starter:`, by default its
//! `crate:`) is the starter the marker belongs to. A starter is generated for every starter name:
//! the files of its crate that hold at least one of its markers, with its own markers applied and
//! every other marker line dropped, so the code of other starters' lessons stays complete (a W06
//! starter of `handoff_server` has the W05 parts written and its own parts `todo!()`). Files
//! without a marker of the starter are not in it: grading lays the starter over the reference
//! crate, so they (and every test file) come from the reference. Each generated file starts with
//! the lint allowance an untouched starter needs.
//!
//! Markers that do not follow these rules are refused with their file and line.

use crate::lesson::Lesson;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lints an untouched starter trips (bodies not written yet use nothing).
const ALLOWANCE: &str =
    "#![allow(dead_code, unused_variables, unused_imports, unused_mut, unreachable_code)]";

/// What a marker asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// The fn below keeps its signature; its body becomes `todo!()` with this hint.
    Todo(Option<String>),
    /// The fn below keeps its signature; its body is only this hint, as a comment (a `Drop`
    /// impl, whose `todo!()` would panic again while a failing test unwinds, and abort).
    Empty(Option<String>),
    /// The item below is left out.
    Remove,
}

/// One `// starter:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    /// 0-based line index.
    index: usize,
    /// The marker's indentation, which is the item's.
    indent: usize,
    /// The lesson it belongs to.
    lesson: String,
    action: Action,
}

/// A generated starter.
#[derive(Debug, Clone)]
pub(crate) struct Starter {
    /// Its name (the lessons' `starter:`).
    pub(crate) name: String,
    /// The package it overlays.
    pub(crate) krate: String,
    /// Its files, relative to the crate's folder, with their text.
    pub(crate) files: BTreeMap<PathBuf, String>,
}

impl Starter {
    /// Writes the starter's files under `dir` (which is emptied first).
    pub(crate) fn write_to(&self, dir: &Path) -> anyhow::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        for (path, text) in &self.files {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&target, text)
                .with_context(|| format!("writing {}", target.display()))?;
        }
        Ok(())
    }
}

/// The label a marker's lesson gives its `todo!()`s: `w05-l01` is `W05 L01`, `w05-quest` is
/// `W05 quest`.
fn label(lesson: &str) -> String {
    let (week, rest) = lesson.split_once('-').unwrap_or((lesson, ""));
    let rest = if rest.starts_with('l') {
        rest.to_uppercase()
    } else {
        rest.to_owned()
    };
    format!("{} {rest}", week.to_uppercase())
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_lesson_id(id: &str) -> bool {
    let Some((week, rest)) = id.split_once('-') else {
        return false;
    };
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    week.strip_prefix('w').is_some_and(digits)
        && (rest == "quest" || rest.strip_prefix('l').is_some_and(digits))
}

/// Reads one marker line (`None` when the line is no marker at all).
fn parse_marker(index: usize, line: &str) -> Option<Result<Marker, String>> {
    let trimmed = line.trim();
    let body = trimmed.strip_prefix("//")?.trim_start();
    let rest = body.strip_prefix("starter")?;
    if !(rest.starts_with(':') || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    let usage = "a marker is `// starter: <lesson-id> todo [\"hint\"]`, `... empty [\"hint\"]` \
                 or `... remove`";
    let Some(rest) = rest.strip_prefix(": ") else {
        return Some(Err(format!("`{trimmed}`: {usage}")));
    };
    let rest = rest.trim();
    let (lesson, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_lesson_id(lesson) {
        return Some(Err(format!(
            "`{lesson}` is not a lesson id (`w05-l01`, `w05-quest`); {usage}"
        )));
    }
    let (verb, argument) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
    let argument = argument.trim();
    let action = match verb {
        "remove" if argument.is_empty() => Action::Remove,
        "todo" if argument.is_empty() => Action::Todo(None),
        "empty" if argument.is_empty() => Action::Empty(None),
        "todo" | "empty" => {
            let hint = argument
                .strip_prefix('"')
                .and_then(|a| a.strip_suffix('"'))
                .filter(|hint| !hint.is_empty() && !hint.contains(['"', '\\']));
            match hint {
                Some(hint) if verb == "empty" => Action::Empty(Some(hint.to_owned())),
                Some(hint) => Action::Todo(Some(hint.to_owned())),
                None => {
                    return Some(Err(format!(
                        "the hint must be one double-quoted string without `\"` or `\\` inside, got `{argument}`"
                    )));
                }
            }
        }
        "remove" => return Some(Err(format!("`remove` takes nothing after it; {usage}"))),
        other => return Some(Err(format!("unknown action `{other}`; {usage}"))),
    };
    Some(Ok(Marker {
        index,
        indent: indentation(line),
        lesson: lesson.to_owned(),
        action,
    }))
}

/// Every marker of a file, or the errors (as `line: reason`, 1-based).
fn markers(text: &str) -> Result<Vec<Marker>, Vec<String>> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match parse_marker(index, line) {
            Some(Ok(marker)) => found.push(marker),
            Some(Err(error)) => errors.push(format!("{}: {error}", index + 1)),
            None => {}
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// The index of the item line a marker stands above: past doc comments, comments, attributes
/// and deeper-indented lines (the rest of a multi-line attribute).
fn item_line(lines: &[&str], marker: &Marker) -> Result<usize, String> {
    for (index, line) in lines.iter().enumerate().skip(marker.index + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            return Err("a blank line separates the marker from its item".to_owned());
        }
        let indent = indentation(line);
        if indent > marker.indent
            || trimmed.starts_with("//")
            || trimmed.starts_with("#[")
            || trimmed.starts_with(')')
        {
            continue;
        }
        if indent < marker.indent {
            return Err("no item follows the marker at its indentation".to_owned());
        }
        return Ok(index);
    }
    Err("the file ends before the marker's item".to_owned())
}

/// The index of the line that closes the block opened at `open` (rustfmt's layout: the closing
/// brace alone at the opening line's indentation, `};` or `}` followed by nothing else).
fn block_end(lines: &[&str], open: usize, indent: usize) -> Result<usize, String> {
    for (index, line) in lines.iter().enumerate().skip(open + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        match indentation(line).cmp(&indent) {
            std::cmp::Ordering::Greater => {}
            std::cmp::Ordering::Equal if trimmed.starts_with('}') => {
                return Ok(index);
            }
            // A `where` clause or a wrapped signature line is still the header.
            std::cmp::Ordering::Equal => {}
            std::cmp::Ordering::Less => break,
        }
    }
    Err(format!(
        "the item that starts on line {} has no closing line at its indentation",
        open + 1
    ))
}

/// A fn's name from its signature line.
fn fn_name(line: &str) -> Option<&str> {
    let after = &line[line.find("fn ")? + 3..];
    let end = after
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    Some(&after[..end]).filter(|name| !name.is_empty())
}

/// Whether a line is an fn's signature line (`pub(crate) const unsafe fn name(`...).
fn is_fn_line(line: &str) -> bool {
    let trimmed = line.trim_start();
    let mut words = trimmed.split_whitespace();
    words.any(|word| word == "fn") && fn_name(trimmed).is_some() && !trimmed.starts_with("//")
}

/// What a marker's edit replaces: lines `from..=to` become `with`.
struct Edit {
    from: usize,
    to: usize,
    with: Vec<String>,
}

/// The edit one marker makes to its file, by its action.
fn edit_for(lines: &[&str], marker: &Marker) -> Result<Edit, String> {
    let item = item_line(lines, marker)?;
    match &marker.action {
        Action::Todo(hint) | Action::Empty(hint) => {
            blank_body(lines, marker, item, hint.as_deref())
        }
        Action::Remove => remove_item(lines, marker, item),
    }
}

/// The edit of a `todo` or `empty` marker: the fn on line `item` keeps its docs and signature,
/// and its body becomes a labelled `todo!` (or, for `empty`, only the hint as a comment).
fn blank_body(
    lines: &[&str],
    marker: &Marker,
    item: usize,
    hint: Option<&str>,
) -> Result<Edit, String> {
    let pad = " ".repeat(marker.indent);
    if !is_fn_line(lines[item]) {
        return Err(format!(
            "a `todo` or `empty` marker stands above a fn, but line {} is `{}`",
            item + 1,
            lines[item].trim()
        ));
    }
    let name = fn_name(lines[item]).unwrap_or_default();
    let hint = hint.unwrap_or(name).to_owned();
    // A `const fn` cannot format a message, so its label goes in a comment above.
    let todo = if lines[item].contains("const fn ") {
        format!(
            "{pad}    // {}: {hint}\n{pad}    todo!()",
            label(&marker.lesson)
        )
    } else {
        // `todo!` reads its message as a format string: the hint's braces are doubled so
        // that it prints them as written instead of a placeholder's value (or refusing
        // to compile).
        let hint = hint.replace('{', "{{").replace('}', "}}");
        format!("{pad}    todo!(\"{}: {hint}\")", label(&marker.lesson))
    };
    // The body opens on the first line of the signature that ends with `{`.
    let open = lines
        .iter()
        .enumerate()
        .skip(item)
        .take_while(|(index, line)| *index == item || indentation(line) >= marker.indent)
        .find(|(_, line)| line.trim_end().ends_with('{') || line.trim_end().ends_with("{}"))
        .map(|(index, _)| index)
        .ok_or_else(|| format!("the fn `{name}` has no body"))?;
    // `todo!()` is `!`, which is no `impl Trait`: an `impl Iterator` body gets an empty
    // iterator after it to give the type; other `impl Trait`s cannot be blanked.
    let signature = lines[item..=open].join(" ");
    let todo = if matches!(marker.action, Action::Empty(_)) {
        format!("{pad}    // {}: {hint}", label(&marker.lesson))
    } else if signature.contains("-> impl Iterator") {
        format!(
            "{todo};\n{pad}    // The type the body returns; unreachable until the `todo!` is replaced.\n\
                 {pad}    std::iter::empty()"
        )
    } else if signature.contains("-> impl ") {
        return Err(format!(
            "the fn `{name}` returns an `impl Trait` (not `impl Iterator`), which a \
                 `todo!()` body cannot be; leave it given and mark the fns it calls"
        ));
    } else {
        todo
    };
    if let Some(head) = lines[open].trim_end().strip_suffix("{}") {
        let mut with: Vec<String> = lines[marker.index + 1..open]
            .iter()
            .map(|line| (*line).to_owned())
            .collect();
        with.extend([format!("{head}{{"), todo, format!("{pad}}}")]);
        return Ok(Edit {
            from: marker.index,
            to: open,
            with,
        });
    }
    let close = block_end(lines, open, marker.indent)?;
    Ok(Edit {
        from: marker.index,
        to: close - 1,
        with: lines[marker.index + 1..=open]
            .iter()
            .map(|line| (*line).to_owned())
            .chain(std::iter::once(todo))
            .collect(),
    })
}

/// The edit of a `remove` marker: the item on line `item`, with its docs and attributes, goes.
fn remove_item(lines: &[&str], marker: &Marker, item: usize) -> Result<Edit, String> {
    // The item ends with the `;` of its header (`const`, `use`, a unit struct) or with
    // the block its header opens (possibly after a wrapped signature or `where` clause).
    let (opens, line) = lines
        .iter()
        .enumerate()
        .skip(item)
        .find(|(_, line)| {
            let line = line.trim_end();
            line.ends_with('{') || line.ends_with(';')
        })
        .ok_or_else(|| format!("the item on line {} never ends", item + 1))?;
    let end = if line.trim_end().ends_with(';') {
        opens
    } else {
        block_end(lines, opens, marker.indent)?
    };
    // One blank line after a removed item goes with it, so no double blank line stays.
    let blank_after = lines.get(end + 1).is_some_and(|l| l.trim().is_empty());
    let blank_before = marker.index == 0 || lines[marker.index - 1].trim().is_empty();
    let to = if blank_after && blank_before {
        end + 1
    } else {
        end
    };
    Ok(Edit {
        from: marker.index,
        to,
        with: Vec::new(),
    })
}

/// The starter version of one file for the starter whose lessons are `own`, or `None` when the
/// file holds no marker of it. Errors are `line: reason` (1-based).
fn starter_text(text: &str, own: &dyn Fn(&str) -> bool) -> Result<Option<String>, Vec<String>> {
    let found = markers(text)?;
    if !found.iter().any(|marker| own(&marker.lesson)) {
        return Ok(None);
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut edits = Vec::new();
    let mut errors = Vec::new();
    for marker in &found {
        if own(&marker.lesson) {
            match edit_for(&lines, marker) {
                Ok(edit) => edits.push(edit),
                Err(error) => errors.push(format!("{}: {error}", marker.index + 1)),
            }
        } else {
            edits.push(Edit {
                from: marker.index,
                to: marker.index,
                with: Vec::new(),
            });
        }
    }
    edits.sort_by_key(|edit| edit.from);
    for pair in edits.windows(2) {
        if pair[1].from <= pair[0].to {
            errors.push(format!(
                "{}: this marker falls inside the item of the marker on line {}",
                pair[1].from + 1,
                pair[0].from + 1
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out: Vec<String> = Vec::new();
    let mut next = 0;
    for edit in edits {
        out.extend(lines[next..edit.from].iter().map(|line| (*line).to_owned()));
        out.extend(edit.with);
        next = edit.to + 1;
    }
    out.extend(lines[next..].iter().map(|line| (*line).to_owned()));
    // The allowance goes after the module's `//!` docs, before its first item.
    let docs_end = out
        .iter()
        .position(|line| !line.starts_with("//!"))
        .unwrap_or(out.len());
    let allowance = [
        "".to_owned(),
        "// Starter code: the `todo!()` bodies are yours to write. Until they are, most of this"
            .to_owned(),
        "// file is unused; remove this allowance once every body in it, a later lesson's too, is"
            .to_owned(),
        "// written.".to_owned(),
        ALLOWANCE.to_owned(),
    ];
    let skip = usize::from(docs_end == 0);
    out.splice(docs_end..docs_end, allowance.into_iter().skip(skip));
    let mut text = out.join("\n");
    text.push('\n');
    Ok(Some(text))
}

/// Every `.rs` file under `dir`, skipping `target/`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "target" {
                rust_files(&path, out)?;
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Why a marker in `package` may not name `lesson`: no such lesson, or it builds another crate.
fn lesson_error(lessons: &[Lesson], package: &str, lesson: &str) -> Option<String> {
    match lessons.iter().find(|l| l.front.id == lesson) {
        None => Some(format!("no lesson is `{lesson}`")),
        Some(found) if found.front.krate != package => Some(format!(
            "lesson `{lesson}` builds `{}`, not `{package}`, the crate of this file",
            found.front.krate
        )),
        Some(_) => None,
    }
}

/// Generates every starter of the course, checking every marker of the workspace's packages
/// (xtask's own sources, which document the markers, aside). Malformed markers fail the whole
/// generation, each reported as `file:line: reason`.
pub(crate) fn generate_all(root: &Path, lessons: &[Lesson]) -> anyhow::Result<Vec<Starter>> {
    generate(root, lessons, &|starter, id| {
        lessons
            .iter()
            .any(|l| l.front.id == id && l.front.starter == starter)
    })
}

/// The starter of `lesson` as a student has it when they reach the lesson: the bodies of the
/// lessons before it and its own written (the reference's), those of the later lessons of its
/// starter still `todo!()`. `None` when no later lesson of the starter asks for a body, so the
/// staged starter would be the reference itself. Grading `lesson` on it must pass: an earlier
/// lesson may not need a later lesson's body.
pub(crate) fn staged_for(
    root: &Path,
    lessons: &[Lesson],
    lesson: &Lesson,
) -> anyhow::Result<Option<Starter>> {
    let position = |id: &str| lessons.iter().position(|l| l.front.id == id);
    let Some(at) = position(&lesson.front.id) else {
        return Ok(None);
    };
    let later = |starter: &str, id: &str| {
        lessons
            .iter()
            .any(|l| l.front.id == id && l.front.starter == starter)
            && position(id).is_some_and(|p| p > at)
    };
    Ok(generate(root, lessons, &later)?
        .into_iter()
        .find(|starter| starter.name == lesson.front.starter && !starter.files.is_empty()))
}

/// Generates every starter with the markers of the lessons `own(starter, lesson)` names applied
/// (the others' marker lines dropped), checking every marker of the workspace's packages.
fn generate(
    root: &Path,
    lessons: &[Lesson],
    own: &dyn Fn(&str, &str) -> bool,
) -> anyhow::Result<Vec<Starter>> {
    let packages = crate::workspace::workspace_packages(root)?;
    let mut errors = Vec::new();
    let mut starters: BTreeMap<String, Starter> = BTreeMap::new();
    for lesson in lessons {
        starters
            .entry(lesson.front.starter.clone())
            .or_insert_with(|| Starter {
                name: lesson.front.starter.clone(),
                krate: lesson.front.krate.clone(),
                files: BTreeMap::new(),
            });
    }
    for (name, starter) in &starters {
        if let Some(other) = lessons
            .iter()
            .find(|l| &l.front.starter == name && l.front.krate != starter.krate)
        {
            errors.push(format!(
                "{}: starter `{name}` is shared by lessons of two crates (`{}` and `{}`)",
                other.path.display(),
                starter.krate,
                other.front.krate
            ));
        }
    }
    for (package, dir) in packages.iter().filter(|(name, _)| name != "xtask") {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files)?;
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let shown = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let found = match markers(&text) {
                Ok(found) => found,
                Err(reasons) => {
                    errors.extend(reasons.into_iter().map(|r| format!("{shown}:{r}")));
                    continue;
                }
            };
            for marker in &found {
                if let Some(error) = lesson_error(lessons, package, &marker.lesson) {
                    errors.push(format!("{shown}:{}: {error}", marker.index + 1));
                }
            }
            if found.is_empty() {
                continue;
            }
            for starter in starters.values_mut().filter(|s| &s.krate == package) {
                let own = |id: &str| own(&starter.name, id);
                match starter_text(&text, &own) {
                    Ok(Some(generated)) => {
                        let relative = file.strip_prefix(root.join(dir)).unwrap_or(&file);
                        starter.files.insert(relative.to_path_buf(), generated);
                    }
                    Ok(None) => {}
                    Err(reasons) => {
                        errors.extend(reasons.into_iter().map(|r| format!("{shown}:{r}")));
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        anyhow::bail!(
            "the starter markers are malformed (see course/FORMAT.md, section 5):\n  {}",
            errors.join("\n  ")
        );
    }
    Ok(starters.into_values().collect())
}

/// The starter of one lesson.
pub(crate) fn for_lesson(root: &Path, lesson: &Lesson) -> anyhow::Result<Starter> {
    let lessons = crate::lesson::discover(root)?;
    let starter = generate_all(root, &lessons)?
        .into_iter()
        .find(|starter| starter.name == lesson.front.starter)
        .context("the lesson's starter")?;
    anyhow::ensure!(
        !starter.files.is_empty(),
        "lesson {} has no starter: no `// starter: <lesson-id> ...` marker of a lesson of starter \
         `{}` stands in crate `{}`",
        lesson.front.id,
        starter.name,
        starter.krate
    );
    Ok(starter)
}

#[cfg(test)]
mod lesson_teaches_its_todos;
#[cfg(test)]
mod unit_test_coverage;

#[cfg(test)]
mod tests {
    use super::*;

    fn own_l01(id: &str) -> bool {
        id == "w05-l01"
    }

    const SOURCE: &str = r#"//! A module.
//! More docs.

use std::time::Instant;

impl Queue {
    // starter: w05-l01 todo "push, waiting for room"
    /// Pushes.
    #[must_use]
    pub fn push(
        &self,
        item: T,
    ) -> usize
    where
        T: Send,
    {
        let x = 1;
        if x > 0 {
            x
        } else {
            0
        }
    }

    // starter: w05-l01 remove
    /// A helper.
    fn helper(&self) -> usize {
        7
    }

    // starter: w06-l01 todo
    fn later(&self) {
        done()
    }

    // starter: w05-l01 todo
    fn empty(&self) {}

    // starter: w05-l01 empty "stop the workers"
    fn drop(&mut self) {
        self.stop();
    }

    // starter: w05-l01 todo
    fn items(&self) -> impl Iterator<Item = u8> {
        self.0.iter().copied()
    }
}

// starter: w05-l01 remove
const LIMIT: usize = 4096;

fn given() -> u8 {
    1
}
"#;

    #[test]
    fn own_markers_become_todos_and_removals_other_markers_vanish() {
        let text = starter_text(SOURCE, &own_l01).unwrap().unwrap();
        let expected = r#"//! A module.
//! More docs.

// Starter code: the `todo!()` bodies are yours to write. Until they are, most of this
// file is unused; remove this allowance once every body in it, a later lesson's too, is
// written.
#![allow(dead_code, unused_variables, unused_imports, unused_mut, unreachable_code)]

use std::time::Instant;

impl Queue {
    /// Pushes.
    #[must_use]
    pub fn push(
        &self,
        item: T,
    ) -> usize
    where
        T: Send,
    {
        todo!("W05 L01: push, waiting for room")
    }

    fn later(&self) {
        done()
    }

    fn empty(&self) {
        todo!("W05 L01: empty")
    }

    fn drop(&mut self) {
        // W05 L01: stop the workers
    }

    fn items(&self) -> impl Iterator<Item = u8> {
        todo!("W05 L01: items");
        // The type the body returns; unreachable until the `todo!` is replaced.
        std::iter::empty()
    }
}

fn given() -> u8 {
    1
}
"#;
        assert_eq!(text, expected);
    }

    /// The message a `todo!("…")` with this format string prints: `{{` and `}}` are one brace
    /// each, and any other brace is a placeholder the compiler would fill or refuse.
    fn printed_message(format_string: &str) -> Result<String, String> {
        let mut message = String::new();
        let mut chars = format_string.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' | '}' if chars.peek() == Some(&c) => {
                    chars.next();
                    message.push(c);
                }
                '{' | '}' => return Err(format!("a placeholder in `{format_string}`")),
                _ => message.push(c),
            }
        }
        Ok(message)
    }

    #[test]
    fn a_hint_with_braces_is_printed_as_written() {
        let hint = "fill {} from {name}, then {{done}}";
        let source = format!(
            "//! A module.\n\n// starter: w05-l01 todo \"{hint}\"\nfn fill(name: &str) -> String {{\n    name.to_owned()\n}}\n"
        );
        let text = starter_text(&source, &own_l01).unwrap().unwrap();
        let format_string = text
            .split_once("todo!(\"")
            .and_then(|(_, rest)| rest.split_once("\")"))
            .map(|(inside, _)| inside)
            .unwrap_or_else(|| panic!("no todo!(\"…\") in:\n{text}"));
        assert_eq!(
            printed_message(format_string),
            Ok(format!("W05 L01: {hint}")),
            "the starter's todo! must print the hint, not format it:\n{text}"
        );
    }

    #[test]
    fn a_file_without_own_markers_is_not_in_the_starter() {
        assert_eq!(starter_text(SOURCE, &|id| id == "w04-l05").unwrap(), None);
    }

    #[test]
    fn a_later_starter_gets_the_earlier_parts_complete() {
        let text = starter_text(SOURCE, &|id| id == "w06-l01")
            .unwrap()
            .unwrap();
        assert!(text.contains("        todo!(\"W06 L01: later\")"), "{text}");
        assert!(
            text.contains("fn helper(&self) -> usize {\n        7"),
            "{text}"
        );
        assert!(text.contains("x > 0"), "{text}");
        assert!(!text.contains("// starter:"), "{text}");
    }

    #[test]
    fn labels_name_the_marker_s_lesson() {
        assert_eq!(label("w05-l01"), "W05 L01");
        assert_eq!(label("w05-quest"), "W05 quest");
    }

    #[test]
    fn malformed_markers_are_refused_with_their_line() {
        let cases = [
            (
                "// starter: w5-l1 todo\nfn f() {\n}\n",
                "1: `w5-l1` is not a lesson id",
            ),
            (
                "// starter: w05-l01 write\nfn f() {\n}\n",
                "1: unknown action `write`",
            ),
            (
                "// starter: w05-l01 todo hint\nfn f() {\n}\n",
                "1: the hint must be",
            ),
            (
                "// starter w05-l01 todo\nfn f() {\n}\n",
                "1: `// starter w05-l01 todo`",
            ),
            (
                "// starter: w05-l01 remove now\nfn f() {\n}\n",
                "1: `remove` takes nothing",
            ),
            (
                "x\n// starter: w05-l01 todo\nstruct S {\n}\n",
                "2: a `todo` or `empty` marker stands above a fn",
            ),
            (
                "// starter: w05-l01 todo\n\nfn f() {\n}\n",
                "1: a blank line separates",
            ),
            (
                "// starter: w05-l01 todo\nfn f() -> impl Fn() {\n}\n",
                "1: the fn `f` returns an `impl Trait`",
            ),
            (
                "// starter: w05-l01 todo\nfn f() {\n    x\n",
                "1: the item that starts on line 2",
            ),
            (
                "// starter: w05-l01 remove\nmod m {\n    // starter: w05-l01 todo\n    fn f() {\n    }\n}\n",
                "3: this marker falls inside",
            ),
        ];
        for (source, reason) in cases {
            let errors = starter_text(source, &own_l01).unwrap_err();
            assert!(
                errors.iter().any(|error| error.starts_with(reason)),
                "{source:?}: expected `{reason}`, got {errors:?}"
            );
        }
    }

    #[test]
    fn the_task_queue_starter_labels_close_with_the_lesson_that_grades_it() {
        let root = crate::workspace::workspace_root();
        let lesson = crate::lesson::find(&root, "w05-l01").unwrap();
        let starter = for_lesson(&root, &lesson).unwrap();
        assert_eq!(starter.files.len(), 1, "{:?}", starter.files.keys());
        let lib = &starter.files[Path::new("src/lib.rs")];
        assert!(lib.contains("todo!(\"W05 L01: Do 8: set closed under the lock"));
        assert!(!lib.contains("W05 L03"), "close is graded in W05 L01");
        assert!(
            lib.contains("todo!(\"W05 L01: Do 4: lock, wait on not_full"),
            "the one push behind the three forms is the student's"
        );
        assert!(lib.contains("pub fn try_push(&self, item: T)"));
        assert!(lib.contains(ALLOWANCE));
    }

    #[test]
    fn a_marker_names_a_lesson_of_its_own_crate() {
        let lessons = crate::lesson::discover(&crate::workspace::workspace_root()).unwrap();
        assert_eq!(lesson_error(&lessons, "task_queue", "w05-l01"), None);
        let other = lesson_error(&lessons, "task_queue", "w05-l03").unwrap();
        assert!(
            other.contains("builds `thread_pool`, not `task_queue`"),
            "{other}"
        );
        let unknown = lesson_error(&lessons, "task_queue", "w05-l09").unwrap();
        assert!(unknown.contains("no lesson is `w05-l09`"), "{unknown}");
    }

    #[test]
    fn a_staged_starter_asks_only_for_the_later_lessons_bodies() {
        let root = crate::workspace::workspace_root();
        let lessons = crate::lesson::discover(&root).unwrap();
        let find = |id: &str| lessons.iter().find(|l| l.front.id == id).unwrap();
        // W10 L01 shares the `wal` starter with L02, L03 and L05: its staged starter has their
        // bodies to write and its own written.
        let staged = staged_for(&root, &lessons, find("w10-l01"))
            .unwrap()
            .unwrap();
        let text: String = staged.files.values().cloned().collect();
        assert!(
            text.contains("todo!(\"W10 L02: "),
            "L02's bodies are still to write"
        );
        assert!(!text.contains("W10 L01: "), "L01's own bodies are written");
        let writer = &staged.files[Path::new("src/writer.rs")];
        assert!(writer.contains("todo!(\"W10 L02: "));
        // The last lesson with bodies in its starter, and a starter of one lesson, have none.
        assert!(
            staged_for(&root, &lessons, find("w10-l05"))
                .unwrap()
                .is_none()
        );
        assert!(
            staged_for(&root, &lessons, find("w05-l01"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn every_starter_of_the_course_generates_without_tests() {
        let root = crate::workspace::workspace_root();
        let lessons = crate::lesson::discover(&root).unwrap();
        let starters = generate_all(&root, &lessons).unwrap();
        for lesson in &lessons {
            let starter = starters
                .iter()
                .find(|s| s.name == lesson.front.starter)
                .unwrap();
            assert!(
                !starter.files.is_empty(),
                "lesson {} has an empty starter",
                lesson.front.id
            );
        }
        for starter in &starters {
            for (path, text) in &starter.files {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                assert!(
                    !(name == "tests.rs"
                        || name.ends_with("_tests.rs")
                        || path.starts_with("tests")),
                    "{}: {} is a test file",
                    starter.name,
                    path.display()
                );
                assert!(
                    !text.contains("#[test]"),
                    "{}: {} carries tests (declare `mod tests;` instead)",
                    starter.name,
                    path.display()
                );
                assert!(text.contains("todo!(\"W") || !text.contains("todo!("));
            }
        }
    }
}
