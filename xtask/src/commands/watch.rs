//! `cargo xtask watch [<id>]`: runs a lesson, then runs it again whenever its code or its lesson
//! file is saved, and takes one-letter commands (`r`, `h`, `n`, `q`, each followed by Enter)
//! between runs.
//!
//! Each run is an ordinary `cargo xtask lesson` run ([`super::lesson_command`]) on this thread,
//! so one run goes at a time and each ends as a `lesson` run ends: its servers stopped (the
//! runner stops every server of a run before it reports), its result saved for `hint`, its
//! progress recorded when it graded the student's copy, and after a pass of that copy the next
//! lesson's `start` command. What happens meanwhile — file changes from the watcher, lines from
//! stdin — waits in one channel, and changes that arrive during a run make a single run after it.
//!
//! The watcher is notify's. It watches folders, not files, so a save that writes a new file and
//! renames it over the old one (as many editors do) is seen. Its events include reads (the run
//! itself opens the lesson file and the sources), which are dropped: only a change counts. A
//! change is acted on once the files have been quiet for 300 ms, since an editor's save is
//! several events (write, rename, attribute change) within a few milliseconds. When file-system
//! events cannot be had (no inotify, or its watch limit reached), or with `--poll`, notify's
//! polling watcher compares the files every second instead, and the screen says which of the two
//! is in use.

use super::{
    RunArgs, foreign_skip_reason, grades_student_copy, lesson_command, next_start_line,
    run_subject, shown, usage_error,
};
use crate::lesson::{self, Lesson};
use crate::{last_run, report, student, workspace};
use notify::event::{EventKind, MetadataKind, ModifyKind};
use notify::{PollWatcher, RecommendedWatcher, RecursiveMode};
use std::collections::VecDeque;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

/// How long file events are collected before they count as one change: an editor's save is
/// several events (write, rename, attribute change) within a few milliseconds.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The longest a run waits for the files to go quiet, so a file written without pause (a log
/// someone keeps in the crate's folder) delays a run but never stops it.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// How often the polling watcher compares the files.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The commands, as the screen lists them.
const COMMANDS: &str = "r re-run, h hint, n next lesson, q quit (type one, then Enter)";

/// The arguments of `cargo xtask watch` after the lesson id.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// How each run runs, as for `cargo xtask lesson`.
    #[command(flatten)]
    pub run: RunArgs,
    /// Stop after this many runs (the exit status is the last run's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_runs: Option<u32>,
    /// Compare the files (their times and contents) every second instead of waiting for
    /// file-system events, for folders where those do not arrive (some network and container
    /// mounts). Used anyway when file-system events cannot be had; the screen says which.
    #[arg(long)]
    pub poll: bool,
    /// Also run again when a file under DIR changes, for example your own server's sources with
    /// `--server`. May be given more than once.
    #[arg(long, value_name = "DIR")]
    pub also_watch: Vec<PathBuf>,
    /// A testing aid: read the commands from stdin even when it is not a terminal (a pipe or a
    /// file, as a test or a script gives them); the end of that input quits.
    #[arg(long)]
    pub script: bool,
}

/// What reaches the watch loop, in the order it happened.
#[derive(Debug)]
enum Event {
    /// The watcher saw these paths change (one event, before any debouncing).
    Changed(Vec<PathBuf>),
    /// The watcher reported an error.
    WatchError(String),
    /// A line typed on stdin.
    Line(String),
    /// Stdin ended.
    InputClosed,
}

/// What the loop does after waiting.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Run the lesson again, for this reason.
    Run(String),
    /// Leave.
    Quit(String),
}

/// The files whose change means a new run.
#[derive(Debug)]
struct Watched {
    /// Folders watched with everything below them (the code's folder, `--also-watch` ones).
    trees: Vec<PathBuf>,
    /// The lesson file, watched through its folder.
    lesson_file: PathBuf,
}

impl Watched {
    /// The folders to give the watcher: each tree, and the lesson file's folder (only its own
    /// files, of which only the lesson file counts).
    fn folders(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut folders: Vec<_> = self
            .trees
            .iter()
            .map(|tree| (tree.clone(), RecursiveMode::Recursive))
            .collect();
        if let Some(folder) = self.lesson_file.parent() {
            folders.push((folder.to_path_buf(), RecursiveMode::NonRecursive));
        }
        folders
    }

