//! Counting a server's system calls and context switches while it serves a run.
//!
//! Two tools, each optional, attached to the server's process for the length of one loadgen run:
//!
//! - `perf stat -e raw_syscalls:sys_enter,context-switches -p <pid>` counts every system call
//!   entry and every context switch of the server's threads through kernel tracepoints. It costs
//!   little, so the server batches as it would unobserved: these are the headline figures.
//! - `strace -c -f -p <pid>` names the calls (`recvfrom`, `sendto`, `epoll_wait`, `futex`, …)
//!   that make up the count. It stops every thread at every call, which slows the server and so
//!   changes its batching; its per-request count is shown for the breakdown, not as the figure.
//!
//! When a tool is missing (or the kernel refuses it), its measurement is reported as skipped
//! with the reason, never guessed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use xtask::process;

/// How long a tool gets to attach before the load starts. Attaching is not observable from
/// outside, so this is a fixed allowance; the counts cover the idle margin too, during which a
/// server blocked in `epoll_wait` makes no calls.
pub(crate) const ATTACH_ALLOWANCE: Duration = Duration::from_millis(400);

/// What `perf stat` counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct PerfCounts {
    /// System call entries.
    pub(crate) syscalls: u64,
    /// Context switches.
    pub(crate) context_switches: u64,
}

/// One system call's count in an `strace -c` summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SyscallCount {
    /// The call's name.
    pub(crate) name: String,
    /// How many times it was made.
    pub(crate) calls: u64,
}

/// A counting tool attached to a server, to be finished after the load.
#[derive(Debug)]
pub(crate) struct Attached {
    child: Child,
    output: std::path::PathBuf,
}

/// Whether a program is on the `PATH` (it runs with `--version`).
pub(crate) fn available(program: &str) -> bool {
    let mut command = Command::new(program);
    command
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    process::output(&mut command).is_ok_and(|output| output.status.success())
}

/// Starts `perf stat` on `pid` for `window`, writing CSV to `output`.
pub(crate) fn attach_perf(pid: u32, window: Duration, output: &Path) -> anyhow::Result<Attached> {
    // With `-p`, the command after `--` only sets how long perf counts.
    let mut command = Command::new("perf");
    command
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            "raw_syscalls:sys_enter,context-switches",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(output)
        .args(["--", "sleep", &format!("{:.3}", window.as_secs_f64())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    process::configure(&mut command, None);
    let child = process::spawn(&mut command).context("starting perf stat")?;
    Ok(Attached {
        child,
        output: output.to_owned(),
    })
}

/// Starts `strace -c -f` on `pid`. It runs until the server exits: `strace` writes its summary
/// when its last tracee is gone, and ending the server is the one reliable way to stop it (a
/// SIGINT that arrives while `strace` is busy decoding can stay blocked for good).
pub(crate) fn attach_strace(pid: u32, output: &Path) -> anyhow::Result<Attached> {
    let mut command = Command::new("strace");
    command
        .args(["-c", "-f", "-o"])
        .arg(output)
        .arg("-p")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    process::configure(&mut command, None);
    let child = process::spawn(&mut command).context("starting strace")?;
    Ok(Attached {
        child,
        output: output.to_owned(),
    })
}

impl Attached {
    /// Waits for the tool to finish (for strace: call it after ending the server) and returns
    /// its report.
    pub(crate) fn finish(mut self) -> anyhow::Result<String> {
        let waited = self.child.wait().context("waiting for the counting tool");
        process::release_group(self.child.id());
        waited?;
        std::fs::read_to_string(&self.output)
            .with_context(|| format!("reading {}", self.output.display()))
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // Only reached with the child still running on an error path; `finish` waited already
        // (stopping a group that is gone already is harmless).
        process::stop_group(&mut self.child);
    }
}

/// Reads `perf stat -x ,` output: `<count>,<unit>,<event>,…` per line.
pub(crate) fn parse_perf(report: &str) -> anyhow::Result<PerfCounts> {
    let mut syscalls = None;
    let mut switches = None;
    for line in report.lines().filter(|line| !line.starts_with('#')) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 3 {
            continue;
        }
        let count = fields[0].trim().parse::<u64>().ok();
        match fields[2].trim() {
            "raw_syscalls:sys_enter" => syscalls = count,
            "context-switches" | "cs" => switches = count,
            _ => {}
        }
    }
    match (syscalls, switches) {
        (Some(syscalls), Some(context_switches)) => Ok(PerfCounts {
            syscalls,
            context_switches,
        }),
        _ => anyhow::bail!("perf stat counted nothing usable:\n{report}"),
    }
}

/// Reads an `strace -c` summary: one row per call, then a `total` row. Rows have the columns
/// `% time, seconds, usecs/call, calls, [errors,] syscall`.
pub(crate) fn parse_strace(report: &str) -> anyhow::Result<(u64, Vec<SyscallCount>)> {
    let mut calls = Vec::new();
    let mut total = None;
    for line in report.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let Some(count) = fields.get(3).and_then(|f| f.parse::<u64>().ok()) else {
            continue;
        };
        let name = fields[fields.len() - 1];
        if name == "total" {
            total = Some(count);
        } else {
            calls.push(SyscallCount {
                name: name.to_owned(),
                calls: count,
            });
        }
    }
    calls.sort_by_key(|call| std::cmp::Reverse(call.calls));
    let total = total.with_context(|| format!("no total in the strace summary:\n{report}"))?;
    Ok((total, calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_is_read() {
        let report = "# started on Mon\n\n12345,,raw_syscalls:sys_enter,2001,100.00,,\n\
                      67,,context-switches,2001,100.00,33.5,K/sec\n";
        assert_eq!(
            parse_perf(report).unwrap(),
            PerfCounts {
                syscalls: 12345,
                context_switches: 67
            }
        );
        assert!(parse_perf("<not supported>,,raw_syscalls:sys_enter,0,0,,\n").is_err());
    }

    #[test]
    fn strace_summary_is_read_with_and_without_errors_column() {
        let report = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.600000           6    100000           sendto
 30.00    0.300000           3    100000     20000 recvfrom
 10.00    0.100000          10     10000           epoll_wait
------ ----------- ----------- --------- --------- ----------------
100.00    1.000000           4    210000     20000 total
";
        let (total, calls) = parse_strace(report).unwrap();
        assert_eq!(total, 210_000);
        assert_eq!(
            calls[2],
            SyscallCount {
                name: "epoll_wait".into(),
                calls: 10_000
            }
        );
        assert!(
            parse_strace("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted")
                .is_err()
        );
    }
}
