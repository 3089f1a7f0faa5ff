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
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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
    let log_name = step.log.clone().unwrap_or_default();
    let mut checks = Vec::new();
    for (source, assertion) in &step.assertions {
        let started = Instant::now();
        let (status, detail) =
            evaluate(assertion, step, lesson_run, &log_lines, &log_name, deadline);
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

fn pass(detail: impl Into<String>) -> (Status, Option<String>) {
    (Status::Pass, Some(detail.into()))
}

fn fail(detail: impl Into<String>) -> (Status, Option<String>) {
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

fn evaluate(
    assertion: &Assertion,
    step: &ProveStep,
    lesson_run: &mut LessonRun,
    lines: &[&[u8]],
    log: &str,
    deadline: Instant,
) -> (Status, Option<String>) {
    match assertion {
        Assertion::LogHas(pattern, at_least) => {
            let count = lines.iter().filter(|line| pattern.matches(line)).count();
            if count >= *at_least {
                pass(format!("{count} matching line(s)"))
            } else {
                fail(format!(
                    "{count} line(s) of log `{log}` match `{}`, expected at least {at_least}; its last lines:\n{}",
                    pattern.source(),
                    last_lines(lines)
                ))
            }
        }
        Assertion::LogLacks(pattern) => match lines.iter().find(|line| pattern.matches(line)) {
            None => pass("no matching line"),
            Some(line) => fail(format!("log `{log}` has the line `{}`", show(line))),
        },
        Assertion::TidsDiffer(ours, theirs) => {
            let (a, b) = (tids(ours, lines), tids(theirs, lines));
            if a.is_empty() || b.is_empty() {
                let missing = if a.is_empty() { ours } else { theirs };
                return fail(format!(
                    "no line of log `{log}` matches `{}`, so the thread ids cannot be compared; its last lines:\n{}",
                    missing.source(),
                    last_lines(lines)
                ));
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
        Assertion::TidsAtMost(pattern, bound) => {
            let found = tids(pattern, lines);
            if found.is_empty() {
                fail(format!(
                    "no line of log `{log}` matches `{}`; its last lines:\n{}",
                    pattern.source(),
                    last_lines(lines)
                ))
            } else if found.len() <= *bound {
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
        Assertion::SocketTidsDisjoint(pattern) => {
            let touched = match finished_trace(step, lesson_run) {
                Ok(text) => crate::trace::socket_threads(&text),
                Err(skipped) => return skipped,
            };
            let workers = tids(pattern, lines);
            if workers.is_empty() {
                return fail(format!(
                    "no line of log `{log}` matches `{}`; its last lines:\n{}",
                    pattern.source(),
                    last_lines(lines)
                ));
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
        Assertion::DiskTidsDisjoint(pattern) => {
            let disk = match finished_trace(step, lesson_run) {
                Ok(text) => crate::trace::disk_threads(&text, &lesson_run.data_dir),
                Err(skipped) => return skipped,
            };
            let forbidden = tids(pattern, lines);
            if forbidden.is_empty() {
                return fail(format!(
                    "no line of log `{log}` matches `{}`; its last lines:\n{}",
                    pattern.source(),
                    last_lines(lines)
                ));
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
        process_assertion => {
            let Some(name) = step.server.as_ref() else {
                return (
                    Status::Error,
                    Some("no server for this assertion".to_owned()),
                );
            };
            let Some(server) = lesson_run.servers.get_mut(name) else {
                return (
                    Status::Error,
                    Some(format!("the server `{name}` was not started")),
                );
            };
            if let Assertion::Exits { status, within } = process_assertion {
                return match server.wait_exit(Instant::now() + *within) {
                    None => fail(format!(
                        "the server was still running {} ms later",
                        within.as_millis()
                    )),
                    Some(exit) if exit.code() == Some(*status) => pass(format!("{exit}")),
                    Some(exit) => fail(format!(
                        "the server exited with {exit}, expected status {status}"
                    )),
                };
            }
            if let Some(exit) = server.exited() {
                return fail(format!(
                    "the server is not running: it exited ({exit}); its output:\n{}",
                    crate::server::indent(&server.log_text())
                ));
            }
            let pid = server.pid();
            match process_assertion {
                Assertion::Alive => pass(format!("pid {pid} is running")),
                Assertion::Threads {
                    exact,
                    bound: ThreadBound::WorkersPlusIo,
                } => {
                    let gathered = budget::Budget::gather(
                        server.command(),
                        &server.stats_workers.values(),
                        log,
                        lines,
                    );
                    let tasks = format!("/proc/{pid}/task");
                    budget::evaluate(*exact, gathered, |holds| {
                        poll_count(&tasks, holds, deadline)
                    })
                }
                Assertion::Threads {
                    exact,
                    bound: ThreadBound::Count(count),
                } => {
                    let holds = |n: usize| if *exact { n == *count } else { n <= *count };
                    let last = poll_count(&format!("/proc/{pid}/task"), holds, deadline);
                    match last {
                        Ok(n) if holds(n) => pass(format!("{n} thread(s)")),
                        Ok(n) => fail(format!(
                            "the server has {n} threads; expected {} {count}",
                            if *exact { "exactly" } else { "at most" }
                        )),
                        Err(e) => (Status::Error, Some(e)),
                    }
                }
                Assertion::FdsAtMost(bound) => {
                    match poll_count(&format!("/proc/{pid}/fd"), |n| n <= *bound, deadline) {
                        Ok(n) if n <= *bound => pass(format!("{n} open fd(s)")),
                        Ok(n) => fail(format!(
                            "the server still has {n} open fds, more than {bound}: a descriptor outlives its connection"
                        )),
                        Err(e) => (Status::Error, Some(e)),
                    }
                }
                Assertion::CpuAtMost { percent, over } => match cpu_percent(pid, *over) {
                    Ok(used) if used <= *percent => {
                        pass(format!("{used:.1}% of a CPU over {} ms", over.as_millis()))
                    }
                    Ok(used) => fail(format!(
                        "the server used {used:.1}% of a CPU over {} ms, more than {percent}%: it spins",
                        over.as_millis()
                    )),
                    Err(e) => (Status::Error, Some(e)),
                },
                _ => unreachable!("log assertions are handled above"),
            }
        }
    }
}

/// Counts entries of a /proc folder until `holds` or the deadline; returns the last count.
fn poll_count(
    dir: &str,
    holds: impl Fn(usize) -> bool,
    deadline: Instant,
) -> Result<usize, String> {
    // Bounded by the deadline; the process closes fds and ends threads asynchronously.
    loop {
        let count = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {dir}: {e}"))?
            .count();
        if holds(count) || Instant::now() >= deadline {
            return Ok(count);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// User + system CPU ticks of a process.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("malformed stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or("malformed stat")
    };
    Ok(field(11)? + field(12)?)
}

fn cpu_percent(pid: u32, over: Duration) -> Result<f64, String> {
    let before = cpu_ticks(pid)?;
    let started = Instant::now();
    std::thread::sleep(over);
    let after = cpu_ticks(pid)?;
    let seconds = (after - before) as f64 / crate::sys::clock_ticks_per_second() as f64;
    Ok(100.0 * seconds / started.elapsed().as_secs_f64())
}
