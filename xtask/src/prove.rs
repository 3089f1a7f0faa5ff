//! `console prove`: assertions over a server's log, its live process, and a strace record.
//!
//! The `threads ... workers + io` budget, whose bound comes from the server itself, is worked
//! out in [`budget`].

pub(crate) mod budget;

use crate::client::show;
use crate::lesson::pattern::LinePattern;
use crate::lesson::{Assertion, Lesson, ProveStep, ThreadBound};
use crate::results::{CheckResult, Outcome, Status};
use crate::run_state::LessonRun;
use crate::server::RunningServer;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use test_support::procfs::Proc;

/// Evaluates every assertion of a prove step; one check each.
pub(crate) fn run(
    lesson: &Lesson,
    step: &ProveStep,
    lesson_run: &mut LessonRun,
    deadline: Instant,
) -> Outcome {
    let log_text = step
        .log
        .as_deref()
        .and_then(|log| lesson_run.server_with_log(lesson, log))
        .map(|server| server.log_text())
        .unwrap_or_default();
    let log_lines: Vec<&[u8]> = crate::lesson::pattern::split_lines(log_text.as_bytes());
    let log = StepLog {
        lines: &log_lines,
        name: step.log.as_deref().unwrap_or_default(),
    };
    let mut checks = Vec::new();
    for (source, assertion) in &step.assertions {
        let started = Instant::now();
        let (status, detail) = evaluate(assertion, step, lesson_run, &log, deadline);
        checks.push(CheckResult::new(source.clone(), status, detail).timed(started.elapsed()));
    }
    Outcome::from_checks(checks)
}

/// The record of the step's trace, strace detached first; or the SKIPPED verdict when there is
/// none (strace missing, or the trace step did not run).
fn finished_trace(
    step: &ProveStep,
    lesson_run: &mut LessonRun,
) -> Result<String, (Status, Option<String>)> {
    let Some(trace) = step
        .trace
        .as_ref()
        .and_then(|name| lesson_run.traces.get_mut(name))
    else {
        return Err((
            Status::Skipped,
            Some("the trace step did not run".to_owned()),
        ));
    };
    trace
        .finish()
        .map_err(|reason| (Status::Skipped, Some(reason)))
}

fn pass(detail: impl Into<String>) -> AssertionVerdict {
    (Status::Pass, Some(detail.into()))
}

fn fail(detail: impl Into<String>) -> AssertionVerdict {
    (Status::Fail, Some(detail.into()))
}

/// The distinct thread ids `pattern` captures in the log.
fn tids(pattern: &LinePattern, lines: &[&[u8]]) -> BTreeSet<u64> {
    lines
        .iter()
        .filter_map(|line| pattern.captures(line).flatten())
        .collect()
}

fn last_lines(lines: &[&[u8]]) -> String {
    let start = lines.len().saturating_sub(8);
    let shown: Vec<String> = lines[start..]
        .iter()
        .map(|l| format!("      {}", show(l)))
        .collect();
    if shown.is_empty() {
        "      (the log is empty)".to_owned()
    } else {
        shown.join("\n")
    }
}

fn list(set: &BTreeSet<u64>) -> String {
    let items: Vec<String> = set.iter().take(12).map(u64::to_string).collect();
    let more = if set.len() > 12 {
        format!(", ... ({} in all)", set.len())
    } else {
        String::new()
    };
    format!("{}{more}", items.join(", "))
}

/// A check's verdict: its status and what it found.
type AssertionVerdict = (Status, Option<String>);

/// The log a prove step reads: its lines, and its name for the messages.
struct StepLog<'a> {
    /// The log's lines, without their line ends.
    lines: &'a [&'a [u8]],
    /// The log's name, as the step names it.
    name: &'a str,
}

impl StepLog<'_> {
    /// The failure of an assertion whose pattern matched no line of the log.
    fn no_match(&self, pattern: &LinePattern, consequence: &str) -> AssertionVerdict {
        fail(format!(
            "no line of log `{}` matches `{}`{consequence}; its last lines:\n{}",
            self.name,
            pattern.source(),
            last_lines(self.lines)
        ))
    }
}

