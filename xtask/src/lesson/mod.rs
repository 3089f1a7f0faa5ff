//! Lessons: the model of a lesson file, its parser, and discovery of the course.
//!
//! The format is specified in `course/FORMAT.md`; [`parse::parse_lesson`] implements it and
//! rejects everything it does not describe, so a typo in a lesson is an error, not a step that
//! silently never runs.

pub mod parse;
pub mod pattern;

use pattern::{ExpectLine, LinePattern};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The front matter of a lesson.
#[derive(Debug, Clone)]
pub struct FrontMatter {
    /// Stable id such as `w05-l04`; progress is keyed by it.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Place within the week.
    pub order: u32,
    /// The workspace package the lesson builds.
    pub krate: String,
    /// Expected study time, as written.
    pub duration: String,
    /// The starter's name: lessons with the same one share a starter and `student/<starter>/`.
    pub starter: String,
}

impl FrontMatter {
    /// The week part of the id (`w05`).
    pub fn week(&self) -> &str {
        self.id.split('-').next().unwrap_or(&self.id)
    }
}

/// A parsed lesson.
#[derive(Debug, Clone)]
pub struct Lesson {
    /// Where the lesson file is, relative to the workspace root.
    pub path: PathBuf,
    /// Its front matter.
    pub front: FrontMatter,
    /// Its runnable steps, in document order.
    pub steps: Vec<Step>,
    /// The Done-when items.
    pub done_when: Vec<DoneItem>,
    /// The Common-mistakes rows.
    pub mistakes: Vec<Mistake>,
}

impl Lesson {
    /// Whether the lesson starts a server (and so can grade a foreign one with `--server`).
    pub fn has_server(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step.kind, StepKind::Server(_)))
    }

    /// The hints (mistake and fix) of every Common-mistakes row caught by `step`.
    pub fn hints_for(&self, step: &str) -> Vec<String> {
        self.mistakes
            .iter()
            .filter(|row| row.caught_by.iter().any(|name| name == step))
            .map(|row| format!("{} — {}", row.mistake, row.fix))
            .collect()
    }
}

/// One Done-when item.
#[derive(Debug, Clone)]
pub struct DoneItem {
    /// The item's text, without its `(checked by: ...)` suffix.
    pub text: String,
    /// The steps that check it; empty when it is not checked mechanically.
    pub checked_by: Vec<String>,
}

/// One Common-mistakes row.
#[derive(Debug, Clone)]
pub struct Mistake {
    /// What goes wrong.
    pub mistake: String,
    /// How to fix it.
    pub fix: String,
    /// The steps that fail when it happens.
    pub caught_by: Vec<String>,
}

/// A runnable step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique name within the lesson.
    pub name: String,
    /// Line of the fence in the lesson file (1-based).
    pub line: usize,
    /// The step's time limit.
    pub timeout: Duration,
    /// What it does.
    pub kind: StepKind,
    /// Marked `reference-only` (or a `run` step): it checks something only the workspace's own
    /// code has, so with `--server` it is not applicable and does not count.
    pub reference_only: bool,
    /// The step's weight in the GitHub Classroom result (`points=N`, default 1).
    pub points: u32,
    /// The block as the lesson shows it: its info string on the first line, then its lines.
    pub block: String,
}

impl Step {
    /// Whether the step applies to a foreign server graded with `--server`: `run` steps and steps
    /// marked `reference-only` do not.
    pub fn applies_to_foreign_server(&self) -> bool {
        !self.reference_only && !matches!(self.kind, StepKind::Run(_))
    }
}

/// The step kinds of the format.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// `console run`.
    Run(RunStep),
    /// `console server`.
    Server(ServerStep),
    /// `console client`.
    Client(ClientStep),
    /// `console wait`.
    Wait(WaitStep),
    /// `console signal`.
    Signal(SignalStep),
    /// `console trace`.
    Trace(TraceStep),
    /// `console prove`.
    Prove(ProveStep),
}

impl StepKind {
    /// The kind's word in the info string.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Run(_) => "run",
            Self::Server(_) => "server",
            Self::Client(_) => "client",
            Self::Wait(_) => "wait",
            Self::Signal(_) => "signal",
            Self::Trace(_) => "trace",
            Self::Prove(_) => "prove",
        }
    }
}

