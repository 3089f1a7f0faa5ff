//! The lesson parser: markdown events from pulldown-cmark to a [`Lesson`].
//!
//! Structure comes only from the markdown parser — the front matter block, level-2 headings,
//! fenced code blocks and their info strings, list items, table cells — so a lesson may be
//! formatted however its author likes as long as its structure is the one `course/FORMAT.md`
//! describes. Every deviation is an error naming the line.

use super::pattern::{ExpectLine, LinePattern};
use super::{
    Assertion, ClientStep, DoneItem, ExpectStatus, FrontMatter, Lesson, Mistake, ProveStep, Ready,
    RunStep, ServerStep, SignalStep, Step, StepKind, Stream, ThreadBound, TraceStep, WaitStep,
};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// The level-2 sections every lesson has, in order.
pub(crate) const REQUIRED_SECTIONS: [&str; 10] = [
    "Goal",
    "What you build",
    "Why it matters",
    "Do",
    "Test",
    "Expected",
    "Prove",
    "Done when",
    "Common mistakes",
    "Diagram",
];

/// The sections where runnable blocks may stand.
const STEP_SECTIONS: [&str; 3] = ["Test", "Expected", "Prove"];

/// A format error, with the line it is on (0 when it concerns the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// 1-based line, or 0.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for FormatError {}

fn error(line: usize, message: impl Into<String>) -> FormatError {
    FormatError {
        line,
        message: message.into(),
    }
}

/// Parses a lesson file.
pub fn parse_lesson(text: &str, path: &Path) -> Result<Lesson, FormatError> {
    let collected = Collected::from_markdown(text);
    let front = parse_front_matter(collected.front_text.as_deref())?;
    check_sections(&collected.sections)?;
    if collected.diagram_blocks == 0 {
        return Err(error(0, "the Diagram section has no fenced block"));
    }
    let steps = parse_steps(collected.blocks)?;
    let names: HashSet<&str> = steps.iter().map(|step| step.name.as_str()).collect();
    let done_when = parse_done_when(collected.done_items, &names)?;
    let mistakes = parse_mistakes(collected.tables, collected.rows, &names)?;
    Ok(Lesson {
        path: path.to_path_buf(),
        front,
        steps,
        done_when,
        mistakes,
    })
}

/// A fenced code block as collected: its info string, its body, its line, and the section it
/// stands in.
type CodeBlock = (String, String, usize, String);

/// What one pass over the markdown events collects, before any of it is checked: the front
/// matter's text, the sections, the code blocks, the Done-when items and the Common-mistakes
/// rows, each with its line. The element being read (a heading, a block, an item, a cell) is
/// held until its end event.
#[derive(Debug, Default)]
struct Collected {
    /// The front matter's text, if there is a front matter block.
    front_text: Option<String>,
    /// Whether the events are inside the front matter block.
    in_front: bool,
    /// The level-2 sections, in order, with their lines.
    sections: Vec<(String, usize)>,
    /// The level-2 heading being read.
    heading: Option<(String, usize)>,
    /// The code block being read: its info string, body and line.
    code: Option<(String, String, usize)>,
    /// Every code block, in order.
    blocks: Vec<CodeBlock>,
    /// How many code blocks the Diagram section holds.
    diagram_blocks: usize,
    /// The nesting depth of lists inside the Done-when section.
    list_depth: usize,
    /// The Done-when item being read.
    item: Option<(String, usize)>,
    /// The Done-when items, as written, with their lines.
    done_items: Vec<(String, usize)>,
    /// How many tables the Common-mistakes section holds.
    tables: usize,
    /// The Common-mistakes row being read.
    row: Option<Vec<String>>,
    /// The table cell being read.
    cell: Option<String>,
    /// The Common-mistakes rows (the header first), with their lines.
    rows: Vec<(Vec<String>, usize)>,
}