    /// Whether a change to `path` means a new run: the lesson file, or a file in a tree that is
    /// not build output, an editor's swap or backup file, or hidden. A folder's own change (its
    /// time, when a file in it is replaced) comes with the file's and adds nothing.
    fn matters(&self, path: &Path) -> bool {
        if path == self.lesson_file {
            return true;
        }
        if path.is_dir() {
            return false;
        }
        self.trees.iter().any(|tree| {
            path.strip_prefix(tree).is_ok_and(|inside| {
                let build_output = inside.components().any(|c| c.as_os_str() == "target");
                let name = inside
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                let editor_file =
                    name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp");
                !build_output && !editor_file
            })
        })
    }
}

/// `cargo xtask watch <id>`: the lesson run, and run again on every save, until `q`.
pub fn watch_command(id: &str, args: &WatchArgs) -> anyhow::Result<ExitCode> {
    if let Err(message) = args.run.foreign_server() {
        return usage_error(&message);
    }
    if !args.script && !std::io::stdin().is_terminal() {
        return usage_error(
            "`cargo xtask watch` needs a terminal on stdin, where you type its commands \
             (r, h, n, q), and stdin is not one: run it in a terminal (`--script` reads the \
             commands from a pipe instead, as tests do)",
        );
    }
    if let Some(dir) = args.also_watch.iter().find(|dir| !dir.is_dir()) {
        return usage_error(&format!("--also-watch {}: no such folder", dir.display()));
    }
    let root = workspace::workspace_root();
    let lesson = lesson::find(&root, id)?;
    if args.run.server.is_some() && foreign_skip_reason(&lesson, true).is_some() {
        // `lesson` refuses it, saying why (status 2); no save would change that.
        return lesson_command(&lesson.front.id, &args.run);
    }
    let (watched, whose) = watched_files(&root, &lesson, args)?;

    let (sender, receiver) = std::sync::mpsc::channel();
    let (_watcher, how) = start_watcher(&watched, args.poll, sender.clone());
    read_commands(sender)?;
    let names: Vec<String> = watched
        .trees
        .iter()
        .chain([&watched.lesson_file])
        .map(|path| shown(&root, path))
        .collect();
    report::outln(&format!("watch: {whose}"));
    report::outln(&format!("watch: watching {} ({how})", names.join(", ")));
    report::outln(&format!("watch: commands: {COMMANDS}"));

    let mut backlog = VecDeque::new();
    let mut reason = String::from("the first run");
    let mut runs = 0;
    loop {
        runs += 1;
        report::outln(&format!("\nwatch: run {runs} — {reason}"));
        let (code, result) = match lesson_command(&lesson.front.id, &args.run) {
            Ok(code) => (code, saved_result(&root, &lesson)),
            Err(error) => {
                // A lesson file saved half-edited is a reason to wait for the next save, not to
                // leave; the result saved before this run is not this run's.
                report::outln(&format!("watch: the run could not start: {error:#}"));
                (ExitCode::FAILURE, "no result".to_owned())
            }
        };
        report::outln(&format!("watch: {result}; waiting for a save — {COMMANDS}"));
        if args.max_runs.is_some_and(|max| runs >= max) {
            report::outln(&format!("watch: stopping after {runs} run(s) (--max-runs)"));
            return Ok(code);
        }
        let next = wait_for_next(&receiver, &mut backlog, &watched, |command| {
            run_command(&root, &lesson, command)
        });
        match next {
            Next::Run(why) => reason = why,
            Next::Quit(why) => {
                report::outln(&format!("watch: {why}"));
                return Ok(code);
            }
        }
    }
}