/// Which exit statuses a `run` command may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectStatus {
    /// Exactly this status.
    Code(i32),
    /// Any non-zero status.
    Failure,
}

/// Which output of a `run` command is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Standard output, then standard error.
    Both,
}

/// `console run`.
#[derive(Debug, Clone)]
pub struct RunStep {
    /// Each command with its expected output lines (empty: any output).
    pub commands: Vec<(String, Vec<ExpectLine>)>,
    /// Expected exit status.
    pub status: ExpectStatus,
    /// The stream compared.
    pub stream: Stream,
}

/// How the runner decides a server is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// A TCP connection to its port succeeds.
    Tcp,
    /// Its log has a line containing this text.
    Line(String),
}

/// `console server`.
#[derive(Debug, Clone)]
pub struct ServerStep {
    /// The command, with placeholders.
    pub command: String,
    /// The name of its log.
    pub log: String,
    /// Readiness probe.
    pub ready: Ready,
    /// RLIMIT_NOFILE for the process.
    pub nofile: Option<u64>,
}

/// `console client`.
#[derive(Debug, Clone)]
pub struct ClientStep {
    /// The step's name, for `--verbose` output.
    pub name: String,
    /// The server to connect to.
    pub server: String,
    /// Concurrent clients per round.
    pub clients: usize,
    /// Rounds, one after another.
    pub rounds: usize,
    /// Shut down the write side after sending.
    pub half_close: bool,
    /// Send the last line without its `\n`.
    pub no_final_newline: bool,
    /// Check every response against the protocol's prescribed bytes.
    pub expect_protocol: bool,
    /// The server must close the connection after the answers.
    pub eof: bool,
    /// Bound on each client's whole exchange.
    pub within: Option<Duration>,
    /// Close with a reset right after sending.
    pub reset: bool,
    /// Wait before connecting.
    pub delay: Option<Duration>,
    /// Keep the connection open this long after the exchange.
    pub hold: Option<Duration>,
    /// Read no response until this long after sending: a slow reader, whose answers the server
    /// must hold meanwhile.
    pub read_after: Option<Duration>,
    /// Run in the background.
    pub background: bool,
    /// Errors do not fail the step.
    pub tolerant: bool,
    /// The `> ` lines, with placeholders and escapes as written.
    pub sends: Vec<String>,
    /// The `< ` lines.
    pub expects: Vec<ExpectLine>,
}

/// `console wait`.
#[derive(Debug, Clone)]
pub struct WaitStep {
    /// The background client step waited for (`for=NAME`).
    pub client: String,
}

/// `console trace`.
#[derive(Debug, Clone)]
pub struct TraceStep {
    /// The server whose threads are traced.
    pub server: String,
}

/// `console signal`.
#[derive(Debug, Clone)]
pub struct SignalStep {
    /// The server to signal.
    pub server: String,
    /// The signal number.
    pub signal: i32,
    /// The signal's name as written (`TERM`).
    pub signal_name: String,
}

/// `console prove`.
#[derive(Debug, Clone)]
pub struct ProveStep {
    /// The server whose process is inspected.
    pub server: Option<String>,
    /// The log the log assertions read.
    pub log: Option<String>,
    /// The trace `socket tids` and `disk tids` read.
    pub trace: Option<String>,
    /// The assertions, each with its source text.
    pub assertions: Vec<(String, Assertion)>,
}

