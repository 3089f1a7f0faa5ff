//! Starting, observing and stopping the servers under test.
//!
//! Every server is started fresh for every run, on port 0, and reports its port on its first
//! stdout line (`listening on 127.0.0.1:<port>`), as the protocol requires. A [`RunningServer`]
//! kills and reaps its process when dropped, so an error anywhere in the benchmark never leaves
//! a server behind; every server leads a process group the harness owns (`crate::process`), so
//! Ctrl-C stops it too.

use std::fmt;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use test_support::procfs::Proc;

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The servers the benchmark compares.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ServerKind {
    /// W05's event loop + work-stealing pool (`handoff_server`), one loop.
    Handoff,
    /// The same server with several event loops (`handoff_server --loops N`, N from the
    /// benchmark's `--loops`).
    HandoffLoops,
    /// W04's `epoll_server`, which does no handoff.
    Epoll,
    /// The Tokio comparison server (`tokio_server`).
    Tokio,
}

impl ServerKind {
    /// Every server, in the order of the table.
    pub(crate) const ALL: [ServerKind; 4] = [
        ServerKind::Handoff,
        ServerKind::HandoffLoops,
        ServerKind::Epoll,
        ServerKind::Tokio,
    ];

    /// The binary's name.
    pub(crate) fn binary(self) -> &'static str {
        match self {
            ServerKind::Handoff | ServerKind::HandoffLoops => "handoff_server",
            ServerKind::Epoll => "epoll_server",
            ServerKind::Tokio => "tokio_server",
        }
    }
}

/// The event loops of [`ServerKind::HandoffLoops`]: the benchmark's `--loops`, set once before
/// any server starts (a process-wide setting, so that every label and command line agrees).
static MULTI_LOOPS: AtomicUsize = AtomicUsize::new(2);

/// Sets the loop count of [`ServerKind::HandoffLoops`].
pub(crate) fn set_multi_loops(loops: usize) {
    MULTI_LOOPS.store(loops, Ordering::Relaxed);
}

/// The loop count of [`ServerKind::HandoffLoops`].
pub(crate) fn multi_loops() -> usize {
    MULTI_LOOPS.load(Ordering::Relaxed)
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerKind::HandoffLoops => write!(f, "handoff_server --loops {}", multi_loops()),
            _ => f.write_str(self.binary()),
        }
    }
}

/// How to start one server binary.
#[derive(Debug, Clone)]
pub(crate) struct ServerBinary {
    /// Which server.
    pub(crate) kind: ServerKind,
    /// The release executable.
    pub(crate) path: PathBuf,
    /// Whether it takes `--workers N` (asked once, from its `--help`).
    pub(crate) takes_workers: bool,
}

impl ServerBinary {
    /// Describes `path`, asking its `--help` whether it takes `--workers`.
    pub(crate) fn probe(kind: ServerKind, path: &Path) -> anyhow::Result<ServerBinary> {
        let help = Command::new(path)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} --help", path.display()))?;
        let text = String::from_utf8_lossy(&help.stdout) + String::from_utf8_lossy(&help.stderr);
        Ok(ServerBinary {
            kind,
            path: path.to_owned(),
            takes_workers: text.contains("--workers"),
        })
    }

    /// Starts the server on a free port with `workers` workers and waits for its listening line.
    pub(crate) fn start(&self, workers: usize) -> anyhow::Result<RunningServer> {
        let mut command = Command::new(&self.path);
        command.arg("0");
        if self.takes_workers {
            command.args(["--workers", &workers.to_string()]);
        }
        if self.kind == ServerKind::HandoffLoops {
            command.args(["--loops", &multi_loops().to_string()]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        xtask::process::configure(&mut command, None);
        let mut child = xtask::process::spawn(&mut command)
            .with_context(|| format!("starting {}", self.path.display()))?;
        // The first line within a bound (a server that never prints cannot hang the harness),
        // read by the workspace's one reader of it.
        let (addr, mut reader) = test_support::read_listening_line(&mut child, START_TIMEOUT)
            .map_err(|message| anyhow::anyhow!("{}: {message}", self.kind))?;
        let mut server = RunningServer { child, addr: None };
        // Keep reading (and discarding) the rest so a chatty server never blocks on a full pipe;
        // the thread ends when the server's stdout closes, which dropping the server ensures.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        server.addr = Some(addr);
        Ok(server)
    }
}

/// A server process, killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct RunningServer {
    child: Child,
    addr: Option<SocketAddr>,
}