/// The files to watch and, in words, whose code the runs grade.
fn watched_files(
    root: &Path,
    lesson: &Lesson,
    args: &WatchArgs,
) -> anyhow::Result<(Watched, String)> {
    let id = &lesson.front.id;
    let student = grades_student_copy(root, lesson, &args.run);
    let subject = run_subject(root, lesson, &args.run, student).describe();
    let (code, whose) = if student {
        (
            student::student_dir(root, lesson),
            format!("the runs grade {subject}"),
        )
    } else {
        let note = if args.run.server.is_none() && !args.run.reference {
            format!(" ({id} is not started: `cargo xtask start {id}` gives you your copy)")
        } else {
            String::new()
        };
        (
            root.join(workspace::crate_dir(root, &lesson.front.krate)?),
            format!("the runs grade {subject}{note}"),
        )
    };
    let mut trees = vec![code];
    for dir in &args.also_watch {
        trees.push(std::path::absolute(dir)?);
    }
    let watched = Watched {
        trees,
        lesson_file: root.join(&lesson.path),
    };
    Ok((watched, whose))
}

/// The running watcher, whichever kind it is, held only to keep it alive while the loop runs:
/// dropping it stops it. `None` when no watcher could start (then only `r` runs again).
type RunningWatcher = Option<Box<dyn std::any::Any>>;

/// Starts the file-system event watcher, or the polling one when events are unavailable or
/// `poll` asks for it; returns it with a description of which one runs, for the screen.
fn start_watcher(watched: &Watched, poll: bool, events: Sender<Event>) -> (RunningWatcher, String) {
    let handler = move |result: notify::Result<notify::Event>| {
        let event = match result {
            Ok(event) if is_a_read(&event.kind) => return,
            Ok(event) => Event::Changed(event.paths),
            Err(error) => Event::WatchError(error.to_string()),
        };
        // The loop has ended when nobody receives: nothing is left to tell.
        let _ = events.send(event);
    };
    let folders = watched.folders();
    let polling = |why: String| format!("polling every {}s: {why}", POLL_INTERVAL.as_secs());
    let unavailable = if poll {
        "--poll".to_owned()
    } else {
        match watching::<RecommendedWatcher>(&folders, handler.clone()) {
            Ok(watcher) => {
                let how = format!(
                    "file-system events, {} ms of quiet before a run",
                    DEBOUNCE.as_millis()
                );
                return (Some(Box::new(watcher)), how);
            }
            Err(error) => format!("file-system events are unavailable ({error})"),
        }
    };
    match watching::<PollWatcher>(&folders, handler) {
        Ok(watcher) => (Some(Box::new(watcher)), polling(unavailable)),
        Err(error) => (
            None,
            format!("not watching: {unavailable}, and polling failed ({error}); type r to run"),
        ),
    }
}

/// Whether a watcher event only says a file was read (opened, closed unchanged, its access
/// time set): every run reads the lesson file and the sources, and must not cause the next.
fn is_a_read(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    )
}

/// A watcher of type `W` over `folders`, calling `handler` with each event.
fn watching<W: notify::Watcher>(
    folders: &[(PathBuf, RecursiveMode)],
    handler: impl notify::EventHandler,
) -> notify::Result<W> {
    // The polling watcher compares file times in whole seconds, so a save in the same second as
    // the scan before it would go unseen; it compares contents too (the watched folders are a
    // crate's sources and a lesson folder, small enough to read every second). File-system
    // events ignore both settings.
    let config = notify::Config::default()
        .with_poll_interval(POLL_INTERVAL)
        .with_compare_contents(true);
    let mut watcher = W::new(handler, config)?;
    for (folder, mode) in folders {
        watcher.watch(folder, *mode)?;
    }
    Ok(watcher)
}

/// Reads stdin's lines on a thread of its own into the loop's channel. The thread ends with
/// stdin or with the process: it holds nothing that needs cleaning up.
fn read_commands(events: Sender<Event>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("watch-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if events.send(Event::Line(line)).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::InputClosed);
        })?;
    Ok(())
}

/// The result of the run that just ended, as it was saved: status and points.
fn saved_result(root: &Path, lesson: &Lesson) -> String {
    match last_run::load(root, &lesson.front.id) {
        Ok(Some(run)) => format!(
            "{} {}/{}",
            run.result.status.word(),
            run.result.points,
            run.result.max_points
        ),
        _ => "no result".to_owned(),
    }
}

