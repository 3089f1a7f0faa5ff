//! `console trace`: which threads of a server touch client sockets, which touch the files of its
//! data folder, and how often its workers wake the loop through an eventfd, seen through strace.
//!
//! strace is attached to the running server (`-p`, following every thread with `-f`) and records
//! the I/O and close calls, with `-yy` so each fd is shown with what it is: a connected TCP
//! socket reads `fd<TCP:[local->peer]>`, the listener `fd<TCP:[local]>`, a file `fd</its/path>`.
//! The threads that made a call on a connected socket are the threads that touched a client
//! socket; the threads that made a file call (open, read, write, fsync, fdatasync, truncate,
//! rename, unlink) naming a path inside the lesson's data folder (`{dir}`) are the threads that
//! did its disk IO. An eventfd reads `fd<anon_inode:[eventfd]>`: its writes by the workers and its
//! reads by anyone show whether the workers wake the loop only on the results queue's
//! empty-to-non-empty edge.

use crate::process;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

/// The calls recorded.
const CALLS: &str = "read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg,sendmmsg,recvmmsg,\
                     shutdown,close,splice,sendfile,pread64,pwrite64,preadv,pwritev,fsync,\
                     fdatasync,ftruncate,openat,rename,renameat,renameat2,unlink,unlinkat";

/// The recorded calls that are disk IO when they name a file.
const DISK_CALLS: [&str; 17] = [
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "fsync",
    "fdatasync",
    "ftruncate",
    "openat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
];

/// A running strace, or why there is none.
#[derive(Debug)]
pub(crate) enum Trace {
    /// strace is attached and writing `file`.
    Running {
        /// The strace process.
        child: Child,
        /// Its output file.
        file: PathBuf,
        /// The thread reading strace's stderr; it ends when strace does.
        reader: JoinHandle<Vec<String>>,
    },
    /// strace recorded and was detached; what it recorded.
    Finished(Result<String, String>),
    /// Not available: the reason (reported as SKIPPED).
    Unavailable(String),
}

/// Whether strace can be run at all.
fn strace_installed() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl Trace {
    /// Attaches strace to `pid`, writing to `file`; waits until it has attached.
    pub(crate) fn attach(pid: u32, file: &Path, deadline: Instant) -> Trace {
        if !strace_installed() {
            return Trace::Unavailable("strace is not installed".to_owned());
        }
        let mut command = Command::new("strace");
        command
            .args(["-f", "-yy", "-s", "0", "-e"])
            .arg(format!("trace={CALLS}"))
            .args(["-e", "signal=none", "-o"])
            .arg(file)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        process::configure(&mut command, None);
        let mut child = match process::spawn(&mut command) {
            Ok(child) => child,
            Err(error) => return Trace::Unavailable(format!("strace could not start: {error}")),
        };
        // strace reports each attached thread on stderr; the first report means it is tracing.
        let (attached_tx, attached_rx) = mpsc::channel();
        let stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            if let Some(stderr) = stderr {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("attached") {
                        let _ = attached_tx.send(());
                    }
                    lines.push(line);
                }
            }
            lines
        });
        let wait = deadline.saturating_duration_since(Instant::now());
        if attached_rx.recv_timeout(wait).is_ok() {
            return Trace::Running {
                child,
                file: file.to_path_buf(),
                reader,
            };
        }
        process::stop_group(&mut child);
        let output = reader.join().unwrap_or_default().join("\n");
        Trace::Unavailable(format!("strace could not attach to the server: {output}"))
    }

    /// Detaches strace (if still running) and returns its record (for [`socket_threads`] and
    /// [`disk_threads`]).
    pub(crate) fn finish(&mut self) -> Result<String, String> {
        if matches!(self, Trace::Running { .. }) {
            let placeholder = Trace::Finished(Err("the trace was being read".to_owned()));
            let Trace::Running {
                mut child,
                file,
                reader,
            } = std::mem::replace(self, placeholder)
            else {
                unreachable!("checked just above");
            };
            // SIGTERM makes strace detach from the server and flush its output.
            process::stop_group(&mut child);
            let _ = reader.join();
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("cannot read the trace: {e}"));
            *self = Trace::Finished(text);
        }
        match self {
            Trace::Finished(result) => result.clone(),
            Trace::Unavailable(reason) => Err(reason.clone()),
            Trace::Running { .. } => unreachable!("finished above"),
        }
    }
}

