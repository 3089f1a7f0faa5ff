//! `threads exactly workers + io` / `threads at most workers + io`: a thread budget computed
//! from the server as it was started and as it ran, not from a number in the lesson text.
//!
//! `threads exactly 3` is right only for the command the lesson wrote. A grader that starts the
//! server with `--loops 2`, or with other `--workers`, runs more threads, and none of them is a
//! leak. So the budget is the sum of two facts about the running server:
//!
//! - **workers**: the last `--workers N` (or `--workers=N`) of the command the server was started
//!   with — the last, because a later flag overrides an earlier one, as a foreign server's
//!   `--server '... {args} --workers 4'` relies on. Without one, the `workers=` field of the
//!   `stats` answers clients got from the server during the lesson (the protocol's default
//!   worker count is the machine's CPUs, which only the server itself can report).
//! - **io**: the distinct thread ids of the server's `main <tid>` and `loop <tid> ...` log lines,
//!   the threads that run an event loop: the one loop thread of a single-loop server, or the
//!   supervising main thread and one thread per loop with `--loops N`.
//!
//! A missing fact fails the check and names what is missing; the budget is never guessed. The
//! threads are counted in `/proc/<pid>/task`, within the step's timeout, exactly as for a
//! numeric bound.

use crate::lesson::pattern::LinePattern;
use crate::results::Status;
use std::collections::BTreeSet;

/// Where the worker count of a budget came from, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkersFrom {
    /// `--workers N` on the server's command line.
    CommandLine,
    /// The `workers=` field of the server's `stats` answers.
    Stats,
}

/// The facts a thread budget adds up, gathered when the assertion is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Budget {
    /// The pool's worker threads.
    workers: usize,
    /// Where `workers` came from.
    workers_from: WorkersFrom,
    /// The thread ids of the event-loop threads (`main <tid>`, `loop <tid>`); never empty.
    io: BTreeSet<u64>,
}

impl Budget {
    /// Gathers the budget of a server started with `command`, whose clients got `stats`
    /// answers carrying `stats_workers`, and whose log `log` has `lines`. Fails with the name of
    /// the fact that is missing or malformed.
    pub(super) fn gather(
        command: &str,
        stats_workers: &BTreeSet<u64>,
        log: &str,
        lines: &[&[u8]],
    ) -> Result<Budget, String> {
        let (workers, workers_from) = match workers_on_command_line(command)? {
            Some(workers) => (workers, WorkersFrom::CommandLine),
            None => (
                workers_from_stats(command, stats_workers)?,
                WorkersFrom::Stats,
            ),
        };
        let io = io_threads(lines);
        if io.is_empty() {
            return Err(format!(
                "the thread budget needs the IO threads, and no line of log `{log}` is \
                 `main <tid>` or `loop <tid> ...`: start the server with `--log`, so it names \
                 its event-loop threads"
            ));
        }
        Ok(Budget {
            workers,
            workers_from,
            io,
        })
    }

    /// `workers + io`: the threads the server may run.
    pub(super) fn total(&self) -> usize {
        self.workers + self.io.len()
    }

    /// The sum with its sources: `5 = 2 workers (--workers 2 on its command line) + 3 IO
    /// threads (tids 11, 12, 13 in its log)`.
    fn explain(&self) -> String {
        let from = match self.workers_from {
            WorkersFrom::CommandLine => format!("`--workers {}` on its command line", self.workers),
            WorkersFrom::Stats => format!("`workers={}` in its stats answer", self.workers),
        };
        let tids: Vec<String> = self.io.iter().map(u64::to_string).collect();
        format!(
            "{} = {} worker(s) ({from}) + {} IO thread(s) (`main`/`loop` tids {} in its log)",
            self.total(),
            self.workers,
            self.io.len(),
            tids.join(", ")
        )
    }
}

/// The value of the last `--workers N` or `--workers=N` of a shell command; `None` when it has
/// none. A `--workers` without a number after it is an error, not an absent flag.
pub(super) fn workers_on_command_line(command: &str) -> Result<Option<usize>, String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut workers = None;
    for (index, word) in words.iter().enumerate() {
        let value = if *word == "--workers" {
            Some(words.get(index + 1).copied().unwrap_or_default())
        } else {
            word.strip_prefix("--workers=")
        };
        if let Some(value) = value {
            let count = value.parse().map_err(|_| {
                format!(
                    "the thread budget needs the worker count, and `--workers` in the server's \
                     command `{command}` is followed by `{value}`, not a number"
                )
            })?;
            workers = Some(count);
        }
    }
    Ok(workers)
}