/// Waits until something asks for a run or for the end, answering the commands that do
/// neither (`h`, `n`) through `command` meanwhile. A change asks for a run once the files have
/// settled (see [`settle`]).
fn wait_for_next(
    events: &Receiver<Event>,
    backlog: &mut VecDeque<Event>,
    watched: &Watched,
    mut command: impl FnMut(&str),
) -> Next {
    loop {
        let Some(event) = backlog.pop_front().or_else(|| events.recv().ok()) else {
            return Next::Quit("the watcher and stdin are gone: quitting".to_owned());
        };
        match event {
            Event::Changed(paths) => {
                let mut changed: Vec<PathBuf> =
                    paths.into_iter().filter(|p| watched.matters(p)).collect();
                if changed.is_empty() {
                    continue;
                }
                if let Some(quit) = settle(events, backlog, watched, &mut changed) {
                    return quit;
                }
                changed.sort();
                changed.dedup();
                let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
                return Next::Run(format!("changed: {}", names.join(", ")));
            }
            Event::WatchError(error) => {
                report::outln(&format!("watch: the watcher reported an error: {error}"));
            }
            Event::InputClosed => return Next::Quit("stdin closed: quitting".to_owned()),
            Event::Line(line) => match line.trim() {
                "" => {}
                "r" => return Next::Run("r: run again".to_owned()),
                "q" => return Next::Quit("q: quitting".to_owned()),
                "h" | "n" => command(line.trim()),
                other => report::outln(&format!("watch: `{other}` is not a command: {COMMANDS}")),
            },
        }
    }
}

/// Collects the changes that belong with the first one: those already waiting (saves made
/// during the run that just ended) and those that follow until the files have been quiet for
/// [`DEBOUNCE`] (at most [`MAX_SETTLE`]), so they make one run. Whatever else arrives meanwhile
/// is kept in `backlog`, in order, for the next wait — but a `q` ends the loop at once.
fn settle(
    events: &Receiver<Event>,
    backlog: &mut VecDeque<Event>,
    watched: &Watched,
    changed: &mut Vec<PathBuf>,
) -> Option<Next> {
    let started = Instant::now();
    let mut kept = VecDeque::new();
    let quit = loop {
        let event = match backlog.pop_front() {
            Some(event) => event,
            None => {
                let left = MAX_SETTLE.saturating_sub(started.elapsed());
                if left.is_zero() {
                    break None;
                }
                // Quiet for the debounce time, or nobody left to send: settled.
                match events.recv_timeout(DEBOUNCE.min(left)) {
                    Ok(event) => event,
                    Err(_) => break None,
                }
            }
        };
        match event {
            Event::Changed(more) => changed.extend(more.into_iter().filter(|p| watched.matters(p))),
            Event::Line(line) if line.trim() == "q" => {
                break Some(Next::Quit("q: quitting".into()));
            }
            other => kept.push_back(other),
        }
    };
    kept.append(backlog);
    *backlog = kept;
    quit
}

