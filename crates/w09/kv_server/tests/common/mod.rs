//! What the kv_server suites share on top of `test_support`: start `kv_server` (with
//! `--data-dir` on a folder, its stderr kept in a file), talk to it as `nc -q1` does, and read
//! its `STATS` fields.

#![allow(dead_code, unused_imports)] // Each suite uses its own part.

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
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

pub(crate) use test_support::client::timed_stream as connect;

/// What `printf "$input" | nc -q1` prints (see `test_support::client::exchange`).
pub(crate) fn exchange(addr: SocketAddr, input: &str) -> String {
    test_support::client::exchange(addr, input.as_bytes())
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
    server.signal(libc::SIGTERM);
    wait_exit(server)
}

/// Waits for the server to exit (bounded by [`IO_TIMEOUT`]).
pub(crate) fn wait_exit(server: &mut ServerProcess) -> std::process::ExitStatus {
    server
        .wait_exit(IO_TIMEOUT)
        .expect("the server did not exit")
}

/// Starts the server (not durable) on port 0 with `args`.
pub(crate) fn start(args: &[&str]) -> ServerProcess {
    ServerProcess::start(
        Command::new(env!("CARGO_BIN_EXE_kv_server"))
            .arg("0")
            .args(args),
        IO_TIMEOUT,
    )
}