impl Collected {
    /// Collects a lesson file's structure from its markdown events.
    fn from_markdown(text: &str) -> Self {
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        let line_of = |offset: usize| line_starts.partition_point(|&start| start <= offset);
        let options = Options::ENABLE_YAML_STYLE_METADATA_BLOCKS | Options::ENABLE_TABLES;
        let mut collected = Self::default();
        for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
            collected.event(event, line_of(range.start));
        }
        collected
    }

    /// The section the events are in (empty before the first heading).
    fn section(&self) -> String {
        self.sections
            .last()
            .map(|(name, _)| name.clone())
            .unwrap_or_default()
    }

    /// Takes one markdown event, which starts on `line`.
    fn event(&mut self, event: Event<'_>, line: usize) {
        let section = self.section();
        match event {
            Event::Start(Tag::MetadataBlock(_)) => self.in_front = true,
            Event::End(TagEnd::MetadataBlock(_)) => self.in_front = false,
            Event::Text(t) if self.in_front => {
                self.front_text.get_or_insert_with(String::new).push_str(&t)
            }
            Event::Start(Tag::Heading {
                level: HeadingLevel::H2,
                ..
            }) => {
                self.heading = Some((String::new(), line));
            }
            Event::End(TagEnd::Heading(HeadingLevel::H2)) => {
                if let Some((name, at)) = self.heading.take() {
                    self.sections.push((name.trim().to_owned(), at));
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some((info, String::new(), line));
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((info, body, at)) = self.code.take() {
                    if section == "Diagram" {
                        self.diagram_blocks += 1;
                    }
                    self.blocks.push((info, body, at, section));
                }
            }
            Event::Start(Tag::List(_)) if section == "Done when" => self.list_depth += 1,
            Event::End(TagEnd::List(_)) if section == "Done when" => {
                self.list_depth = self.list_depth.saturating_sub(1);
            }
            Event::Start(Tag::Item) if section == "Done when" && self.list_depth == 1 => {
                self.item = Some((String::new(), line));
            }
            Event::End(TagEnd::Item) if section == "Done when" && self.list_depth == 1 => {
                if let Some(done) = self.item.take() {
                    self.done_items.push(done);
                }
            }
            Event::Start(Tag::Table(_)) if section == "Common mistakes" => self.tables += 1,
            Event::Start(Tag::TableHead | Tag::TableRow) if section == "Common mistakes" => {
                self.row = Some(Vec::new());
            }
            Event::End(TagEnd::TableHead | TagEnd::TableRow) if section == "Common mistakes" => {
                if let Some(cells) = self.row.take() {
                    self.rows.push((cells, line));
                }
            }
            Event::Start(Tag::TableCell) if self.row.is_some() => self.cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => {
                if let (Some(cells), Some(text)) = (self.row.as_mut(), self.cell.take()) {
                    cells.push(text.trim().to_owned());
                }
            }
            Event::Text(t) | Event::Code(t) => self.text(&t),
            Event::SoftBreak | Event::HardBreak => {
                if let Some((text, _)) = self.item.as_mut() {
                    text.push(' ');
                }
            }
            _ => {}
        }
    }

    /// Text goes to the element being read, innermost first: a heading, a code block, a table
    /// cell or a Done-when item; text elsewhere is prose, which no check reads.
    fn text(&mut self, t: &str) {
        if let Some((name, _)) = self.heading.as_mut() {
            name.push_str(t);
        } else if let Some((_, body, _)) = self.code.as_mut() {
            body.push_str(t);
        } else if let Some(text) = self.cell.as_mut() {
            text.push_str(t);
        } else if let Some((text, _)) = self.item.as_mut() {
            text.push_str(t);
        }
    }
}

/// The steps of the runnable (`console …`) blocks, in file order; every other block is prose.
fn parse_steps(blocks: Vec<CodeBlock>) -> Result<Vec<Step>, FormatError> {
    let mut steps: Vec<Step> = Vec::new();
    let mut kind_counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for (info, body, line, section) in blocks {
        let mut words = tokenize_info(&info).map_err(|message| error(line, message))?;
        if words.first().map(String::as_str) != Some("console") || words.len() < 2 {
            continue;
        }
        if !STEP_SECTIONS.contains(&section.as_str()) {
            return Err(error(
                line,
                format!(
                    "a runnable block stands in section `{section}`; \
                     runnable blocks belong in Test, Expected or Prove"
                ),
            ));
        }
        let kind_word = words.remove(1);
        words.remove(0);
        let step = parse_step(&kind_word, &words, &body, line, &steps, &mut kind_counts)?;
        if steps.iter().any(|earlier| earlier.name == step.name) {
            return Err(error(
                line,
                format!("step name `{}` is used twice", step.name),
            ));
        }
        steps.push(step);
    }
    Ok(steps)
}

/// Checks that every name of `list` (a `checked by` or `Caught by` list on `line`) is a step.
fn check_names(names: &HashSet<&str>, list: &[String], line: usize) -> Result<(), FormatError> {
    match list.iter().find(|name| !names.contains(name.as_str())) {
        Some(name) => Err(error(
            line,
            format!("`{name}` is not a step of this lesson"),
        )),
        None => Ok(()),
    }
}

/// The Done-when items, each with the steps its `(checked by: …)` names; at least one item.
fn parse_done_when(
    items: Vec<(String, usize)>,
    names: &HashSet<&str>,
) -> Result<Vec<DoneItem>, FormatError> {
    let mut done_when = Vec::new();
    for (text, line) in items {
        let text = text.trim().to_owned();
        let (text, checked_by) = match text.rfind("(checked by:") {
            Some(at) if text.ends_with(')') => {
                let inner = &text[at + "(checked by:".len()..text.len() - 1];
                let list: Vec<String> = inner
                    .split(',')
                    .map(|name| name.trim().trim_matches('`').to_owned())
                    .filter(|name| !name.is_empty())
                    .collect();
                if list.is_empty() {
                    return Err(error(line, "`(checked by: ...)` names no step"));
                }
                check_names(names, &list, line)?;
                (text[..at].trim().to_owned(), list)
            }
            _ => (text, Vec::new()),
        };
        done_when.push(DoneItem { text, checked_by });
    }
    if done_when.is_empty() {
        return Err(error(0, "the Done when section has no list items"));
    }
    Ok(done_when)
}

