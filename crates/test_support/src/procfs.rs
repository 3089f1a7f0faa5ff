//! What `/proc` says about a process: its open fds, threads, memory and CPU time.
//!
//! The one place the workspace's tests read `/proc`: the fd-count and thread-count checks, the
//! memory bound of a client that does not read, the CPU used while idle. [`Proc::this`] is the
//! test process itself, [`Proc::of`] a server it started.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::sys;

/// A process as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    dir: PathBuf,
}

impl Proc {
    /// The calling process (`/proc/self`).
    pub fn this() -> Proc {
        Proc {
            dir: PathBuf::from("/proc/self"),
        }
    }

    /// Process `pid` (`/proc/<pid>`).
    pub fn of(pid: u32) -> Proc {
        Proc {
            dir: PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// The text of `/proc/<pid>/<name>` (`status`, `timerslack_ns`, `task/<tid>/comm`).
    pub fn read(&self, name: &str) -> String {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
    }

    /// Whether `/proc/<pid>/<name>` exists (some files are missing on older kernels).
    pub fn has(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    /// The numbers of the entries of folder `name` (`fd`, `task`).
    fn numbers(&self, name: &str) -> BTreeSet<u32> {
        let path = self.dir.join(name);
        std::fs::read_dir(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The open file descriptors (their numbers).
    pub fn open_fds(&self) -> BTreeSet<u32> {
        self.numbers("fd")
    }

    /// How many file descriptors are open.
    pub fn fd_count(&self) -> usize {
        self.open_fds().len()
    }

    /// The kernel thread ids of the process's threads.
    pub fn thread_ids(&self) -> BTreeSet<u32> {
        self.numbers("task")
    }

    /// How many threads the process has.
    pub fn thread_count(&self) -> usize {
        self.thread_ids().len()
    }

    /// Whether thread `tid` of the process still exists.
    pub fn has_thread(&self, tid: u32) -> bool {
        self.dir.join(format!("task/{tid}")).exists()
    }

    /// The name of thread `tid` (`task/<tid>/comm`, without its newline).
    pub fn thread_name(&self, tid: u32) -> String {
        self.read(&format!("task/{tid}/comm")).trim_end().to_owned()
    }

    /// The ids of the threads whose name starts with `prefix` (a thread that exits while they
    /// are listed is left out).
    pub fn threads_named(&self, prefix: &str) -> Vec<u32> {
        self.thread_ids()
            .into_iter()
            .filter(|tid| {
                std::fs::read_to_string(self.dir.join(format!("task/{tid}/comm")))
                    .is_ok_and(|name| name.trim_end().starts_with(prefix))
            })
            .collect()
    }

    /// The CPU time thread `tid` has used so far, user and system, in clock ticks
    /// ([`sys::clock_ticks_per_second`] of them make a second).
    pub fn thread_cpu_ticks(&self, tid: u32) -> u64 {
        cpu_ticks(&self.read(&format!("task/{tid}/stat")))
    }

    /// The CPU time the process has used so far, user and system, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(&self.read("stat"))
    }

    /// The state letter of thread `tid` (`R` running, `S` sleeping, …; field 3 of its `stat`).
    pub fn thread_state(&self, tid: u32) -> char {
        let stat = self.read(&format!("task/{tid}/stat"));
        stat_fields(&stat)[0].chars().next().unwrap_or('?')
    }

    /// The resident set size, in KiB (`VmRSS` of `status`).
    pub fn rss_kib(&self) -> u64 {
        self.read("status")
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// The CPU time used so far, user and system (`utime` + `stime` of `stat`).
    pub fn cpu_time(&self) -> Duration {
        Duration::from_secs_f64(self.cpu_ticks() as f64 / sys::clock_ticks_per_second() as f64)
    }
}

/// `utime` + `stime` of a `stat` line: fields 14 and 15, the 12th and 13th after `state`.
fn cpu_ticks(stat: &str) -> u64 {
    let fields = stat_fields(stat);
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// The fields of a `stat` line from field 3 (`state`) on: the command name (field 2) may
/// contain spaces and parentheses, so they are counted from its last `)`.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat[stat.rfind(')').expect("a comm field") + 1..]
        .split_whitespace()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_fds_a_thread_memory_and_cpu_time() {
        let this = Proc::this();
        let file = std::fs::File::open("/dev/null").unwrap();
        let before = this.fd_count();
        drop(file);
        assert_eq!(this.fd_count(), before - 1);
        assert!(this.thread_count() >= 1);
        let tid = *this.thread_ids().iter().next().unwrap();
        assert!(this.has_thread(tid));
        assert!(!this.thread_name(tid).is_empty());
        assert!("RSDTtZXIPWK".contains(this.thread_state(tid)));
        assert!(this.rss_kib() > 0);
        let _ = this.cpu_time();
        assert!(this.threads_named(&this.thread_name(tid)).contains(&tid));
        let _ = this.thread_cpu_ticks(tid);
    }

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces_and_parentheses() {
        let fields = stat_fields("42 (a (b) c) S 1 2 3");
        assert_eq!(fields, ["S", "1", "2", "3"]);
    }
}
