//! Test support shared by the workspace's test suites: start a server binary as a child process
//! and learn its address from the `listening on <addr>` line that the protocol requires as its
//! first line of stdout; and a [`TempDir`] for a test's files (a durable server's data folder).
//!
//! This is the one copy of that start-up handshake; the integration tests (`tests/`), the
//! servers' own tests and the load generator's tests use it. [`sys`] holds the few system calls
//! tests need that the course's syscall layer does not teach (a socket reset, signals taken
//! synchronously, the clock tick). It depends on std and libc alone and is a dev-dependency
//! only, so no crate of the course links it and any package's tests may use it.
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

pub mod sys;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// A server child process that has printed its `listening on` line; dropping it kills the
/// process and waits for it, so no test leaves one behind.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// Kept open so the server never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Spawns `command` with stdin closed and stdout piped, and waits up to `timeout` for its
    /// `listening on` line. Panics (after killing the process) if it does not come: a test that
    /// cannot start its server has failed.
    pub fn start(command: &mut Command, timeout: Duration) -> ServerProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        match read_listening_line(&mut child, timeout) {
            Ok((addr, stdout)) => ServerProcess {
                child,
                addr,
                _stdout: stdout,
            },
            Err(message) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{command:?}: {message}");
            }
        }
    }

    /// The address from the `listening on` line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port from the `listening on` line.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child process, to signal it or wait for it.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid the server") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            // The pace of polling, not a synchronisation: the loop ends on the observed exit.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