/// The Common-mistakes rows of the section's one table, under its `Mistake | Fix | Caught by`
/// header, each with the steps that catch it.
fn parse_mistakes(
    tables: usize,
    rows: Vec<(Vec<String>, usize)>,
    names: &HashSet<&str>,
) -> Result<Vec<Mistake>, FormatError> {
    if tables != 1 {
        return Err(error(
            0,
            "the Common mistakes section must hold exactly one table",
        ));
    }
    let mut mistakes = Vec::new();
    for (index, (cells, line)) in rows.into_iter().enumerate() {
        if cells.len() != 3 {
            return Err(error(
                line,
                "the Common mistakes table must have three columns",
            ));
        }
        if index == 0 {
            if cells[0] != "Mistake" || cells[1] != "Fix" || cells[2] != "Caught by" {
                return Err(error(
                    line,
                    "the Common mistakes header must be `Mistake | Fix | Caught by`",
                ));
            }
            continue;
        }
        let caught_by: Vec<String> = cells[2]
            .split(',')
            .map(|name| name.trim().trim_matches('`').to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        check_names(names, &caught_by, line)?;
        mistakes.push(Mistake {
            mistake: cells[0].clone(),
            fix: cells[1].clone(),
            caught_by,
        });
    }
    Ok(mistakes)
}

fn parse_front_matter(text: Option<&str>) -> Result<FrontMatter, FormatError> {
    let text = text.ok_or_else(|| {
        error(
            1,
            "the lesson must start with front matter between `---` lines",
        )
    })?;
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 2;
        if raw.trim().is_empty() {
            continue;
        }
        let (key, value) = raw.split_once(':').ok_or_else(|| {
            error(
                line,
                format!("front matter line `{raw}` is not `key: value`"),
            )
        })?;
        let key = key.trim();
        if !["id", "title", "order", "crate", "duration", "starter"].contains(&key) {
            return Err(error(line, format!("unknown front matter key `{key}`")));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if values.insert(key, value.to_owned()).is_some() {
            return Err(error(
                line,
                format!("front matter key `{key}` appears twice"),
            ));
        }
    }
    let mut take = |key: &str| {
        values
            .remove(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| error(1, format!("front matter lacks `{key}`")))
    };
    let id = take("id")?;
    let valid_id = id.len() >= 5
        && id.starts_with('w')
        && id[1..3].bytes().all(|b| b.is_ascii_digit())
        && (id[3..] == *"-quest"
            || (id[3..].starts_with("-l")
                && id.len() == 7
                && id[5..].bytes().all(|b| b.is_ascii_digit())));
    if !valid_id {
        return Err(error(
            1,
            format!("id `{id}` is neither `wNN-lNN` nor `wNN-quest`"),
        ));
    }
    let title = take("title")?;
    let order = take("order")?
        .parse()
        .map_err(|_| error(1, "`order` must be a non-negative integer"))?;
    let krate = take("crate")?;
    let duration = take("duration")?;
    let starter = values.remove("starter").unwrap_or_else(|| krate.clone());
    Ok(FrontMatter {
        id,
        title,
        order,
        krate,
        duration,
        starter,
    })
}

fn check_sections(sections: &[(String, usize)]) -> Result<(), FormatError> {
    let mut next = 0usize;
    for (name, line) in sections {
        if let Some(position) = REQUIRED_SECTIONS
            .iter()
            .position(|required| required == name)
        {
            if position != next {
                let expected = REQUIRED_SECTIONS.get(next).copied().unwrap_or("(none)");
                return Err(error(
                    *line,
                    format!(
                        "section `{name}` is out of order or repeated; expected `{expected}` next"
                    ),
                ));
            }
            next += 1;
        }
    }
    match REQUIRED_SECTIONS.get(next) {
        Some(missing) => Err(error(
            0,
            format!("the lesson lacks the section `## {missing}`"),
        )),
        None => Ok(()),
    }
}

/// Splits an info string into words; double quotes group words with spaces.
fn tokenize_info(info: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut has_word = false;
    for c in info.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_word {
                    words.push(std::mem::take(&mut current));
                    has_word = false;
                }
            }
            c => {
                current.push(c);
                has_word = true;
            }
        }
    }
    if in_quotes {
        return Err(format!("unbalanced quote in info string `{info}`"));
    }
    if has_word {
        words.push(current);
    }
    Ok(words)
}