/// The worker count the server's `stats` answers reported; they must have reported one, and
/// only one.
fn workers_from_stats(command: &str, stats_workers: &BTreeSet<u64>) -> Result<usize, String> {
    match stats_workers.iter().collect::<Vec<_>>().as_slice() {
        [] => Err(format!(
            "the thread budget needs the worker count: the server's command `{command}` has no \
             `--workers N`, and no client got a `stats` answer with `workers=` from it before \
             this step; add `--workers N` to the server step or a `stats` request before the check"
        )),
        [workers] => usize::try_from(**workers)
            .map_err(|_| format!("`workers={workers}` in a stats answer is not a thread count")),
        several => {
            let values: Vec<String> = several.iter().map(|w| format!("workers={w}")).collect();
            Err(format!(
                "the thread budget needs one worker count, and the server's stats answers \
                 disagreed: {}",
                values.join(", ")
            ))
        }
    }
}

/// The distinct thread ids of the `main <tid>` and `loop <tid> ...` lines of a log.
pub(super) fn io_threads(lines: &[&[u8]]) -> BTreeSet<u64> {
    // The id must end the line or be followed by a space, so `main 12` and `loop 12 accepted
    // ...` count, and a message like `loop 2: failed` (an index, not a tid) does not.
    let patterns = [
        "main {tid}",
        "main {tid} [..]",
        "loop {tid}",
        "loop {tid} [..]",
    ]
    .map(|source| LinePattern::new(source, true));
    lines
        .iter()
        .filter_map(|line| {
            patterns
                .iter()
                .find_map(|pattern| pattern.captures(line).flatten())
        })
        .collect()
}

