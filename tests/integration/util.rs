//! Shared helpers: find and start a server binary, talk to it, look at it through `/proc`.
//!
//! Every server runs as a child process on `127.0.0.1` with port 0; [`Server`] reads the port from
//! the `listening on` line the protocol requires, and its `Drop` sends SIGTERM, then SIGKILL, and
//! always waits, so no test leaves a process behind. Every blocking step is bounded: clients have
//! read timeouts, and [`wait_until`] gives up (and fails the test) after its deadline.

use std::collections::BTreeSet;
use std::ffi::c_int;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use handoff_protocol::Stats;

/// How long a client waits for a response before the test fails. Generous on purpose: it is a
/// hang guard for a loaded two-core CI machine, not a latency claim.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server may take to exit after SIGTERM before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The servers that speak the wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// The W05 handoff server: an event loop plus a thread pool.
    Handoff,
    /// The same server with `--loops 2`: two event loops on one port sharing the pool.
    HandoffTwoLoops,
    /// The W04 single-threaded epoll server, which answers every verb on its loop.
    Epoll,
}

impl ServerKind {
    /// The binary's file name.
    pub(crate) fn binary_name(self) -> &'static str {
        match self {
            ServerKind::Handoff | ServerKind::HandoffTwoLoops => "handoff_server",
            ServerKind::Epoll => "epoll_server",
        }
    }

    /// The arguments every conformance test starts this server with (after the port).
    fn default_args(self) -> &'static [&'static str] {
        match self {
            // Two workers: enough to run tasks out of order, few enough for a two-core machine.
            ServerKind::Handoff => &["--workers", "2"],
            ServerKind::HandoffTwoLoops => &["--workers", "2", "--loops", "2"],
            ServerKind::Epoll => &[],
        }
    }

    /// Starts the server with its default arguments.
    pub(crate) fn start(self) -> Server {
        Server::builder(self).args(self.default_args()).start()
    }
}

/// The path of a workspace binary, next to the directory that holds this test executable.
///
/// Cargo puts test executables in `<target>/<profile>/deps/` and binaries in `<target>/<profile>/`;
/// `cargo test --workspace` builds the server binaries because their packages have integration
/// tests of their own.
pub(crate) fn binary_path(name: &str) -> PathBuf {
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

/// Raises this test process's soft `RLIMIT_NOFILE` to its hard limit, once.
///
/// Tests that open thousands of sockets need it, and servers started afterwards inherit it.
pub(crate) fn raise_fd_limit() {
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
pub(crate) fn fd_heavy_test() -> MutexGuard<'static, ()> {
    static FD_HEAVY: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisoned it; the fds it held are closed by now.
    FD_HEAVY.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Builds a [`Server`] process: arguments, stderr capture, a file-descriptor limit.
#[derive(Debug)]
pub(crate) struct ServerBuilder {
    kind: ServerKind,
    args: Vec<String>,
    capture_stderr: bool,
    nofile_limit: Option<u64>,
    envs: Vec<(String, String)>,
}

impl ServerBuilder {
    /// Appends arguments after the port.
    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Collects the server's stderr, for [`Server::stop`] to return.
    pub(crate) fn capture_stderr(mut self) -> Self {
        self.capture_stderr = true;
        self
    }

    /// Sets an environment variable of the server process (the fault injector's settings).
    #[cfg_attr(not(fault_injection), allow(dead_code))]
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the server with `RLIMIT_NOFILE` set to `limit` (soft and hard).
    pub(crate) fn nofile_limit(mut self, limit: u64) -> Self {
        self.nofile_limit = Some(limit);
        self
    }

    /// Starts the process and waits (bounded) for its `listening on 127.0.0.1:<port>` line.
    pub(crate) fn start(self) -> Server {
        let mut command = Command::new(binary_path(self.kind.binary_name()));
        command
            .arg("0")
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
        let mut child = command.spawn().expect("spawn the server");
        let stderr = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                // Reading until EOF: the pipe closes when the server exits or is killed.
                let _ = stderr.read_to_end(&mut text);
                text
            })
        });
        let listening = test_support::read_listening_line(&mut child, STARTUP_TIMEOUT);
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout: None,
            stderr,
        };
        let (addr, stdout) = listening.unwrap_or_else(|message| {
            server.kill_and_wait();
            panic!("{}: {message}", self.kind.binary_name())
        });
        server.stdout = Some(stdout);
        assert_eq!(
            addr.ip().to_string(),
            "127.0.0.1",
            "the server listens on 127.0.0.1"
        );
        assert_ne!(addr.port(), 0, "port 0 is replaced by the bound port");
        server.addr = addr;
        server
    }
}