/// A traced line's thread id and its call (`name(args...) = result`).
fn tid_and_call(line: &str) -> Option<(u64, &str)> {
    let line = line.trim_start_matches("[pid").trim_start();
    let digits = line.find(|c: char| !c.is_ascii_digit())?;
    let tid: u64 = line[..digits].parse().ok()?;
    Some((tid, line[digits..].trim_start_matches(']').trim_start()))
}

/// The thread ids of every traced file call that names `dir` or a path inside it (an fd shown as
/// `<dir/...>` or `<dir>`, or a path argument `"dir/..."` or `"dir"`), with one example line per
/// thread.
pub(crate) fn disk_threads(trace: &str, dir: &Path) -> BTreeMap<u64, String> {
    let dir = dir.display().to_string();
    // The folder itself counts too: an `openat` of it split by strace (`<unfinished ...>`, when
    // another thread's call comes in between) shows only its path argument, not the fd.
    let inside = [
        format!("<{dir}/"),
        format!("\"{dir}/"),
        format!("<{dir}>"),
        format!("\"{dir}\""),
    ];
    let mut threads = BTreeMap::new();
    for line in trace.lines() {
        let Some((tid, call)) = tid_and_call(line) else {
            continue;
        };
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        if DISK_CALLS.contains(&name) && inside.iter().any(|marker| args.contains(marker)) {
            threads.entry(tid).or_insert_with(|| call.to_owned());
        }
    }
    threads
}

/// The thread ids of every traced call on a connected TCP socket.
pub(crate) fn socket_threads(trace: &str) -> BTreeSet<u64> {
    trace
        .lines()
        .filter_map(|line| {
            let (tid, call) = tid_and_call(line)?;
            // A connected socket is decorated with `<TCP:[local->peer]>` (or TCPv6).
            let first_arg = call.split_once('(')?.1;
            let decoration = first_arg.split_once('<')?.1;
            let is_client = (decoration.starts_with("TCP:[") || decoration.starts_with("TCPv6:["))
                && decoration
                    .split(']')
                    .next()
                    .is_some_and(|inner| inner.contains("->"));
            is_client.then_some(tid)
        })
        .collect()
}

/// How one eventfd was used during a trace: writes by the given threads, reads by any thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventfdUse {
    /// The fd number.
    pub(crate) fd: u32,
    /// Writes by the writer threads (each a wake).
    pub(crate) writes: usize,
    /// Reads by any thread (each a drain of the counter).
    pub(crate) reads: usize,
}

