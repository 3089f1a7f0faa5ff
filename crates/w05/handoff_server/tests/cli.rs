//! The command line: `--help`, argument errors, and one exchange over the wire.
//!
//! The protocol itself is tested against the running binary by the workspace's integration
//! suite (`tests/integration`); this file's presence also makes `cargo test --workspace` build
//! the `handoff_server` binary that suite runs.

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt as _;
use predicates::prelude::*;
use test_support::ServerProcess;

#[test]
fn help_lists_every_flag_with_examples() {
    let assert = assert_cmd::Command::cargo_bin("handoff_server")
        .unwrap()
        .arg("--help")
        .assert();
    let mut output = predicate::str::contains("[PORT]").boxed();
    for flag in [
        "--bind",
        "--workers",
        "--queue",
        "--max-in-flight",
        "--max-unsent-bytes",
        "--log",
        "--max-inflight",
        "--max-queue-depth",
        "--request-timeout-ms",
        "--max-retry-ratio",
        "--stats-interval-ms",
    ] {
        output = output.and(predicate::str::contains(flag)).boxed();
    }
    output = output.and(predicate::str::contains("Examples:")).boxed();
    assert.success().stdout(output);
}

#[test]
fn a_bad_flag_fails_with_a_clear_message() {
    assert_cmd::Command::cargo_bin("handoff_server")
        .unwrap()
        .arg("--wrokers")
        .assert()
        .failure()
        .stderr(predicate::str::contains("unexpected argument '--wrokers'"));
    assert_cmd::Command::cargo_bin("handoff_server")
        .unwrap()
        .args(["0", "--workers", "0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("must be at least 1"));
    assert_cmd::Command::cargo_bin("handoff_server")
        .unwrap()
        .arg("seventy")
        .assert()
        .failure()
        .stderr(predicate::str::contains("invalid value 'seventy'"));
    assert_cmd::Command::cargo_bin("handoff_server")
        .unwrap()
        .args(["0", "--max-retry-ratio=-0.5"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("must be a number from 0 up"));
    assert_cmd::Command::cargo_bin("handoff_server")
        .unwrap()
        .args(["0", "--request-timeout-ms", "0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("must be at least 1"));
    assert_cmd::Command::cargo_bin("handoff_server")
        .unwrap()
        .args(["0", "--loops", "0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("must be at least 1 (or `auto`)"));
}

/// Starts the server on port 0 with one worker and returns it with the port its first line names.
///
/// The line comes once the server listens, after the start-up that every worker inherits (the
/// signal mask, the timer slack), so a test may look at the process as soon as this returns.
fn start_on_port_zero() -> (ServerProcess, u16) {
    let server = ServerProcess::start(
        Command::cargo_bin("handoff_server")
            .unwrap()
            .args(["0", "--workers", "1"])
            .stderr(Stdio::null()),
        Duration::from_secs(20),
    );
    assert_eq!(server.addr().ip().to_string(), "127.0.0.1");
    let port = server.port();
    (server, port)
}

#[test]
fn port_zero_prints_the_port_and_serves_a_compute() {
    let (_child, port) = start_on_port_zero();
    assert_ne!(port, 0);

    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(b"compute test\n").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut response = String::new();
    BufReader::new(stream).read_line(&mut response).unwrap();
    assert_eq!(response, "result: 9ec9f7918d7dfc40\n");
}

#[test]
fn the_server_runs_with_a_tight_timer_slack_so_sleep_requests_end_on_time() {
    let (child, _port) = start_on_port_zero();
    let server = test_support::Proc::of(child.pid());
    if !server.has("timerslack_ns") {
        // A kernel without the file: the server leaves the default too, nothing to check.
        return;
    }
    assert_eq!(server.read("timerslack_ns").trim(), "1000");
}
