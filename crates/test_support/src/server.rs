//! A server binary run as a child process: started on `127.0.0.1` with port 0, its address read
//! from the `listening on` line the protocol requires, and always reaped.
//!
//! [`ServerProcess::start`] runs a command as given; [`ServerProcess::builder`] builds the usual
//! one (arguments, environment, a file-descriptor limit, stderr captured) and ends it the way an
//! operator would: `Drop` sends SIGTERM, waits (bounded), and only then kills. Every wait is
//! bounded, so no test hangs and none leaves a process behind.

use std::ffi::{OsStr, OsString};
use std::io::{BufReader, Read as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::procfs::Proc;
use crate::read_listening_line;

/// How long a server may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server may take to exit after SIGTERM before it is killed.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`ServerProcess`]: arguments, environment, stderr capture, a file-descriptor limit.
#[derive(Debug)]
pub struct ServerBuilder {
    program: OsString,
    args: Vec<OsString>,
    capture_stderr: bool,
    nofile_limit: Option<u64>,
    envs: Vec<(OsString, OsString)>,
}

impl ServerBuilder {
    /// Appends arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Collects the server's stderr, for [`ServerProcess::stop`] to return (else it is dropped).
    pub fn capture_stderr(mut self) -> Self {
        self.capture_stderr = true;
        self
    }

    /// Sets an environment variable of the server process.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the server with `RLIMIT_NOFILE` set to `limit` (soft and hard).
    pub fn nofile_limit(mut self, limit: u64) -> Self {
        self.nofile_limit = Some(limit);
        self
    }

    /// Starts the process and waits (bounded) for its `listening on 127.0.0.1:<port>` line.
    pub fn start(self) -> ServerProcess {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        command.stderr(if self.capture_stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        if let Some(limit) = self.nofile_limit {
            // SAFETY: the closure runs in the forked child before exec and only calls
            // setrlimit, which is async-signal-safe, through a function that allocates nothing.
            unsafe {
                command.pre_exec(move || eventloop::sys::set_fd_limit(limit, limit));
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        let stderr = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                // Reading until EOF: the pipe closes when the server exits or is killed.
                let _ = stderr.read_to_end(&mut text);
                text
            })
        });
        let server = ServerProcess::from_child(child, &command, STARTUP_TIMEOUT, stderr, true)
            .unwrap_or_else(|message| panic!("{message}"));
        assert_eq!(
            server.addr().ip().to_string(),
            "127.0.0.1",
            "the server listens on 127.0.0.1"
        );
        assert_ne!(server.port(), 0, "port 0 is replaced by the bound port");
        server
    }
}

/// A server child process that has printed its `listening on` line; dropping it ends the
/// process and waits for it, so no test leaves one behind.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// Kept open so the server never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// The thread collecting stderr, if it is captured.
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// Whether `Drop` asks with SIGTERM before it kills.
    terminate_on_drop: bool,
}

impl ServerProcess {
    /// Starts describing a server run from `program` (a path, such as
    /// [`binary_path`](crate::binary_path)'s).
    pub fn builder(program: impl AsRef<OsStr>) -> ServerBuilder {
        ServerBuilder {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            capture_stderr: false,
            nofile_limit: None,
            envs: Vec::new(),
        }
    }

    /// Spawns `command` with stdin closed and stdout piped, and waits up to `timeout` for its
    /// `listening on` line. Panics (after killing the process) if it does not come: a test that
    /// cannot start its server has failed. Dropping it kills the process (SIGKILL).
    pub fn start(command: &mut Command, timeout: Duration) -> ServerProcess {
        ServerProcess::try_start(command, timeout).unwrap_or_else(|message| panic!("{message}"))
    }

    /// [`start`](Self::start) for a tool rather than a test: a server that cannot be started,
    /// or prints no `listening on` line within `timeout`, is an error that says why (the
    /// process killed and reaped), not a panic.
    pub fn try_start(command: &mut Command, timeout: Duration) -> Result<ServerProcess, String> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start {command:?}: {error}"))?;
        ServerProcess::from_child(child, command, timeout, None, false)
    }

    /// Waits for a spawned child's `listening on` line.
    fn from_child(
        mut child: Child,
        command: &Command,
        timeout: Duration,
        stderr: Option<JoinHandle<Vec<u8>>>,
        terminate_on_drop: bool,
    ) -> Result<ServerProcess, String> {
        match read_listening_line(&mut child, timeout) {
            Ok((addr, stdout)) => Ok(ServerProcess {
                child,
                addr,
                _stdout: stdout,
                stderr,
                terminate_on_drop,
            }),
            Err(message) => {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(reader) = stderr {
                    let _ = reader.join();
                }
                Err(format!("{command:?}: {message}"))
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

    /// The process as `/proc` shows it: its fds, threads, memory and CPU time.
    pub fn proc(&self) -> Proc {
        Proc::of(self.pid())
    }

    /// The child process, to signal it or wait for it.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// A new client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = i32::try_from(self.pid()).expect("pids fit in i32");
        eventloop::sys::kill(pid, signal).expect("kill(2) the server");
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the status and the captured
    /// stderr (empty unless [`ServerBuilder::capture_stderr`] was set).
    pub fn stop(mut self) -> (ExitStatus, Vec<u8>) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
            self.kill_and_wait();
            panic!("the server did not exit within {EXIT_TIMEOUT:?} of SIGTERM");
        });
        let stderr = self
            .stderr
            .take()
            .map(|reader| reader.join().expect("stderr reader"));
        (status, stderr.unwrap_or_default())
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid the server") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // The pace of polling, not a synchronisation: the loop ends on the observed exit.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill_and_wait(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.terminate_on_drop
            && let Ok(None) = self.child.try_wait()
            && let Ok(pid) = i32::try_from(self.pid())
        {
            let _ = eventloop::sys::kill(pid, libc::SIGTERM);
            if self.wait_exit(EXIT_TIMEOUT).is_none() {
                self.kill_and_wait();
            }
        }
        self.kill_and_wait();
        if let Some(reader) = self.stderr.take() {
            let _ = reader.join();
        }
    }
}

/// A server process started without waiting for its `listening on` line, for a test that must
/// connect at the first moment anything listens (its port chosen beforehand); killed and reaped
/// on drop.
#[derive(Debug)]
pub struct StartingProcess(Child);

impl StartingProcess {
    /// Spawns `command` with its standard streams closed.
    pub fn spawn(command: &mut Command) -> StartingProcess {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        StartingProcess(child)
    }
}

impl Drop for StartingProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