/// Parses `500ms`, `10s`, `2m`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number * 60)),
        _ => None,
    }
}

/// The attributes of one block, consumed as they are read so leftovers can be reported.
struct Attributes {
    line: usize,
    values: BTreeMap<String, Option<String>>,
}

impl Attributes {
    fn new(words: &[String], line: usize) -> Result<Self, FormatError> {
        let mut values = BTreeMap::new();
        for word in words {
            let (key, value) = match word.split_once('=') {
                Some((key, value)) => (key.to_owned(), Some(value.to_owned())),
                None => (word.clone(), None),
            };
            if values.insert(key.clone(), value).is_some() {
                return Err(error(line, format!("attribute `{key}` is given twice")));
            }
        }
        Ok(Self { line, values })
    }

    fn value(&mut self, key: &str) -> Result<Option<String>, FormatError> {
        match self.values.remove(key) {
            None => Ok(None),
            Some(Some(value)) if !value.is_empty() => Ok(Some(value)),
            Some(_) => Err(error(
                self.line,
                format!("attribute `{key}` needs a value: `{key}=...`"),
            )),
        }
    }

    fn flag(&mut self, key: &str) -> Result<bool, FormatError> {
        match self.values.remove(key) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(_)) => Err(error(
                self.line,
                format!("`{key}` is a flag and takes no value"),
            )),
        }
    }

    fn number(&mut self, key: &str) -> Result<Option<u64>, FormatError> {
        self.value(key)?
            .map(|v| {
                v.parse()
                    .map_err(|_| error(self.line, format!("`{key}={v}` is not a number")))
            })
            .transpose()
    }

    fn duration(&mut self, key: &str) -> Result<Option<Duration>, FormatError> {
        self.value(key)?
            .map(|v| {
                parse_duration(&v).ok_or_else(|| {
                    error(
                        self.line,
                        format!("`{key}={v}` is not a duration like 500ms, 10s, 2m"),
                    )
                })
            })
            .transpose()
    }

    fn finish(self, kind: &str) -> Result<(), FormatError> {
        match self.values.keys().next() {
            Some(key) => Err(error(
                self.line,
                format!("unknown attribute `{key}` for `console {kind}`"),
            )),
            None => Ok(()),
        }
    }
}

/// The most recent server step, or the named one if it exists.
fn resolve_server(
    named: Option<String>,
    steps: &[Step],
    line: usize,
) -> Result<String, FormatError> {
    let servers: Vec<&Step> = steps
        .iter()
        .filter(|step| matches!(step.kind, StepKind::Server(_)))
        .collect();
    match named {
        Some(name) if servers.iter().any(|step| step.name == name) => Ok(name),
        Some(name) => Err(error(
            line,
            format!("no earlier server step is named `{name}`"),
        )),
        None => servers.last().map(|step| step.name.clone()).ok_or_else(|| {
            error(
                line,
                "this step needs a server, and no server step comes before it",
            )
        }),
    }
}

fn server_log<'a>(steps: &'a [Step], server: &str) -> Option<&'a str> {
    steps.iter().find_map(|step| match &step.kind {
        StepKind::Server(server_step) if step.name == server => Some(server_step.log.as_str()),
        _ => None,
    })
}

/// The step kinds, as the word after `console` names them; parsed once, then matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Run,
    Server,
    Client,
    Wait,
    Signal,
    Trace,
    Prove,
}

impl Kind {
    /// Every kind, in the order the error for an unknown kind lists them.
    const ALL: [Kind; 7] = [
        Kind::Run,
        Kind::Server,
        Kind::Client,
        Kind::Wait,
        Kind::Signal,
        Kind::Trace,
        Kind::Prove,
    ];

    /// The kind named by `word`, or the format error that lists the kinds.
    fn parse(word: &str, line: usize) -> Result<Kind, FormatError> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.word() == word)
            .ok_or_else(|| {
                let words: Vec<&str> = Kind::ALL.iter().map(|kind| kind.word()).collect();
                error(
                    line,
                    format!("unknown step kind `console {word}` ({})", words.join(", ")),
                )
            })
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Wait => "wait",
            Kind::Signal => "signal",
            Kind::Trace => "trace",
            Kind::Prove => "prove",
        }
    }

    /// The step's time limit when it sets no `timeout=`.
    fn default_timeout(self) -> Duration {
        Duration::from_secs(match self {
            Kind::Run => 300,
            Kind::Server => 10,
            Kind::Client => 15,
            Kind::Wait => 30,
            Kind::Signal => 5,
            Kind::Trace => 10,
            Kind::Prove => 10,
        })
    }
}

/// What every step kind's parser gets: the block's attributes (each parser takes the ones it
/// knows; leftovers are reported), its lines, where it is, and the steps before it.
struct Block<'a> {
    attrs: Attributes,
    name: &'a str,
    lines: Vec<&'a str>,
    line: usize,
    steps: &'a [Step],
}