/// Evaluates one assertion: the log assertions read the log, the trace assertions the step's
/// strace record as well, and the process assertions the server the step names.
fn evaluate(
    assertion: &Assertion,
    step: &ProveStep,
    lesson_run: &mut LessonRun,
    log: &StepLog<'_>,
    deadline: Instant,
) -> AssertionVerdict {
    match assertion {
        Assertion::LogHas(pattern, at_least) => log_has(log, pattern, *at_least),
        Assertion::LogLacks(pattern) => log_lacks(log, pattern),
        Assertion::TidsDiffer(ours, theirs) => tids_differ(log, ours, theirs),
        Assertion::TidsAtMost(pattern, bound) => tids_at_most(log, pattern, *bound),
        Assertion::SocketTidsDisjoint(pattern) => {
            socket_tids_disjoint(log, pattern, step, lesson_run)
        }
        Assertion::DiskTidsDisjoint(pattern) => disk_tids_disjoint(log, pattern, step, lesson_run),
        Assertion::EventfdWritesAtMostReads(pattern) => {
            eventfd_writes_at_most_reads(log, pattern, step, lesson_run)
        }
        Assertion::Exits { status, within } => match step_server(step, lesson_run) {
            Ok(server) => exits(server, *status, *within),
            Err(verdict) => verdict,
        },
        Assertion::Alive => match running_server(step, lesson_run) {
            Ok(server) => pass(format!("pid {} is running", server.pid())),
            Err(verdict) => verdict,
        },
        Assertion::Threads { exact, bound } => match running_server(step, lesson_run) {
            Ok(server) => threads(server, *exact, *bound, log, deadline),
            Err(verdict) => verdict,
        },
        Assertion::FdsAtMost(bound) => match running_server(step, lesson_run) {
            Ok(server) => fds_at_most(server.pid(), *bound, deadline),
            Err(verdict) => verdict,
        },
        Assertion::CpuAtMost { percent, over } => match running_server(step, lesson_run) {
            Ok(server) => cpu_at_most(server.pid(), *percent, *over),
            Err(verdict) => verdict,
        },
    }
}

/// `log has P [at least N times]`.
fn log_has(log: &StepLog<'_>, pattern: &LinePattern, at_least: usize) -> AssertionVerdict {
    let count = log
        .lines
        .iter()
        .filter(|line| pattern.matches(line))
        .count();
    if count >= at_least {
        pass(format!("{count} matching line(s)"))
    } else {
        fail(format!(
            "{count} line(s) of log `{}` match `{}`, expected at least {at_least}; its last lines:\n{}",
            log.name,
            pattern.source(),
            last_lines(log.lines)
        ))
    }
}

/// `log lacks P`.
fn log_lacks(log: &StepLog<'_>, pattern: &LinePattern) -> AssertionVerdict {
    match log.lines.iter().find(|line| pattern.matches(line)) {
        None => pass("no matching line"),
        Some(line) => fail(format!("log `{}` has the line `{}`", log.name, show(line))),
    }
}

/// `log tids P differ from Q`.
fn tids_differ(log: &StepLog<'_>, ours: &LinePattern, theirs: &LinePattern) -> AssertionVerdict {
    let (a, b) = (tids(ours, log.lines), tids(theirs, log.lines));
    if a.is_empty() || b.is_empty() {
        let missing = if a.is_empty() { ours } else { theirs };
        return log.no_match(missing, ", so the thread ids cannot be compared");
    }
    let shared: BTreeSet<u64> = a.intersection(&b).copied().collect();
    if shared.is_empty() {
        pass(format!("threads {} vs {}", list(&a), list(&b)))
    } else {
        fail(format!(
            "thread(s) {} appear in both `{}` and `{}`: the work ran on the wrong thread",
            list(&shared),
            ours.source(),
            theirs.source()
        ))
    }
}

/// `log tids P at most N`.
fn tids_at_most(log: &StepLog<'_>, pattern: &LinePattern, bound: usize) -> AssertionVerdict {
    let found = tids(pattern, log.lines);
    if found.is_empty() {
        log.no_match(pattern, "")
    } else if found.len() <= bound {
        pass(format!(
            "{} distinct thread(s): {}",
            found.len(),
            list(&found)
        ))
    } else {
        fail(format!(
            "{} distinct threads match `{}`, more than {bound}: {}",
            found.len(),
            pattern.source(),
            list(&found)
        ))
    }
}

