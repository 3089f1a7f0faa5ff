//! Where a server's CPU goes, thread by thread, and what bounds its throughput.
//!
//! A throughput ratio says that one server is ahead; it does not say why the other is not
//! further ahead. This module reads each thread's user and system (kernel) time from
//! `/proc/<pid>/task/<tid>/stat` before and after a run and groups the threads by name with the
//! trailing number taken off (`handoff-worker-0` and `-1` are one group, `handoff-worker`), so a
//! run reads as "the loop thread spent 0.41 µs per request, 86 % of it in the kernel, and was
//! busy 97 % of the run; the two workers …".
//!
//! From those figures [`Bound::of`] names what limits a run: whichever of two resources is the
//! more saturated, once it is at least [`SATURATED`]:
//!
//! - **A thread**: the busiest thread's CPU time as a share of the wall time. The server cannot
//!   go faster without taking work off that thread (for an event loop: fewer system calls per
//!   request, or more loops).
//! - **The CPUs**: the server's and the load generator's CPU time together as a share of the
//!   machine's. Every microsecond either spends is taken from the other.
//!
//! When neither reaches [`SATURATED`], the requests' own waits (a `sleep`, a round trip) bound
//! the run. On a machine shared with other work, and with the scheduler's own overhead, neither
//! share reaches 100 %: a loop thread that is the bottleneck reads 90 to 97 % here, two
//! saturated CPUs 1.8 to 1.95.
//!
//! The kernel counts these times in ticks of 10 ms, so over a run of seconds a figure is exact to
//! about 1 %. A thread that exits during the run takes its time with it; the servers measured
//! here start every thread before the load and keep it.

use std::collections::BTreeMap;
use std::fmt;

use test_support::procfs::{CpuSplit, Proc};

use crate::median::median;

/// The share of the run, or of the machine, from which a thread or the CPUs count as the bound.
pub(crate) const SATURATED: f64 = 0.8;

/// A thread group whose median CPU time per request is below this, µs, and whose busiest thread
/// is below [`IDLE_SHARE`] of the run, is idle: [`cell`] leaves it out.
const IDLE_US_PER_REQUEST: f64 = 0.005;

/// See [`IDLE_US_PER_REQUEST`].
const IDLE_SHARE: f64 = 0.005;

/// The kernel's clock ticks per second (`USER_HZ`), 100 on every architecture the benchmark
/// runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// Every thread's name and CPU time at one instant.
#[derive(Debug, Clone, Default)]
pub(crate) struct ThreadTimes {
    by_tid: BTreeMap<u32, (String, CpuSplit)>,
}

impl ThreadTimes {
    /// Reads every thread of process `pid`. A thread that exits between the listing and the
    /// read is left out; a process that is gone is an error.
    pub(crate) fn of(pid: u32) -> anyhow::Result<ThreadTimes> {
        let process = Proc::of(pid);
        let mut by_tid = BTreeMap::new();
        for tid in process.try_thread_ids()? {
            let (Ok(name), Ok(split)) = (
                process.try_thread_name(tid),
                process.try_thread_cpu_split(tid),
            ) else {
                continue;
            };
            by_tid.insert(tid, (name, split));
        }
        anyhow::ensure!(!by_tid.is_empty(), "process {pid} has no readable thread");
        Ok(ThreadTimes { by_tid })
    }

    /// The CPU time each group of threads spent between `before` and `self`, the groups in the
    /// order of their first thread id (so the main thread's group comes first).
    pub(crate) fn since(&self, before: &ThreadTimes) -> Vec<ThreadGroup> {
        let mut groups: Vec<ThreadGroup> = Vec::new();
        for (tid, (name, after)) in &self.by_tid {
            let start = before
                .by_tid
                .get(tid)
                .map(|(_, split)| *split)
                .unwrap_or_default();
            let user_s = after.user.saturating_sub(start.user) as f64 / TICKS_PER_SECOND;
            let system_s = after.system.saturating_sub(start.system) as f64 / TICKS_PER_SECOND;
            let group_name = group_name(name);
            let index = match groups.iter().position(|group| group.name == group_name) {
                Some(index) => index,
                None => {
                    groups.push(ThreadGroup {
                        name: group_name.to_owned(),
                        ..ThreadGroup::default()
                    });
                    groups.len() - 1
                }
            };
            let group = &mut groups[index];
            group.threads += 1;
            group.user_s += user_s;
            group.system_s += system_s;
            group.busiest_s = group.busiest_s.max(user_s + system_s);
        }
        groups
    }
}