impl Block<'_> {
    /// Fails unless the block holds no lines (`wait`, `signal`, `trace`).
    fn no_body(&self, kind: Kind) -> Result<(), FormatError> {
        if self.lines.iter().any(|l| !l.trim().is_empty()) {
            Err(error(
                self.line,
                format!("`console {}` takes no lines in its block", kind.word()),
            ))
        } else {
            Ok(())
        }
    }
}

fn parse_step(
    kind_word: &str,
    words: &[String],
    body: &str,
    line: usize,
    steps: &[Step],
    kind_counts: &mut BTreeMap<Kind, usize>,
) -> Result<Step, FormatError> {
    let mut attrs = Attributes::new(words, line)?;
    let kind = Kind::parse(kind_word, line)?;
    let count = kind_counts.entry(kind).or_insert(0);
    *count += 1;
    let default_name = if kind == Kind::Server {
        "server".to_owned()
    } else {
        format!("{}-{count}", kind.word())
    };
    let name = attrs.value("name")?.unwrap_or(default_name);
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(error(
            line,
            format!("step name `{name}` may only hold letters, digits and `-`"),
        ));
    }
    let timeout = attrs.duration("timeout")?.unwrap_or(kind.default_timeout());
    let reference_only = attrs.flag("reference-only")?;
    let points = match attrs.number("points")? {
        None => 1,
        Some(points @ 1..=1000) => points as u32,
        Some(points) => {
            return Err(error(
                line,
                format!("`points={points}` must be a whole number from 1 to 1000"),
            ));
        }
    };
    let mut block = Block {
        attrs,
        name: &name,
        lines: body.lines().collect(),
        line,
        steps,
    };
    let step_kind = match kind {
        Kind::Run => StepKind::Run(parse_run(&mut block)?),
        Kind::Server => StepKind::Server(parse_server(&mut block)?),
        Kind::Client => StepKind::Client(parse_client(&mut block)?),
        Kind::Wait => StepKind::Wait(parse_wait(&mut block)?),
        Kind::Signal => StepKind::Signal(parse_signal(&mut block)?),
        Kind::Trace => StepKind::Trace(parse_trace(&mut block)?),
        Kind::Prove => StepKind::Prove(parse_prove(&mut block)?),
    };
    block.attrs.finish(kind.word())?;
    let step = Step {
        name,
        line,
        timeout,
        kind: step_kind,
        reference_only,
        points,
        block: block_text(kind_word, words, body),
    };
    if step.applies_to_foreign_server() {
        if let Some(needed) = reference_only_dependency(&step, steps) {
            return Err(error(
                line,
                format!(
                    "this step needs `{needed}`, which is reference-only: mark it `reference-only` too"
                ),
            ));
        }
    }
    Ok(step)
}

/// A step's block as the lesson shows it: `console`, its kind and attributes (a value with
/// spaces quoted again, as it must be written), then its lines.
fn block_text(kind_word: &str, words: &[String], body: &str) -> String {
    let mut info = format!("console {kind_word}");
    for word in words {
        info.push(' ');
        match word.split_once('=') {
            Some((key, value)) if value.contains(char::is_whitespace) => {
                info.push_str(&format!("{key}=\"{value}\""));
            }
            _ => info.push_str(word),
        }
    }
    format!("{info}\n{body}")
}

/// The first earlier step that `step` needs (its server, the server writing its log, its trace,
/// the client it waits for) and that does not apply to a foreign server: a step that needs one
/// cannot apply either, or `--server` would grade it against nothing.
fn reference_only_dependency<'a>(step: &Step, steps: &'a [Step]) -> Option<&'a str> {
    let by_name = |name: &str| steps.iter().find(|s| s.name == name);
    let mut needed: Vec<&Step> = Vec::new();
    match &step.kind {
        StepKind::Run(_) | StepKind::Server(_) => {}
        StepKind::Client(client) => needed.extend(by_name(&client.server)),
        StepKind::Wait(wait) => needed.extend(by_name(&wait.client)),
        StepKind::Signal(signal) => needed.extend(by_name(&signal.server)),
        StepKind::Trace(trace) => needed.extend(by_name(&trace.server)),
        StepKind::Prove(prove) => {
            needed.extend(prove.server.as_deref().and_then(by_name));
            needed.extend(prove.trace.as_deref().and_then(by_name));
            if let Some(log) = &prove.log {
                needed.extend(
                    steps.iter().filter(
                        |s| matches!(&s.kind, StepKind::Server(server) if server.log == *log),
                    ),
                );
            }
        }
    }
    needed
        .into_iter()
        .find(|s| !s.applies_to_foreign_server())
        .map(|s| s.name.as_str())
}