/// Answers `h` (the lesson's next hint) and `n` (the next lesson's `start` command).
fn run_command(root: &Path, lesson: &Lesson, command: &str) {
    let id = &lesson.front.id;
    match command {
        "h" => {
            if let Err(error) = super::hint_command(id, false) {
                report::outln(&format!("watch: no hint: {error:#}"));
            }
        }
        _ => report::outln(&next_start_line(root, lesson).unwrap_or_else(|| {
            format!("{id} is the course's last lesson: there is no next one to start")
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched() -> Watched {
        Watched {
            trees: vec![PathBuf::from("/w/student/task_queue")],
            lesson_file: PathBuf::from("/w/course/w05/01-task-queue-contract.md"),
        }
    }

    /// Waits on a channel holding `events` (and closed after them), recording the commands it
    /// was asked to answer.
    fn wait(events: Vec<Event>, backlog: &mut VecDeque<Event>) -> (Next, Vec<String>) {
        let (sender, receiver) = std::sync::mpsc::channel();
        for event in events {
            sender.send(event).unwrap();
        }
        drop(sender);
        let mut asked = Vec::new();
        let next = wait_for_next(&receiver, backlog, &watched(), |c| asked.push(c.to_owned()));
        (next, asked)
    }

    #[test]
    fn the_lesson_file_and_the_codes_files_matter_but_not_build_output_or_editor_files() {
        let watched = watched();
        let matters = |path: &str| watched.matters(Path::new(path));
        assert!(matters("/w/course/w05/01-task-queue-contract.md"));
        assert!(matters("/w/student/task_queue/src/lib.rs"));
        assert!(!matters("/w/course/w05/02-worker-lifecycle.md"));
        assert!(!matters("/w/course/w05/.01-task-queue-contract.md.swp"));
        assert!(!matters("/w/student/task_queue/target/debug/foo"));
        assert!(!matters("/w/student/task_queue/src/.lib.rs.swp"));
        assert!(!matters("/w/student/task_queue/src/lib.rs~"));
    }

    #[test]
    fn changes_waiting_together_make_one_run_and_other_events_keep_their_turn() {
        let lib = PathBuf::from("/w/student/task_queue/src/lib.rs");
        let queue = PathBuf::from("/w/student/task_queue/src/queue.rs");
        let mut backlog = VecDeque::new();
        let (next, asked) = wait(
            vec![
                Event::Changed(vec![PathBuf::from("/w/student/task_queue/target/x")]),
                Event::Changed(vec![lib.clone()]),
                Event::Line("n".into()),
                Event::Changed(vec![queue.clone(), lib.clone()]),
            ],
            &mut backlog,
        );
        assert_eq!(
            next,
            Next::Run(format!("changed: {}, {}", lib.display(), queue.display()))
        );
        assert!(asked.is_empty(), "{asked:?}");
        // The `n` typed meanwhile is answered at the next wait, and no second run follows.
        assert_eq!(backlog.len(), 1);
        let (next, asked) = wait(vec![], &mut backlog);
        assert_eq!(asked, ["n"]);
        assert_eq!(
            next,
            Next::Quit("the watcher and stdin are gone: quitting".into())
        );
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, RenameMode};
        assert!(is_a_read(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(is_a_read(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_a_read(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        assert!(!is_a_read(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(!is_a_read(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(!is_a_read(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn a_change_waits_for_the_files_to_be_quiet_while_the_watcher_lives() {
        let (sender, receiver) = std::sync::mpsc::channel();
        let lib = PathBuf::from("/w/student/task_queue/src/lib.rs");
        let course = PathBuf::from("/w/course/w05/01-task-queue-contract.md");
        sender.send(Event::Changed(vec![lib.clone()])).unwrap();
        sender.send(Event::Changed(vec![course.clone()])).unwrap();
        let started = Instant::now();
        let next = wait_for_next(&receiver, &mut VecDeque::new(), &watched(), |_| {});
        // The sender is alive, so only a quiet spell ends the collection, and both changes make
        // one run.
        assert!(started.elapsed() >= DEBOUNCE, "{:?}", started.elapsed());
        assert_eq!(
            next,
            Next::Run(format!("changed: {}, {}", course.display(), lib.display()))
        );
        drop(sender);
    }

    #[test]
    fn a_q_waiting_behind_a_change_ends_the_loop_at_once() {
        let mut backlog = VecDeque::new();
        let (next, _) = wait(
            vec![
                Event::Changed(vec![PathBuf::from("/w/student/task_queue/src/lib.rs")]),
                Event::Line("q".into()),
            ],
            &mut backlog,
        );
        assert_eq!(next, Next::Quit("q: quitting".into()));
    }

    #[test]
    fn the_line_commands_run_hint_next_and_quit() {
        let mut backlog = VecDeque::new();
        let (next, asked) = wait(
            vec![
                Event::Line(" h ".into()),
                Event::Line("".into()),
                Event::Line("x".into()),
                Event::Line("n".into()),
                Event::Line("r".into()),
            ],
            &mut backlog,
        );
        assert_eq!(asked, ["h", "n"]);
        assert_eq!(next, Next::Run("r: run again".into()));
        let (next, _) = wait(vec![Event::Line("q".into())], &mut backlog);
        assert_eq!(next, Next::Quit("q: quitting".into()));
        let (next, _) = wait(vec![Event::InputClosed], &mut backlog);
        assert_eq!(next, Next::Quit("stdin closed: quitting".into()));
    }
}
