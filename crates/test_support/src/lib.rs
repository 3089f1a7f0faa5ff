//! The workspace's one test harness: servers, clients and `/proc` facts, for every test suite.
//!
//! - [`ServerProcess`] (module [`server`]): a server binary started as a child process on
//!   `127.0.0.1`, its address learnt from the `listening on <addr>` line that the protocol
//!   requires as its first line of stdout, signalled and stopped within bounds, always reaped.
//!   [`binary_path`] finds a workspace binary beside the test executable.
//! - [`Client`] (module [`client`]): a blocking line client with read timeouts, and the helpers
//!   its assertions need ([`wait_until`], [`show`], [`assert_responses`]).
//! - [`Proc`] (module [`procfs`]): what `/proc` says about a process — open fds, threads, RSS,
//!   CPU time — for the test process itself or a server.
//! - [`TempDir`]: a test's own folder (a durable server's data folder), removed when it ends;
//!   [`raise_fd_limit`] and [`fd_heavy_test`] for the tests that open thousands of sockets.
//! - [`sys`]: the few system calls tests need that the course's syscall layer does not teach (a
//!   socket reset, signals taken synchronously, the clock tick).
//!
//! It is a dev-dependency of every package whose tests run a server (and a dependency of the
//! benchmark tools), so the dependency points from tests and tooling to it and never from
//! course code. It builds on std, libc and the course's `eventloop::sys` (signals, fd limits).
//!
//! Every wait is bounded: a server that prints nothing within the timeout is killed (which closes
//! its stdout and ends the reading thread, which is then joined) and the start fails with what it
//! printed.
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//!
//! let server = test_support::ServerProcess::start(
//!     Command::new("target/debug/handoff_server").arg("0"),
//!     Duration::from_secs(20),
//! );
//! println!("serving on {}", server.addr());
//! // Dropping `server` kills the process and waits for it.
//! ```

pub mod client;
pub mod procfs;
pub mod server;
pub mod sys;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use client::{Client, assert_responses, show, wait_until};
pub use procfs::Proc;
pub use server::{ServerBuilder, ServerProcess, StartingProcess};

/// The prefix of the line a server prints once it listens.
pub const LISTENING_PREFIX: &str = "listening on ";

/// Reads `child`'s first stdout line (its stdout must be piped) within `timeout` and parses the
/// address in `listening on <addr>`.
///
/// Returns the address and the rest of stdout, which the caller keeps open so the server never
/// writes into a closed pipe. On a timeout the child is killed and reaped. The error says what
/// went wrong, with the line the server printed instead, if any.
pub fn read_listening_line(
    child: &mut Child,
    timeout: Duration,
) -> Result<(SocketAddr, BufReader<ChildStdout>), String> {
    let stdout = child
        .stdout
        .take()
        .ok_or("the server's stdout is not piped")?;
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let result = reader.read_line(&mut line).map(|_| line);
        let _ = sender.send(());
        (result, reader)
    });
    if receiver.recv_timeout(timeout).is_err() {
        // Killing the child closes the pipe, which ends the reading thread, so it can be joined.
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        return Err(format!("the server printed no line within {timeout:?}"));
    }
    let (line, reader) = reader
        .join()
        .map_err(|_| "the stdout reader panicked".to_owned())?;
    let line = line.map_err(|error| format!("reading the server's stdout: {error}"))?;
    let addr = line
        .trim_end()
        .strip_prefix(LISTENING_PREFIX)
        .and_then(|addr| addr.parse::<SocketAddr>().ok())
        .ok_or_else(|| {
            if line.is_empty() {
                "the server exited before it printed `listening on <addr>`".to_owned()
            } else {
                format!("the first stdout line is not `listening on <addr>`: {line:?}")
            }
        })?;
    Ok((addr, reader))
}