fn parse_run(block: &mut Block<'_>) -> Result<RunStep, FormatError> {
    let line = block.line;
    let status = match block.attrs.value("status")?.as_deref() {
        None => ExpectStatus::Code(0),
        Some("fail") => ExpectStatus::Failure,
        Some(v) => ExpectStatus::Code(
            v.parse()
                .map_err(|_| error(line, format!("`status={v}` is neither a number nor `fail`")))?,
        ),
    };
    let stream = match block.attrs.value("stream")?.as_deref() {
        None | Some("stdout") => Stream::Stdout,
        Some("stderr") => Stream::Stderr,
        Some("both") => Stream::Both,
        Some(v) => {
            return Err(error(
                line,
                format!("`stream={v}`: use stdout, stderr or both"),
            ));
        }
    };
    let mut commands: Vec<(String, Vec<ExpectLine>)> = Vec::new();
    for (offset, text) in block.lines.iter().enumerate() {
        if let Some(command) = text.strip_prefix("$ ") {
            commands.push((command.trim().to_owned(), Vec::new()));
        } else if let Some((_, expected)) = commands.last_mut() {
            expected.push(ExpectLine::new(text));
        } else if !text.trim().is_empty() {
            return Err(error(
                line + 1 + offset,
                "output comes before any `$ ` command",
            ));
        }
    }
    if commands.is_empty() {
        return Err(error(line, "`console run` has no `$ ` command"));
    }
    Ok(RunStep {
        commands,
        status,
        stream,
    })
}

fn parse_server(block: &mut Block<'_>) -> Result<ServerStep, FormatError> {
    let line = block.line;
    let commands: Vec<&str> = block
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("$ "))
        .collect();
    let others = block
        .lines
        .iter()
        .filter(|l| !l.starts_with("$ ") && !l.trim().is_empty())
        .count();
    if commands.len() != 1 || others != 0 {
        return Err(error(
            line,
            "`console server` holds exactly one `$ ` command line",
        ));
    }
    if !commands[0].contains("{port}") {
        return Err(error(line, "the server command must contain `{port}`"));
    }
    let log = block
        .attrs
        .value("log")?
        .unwrap_or_else(|| block.name.to_owned());
    let ready = match block.attrs.value("ready")? {
        None => Ready::Tcp,
        Some(v) if v == "tcp" => Ready::Tcp,
        Some(v) => match v.strip_prefix("line:") {
            Some(text) if !text.is_empty() => Ready::Line(text.to_owned()),
            _ => {
                return Err(error(
                    line,
                    format!("`ready={v}`: use tcp or \"line:TEXT\""),
                ));
            }
        },
    };
    let nofile = block.attrs.number("nofile")?;
    Ok(ServerStep {
        command: commands[0].trim().to_owned(),
        log,
        ready,
        nofile,
    })
}

fn parse_client(block: &mut Block<'_>) -> Result<ClientStep, FormatError> {
    let line = block.line;
    let attrs = &mut block.attrs;
    let server = resolve_server(attrs.value("server")?, block.steps, line)?;
    let clients = attrs.number("clients")?.unwrap_or(1) as usize;
    let rounds = attrs.number("rounds")?.unwrap_or(1) as usize;
    if clients == 0 || rounds == 0 || clients > 10_000 || rounds > 1_000 {
        return Err(error(
            line,
            "`clients` must be in 1..=10000 and `rounds` in 1..=1000",
        ));
    }
    let half_close = attrs.flag("half-close")?;
    let no_final_newline = attrs.flag("no-final-newline")?;
    let expect_protocol = match attrs.value("expect")?.as_deref() {
        None => false,
        Some("protocol") => true,
        Some(v) => {
            return Err(error(
                line,
                format!("`expect={v}`: the only value is `protocol`"),
            ));
        }
    };
    let eof = attrs.flag("eof")? || half_close;
    let within = attrs.duration("within")?;
    let reset = attrs.flag("reset")?;
    let delay = attrs.duration("delay")?;
    let hold = attrs.duration("hold")?;
    let read_after = attrs.duration("read-after")?;
    let background = attrs.flag("background")?;
    let tolerant = attrs.flag("tolerant")?;
    let mut sends = Vec::new();
    let mut expects = Vec::new();
    for (offset, text) in block.lines.iter().enumerate() {
        if let Some(sent) = text.strip_prefix("> ") {
            sends.push(sent.to_owned());
        } else if *text == ">" {
            // An empty request line (editors strip the trailing space of `> `).
            sends.push(String::new());
        } else if let Some(expected) = text.strip_prefix("< ") {
            expects.push(ExpectLine::new(expected));
        } else if *text == "<" {
            expects.push(ExpectLine::new(""));
        } else if !text.trim().is_empty() {
            return Err(error(
                line + 1 + offset,
                format!("client lines start with `> ` or `< `: `{text}`"),
            ));
        }
    }
    if sends.is_empty() {
        return Err(error(
            line,
            "`console client` sends nothing: add `> ` lines",
        ));
    }
    if (reset || tolerant) && !expects.is_empty() {
        return Err(error(
            line,
            "`reset` and `tolerant` clients take no `< ` lines",
        ));
    }
    if no_final_newline && !half_close {
        return Err(error(
            line,
            "`no-final-newline` needs `half-close`, or the line never ends",
        ));
    }
    Ok(ClientStep {
        name: block.name.to_owned(),
        server,
        clients,
        rounds,
        half_close,
        no_final_newline,
        expect_protocol,
        eof,
        within,
        reset,
        delay,
        hold,
        read_after,
        background,
        tolerant,
        sends,
        expects,
    })
}