/// Judges the server's thread count against its budget: `exact`ly `workers + io`, or at most.
/// `measure` counts the threads, polling until the count satisfies the predicate it is given or
/// the step's time is up, and returns the last count.
pub(super) fn evaluate(
    exact: bool,
    budget: Result<Budget, String>,
    measure: impl FnOnce(&dyn Fn(usize) -> bool) -> Result<usize, String>,
) -> (Status, Option<String>) {
    let budget = match budget {
        Ok(budget) => budget,
        Err(missing) => return (Status::Fail, Some(missing)),
    };
    let total = budget.total();
    let holds = |n: usize| if exact { n == total } else { n <= total };
    let measured = match measure(&holds) {
        Ok(measured) => measured,
        Err(error) => return (Status::Error, Some(error)),
    };
    let relation = if exact { "exactly" } else { "at most" };
    if holds(measured) {
        return (
            Status::Pass,
            Some(format!(
                "{measured} thread(s), {relation} {}",
                budget.explain()
            )),
        );
    }
    let why = if measured > total {
        "a thread that is neither a pool worker nor an event loop, or a worker or loop started twice"
    } else {
        "fewer threads than the server was configured with: a worker or a loop has ended"
    };
    (
        Status::Fail,
        Some(format!(
            "the server has {measured} threads; expected {relation} {} — {why}",
            budget.explain()
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<&[u8]> {
        text.lines().map(str::as_bytes).collect()
    }

    fn set(values: &[u64]) -> BTreeSet<u64> {
        values.iter().copied().collect()
    }

    const ONE_LOOP_LOG: &str = "listening on 127.0.0.1:4000\nmain 100\nworker 101 task 1\n";
    const TWO_LOOP_LOG: &str = "loop 201\nloop 202\nlistening on 127.0.0.1:4000\nmain 200\n\
                                loop 202 accepted 127.0.0.1:5000\nworker 203 task 1\n";

    #[test]
    fn the_last_workers_flag_of_the_command_counts() {
        let count = |command| workers_on_command_line(command).unwrap();
        assert_eq!(count("handoff_server 4000 --workers 2 --log"), Some(2));
        assert_eq!(
            count("./server 4000 --workers 2 --log --workers 4"),
            Some(4)
        );
        assert_eq!(count("./server 4000 --workers=3"), Some(3));
        assert_eq!(count("./server 4000 --log --loops 2"), None);
        assert_eq!(count("./server 4000 --max-workers 9"), None);
    }

    #[test]
    fn a_workers_flag_without_a_number_is_an_error() {
        for command in ["server 4000 --workers", "server 4000 --workers two --log"] {
            let error = workers_on_command_line(command).unwrap_err();
            assert!(
                error.contains("worker count") && error.contains(command),
                "{error}"
            );
        }
    }

    #[test]
    fn io_threads_are_the_main_and_loop_tids() {
        assert_eq!(io_threads(&lines(ONE_LOOP_LOG)), set(&[100]));
        assert_eq!(io_threads(&lines(TWO_LOOP_LOG)), set(&[200, 201, 202]));
        let not_tids = "loop 1: cannot bind\nmainly 5\nworker 7 task 1\nmain thread";
        assert!(io_threads(&lines(not_tids)).is_empty());
    }

    #[test]
    fn the_budget_adds_workers_and_io_threads() {
        let command = "handoff_server 4000 --workers 2 --loops 2 --log";
        let budget = Budget::gather(command, &set(&[]), "main", &lines(TWO_LOOP_LOG)).unwrap();
        assert_eq!(budget.total(), 5);
        assert_eq!(budget.workers_from, WorkersFrom::CommandLine);
        let one_loop = Budget::gather(command, &set(&[]), "main", &lines(ONE_LOOP_LOG)).unwrap();
        assert_eq!(one_loop.total(), 3);
    }

    #[test]
    fn the_command_line_wins_over_stats_and_stats_fill_in_without_it() {
        let log = lines(ONE_LOOP_LOG);
        let flagged = Budget::gather("server 1 --workers 2", &set(&[8]), "main", &log).unwrap();
        assert_eq!(
            (flagged.workers, flagged.workers_from),
            (2, WorkersFrom::CommandLine)
        );
        let unflagged = Budget::gather("server 1 --log", &set(&[8]), "main", &log).unwrap();
        assert_eq!(
            (unflagged.workers, unflagged.workers_from),
            (8, WorkersFrom::Stats)
        );
        assert_eq!(unflagged.total(), 9);
    }

    #[test]
    fn a_missing_fact_is_named() {
        let log = lines(ONE_LOOP_LOG);
        let no_workers = Budget::gather("server 1 --log", &set(&[]), "main", &log).unwrap_err();
        assert!(
            no_workers.contains("no `--workers N`") && no_workers.contains("`stats` answer"),
            "{no_workers}"
        );
        let disagreeing = Budget::gather("server 1", &set(&[2, 4]), "main", &log).unwrap_err();
        assert!(
            disagreeing.contains("workers=2, workers=4"),
            "{disagreeing}"
        );
        let silent = lines("listening on 127.0.0.1:4000\n");
        let no_io = Budget::gather("server 1 --workers 2", &set(&[]), "main", &silent).unwrap_err();
        assert!(
            no_io.contains("IO threads") && no_io.contains("log `main`"),
            "{no_io}"
        );
    }

    fn two_loops() -> Budget {
        Budget::gather(
            "server 1 --workers 2",
            &set(&[]),
            "main",
            &lines(TWO_LOOP_LOG),
        )
        .unwrap()
    }

    #[test]
    fn exactly_passes_only_on_the_sum() {
        let (status, detail) = evaluate(true, Ok(two_loops()), |holds| {
            assert!(holds(5) && !holds(4) && !holds(6));
            Ok(5)
        });
        assert_eq!(status, Status::Pass);
        assert!(
            detail
                .unwrap()
                .contains("5 thread(s), exactly 5 = 2 worker(s)")
        );
        let (status, detail) = evaluate(true, Ok(two_loops()), |_| Ok(6));
        assert_eq!(status, Status::Fail);
        let detail = detail.unwrap();
        assert!(
            detail.contains("has 6 threads; expected exactly 5")
                && detail.contains("tids 200, 201, 202"),
            "{detail}"
        );
        let (status, _) = evaluate(true, Ok(two_loops()), |_| Ok(4));
        assert_eq!(status, Status::Fail);
    }

    #[test]
    fn at_most_passes_below_the_sum() {
        let (status, _) = evaluate(false, Ok(two_loops()), |holds| {
            assert!(holds(3) && holds(5) && !holds(6));
            Ok(3)
        });
        assert_eq!(status, Status::Pass);
        let (status, _) = evaluate(false, Ok(two_loops()), |_| Ok(6));
        assert_eq!(status, Status::Fail);
    }

    #[test]
    fn a_missing_fact_fails_without_measuring_and_a_failed_measure_is_an_error() {
        let (status, detail) = evaluate(true, Err("no IO threads".to_owned()), |_| {
            panic!("nothing to measure against")
        });
        assert_eq!(
            (status, detail.as_deref()),
            (Status::Fail, Some("no IO threads"))
        );
        let (status, _) = evaluate(true, Ok(two_loops()), |_| Err("cannot read".to_owned()));
        assert_eq!(status, Status::Error);
    }
}