/// For every eventfd that one of `writers` wrote, how often those threads wrote it and how often
/// anyone read it. A loop that drains the counter before it drains its results queue, woken only
/// when a push makes that queue non-empty, reads each eventfd at least once between two such
/// writes, so `writes <= reads + 1`; a worker that writes on every push writes far more often.
pub(crate) fn eventfd_use(trace: &str, writers: &BTreeSet<u64>) -> Vec<EventfdUse> {
    let mut uses: BTreeMap<u32, EventfdUse> = BTreeMap::new();
    for line in trace.lines() {
        let Some((tid, call)) = tid_and_call(line) else {
            continue;
        };
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        let Some((fd, rest)) = args.split_once('<') else {
            continue;
        };
        // A successful call only: an `EAGAIN` read of an empty counter drained nothing.
        if !rest.starts_with("anon_inode:[eventfd]>") || call.contains(" = -1 ") {
            continue;
        }
        let Ok(fd) = fd.trim().parse::<u32>() else {
            continue;
        };
        let entry = uses.entry(fd).or_insert(EventfdUse {
            fd,
            writes: 0,
            reads: 0,
        });
        match name {
            "write" if writers.contains(&tid) => entry.writes += 1,
            "read" => entry.reads += 1,
            _ => {}
        }
    }
    uses.into_values().filter(|used| used.writes > 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_threads_on_connected_sockets_only() {
        let trace = "\
100 read(5<TCP:[127.0.0.1:4000->127.0.0.1:5000]>, \"\"..., 4096) = 5
101 write(7<anon_inode:[eventfd]>, \"\\1\\0\\0\\0\\0\\0\\0\\0\", 8) = 8
102 close(3<TCP:[127.0.0.1:4000]>) = 0
[pid   103] sendto(9<TCPv6:[::1:4000->::1:5000]>, \"\"..., 7, MSG_NOSIGNAL, NULL, 0) = 7
104 write(2</dev/pts/0>, \"worker\"..., 20) = 20
";
        assert_eq!(
            socket_threads(trace).into_iter().collect::<Vec<_>>(),
            [100, 103]
        );
    }

    #[test]
    fn finds_threads_doing_file_io_inside_the_data_folder_only() {
        let trace = "\
200 write(5</data/dir/00000000000000000000.wal>, \"\"..., 40) = 40
201 fdatasync(5</data/dir/00000000000000000000.wal>) = 0
202 write(2</data/dir-other/log>, \"\"..., 10) = 10
203 rename(\"/data/dir/checkpoint.tmp\", \"/data/dir/checkpoint\") = 0
[pid   204] openat(AT_FDCWD</>, \"/data/dir\", O_RDONLY|O_CLOEXEC) = 6</data/dir>
205 write(7<TCP:[127.0.0.1:4000->127.0.0.1:5000]>, \"\"..., 5) = 5
206 write(2</server.log>, \"\"..., 10) = 10
207 close(5</data/dir/00000000000000000000.wal>) = 0
[pid   208] openat(AT_FDCWD</>, \"/data/dir\", O_RDONLY|O_CLOEXEC|O_DIRECTORY <unfinished ...>
[pid   209] openat(AT_FDCWD</>, \"/data/dir-other\", O_RDONLY|O_DIRECTORY <unfinished ...>
";
        let found = disk_threads(trace, Path::new("/data/dir"));
        assert_eq!(
            found.keys().copied().collect::<Vec<_>>(),
            [200, 201, 203, 204, 208]
        );
        assert!(found[&201].starts_with("fdatasync("), "{found:?}");
    }

    #[test]
    fn counts_the_eventfd_writes_of_the_workers_and_every_read() {
        let trace = "\
300 write(7<anon_inode:[eventfd]>, \"\\1\\0\\0\\0\\0\\0\\0\\0\", 8) = 8
100 read(7<anon_inode:[eventfd]>, \"\\1\\0\\0\\0\\0\\0\\0\\0\", 8) = 8
[pid   301] write(7<anon_inode:[eventfd]>, \"\\1\\0\\0\\0\\0\\0\\0\\0\", 8) = 8
100 read(7<anon_inode:[eventfd]>, 0x7ffc, 8) = -1 EAGAIN (Resource temporarily unavailable)
100 write(6<anon_inode:[eventfd]>, \"\\1\\0\\0\\0\\0\\0\\0\\0\", 8) = 8
100 read(6<anon_inode:[eventfd]>, \"\\1\\0\\0\\0\\0\\0\\0\\0\", 8) = 8
300 write(5<TCP:[127.0.0.1:4000->127.0.0.1:5000]>, \"\"..., 5) = 5
";
        let workers: BTreeSet<u64> = [300, 301].into();
        // fd 6 is the loop's own (no worker wrote it); the failed read drained nothing.
        assert_eq!(
            eventfd_use(trace, &workers),
            [EventfdUse {
                fd: 7,
                writes: 2,
                reads: 1
            }]
        );
    }
}