fn parse_wait(block: &mut Block<'_>) -> Result<WaitStep, FormatError> {
    block.no_body(Kind::Wait)?;
    let line = block.line;
    let client = block
        .attrs
        .value("for")?
        .ok_or_else(|| error(line, "`console wait` needs `for=NAME`"))?;
    let is_background = block.steps.iter().any(|step| {
        step.name == client && matches!(&step.kind, StepKind::Client(c) if c.background)
    });
    if !is_background {
        return Err(error(
            line,
            format!("`for={client}` names no earlier background client step"),
        ));
    }
    Ok(WaitStep { client })
}

fn parse_signal(block: &mut Block<'_>) -> Result<SignalStep, FormatError> {
    block.no_body(Kind::Signal)?;
    let line = block.line;
    let server = resolve_server(block.attrs.value("server")?, block.steps, line)?;
    let signal_name = block
        .attrs
        .value("signal")?
        .ok_or_else(|| error(line, "`console signal` needs `signal=TERM|INT|KILL|HUP`"))?;
    let signal = match signal_name.as_str() {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "KILL" => libc::SIGKILL,
        "HUP" => libc::SIGHUP,
        other => {
            return Err(error(
                line,
                format!("`signal={other}`: use TERM, INT, KILL or HUP"),
            ));
        }
    };
    Ok(SignalStep {
        server,
        signal,
        signal_name,
    })
}

fn parse_trace(block: &mut Block<'_>) -> Result<TraceStep, FormatError> {
    block.no_body(Kind::Trace)?;
    let server = resolve_server(block.attrs.value("server")?, block.steps, block.line)?;
    Ok(TraceStep { server })
}

fn parse_prove(block: &mut Block<'_>) -> Result<ProveStep, FormatError> {
    let (line, steps) = (block.line, block.steps);
    let server = match block.attrs.value("server")? {
        Some(name) => Some(resolve_server(Some(name), steps, line)?),
        None => resolve_server(None, steps, line).ok(),
    };
    let log = match block.attrs.value("log")? {
        Some(log) => {
            let known = steps
                .iter()
                .any(|step| matches!(&step.kind, StepKind::Server(s) if s.log == log));
            if !known {
                return Err(error(
                    line,
                    format!("no server step writes a log named `{log}`"),
                ));
            }
            Some(log)
        }
        None => server
            .as_deref()
            .and_then(|s| server_log(steps, s))
            .map(str::to_owned),
    };
    let trace = block.attrs.value("trace")?;
    if let Some(trace) = &trace {
        if !steps
            .iter()
            .any(|step| step.name == *trace && matches!(step.kind, StepKind::Trace(_)))
        {
            return Err(error(
                line,
                format!("`trace={trace}` names no earlier trace step"),
            ));
        }
    }
    let mut assertions = Vec::new();
    for (offset, text) in block.lines.iter().enumerate() {
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let at = line + 1 + offset;
        let assertion = parse_assertion(text).map_err(|message| error(at, message))?;
        let needs_server = !matches!(
            assertion,
            Assertion::LogHas(..)
                | Assertion::LogLacks(_)
                | Assertion::TidsDiffer(..)
                | Assertion::TidsAtMost(..)
        );
        if needs_server && server.is_none() {
            return Err(error(at, "this assertion needs a server step before it"));
        }
        if !needs_server && log.is_none() {
            return Err(error(
                at,
                "this assertion reads a log, and no server step writes one",
            ));
        }
        if matches!(assertion, Assertion::SocketTidsDisjoint(_)) && trace.is_none() {
            return Err(error(at, "`socket tids` needs `trace=NAME` on the block"));
        }
        if matches!(assertion, Assertion::DiskTidsDisjoint(_)) && trace.is_none() {
            return Err(error(at, "`disk tids` needs `trace=NAME` on the block"));
        }
        if matches!(assertion, Assertion::EventfdWritesAtMostReads(_)) && trace.is_none() {
            return Err(error(
                at,
                "`eventfd writes` needs `trace=NAME` on the block",
            ));
        }
        assertions.push((text.to_owned(), assertion));
    }
    if assertions.is_empty() {
        return Err(error(line, "`console prove` has no assertion"));
    }
    Ok(ProveStep {
        server,
        log,
        trace,
        assertions,
    })
}