/// The path of a workspace binary, next to the directory that holds this test executable.
///
/// Cargo puts test executables in `<target>/<profile>/deps/` and binaries in
/// `<target>/<profile>/`; `cargo test --workspace` builds the server binaries because their
/// packages have integration tests of their own.
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe
        .parent()
        .expect("the test executable sits in a directory");
    let profile_dir = if deps.ends_with("deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "the `{name}` binary is missing at {}: run `cargo build --workspace --bins` (or \
         `cargo test --workspace`, which builds it) with the same profile and target directory",
        path.display()
    );
    path
}

/// The path of an example of the package under test (`<target>/<profile>/examples/<name>`),
/// which `cargo test` builds beside the test executables: the foreign-server fixtures a grader's
/// tests start, for instance.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("the profile folder above the test executable's")
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "the `{name}` example is missing at {}: `cargo test` builds the package's examples",
        path.display()
    );
    path
}

/// Raises this test process's soft `RLIMIT_NOFILE` to its hard limit, once.
///
/// Tests that open thousands of sockets need it, and servers started afterwards inherit it.
pub fn raise_fd_limit() {
    static RAISE: Once = Once::new();
    RAISE.call_once(|| {
        let (_, hard) = eventloop::sys::fd_limit().expect("getrlimit(RLIMIT_NOFILE)");
        eventloop::sys::set_fd_limit(hard, hard).expect("setrlimit(RLIMIT_NOFILE)");
        assert!(
            hard >= 8_192,
            "the hard RLIMIT_NOFILE is {hard}; the connection tests need 8192 (raise it with \
             `ulimit -Hn`)"
        );
    });
}

/// Serialises the tests that open thousands of sockets, so two of them running at once cannot
/// exhaust this process's fd limit between them.
pub fn fd_heavy_test() -> MutexGuard<'static, ()> {
    static FD_HEAVY: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisoned it; the fds it held are closed by now.
    FD_HEAVY.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A folder of its own for one test (for a server's `--data-dir`, a log's files), under the
/// system's temporary folder; dropping it removes it with everything in it, so no test leaves
/// files behind.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new empty folder whose name starts with `label`, unique in this process and
    /// among processes (the process id, a counter and the time are in its name).
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "{label}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        TempDir { path }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_temp_dir_is_new_and_empty_and_gone_after_drop() {
        let first = TempDir::new("test-support");
        let second = TempDir::new("test-support");
        assert_ne!(first.path(), second.path());
        std::fs::write(first.path().join("file"), b"x").unwrap();
        let path = first.path().to_path_buf();
        drop(first);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(second.path()).unwrap().count(), 0);
    }

    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn reads_the_address_of_a_listening_line() {
        let server = ServerProcess::start(
            Command::new("sh").args(["-c", "echo 'listening on 127.0.0.1:4242'; exec sleep 30"]),
            Duration::from_secs(20),
        );
        assert_eq!(server.addr(), "127.0.0.1:4242".parse().unwrap());
        assert_eq!(server.port(), 4242);
    }

    #[test]
    fn a_server_that_prints_something_else_is_an_error_naming_the_line() {
        let mut child = Command::new("sh")
            .args(["-c", "echo 'bound to 4242'; exec sleep 30"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let error = read_listening_line(&mut child, Duration::from_secs(20)).unwrap_err();
        let _ = child.kill();
        let _ = child.wait();
        assert!(error.contains("bound to 4242"), "{error}");
    }

    #[test]
    fn a_silent_server_is_killed_after_the_timeout() {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let error = read_listening_line(&mut child, Duration::from_millis(200)).unwrap_err();
        assert!(error.contains("no line"), "{error}");
        assert!(child.try_wait().unwrap().is_some(), "the server was reaped");
    }

    #[test]
    fn a_server_that_exits_first_is_an_error() {
        let mut child = Command::new("true").stdout(Stdio::piped()).spawn().unwrap();
        let error = read_listening_line(&mut child, Duration::from_secs(20)).unwrap_err();
        let _ = child.wait();
        assert!(error.contains("exited before"), "{error}");
    }
}