/// A running server process; `Drop` terminates it (SIGTERM, then SIGKILL) and waits for it.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    addr: SocketAddr,
    /// Kept open so the server never writes into a closed pipe.
    stdout: Option<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Server {
    /// Starts describing a server of `kind`.
    pub(crate) fn builder(kind: ServerKind) -> ServerBuilder {
        ServerBuilder {
            kind,
            args: Vec::new(),
            capture_stderr: false,
            nofile_limit: None,
            envs: Vec::new(),
        }
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// A new client connection.
    pub(crate) fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Asks for `stats` on a new connection and parses the answer.
    pub(crate) fn stats(&self) -> Stats {
        let mut client = self.client();
        let line = client.request("stats");
        Stats::parse(line.as_bytes()).unwrap_or_else(|| panic!("unparsable stats line {line:?}"))
    }

    /// Sends `signal` to the server.
    pub(crate) fn signal(&self, signal: c_int) {
        eventloop::sys::kill(self.pid(), signal).expect("kill(2) the server");
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the status and the captured stderr
    /// (empty unless [`ServerBuilder::capture_stderr`] was set).
    pub(crate) fn stop(mut self) -> (ExitStatus, Vec<u8>) {
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

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid the server") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill_and_wait(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's open file descriptors (their numbers).
    pub(crate) fn fds(&self) -> BTreeSet<u32> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read the server's /proc/<pid>/fd")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// How many threads the server process has.
    pub(crate) fn thread_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .expect("read the server's /proc/<pid>/task")
            .count()
    }

    /// The server's resident set size, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the server's /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// CPU time the server has used so far (user + system).
    pub(crate) fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read the server's /proc/<pid>/stat");
        // The command name (field 2) may contain spaces, so the fields are counted from the last
        // `)`: after it come field 3 (`state`) onwards, so utime (14) and stime (15) are the 12th
        // and 13th.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("a comm field") + 1..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // /proc reports clock ticks of USER_HZ, which the kernel ABI fixes at 100 per second.
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = eventloop::sys::kill(self.pid(), libc::SIGTERM);
            if self.wait_exit(EXIT_TIMEOUT).is_none() {
                self.kill_and_wait();
            }
        }
        if let Some(reader) = self.stderr.take() {
            let _ = reader.join();
        }
    }
}

/// A blocking client connection with a read timeout.
#[derive(Debug)]
pub(crate) struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects to `addr`; panics if that fails.
    pub(crate) fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|error| panic!("connect to {addr}: {error}"))
    }

    /// Connects to `addr`.
    pub(crate) fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// The underlying stream (for timeouts, `peek`, or raw writes).
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// Sends `bytes`, all of them.
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to the server");
    }

    /// Reads one response line, `\n` included; `Ok(None)` at EOF.
    pub(crate) fn try_read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Ok(None);
        }
        Ok(Some(line))
    }

    /// Reads one response line, `\n` included; fails the test on EOF, error or timeout.
    pub(crate) fn read_line(&mut self) -> Vec<u8> {
        match self.try_read_line() {
            Ok(Some(line)) => {
                assert!(
                    line.ends_with(b"\n"),
                    "response cut short by EOF: {}",
                    show(&line)
                );
                line
            }
            Ok(None) => panic!("the server closed the connection instead of responding"),
            Err(error) => panic!("no response within the read timeout: {error}"),
        }
    }

    /// Sends `line` plus `\n` and returns the response without its `\n`.
    pub(crate) fn request(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        let response = self.read_line();
        String::from_utf8(response[..response.len() - 1].to_vec()).expect("a UTF-8 response")
    }

    /// Half-closes: shuts down the write side, as `nc -q1` does after its input.
    pub(crate) fn shutdown_write(&self) {
        self.writer
            .shutdown(Shutdown::Write)
            .expect("shutdown(SHUT_WR)");
    }

    /// Reads everything until the server closes the connection.
    pub(crate) fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        self.reader
            .read_to_end(&mut all)
            .expect("read until the server closes");
        all
    }

    /// Whether the server has closed the connection: EOF or a reset, with no more bytes.
    pub(crate) fn is_closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    /// Closes the connection with a TCP reset instead of a FIN.
    ///
    /// Linux resets a connection that is closed while received bytes are still unread, so this
    /// waits (bounded) until at least one byte from the server has arrived unread, then drops the
    /// socket. The caller must have made the server send something.
    pub(crate) fn reset(self) {
        let mut byte = [0u8; 1];
        let peeked = self
            .writer
            .peek(&mut byte)
            .expect("peek at the server's bytes");
        assert!(
            peeked > 0 || !self.reader.buffer().is_empty(),
            "nothing unread to force a reset"
        );
        drop(self);
    }
}

/// Polls `condition` until it holds, failing the test with `what` after `timeout`.
///
/// A hang guard for states that only the server can reach (a task picked up, an fd closed), not
/// a timing assumption: it returns as soon as the condition holds.
pub(crate) fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The exact response bytes for one request line (without its line ending).
pub(crate) fn expected(line: &[u8]) -> Vec<u8> {
    handoff_protocol::expected_response(line)
        .unwrap_or_else(|| panic!("no fixed response for {}", show(line)))
}

/// Shows bytes readably in assertion messages.
pub(crate) fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Asserts two response streams are equal, showing the first differing line when they are not.
pub(crate) fn assert_responses(actual: &[u8], expected: &[u8]) {
    if actual == expected {
        return;
    }
    let mut actual_lines = actual.split_inclusive(|&b| b == b'\n');
    let mut expected_lines = expected.split_inclusive(|&b| b == b'\n');
    for index in 0.. {
        match (actual_lines.next(), expected_lines.next()) {
            (Some(a), Some(e)) if a == e => continue,
            (a, e) => panic!(
                "responses differ at line {index}: got {}, expected {} ({} vs {} bytes in all)",
                a.map_or("<end>".to_owned(), show),
                e.map_or("<end>".to_owned(), show),
                actual.len(),
                expected.len()
            ),
        }
    }
}
