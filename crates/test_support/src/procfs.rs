//! What `/proc` says about a process: its open fds, threads, memory and CPU time.
//!
//! The one place the workspace's tests read `/proc`: the fd-count and thread-count checks, the
//! memory bound of a client that does not read, the CPU used while idle. [`Proc::this`] is the
//! test process itself, [`Proc::of`] a server it started.

use std::collections::BTreeSet;
use std::io;
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
    ///
    /// # Panics
    ///
    /// When the file cannot be read: in a test, a process that is gone is a failure. Tooling that
    /// watches a process that may exit uses the `try_` forms.
    pub fn read(&self, name: &str) -> String {
        self.try_read(name)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// The text of `/proc/<pid>/<name>`, or why it cannot be read (the error names the file).
    pub fn try_read(&self, name: &str) -> io::Result<String> {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot read {}: {error}", path.display()),
            )
        })
    }

    /// Whether `/proc/<pid>/<name>` exists (some files are missing on older kernels).
    pub fn has(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    /// The numbers of the entries of folder `name` (`fd`, `task`).
    fn numbers(&self, name: &str) -> BTreeSet<u32> {
        self.try_numbers(name)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// The numbers of the entries of folder `name`, or why it cannot be read.
    fn try_numbers(&self, name: &str) -> io::Result<BTreeSet<u32>> {
        let path = self.dir.join(name);
        let entries = std::fs::read_dir(&path).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        Ok(entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect())
    }

    /// How many file descriptors are open, or why `/proc/<pid>/fd` cannot be read (the process
    /// is gone, say).
    pub fn try_fd_count(&self) -> io::Result<usize> {
        self.try_numbers("fd").map(|fds| fds.len())
    }

    /// The kernel thread ids of the process's threads, or why `/proc/<pid>/task` cannot be read.
    pub fn try_thread_ids(&self) -> io::Result<BTreeSet<u32>> {
        self.try_numbers("task")
    }

    /// How many threads the process has, or why `/proc/<pid>/task` cannot be read.
    pub fn try_thread_count(&self) -> io::Result<usize> {
        self.try_numbers("task").map(|tids| tids.len())
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
        self.try_thread_name(tid)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// The ids of the threads whose name starts with `prefix` (a thread that exits while they
    /// are listed is left out).
    pub fn threads_named(&self, prefix: &str) -> Vec<u32> {
        self.thread_ids()
            .into_iter()
            .filter(|&tid| {
                self.try_thread_name(tid)
                    .is_ok_and(|name| name.starts_with(prefix))
            })
            .collect()
    }

    /// The CPU time thread `tid` has used so far, user and system, in clock ticks
    /// ([`sys::clock_ticks_per_second`] of them make a second).
    pub fn thread_cpu_ticks(&self, tid: u32) -> u64 {
        cpu_ticks(&self.read(&format!("task/{tid}/stat")))
    }

    /// The CPU time thread `tid` has used so far, split into user and system (kernel) ticks,
    /// or why its `stat` cannot be read or parsed (the thread exited, say).
    pub fn try_thread_cpu_split(&self, tid: u32) -> io::Result<CpuSplit> {
        let stat = self.try_read(&format!("task/{tid}/stat"))?;
        try_cpu_split(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed stat of thread {tid}: {stat:?}"),
            )
        })
    }

    /// The name of thread `tid` (`task/<tid>/comm`, without its newline), or why it cannot be
    /// read.
    pub fn try_thread_name(&self, tid: u32) -> io::Result<String> {
        Ok(self
            .try_read(&format!("task/{tid}/comm"))?
            .trim_end()
            .to_owned())
    }

    /// The CPU time the process has used so far, user and system, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(&self.read("stat"))
    }

    /// The CPU time the process has used so far, in clock ticks, or why its `stat` cannot be
    /// read or parsed.
    pub fn try_cpu_ticks(&self) -> io::Result<u64> {
        let stat = self.try_read("stat")?;
        try_cpu_ticks(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed stat: {stat:?}"),
            )
        })
    }

    /// The state letter of thread `tid` (`R` running, `S` sleeping, …; field 3 of its `stat`).
    pub fn thread_state(&self, tid: u32) -> char {
        let stat = self.read(&format!("task/{tid}/stat"));
        stat_fields(&stat)[0].chars().next().unwrap_or('?')
    }

    /// The resident set size, in KiB (`VmRSS` of `status`).
    pub fn rss_kib(&self) -> u64 {
        self.try_rss_kib().unwrap_or_else(|error| panic!("{error}"))
    }

    /// The resident set size, in KiB, or why it cannot be read.
    pub fn try_rss_kib(&self) -> io::Result<u64> {
        self.try_read("status")?
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in status"))
    }

    /// The CPU time used so far, user and system (`utime` + `stime` of `stat`).
    pub fn cpu_time(&self) -> Duration {
        Duration::from_secs_f64(self.cpu_ticks() as f64 / sys::clock_ticks_per_second() as f64)
    }
}