/// `socket tids disjoint from P`: no worker the log names made a system call on a client
/// socket, by the step's strace record.
fn socket_tids_disjoint(
    log: &StepLog<'_>,
    pattern: &LinePattern,
    step: &ProveStep,
    lesson_run: &mut LessonRun,
) -> AssertionVerdict {
    let touched = match finished_trace(step, lesson_run) {
        Ok(text) => crate::trace::socket_threads(&text),
        Err(skipped) => return skipped,
    };
    let workers = tids(pattern, log.lines);
    if workers.is_empty() {
        return log.no_match(pattern, "");
    }
    if touched.is_empty() {
        return fail(
            "strace saw no thread touch a client socket: the trace recorded nothing to judge",
        );
    }
    let shared: BTreeSet<u64> = touched.intersection(&workers).copied().collect();
    if shared.is_empty() {
        pass(format!(
            "client sockets touched by thread(s) {}; workers {}",
            list(&touched),
            list(&workers)
        ))
    } else {
        fail(format!(
            "worker thread(s) {} made system calls on client sockets (threads that touched them: {})",
            list(&shared),
            list(&touched)
        ))
    }
}

/// `eventfd writes from P at most reads plus 1`: by the step's strace record, the threads the
/// log names wrote each eventfd they wrote at most once more than it was read.
fn eventfd_writes_at_most_reads(
    log: &StepLog<'_>,
    pattern: &LinePattern,
    step: &ProveStep,
    lesson_run: &mut LessonRun,
) -> AssertionVerdict {
    let text = match finished_trace(step, lesson_run) {
        Ok(text) => text,
        Err(skipped) => return skipped,
    };
    let writers = tids(pattern, log.lines);
    if writers.is_empty() {
        return log.no_match(pattern, "");
    }
    let uses = crate::trace::eventfd_use(&text, &writers);
    if uses.is_empty() {
        return fail(format!(
            "strace saw none of thread(s) {} write an eventfd: the trace recorded no wake-up to \
             judge (do results wake the loop through an eventfd?)",
            list(&writers)
        ));
    }
    let shown = |used: &crate::trace::EventfdUse| {
        format!(
            "eventfd {}: {} write(s) by {}, {} read(s)",
            used.fd,
            used.writes,
            list(&writers),
            used.reads
        )
    };
    let over: Vec<String> = uses
        .iter()
        .filter(|used| used.writes > used.reads + 1)
        .map(shown)
        .collect();
    if over.is_empty() {
        pass(uses.iter().map(shown).collect::<Vec<_>>().join("; "))
    } else {
        fail(format!(
            "{}: the workers woke the loop more often than it drained; write to the eventfd only \
             when a push makes the results queue non-empty (the push returns the new length: 1)",
            over.join("; ")
        ))
    }
}

/// `disk tids disjoint from P`: no thread the log names did file IO in the data folder, by the
/// step's strace record.
fn disk_tids_disjoint(
    log: &StepLog<'_>,
    pattern: &LinePattern,
    step: &ProveStep,
    lesson_run: &mut LessonRun,
) -> AssertionVerdict {
    let disk = match finished_trace(step, lesson_run) {
        Ok(text) => crate::trace::disk_threads(&text, &lesson_run.data_dir),
        Err(skipped) => return skipped,
    };
    let forbidden = tids(pattern, log.lines);
    if forbidden.is_empty() {
        return log.no_match(pattern, "");
    }
    if disk.is_empty() {
        return fail(format!(
            "strace saw no thread do file IO in the data folder {}: the trace recorded \
             nothing to judge (did the server get `--data-dir {{dir}}`, and did a write \
             reach it while the trace ran?)",
            lesson_run.data_dir.display()
        ));
    }
    let doers: BTreeSet<u64> = disk.keys().copied().collect();
    let shared: Vec<String> = disk
        .iter()
        .filter(|(tid, _)| forbidden.contains(tid))
        .map(|(tid, call)| format!("{tid} ({call})"))
        .collect();
    if shared.is_empty() {
        pass(format!(
            "file IO in the data folder by thread(s) {}; none of {}",
            list(&doers),
            list(&forbidden)
        ))
    } else {
        fail(format!(
            "thread(s) the log names `{}` did file IO in the data folder: {}",
            pattern.source(),
            shared.join("; ")
        ))
    }
}

/// The server a process assertion is about; an error verdict when the step names none or it
/// was not started.
fn step_server<'r>(
    step: &ProveStep,
    lesson_run: &'r mut LessonRun,
) -> Result<&'r mut RunningServer, AssertionVerdict> {
    let Some(name) = step.server.as_ref() else {
        return Err((
            Status::Error,
            Some("no server for this assertion".to_owned()),
        ));
    };
    lesson_run.servers.get_mut(name).ok_or_else(|| {
        (
            Status::Error,
            Some(format!("the server `{name}` was not started")),
        )
    })
}