impl RunningServer {
    /// Takes charge of a spawned server process (in a group of the harness's,
    /// `xtask::process::spawn`) that listens on `addr`.
    pub(crate) fn new(child: Child, addr: SocketAddr) -> RunningServer {
        RunningServer {
            child,
            addr: Some(addr),
        }
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr.expect("set once started")
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        xtask::process::stop_group(&mut self.child);
    }
}

/// CPU time (user + system) a process has used so far, exited threads included, from
/// `/proc/<pid>/stat`. The kernel counts it in ticks of `USER_HZ`, which is 100 on every
/// architecture the benchmark runs on, so over a run of seconds it is exact to about 1 %.
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    const USER_HZ: u64 = 100;
    let ticks = Proc::of(pid).try_cpu_ticks()?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// Context switches of every thread of a process so far: voluntary ones (the thread blocked)
/// and involuntary ones (the scheduler preempted it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ContextSwitches {
    /// `voluntary_ctxt_switches`, summed over the threads.
    pub(crate) voluntary: u64,
    /// `nonvoluntary_ctxt_switches`, summed over the threads.
    pub(crate) involuntary: u64,
}

impl ContextSwitches {
    /// Reads and sums `/proc/<pid>/task/*/status`. Threads that exited are no longer counted,
    /// so a difference of two readings can only under-count.
    pub(crate) fn of(pid: u32) -> anyhow::Result<ContextSwitches> {
        let process = Proc::of(pid);
        let mut total = ContextSwitches::default();
        for tid in process.try_thread_ids()? {
            // A thread may exit between listing and reading: skip it.
            let Ok(status) = process.try_read(&format!("task/{tid}/status")) else {
                continue;
            };
            total.add_status(&status);
        }
        Ok(total)
    }

    fn add_status(&mut self, status: &str) {
        for line in status.lines() {
            let field = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|rest| rest.trim().parse::<u64>().ok())
            };
            if let Some(n) = field("voluntary_ctxt_switches:") {
                self.voluntary += n;
            } else if let Some(n) = field("nonvoluntary_ctxt_switches:") {
                self.involuntary += n;
            }
        }
    }

    /// Both kinds together.
    pub(crate) fn total(self) -> u64 {
        self.voluntary + self.involuntary
    }

    /// The switches between `earlier` and `self`.
    pub(crate) fn since(self, earlier: ContextSwitches) -> ContextSwitches {
        ContextSwitches {
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            involuntary: self.involuntary.saturating_sub(earlier.involuntary),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_summed() {
        let mut switches = ContextSwitches::default();
        switches
            .add_status("Name:\tx\nvoluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t2\n");
        switches.add_status("voluntary_ctxt_switches:\t1\nnonvoluntary_ctxt_switches:\t0\n");
        assert_eq!(
            switches,
            ContextSwitches {
                voluntary: 6,
                involuntary: 2
            }
        );
        assert_eq!(
            switches
                .since(ContextSwitches {
                    voluntary: 1,
                    involuntary: 1
                })
                .total(),
            6
        );
    }

    #[test]
    fn cpu_time_is_read_for_a_live_process_and_refused_for_a_gone_one() {
        assert!(cpu_time(std::process::id()).is_ok());
        // Pid numbers only go up to pid_max (at most 2^22), so this one names no process.
        assert!(cpu_time(u32::MAX).is_err());
    }

    #[test]
    fn a_benchmarked_server_leads_a_group_the_harness_owns_and_stops() {
        // The harness's own test fixture (`examples/listening_server.rs`), built by `cargo test`.
        let exe = std::env::current_exe().unwrap();
        let profile = exe.parent().and_then(Path::parent).unwrap();
        let binary = ServerBinary {
            kind: ServerKind::Handoff,
            path: profile.join("examples/listening_server"),
            takes_workers: false,
        };
        let server = binary.start(1).unwrap();
        let pid = server.pid();
        assert!(
            xtask::process::owns(pid),
            "Ctrl-C stops only the groups the harness owns"
        );
        drop(server);
        assert!(!xtask::process::owns(pid));
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn reads_this_process() {
        let switches = ContextSwitches::of(std::process::id()).unwrap();
        assert!(switches.total() > 0);
    }
}