/// A word or a backtick-quoted pattern of an assertion line.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Pattern(String),
}

fn tokenize_assertion(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('`') {
            let end = after.find('`').ok_or("unclosed backtick")?;
            tokens.push(Token::Pattern(after[..end].to_owned()));
            rest = after[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            tokens.push(Token::Word(rest[..end].to_owned()));
            rest = rest[end..].trim_start();
        }
    }
    Ok(tokens)
}

/// Parses one assertion line of a `prove` block.
pub(crate) fn parse_assertion(text: &str) -> Result<Assertion, String> {
    let tokens = tokenize_assertion(text)?;
    let words: Vec<Option<&str>> = tokens
        .iter()
        .map(|t| {
            if let Token::Word(w) = t {
                Some(w.as_str())
            } else {
                None
            }
        })
        .collect();
    let pattern = |index: usize, needs_tid: bool| -> Result<LinePattern, String> {
        match tokens.get(index) {
            Some(Token::Pattern(p)) => {
                let pattern = LinePattern::new(p, true);
                if needs_tid && !pattern.has_tid() {
                    return Err(format!("pattern `{p}` needs a `{{tid}}` capture"));
                }
                Ok(pattern)
            }
            _ => Err("expected a pattern in backticks here".to_owned()),
        }
    };
    let number = |index: usize| -> Result<usize, String> {
        words
            .get(index)
            .copied()
            .flatten()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| "expected a number".to_owned())
    };
    let duration = |index: usize| -> Result<Duration, String> {
        words
            .get(index)
            .copied()
            .flatten()
            .and_then(parse_duration)
            .ok_or_else(|| "expected a duration like 2s".to_owned())
    };
    let shape: Vec<&str> = words.iter().map(|w| w.unwrap_or("`P`")).collect();
    let unknown = || {
        format!(
            "unknown assertion `{text}`; see course/FORMAT.md for the list \
             (log has, log lacks, log tids, threads, fds, cpu, alive, exits, socket tids, \
             disk tids)"
        )
    };
    match shape.as_slice() {
        ["log", "has", "`P`"] => Ok(Assertion::LogHas(pattern(2, false)?, 1)),
        ["log", "has", "`P`", "at", "least", _, "times"] => {
            Ok(Assertion::LogHas(pattern(2, false)?, number(5)?))
        }
        ["log", "lacks", "`P`"] => Ok(Assertion::LogLacks(pattern(2, false)?)),
        ["log", "tids", "`P`", "differ", "from", "`P`"] => {
            Ok(Assertion::TidsDiffer(pattern(2, true)?, pattern(5, true)?))
        }
        ["log", "tids", "`P`", "at", "most", _] => {
            Ok(Assertion::TidsAtMost(pattern(2, true)?, number(5)?))
        }
        ["threads", "at", "most", bound @ ..] => Ok(Assertion::Threads {
            exact: false,
            bound: thread_bound(bound)?,
        }),
        ["threads", "exactly", bound @ ..] => Ok(Assertion::Threads {
            exact: true,
            bound: thread_bound(bound)?,
        }),
        ["fds", "at", "most", _] => Ok(Assertion::FdsAtMost(number(3)?)),
        ["cpu", "at", "most", percent, "over", _] => {
            let percent: f64 = percent
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("`{percent}` is not a percentage like 20%"))?;
            Ok(Assertion::CpuAtMost {
                percent,
                over: duration(5)?,
            })
        }
        ["alive"] => Ok(Assertion::Alive),
        ["exits", _, "within", _] => Ok(Assertion::Exits {
            status: number(1)? as i32,
            within: duration(3)?,
        }),
        ["socket", "tids", "disjoint", "from", "`P`"] => {
            Ok(Assertion::SocketTidsDisjoint(pattern(4, true)?))
        }
        ["disk", "tids", "disjoint", "from", "`P`"] => {
            Ok(Assertion::DiskTidsDisjoint(pattern(4, true)?))
        }
        [
            "eventfd",
            "writes",
            "from",
            "`P`",
            "at",
            "most",
            "reads",
            "plus",
            "1",
        ] => Ok(Assertion::EventfdWritesAtMostReads(pattern(3, true)?)),
        _ => Err(unknown()),
    }
}

/// The bound after `threads exactly` / `threads at most`: a number, or `workers + io`.
fn thread_bound(words: &[&str]) -> Result<ThreadBound, String> {
    let refused = || {
        format!(
            "a thread bound is a number (`threads exactly 3`) or `workers + io` (the server's \
             workers plus its IO threads, spaces around the `+`); got `{}`",
            words.join(" ")
        )
    };
    match words {
        ["workers", "+", "io"] => Ok(ThreadBound::WorkersPlusIo),
        [count] => count.parse().map(ThreadBound::Count).map_err(|_| refused()),
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests;