/// The text of a file about the machine rather than a process, `/proc/<name>` (`cpuinfo`,
/// `loadavg`, `sys/kernel/osrelease`), or why it cannot be read (the error names the file).
pub fn read_machine_file(name: &str) -> io::Result<String> {
    let path = PathBuf::from("/proc").join(name);
    std::fs::read_to_string(&path).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot read {}: {error}", path.display()),
        )
    })
}

/// CPU time split into user and system (kernel) time, in clock ticks
/// ([`sys::clock_ticks_per_second`] of them make a second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSplit {
    /// `utime`: ticks spent in user space.
    pub user: u64,
    /// `stime`: ticks spent in the kernel on the thread's behalf (system calls, page faults).
    pub system: u64,
}

/// `utime` and `stime` of a `stat` line, or `None` when it is malformed.
fn try_cpu_split(stat: &str) -> Option<CpuSplit> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(CpuSplit {
        user: field(11)?,
        system: field(12)?,
    })
}

/// `utime` + `stime` of a `stat` line: fields 14 and 15, the 12th and 13th after `state`.
fn cpu_ticks(stat: &str) -> u64 {
    try_cpu_ticks(stat).expect("utime and stime in a stat line")
}

/// `utime` + `stime` of a `stat` line, or `None` when it is malformed.
fn try_cpu_ticks(stat: &str) -> Option<u64> {
    try_cpu_split(stat).map(|split| split.user + split.system)
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

    /// Whether `check` holds in one of at most 100 tries. The process's fd count is shared with
    /// every test of this binary running beside this one, so a measurement is taken again until
    /// none of them opened or closed an fd in between.
    fn holds_once_quiet(mut check: impl FnMut() -> bool) -> bool {
        (0..100).any(|_| check())
    }

    #[test]
    fn this_process_has_fds_a_thread_memory_and_cpu_time_and_a_gone_one_has_none() {
        let this = Proc::this();
        assert!(
            holds_once_quiet(|| {
                let file = std::fs::File::open("/dev/null").unwrap();
                let before = this.fd_count();
                drop(file);
                this.fd_count() == before - 1
            }),
            "closing a file never lowered the fd count by one"
        );
        assert!(this.thread_count() >= 1);
        let tid = *this.thread_ids().iter().next().unwrap();
        assert!(this.has_thread(tid));
        assert!(!this.thread_name(tid).is_empty());
        assert!("RSDTtZXIPWK".contains(this.thread_state(tid)));
        assert!(this.rss_kib() > 0);
        let _ = this.cpu_time();
        assert!(this.threads_named(&this.thread_name(tid)).contains(&tid));
        let _ = this.thread_cpu_ticks(tid);
        // The fallible forms, in the same test: reading files in a test of its own would make
        // the fd counts above wait for a quiet moment more often.
        assert!(holds_once_quiet(
            || this.try_fd_count().unwrap() == this.fd_count()
        ));
        assert!(this.try_thread_count().unwrap() >= 1);
        assert!(this.try_rss_kib().unwrap() > 0);
        let _ = this.try_cpu_ticks().unwrap();
        // Pid numbers only go up to pid_max (at most 2^22), so this one names no process.
        let gone = Proc::of(u32::MAX);
        let error = gone.try_fd_count().unwrap_err();
        assert!(error.to_string().contains("/proc/4294967295/fd"), "{error}");
        assert!(gone.try_thread_count().is_err());
        assert!(gone.try_rss_kib().is_err());
        assert!(gone.try_cpu_ticks().is_err());
        assert_eq!(try_cpu_ticks("42 (x) S 1"), None);
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0";
        assert_eq!(try_cpu_ticks(stat), Some(280));
        assert_eq!(
            try_cpu_split(stat),
            Some(CpuSplit {
                user: 250,
                system: 30
            })
        );
        assert_eq!(this.try_thread_name(tid).unwrap(), this.thread_name(tid));
        let split = this.try_thread_cpu_split(tid).unwrap();
        assert!(split.user + split.system <= this.try_cpu_ticks().unwrap());
        assert!(gone.try_thread_cpu_split(1).is_err());
        assert!(gone.try_thread_name(1).is_err());
        assert!(!this.try_thread_ids().unwrap().is_empty());
        assert!(read_machine_file("loadavg").unwrap().split(' ').count() >= 3);
        let error = read_machine_file("no-such-file").unwrap_err();
        assert!(error.to_string().contains("/proc/no-such-file"), "{error}");
    }

    #[test]
    fn stat_fields_skip_a_command_name_with_spaces_and_parentheses() {
        let fields = stat_fields("42 (a (b) c) S 1 2 3");
        assert_eq!(fields, ["S", "1", "2", "3"]);
    }
}