/// One assertion of a `prove` step.
#[derive(Debug, Clone)]
pub enum Assertion {
    /// `log has P [at least N times]`.
    LogHas(LinePattern, usize),
    /// `log lacks P`.
    LogLacks(LinePattern),
    /// `log tids P differ from Q`.
    TidsDiffer(LinePattern, LinePattern),
    /// `log tids P at most N`.
    TidsAtMost(LinePattern, usize),
    /// `threads at most B` (false) / `threads exactly B` (true).
    Threads {
        /// Whether the count must be exact.
        exact: bool,
        /// The bound.
        bound: ThreadBound,
    },
    /// `fds at most N`.
    FdsAtMost(usize),
    /// `cpu at most P% over DUR`.
    CpuAtMost {
        /// Percent of one CPU.
        percent: f64,
        /// Measuring window.
        over: Duration,
    },
    /// `alive`.
    Alive,
    /// `exits S within DUR`.
    Exits {
        /// Expected exit status.
        status: i32,
        /// Bound.
        within: Duration,
    },
    /// `socket tids disjoint from P`.
    SocketTidsDisjoint(LinePattern),
    /// `disk tids disjoint from P`: no thread that did file IO inside the data folder `{dir}`
    /// is a thread P captures.
    DiskTidsDisjoint(LinePattern),
    /// `eventfd writes from P at most reads plus 1`: for every eventfd that a thread P captures
    /// wrote during the trace, those threads wrote it at most one time more than it was read, so
    /// the workers wake the loop only when its results queue goes from empty to non-empty.
    EventfdWritesAtMostReads(LinePattern),
}

/// The bound of a `threads` assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadBound {
    /// A number written in the lesson: `threads exactly 3`.
    Count(usize),
    /// `workers + io`: the server's worker count (its `--workers`, else its `stats` answer) plus
    /// the IO threads its log names (`main <tid>`, `loop <tid>`), so the check holds for any
    /// `--workers` and `--loops` a grader starts the server with.
    WorkersPlusIo,
}

/// A lesson file that does not follow the format.
#[derive(Debug, Clone)]
pub struct BrokenLesson {
    /// The file, relative to the workspace root.
    pub path: PathBuf,
    /// What is wrong.
    pub error: String,
}

/// Every lesson file of the course (all `.md` files under `course/` that start with front
/// matter, starters excepted), parsed and in course order: by week, then by `order`. Files that
/// break the format are returned apart, so one broken lesson does not hide the others.
pub fn discover_all(root: &Path) -> anyhow::Result<(Vec<Lesson>, Vec<BrokenLesson>)> {
    let mut files = Vec::new();
    collect_markdown(&root.join("course"), &mut files)?;
    files.sort();
    let mut lessons: Vec<Lesson> = Vec::new();
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        if !text.starts_with("---") {
            continue;
        }
        let relative = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
        match parse::parse_lesson(&text, &relative) {
            Ok(lesson) => {
                if let Some(other) = lessons.iter().find(|l| l.front.id == lesson.front.id) {
                    broken.push(BrokenLesson {
                        error: format!(
                            "lesson id {} is already used by {}",
                            lesson.front.id,
                            other.path.display()
                        ),
                        path: relative,
                    });
                } else {
                    lessons.push(lesson);
                }
            }
            Err(error) => broken.push(BrokenLesson {
                path: relative,
                error: error.to_string(),
            }),
        }
    }
    lessons.sort_by(|a, b| {
        (a.front.week(), a.front.order, &a.front.id).cmp(&(
            b.front.week(),
            b.front.order,
            &b.front.id,
        ))
    });
    Ok((lessons, broken))
}

/// Every lesson, failing on the first file that breaks the format.
pub fn discover(root: &Path) -> anyhow::Result<Vec<Lesson>> {
    let (lessons, broken) = discover_all(root)?;
    if let Some(first) = broken.first() {
        anyhow::bail!("{}: {}", first.path.display(), first.error);
    }
    Ok(lessons)
}

/// Finds one lesson by id; broken files are named in the error if it is not found.
pub fn find(root: &Path, id: &str) -> anyhow::Result<Lesson> {
    let (lessons, broken) = discover_all(root)?;
    let known: Vec<String> = lessons
        .iter()
        .map(|lesson| lesson.front.id.clone())
        .collect();
    lessons
        .into_iter()
        .find(|lesson| lesson.front.id == id)
        .ok_or_else(|| {
            let mut message = format!(
                "no lesson has id `{id}`; the course has: {}",
                known.join(", ")
            );
            for file in &broken {
                message.push_str(&format!(
                    "\n  {} does not follow course/FORMAT.md: {}",
                    file.path.display(),
                    file.error
                ));
            }
            anyhow::anyhow!(message)
        })
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            // Starter code is not part of the lesson text.
            if path.file_name().is_some_and(|name| name == "starters") {
                continue;
            }
            collect_markdown(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "md") {
            out.push(path);
        }
    }
    Ok(())
}