/// [`step_server`], still running: a server that has exited fails the assertion, with its
/// output.
fn running_server<'r>(
    step: &ProveStep,
    lesson_run: &'r mut LessonRun,
) -> Result<&'r mut RunningServer, AssertionVerdict> {
    let server = step_server(step, lesson_run)?;
    if let Some(exit) = server.exited() {
        return Err(fail(format!(
            "the server is not running: it exited ({exit}); its output:\n{}",
            crate::server::indent(&server.log_text())
        )));
    }
    Ok(server)
}

/// `exits S within DUR`.
fn exits(server: &mut RunningServer, status: i32, within: Duration) -> AssertionVerdict {
    match server.wait_exit(Instant::now() + within) {
        None => fail(format!(
            "the server was still running {} ms later",
            within.as_millis()
        )),
        Some(exit) if exit.code() == Some(status) => pass(format!("{exit}")),
        Some(exit) => fail(format!(
            "the server exited with {exit}, expected status {status}"
        )),
    }
}

/// `threads at most|exactly B`: a number the lesson wrote, or the `workers + io` budget the
/// server itself gives.
fn threads(
    server: &RunningServer,
    exact: bool,
    bound: ThreadBound,
    log: &StepLog<'_>,
    deadline: Instant,
) -> AssertionVerdict {
    let process = Proc::of(server.pid());
    let threads = || {
        process
            .try_thread_count()
            .map_err(|error| error.to_string())
    };
    match bound {
        ThreadBound::WorkersPlusIo => {
            let gathered = budget::Budget::gather(
                server.command(),
                &server.stats_workers.values(),
                log.name,
                log.lines,
            );
            budget::evaluate(exact, gathered, |holds| {
                poll_count(threads, holds, deadline)
            })
        }
        ThreadBound::Count(count) => {
            let holds = |n: usize| if exact { n == count } else { n <= count };
            match poll_count(threads, holds, deadline) {
                Ok(n) if holds(n) => pass(format!("{n} thread(s)")),
                Ok(n) => fail(format!(
                    "the server has {n} threads; expected {} {count}",
                    if exact { "exactly" } else { "at most" }
                )),
                Err(e) => (Status::Error, Some(e)),
            }
        }
    }
}

/// `fds at most N`.
fn fds_at_most(pid: u32, bound: usize, deadline: Instant) -> AssertionVerdict {
    let process = Proc::of(pid);
    let fds = || process.try_fd_count().map_err(|error| error.to_string());
    match poll_count(fds, |n| n <= bound, deadline) {
        Ok(n) if n <= bound => pass(format!("{n} open fd(s)")),
        Ok(n) => fail(format!(
            "the server still has {n} open fds, more than {bound}: a descriptor outlives its connection"
        )),
        Err(e) => (Status::Error, Some(e)),
    }
}

/// `cpu at most P% over DUR`.
fn cpu_at_most(pid: u32, percent: f64, over: Duration) -> AssertionVerdict {
    match cpu_percent(pid, over) {
        Ok(used) if used <= percent => {
            pass(format!("{used:.1}% of a CPU over {} ms", over.as_millis()))
        }
        Ok(used) => fail(format!(
            "the server used {used:.1}% of a CPU over {} ms, more than {percent}%: it spins",
            over.as_millis()
        )),
        Err(e) => (Status::Error, Some(e)),
    }
}

/// Counts (threads or open fds, by `count`) until `holds` or the deadline; returns the last
/// count.
fn poll_count(
    count: impl Fn() -> Result<usize, String>,
    holds: impl Fn(usize) -> bool,
    deadline: Instant,
) -> Result<usize, String> {
    // Bounded by the deadline; the process closes fds and ends threads asynchronously.
    loop {
        let count = count()?;
        if holds(count) || Instant::now() >= deadline {
            return Ok(count);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The share of one CPU process `pid` used over `over`, in percent.
fn cpu_percent(pid: u32, over: Duration) -> Result<f64, String> {
    let process = Proc::of(pid);
    let ticks = || process.try_cpu_ticks().map_err(|error| error.to_string());
    let before = ticks()?;
    let started = Instant::now();
    std::thread::sleep(over);
    let after = ticks()?;
    let seconds = (after - before) as f64 / crate::sys::clock_ticks_per_second() as f64;
    Ok(100.0 * seconds / started.elapsed().as_secs_f64())
}