/// The name a thread is grouped under: its name without a trailing number and the `-` or `_`
/// before it (`kv-worker-1` → `kv-worker`; the kernel cuts names to 15 bytes, so
/// `handoff-worker-1` arrives as `handoff-worker-`).
pub(crate) fn group_name(thread: &str) -> &str {
    let trimmed = thread
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches(['-', '_']);
    if trimmed.is_empty() { thread } else { trimmed }
}

/// The CPU time one group of threads spent during a run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct ThreadGroup {
    /// The threads' shared name ([`group_name`]).
    pub(crate) name: String,
    /// How many threads the group has.
    pub(crate) threads: usize,
    /// User-space CPU time of all of them, seconds.
    pub(crate) user_s: f64,
    /// Kernel CPU time of all of them, seconds.
    pub(crate) system_s: f64,
    /// The CPU time of the group's busiest thread, seconds.
    pub(crate) busiest_s: f64,
}

/// One thread group's medians over the rounds, per request and as a share of the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct GroupProfile {
    /// The threads' shared name.
    pub(crate) name: String,
    /// How many threads the group has.
    pub(crate) threads: usize,
    /// CPU time per request, µs (user + system, every thread of the group).
    pub(crate) us_per_request: f64,
    /// The share of that time spent in the kernel.
    pub(crate) kernel_share: f64,
    /// The busiest thread's CPU time as a share of the run's wall time.
    pub(crate) busiest_busy: f64,
}

/// One run's CPU figures, the input of [`profile`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunCpu<'a> {
    /// The server's thread groups.
    pub(crate) groups: &'a [ThreadGroup],
    /// Responses in the run.
    pub(crate) requests: u64,
    /// Wall time of the run, seconds.
    pub(crate) wall_s: f64,
    /// The server's and the load generator's CPU time together, seconds.
    pub(crate) total_cpu_s: f64,
}

