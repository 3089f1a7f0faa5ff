//! What the durable-server suites share: start `kv_server --data-dir` on a folder with its
//! stderr kept in a file, talk to it as `nc -q1` does, and read its `STATS` fields.

#![allow(dead_code)] // Each suite uses its own part.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::ServerProcess;

/// Generous hang guard for every start and every socket wait.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The file the servers of a test write their stderr to (appended, across restarts).
pub(crate) fn stderr_file(dir: &Path) -> std::path::PathBuf {
    dir.with_extension("stderr")
}

/// The durable server's command on `data` (port 0, two workers), with `args` after it and
/// `failpoint` in `KV_SERVER_FAILPOINT`; its stderr appended to [`stderr_file`].
pub(crate) fn durable_command(data: &Path, args: &[&str], failpoint: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kv_server"));
    command
        .arg("0")
        .args(["--workers", "2", "--data-dir"])
        .arg(data)
        .args(args)
        .stderr(stderr_sink(data));
    match failpoint {
        Some(point) => command.env("KV_SERVER_FAILPOINT", point),
        None => command.env_remove("KV_SERVER_FAILPOINT"),
    };
    command
}

fn stderr_sink(data: &Path) -> Stdio {
    let file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_file(data))
        .expect("opens the stderr file");
    Stdio::from(file)
}

/// Starts the durable server (see [`durable_command`]).
pub(crate) fn start_durable(data: &Path, args: &[&str], failpoint: Option<&str>) -> ServerProcess {
    ServerProcess::start(&mut durable_command(data, args, failpoint), IO_TIMEOUT)
}

/// What the servers of this folder wrote on stderr so far.
pub(crate) fn stderr_text(data: &Path) -> String {
    std::fs::read_to_string(stderr_file(data)).unwrap_or_default()
}

/// A connection with the hang guard set.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// What `printf "$input" | nc -q1` prints: send everything, half-close, read until the server
/// closes.
pub(crate) fn exchange(addr: SocketAddr, input: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(input.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut output = Vec::new();
    stream.read_to_end(&mut output).expect("the server closes");
    String::from_utf8(output).unwrap()
}

/// The value of `name` in a STATS line.
pub(crate) fn stat(line: &str, name: &str) -> f64 {
    line.trim_end()
        .split(' ')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// Sends SIGTERM and waits for the exit status (bounded by [`IO_TIMEOUT`]).
pub(crate) fn terminate(server: &mut ServerProcess) -> std::process::ExitStatus {
    let pid = i32::try_from(server.pid()).unwrap();
    eventloop::sys::kill(pid, libc::SIGTERM).expect("signals the server");
    wait_exit(server)
}

/// Waits for the server to exit (bounded by [`IO_TIMEOUT`]).
pub(crate) fn wait_exit(server: &mut ServerProcess) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(status) = server.child_mut().try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit"
        );
        // A hang guard only, polling a child's exit status: there is no event to wait on.
        std::thread::sleep(Duration::from_millis(10));
    }
}