/// The medians of several runs of one server: each group's [`GroupProfile`] (the groups of the
/// first run, in its order) and how many CPUs' worth the server and the load generator kept
/// busy together.
pub(crate) fn profile(runs: &[RunCpu<'_>]) -> (Vec<GroupProfile>, f64) {
    let Some(first) = runs.first() else {
        return (Vec::new(), 0.0);
    };
    let groups = first
        .groups
        .iter()
        .map(|group| {
            let same = || {
                runs.iter().filter_map(|run| {
                    run.groups
                        .iter()
                        .find(|g| g.name == group.name)
                        .map(|g| (run, g))
                })
            };
            let per_request = |(run, g): (&RunCpu<'_>, &ThreadGroup)| {
                (g.user_s + g.system_s) * 1e6 / run.requests.max(1) as f64
            };
            let kernel_share =
                |(_, g): (&RunCpu<'_>, &ThreadGroup)| share(g.system_s, g.user_s + g.system_s);
            let busy = |(run, g): (&RunCpu<'_>, &ThreadGroup)| share(g.busiest_s, run.wall_s);
            GroupProfile {
                name: group.name.clone(),
                threads: group.threads,
                us_per_request: median(same().map(per_request).collect()),
                kernel_share: median(same().map(kernel_share).collect()),
                busiest_busy: median(same().map(busy).collect()),
            }
        })
        .collect();
    let cpus_busy = median(
        runs.iter()
            .map(|run| share(run.total_cpu_s, run.wall_s))
            .collect(),
    );
    (groups, cpus_busy)
}

/// `part / whole`, or 0 for an empty whole (a run that took no time, a group that used no CPU).
fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// What bounds a server's throughput in a run (see the module docs).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Bound {
    /// One thread was busy for nearly the whole run, more so than the CPUs were.
    Thread {
        /// Its group's name.
        name: String,
        /// Its CPU time as a share of the run.
        busy: f64,
        /// The share of its group's time spent in the kernel.
        kernel_share: f64,
        /// CPUs' worth the server and the load generator kept busy.
        cpus_busy: f64,
        /// CPUs the machine has.
        cpus: usize,
    },
    /// The server and the load generator kept nearly every CPU busy, more so than any one
    /// thread was.
    Cpus {
        /// CPUs' worth kept busy.
        busy: f64,
        /// CPUs the machine has.
        cpus: usize,
        /// The busiest thread's group name and share of the run.
        busiest: Option<(String, f64)>,
    },
    /// Neither: the requests' own waits bound the run.
    Waiting {
        /// The busiest thread's share of the run.
        busiest: f64,
        /// CPUs' worth kept busy.
        busy: f64,
        /// CPUs the machine has.
        cpus: usize,
    },
}

impl Bound {
    /// What bounds a run whose medians are `groups` and `cpus_busy`, on a machine of `cpus`.
    pub(crate) fn of(groups: &[GroupProfile], cpus_busy: f64, cpus: usize) -> Bound {
        let busiest = groups
            .iter()
            .max_by(|a, b| a.busiest_busy.total_cmp(&b.busiest_busy));
        let thread_share = busiest.map_or(0.0, |group| group.busiest_busy);
        let cpu_share = cpus_busy / cpus.max(1) as f64;
        match busiest {
            Some(group) if thread_share >= SATURATED && thread_share >= cpu_share => {
                Bound::Thread {
                    name: group.name.clone(),
                    busy: group.busiest_busy,
                    kernel_share: group.kernel_share,
                    cpus_busy,
                    cpus,
                }
            }
            _ if cpu_share >= SATURATED => Bound::Cpus {
                busy: cpus_busy,
                cpus,
                busiest: busiest.map(|group| (group.name.clone(), group.busiest_busy)),
            },
            _ => Bound::Waiting {
                busiest: thread_share,
                busy: cpus_busy,
                cpus,
            },
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Thread {
                name,
                busy,
                kernel_share,
                cpus_busy,
                cpus,
            } => write!(
                f,
                "its {name} thread, busy {:.0} % of the run, {:.0} % of that in the kernel \
                 ({cpus_busy:.2} of {cpus} CPUs busy)",
                busy * 100.0,
                kernel_share * 100.0
            ),
            Bound::Cpus {
                busy,
                cpus,
                busiest,
            } => {
                write!(
                    f,
                    "the machine's {cpus} CPUs, {busy:.2} of them busy with the server and the \
                     load generator"
                )?;
                if let Some((name, share)) = busiest {
                    write!(f, " (its busiest thread, {name}: {:.0} %)", share * 100.0)?;
                }
                Ok(())
            }
            Bound::Waiting {
                busiest,
                busy,
                cpus,
            } => write!(
                f,
                "the requests' own waits: no thread busier than {:.0} %, {busy:.2} of {cpus} CPUs busy",
                busiest * 100.0
            ),
        }
    }
}

/// The groups as a table cell, each as `handoff-worker ×2: 0.06 µs (40 % kernel), busiest 12 %`;
/// idle groups (a server's main thread while its loops run elsewhere, redis-server's background
/// threads) are left out.
pub(crate) fn cell(groups: &[GroupProfile]) -> String {
    let busy: Vec<&GroupProfile> = groups
        .iter()
        .filter(|group| {
            group.us_per_request >= IDLE_US_PER_REQUEST || group.busiest_busy >= IDLE_SHARE
        })
        .collect();
    if busy.is_empty() {
        return "–".to_owned();
    }
    busy.iter()
        .map(|group| {
            format!(
                "{} ×{}: {:.2} µs ({:.0} % kernel), busiest {:.0} %",
                group.name,
                group.threads,
                group.us_per_request,
                group.kernel_share * 100.0,
                group.busiest_busy * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(threads: &[(u32, &str, u64, u64)]) -> ThreadTimes {
        ThreadTimes {
            by_tid: threads
                .iter()
                .map(|&(tid, name, user, system)| {
                    (tid, (name.to_owned(), CpuSplit { user, system }))
                })
                .collect(),
        }
    }

    #[test]
    fn threads_are_grouped_by_name_without_their_number() {
        assert_eq!(group_name("handoff-worker-"), "handoff-worker");
        assert_eq!(group_name("kv-worker-12"), "kv-worker");
        assert_eq!(group_name("handoff_server"), "handoff_server");
        assert_eq!(group_name("loop_3"), "loop");
        assert_eq!(
            group_name("42"),
            "42",
            "a name that is only a number stays whole"
        );
    }

    #[test]
    fn the_time_between_two_readings_is_summed_per_group_and_the_busiest_thread_kept() {
        let before = times(&[
            (10, "server", 100, 50),
            (11, "worker-0", 10, 5),
            (12, "worker-1", 0, 0),
        ]);
        let after = times(&[
            (10, "server", 130, 120),
            (11, "worker-0", 20, 10),
            (12, "worker-1", 30, 10),
            // Started during the run: all its time is the run's.
            (13, "worker-2", 5, 0),
        ]);
        let groups = after.since(&before);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].name, "server");
        assert_eq!(groups[0].threads, 1);
        assert!((groups[0].user_s - 0.3).abs() < 1e-9);
        assert!((groups[0].system_s - 0.7).abs() < 1e-9);
        assert_eq!(groups[1].name, "worker");
        assert_eq!(groups[1].threads, 3);
        assert!((groups[1].user_s - 0.45).abs() < 1e-9);
        assert!((groups[1].system_s - 0.15).abs() < 1e-9);
        assert!((groups[1].busiest_s - 0.4).abs() < 1e-9);
    }

    #[test]
    fn this_process_is_read() {
        let before = ThreadTimes::of(std::process::id()).unwrap();
        let after = ThreadTimes::of(std::process::id()).unwrap();
        assert!(!after.since(&before).is_empty());
        assert!(ThreadTimes::of(u32::MAX).is_err());
    }

    fn group(name: &str, user_s: f64, system_s: f64, busiest_s: f64) -> ThreadGroup {
        ThreadGroup {
            name: name.to_owned(),
            threads: 1,
            user_s,
            system_s,
            busiest_s,
        }
    }

    #[test]
    fn the_profile_takes_medians_per_request_and_per_second_of_the_run() {
        let runs = [
            vec![group("loop", 0.1, 0.9, 1.0)],
            vec![group("loop", 0.2, 0.6, 0.8)],
            vec![group("loop", 0.1, 0.3, 0.4)],
        ];
        let cpu: Vec<RunCpu<'_>> = runs
            .iter()
            .map(|groups| RunCpu {
                groups,
                requests: 1_000_000,
                wall_s: 1.0,
                total_cpu_s: 1.5,
            })
            .collect();
        let (groups, cpus_busy) = profile(&cpu);
        assert_eq!(groups.len(), 1);
        assert!((groups[0].us_per_request - 0.8).abs() < 1e-9, "{groups:?}");
        assert!((groups[0].kernel_share - 0.75).abs() < 1e-9, "{groups:?}");
        assert!((groups[0].busiest_busy - 0.8).abs() < 1e-9, "{groups:?}");
        assert!((cpus_busy - 1.5).abs() < 1e-9);
        assert!(cell(&groups).starts_with("loop ×1: 0.80 µs (75 % kernel), busiest 80 %"));
        assert_eq!(profile(&[]), (Vec::new(), 0.0));
    }

    fn profiled(name: &str, busy: f64) -> GroupProfile {
        GroupProfile {
            name: name.to_owned(),
            threads: 1,
            us_per_request: 1.0,
            kernel_share: 0.8,
            busiest_busy: busy,
        }
    }

    #[test]
    fn the_more_saturated_of_the_busiest_thread_and_the_cpus_bounds_a_run() {
        let groups = [profiled("loop", 0.95), profiled("worker", 0.5)];
        let bound = Bound::of(&groups, 1.85, 2);
        assert!(
            matches!(&bound, Bound::Thread { name, .. } if name == "loop"),
            "{bound:?}"
        );
        assert_eq!(
            bound.to_string(),
            "its loop thread, busy 95 % of the run, 80 % of that in the kernel (1.85 of 2 CPUs busy)"
        );

        // The loop at 87 %, the CPUs at 90 %: the CPUs are the more saturated.
        let groups = [profiled("loop", 0.87), profiled("worker", 0.5)];
        let bound = Bound::of(&groups, 1.8, 2);
        assert_eq!(
            bound.to_string(),
            "the machine's 2 CPUs, 1.80 of them busy with the server and the load generator \
             (its busiest thread, loop: 87 %)"
        );

        let bound = Bound::of(&groups[1..], 0.6, 2);
        assert!(matches!(bound, Bound::Waiting { .. }), "{bound:?}");
        assert!(
            bound.to_string().contains("no thread busier than 50 %"),
            "{bound}"
        );
        assert!(matches!(Bound::of(&[], 0.0, 2), Bound::Waiting { .. }));
    }

    #[test]
    fn idle_groups_are_left_out_of_the_cell() {
        let idle = GroupProfile {
            name: "bio_close_file".to_owned(),
            threads: 1,
            us_per_request: 0.0,
            kernel_share: 0.0,
            busiest_busy: 0.0,
        };
        assert_eq!(
            cell(&[profiled("loop", 0.9), idle.clone()]),
            "loop ×1: 1.00 µs (80 % kernel), busiest 90 %"
        );
        assert_eq!(cell(&[idle]), "–");
    }
}
