//! The `epoll_server` binary, run as a child process: its command line, a real exchange over
//! 127.0.0.1, and the promises that are its own (inline `panic` handling, the output cap).
//!
//! The protocol in full is checked by the workspace's conformance suite, which runs against this
//! binary too; building it is one more reason for this file to exist.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use assert_cmd::cargo::cargo_bin;
use predicates::prelude::*;
use test_support::ServerProcess;

/// A running server (the shared start-up handshake); `Drop` kills and waits for it, so no test
/// leaves a process behind.
struct Server {
    process: ServerProcess,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        let process = ServerProcess::start(
            Command::new(cargo_bin("epoll_server"))
                .arg("0")
                .stderr(Stdio::null()),
            Duration::from_secs(20),
        );
        let addr = process.addr();
        Server { process, addr }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        self.process.proc().rss_kib()
    }
}

fn exchange(stream: &mut TcpStream, request: &[u8], lines: usize) -> String {
    stream.write_all(request).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = String::new();
    for _ in 0..lines {
        reader.read_line(&mut out).unwrap();
    }
    out
}

#[test]
fn help_shows_usage_and_examples() {
    assert_cmd::Command::new(cargo_bin("epoll_server"))
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage: epoll_server"))
        .stdout(predicate::str::contains("--bind"))
        .stdout(predicate::str::contains("Examples:"));
}

#[test]
fn a_bad_port_is_refused_with_a_message() {
    assert_cmd::Command::new(cargo_bin("epoll_server"))
        .arg("70000")
        .assert()
        .failure()
        .stderr(predicate::str::contains("70000"));
    assert_cmd::Command::new(cargo_bin("epoll_server"))
        .args(["0", "--bind", "not-an-address"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--bind"));
}

#[test]
fn answers_ping_compute_and_errors_in_order() {
    let server = Server::start();
    let mut client = server.connect();
    let got = exchange(
        &mut client,
        b"ping\r\ncompute hello\nfactorial 5\nnope\n\npanic boom\nping\n",
        7,
    );
    assert_eq!(
        got,
        "pong\nresult: 9555e8555c62dcfd\nresult: 120\nERROR: unknown command\nERROR: empty request\n\
         ERROR: task panicked: boom\npong\n"
    );
    let stats = exchange(&mut client, b"stats\n", 1);
    assert!(
        stats.starts_with(
            "connections=1 queue_depth=0 workers=0 busy_workers=0 completed=7 errors=3 panics=1"
        ),
        "{stats}"
    );
}

/// A client that floods the server with requests and reads none of the answers, written by a
/// thread of its own until the server stops reading it.
struct Flooder {
    stream: TcpStream,
    writer: std::thread::JoinHandle<()>,
    written: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
}

impl Flooder {
    /// 32 MiB of `compute` requests would be answered with about 100 MiB. The kernel's socket
    /// buffers hold a few MiB at most, so the flood can only be written in full if the server
    /// reads it all; the server holds at most about 1 MiB of unsent output per client, so it must
    /// stop reading this client, and the writer must get stuck.
    fn start(server: &Server) -> Flooder {
        const FLOOD: usize = 32 * 1024 * 1024;
        let stream = server.connect();
        let written = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            stream.set_write_timeout(None).unwrap();
            let (written, done) = (Arc::clone(&written), Arc::clone(&done));
            std::thread::spawn(move || {
                let chunk = b"compute\n".repeat(8 * 1024);
                for _ in 0..FLOOD / chunk.len() {
                    // The write fails once the connection is closed (by the test or the server).
                    if stream.write_all(&chunk).is_err() {
                        return;
                    }
                    written.fetch_add(chunk.len(), Ordering::SeqCst);
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        Flooder {
            stream,
            writer,
            written,
            done,
        }
    }

    /// Calls `sample` until the writer has made no progress for 50 samples in a row (it is
    /// stuck) or has finished; a hard cap on samples bounds the wait. Returns whether it is
    /// stuck.
    fn wait_until_stuck(&self, mut sample: impl FnMut()) -> bool {
        let mut last = usize::MAX;
        let mut still = 0;
        for _ in 0..4000 {
            sample();
            if self.done.load(Ordering::SeqCst) {
                return false;
            }
            let now = self.written.load(Ordering::SeqCst);
            still = if now == last { still + 1 } else { 0 };
            last = now;
            if still >= 50 {
                return true;
            }
            // The pace of sampling, not a synchronisation: the loop ends on observed progress.
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Closes the flooding connection, which unblocks the writer (with an error), and joins it.
    fn stop(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.writer.join().unwrap();
    }
}

#[test]
fn a_client_that_does_not_read_cannot_grow_the_servers_memory() {
    let server = Server::start();
    let baseline = server.rss_kib();
    let flooder = Flooder::start(&server);
    let mut peak = baseline;
    assert!(
        flooder.wait_until_stuck(|| peak = peak.max(server.rss_kib())),
        "the whole flood was accepted: the server kept reading a client that does not read"
    );
    // While it is stuck, the server still serves others.
    let mut other = server.connect();
    assert_eq!(exchange(&mut other, b"ping\n", 1), "pong\n");
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    assert!(
        grown_mib < 16,
        "the server grew by {grown_mib} MiB for one non-reading client"
    );
    // Closing the flooding connection frees the server.
    flooder.stop();
    assert_eq!(exchange(&mut other, b"ping\n", 1), "pong\n");
}

#[test]
fn a_second_signal_closes_a_draining_server_at_once() {
    let mut server = Server::start();
    // A client that never reads keeps the drain waiting for up to `DRAIN_TIMEOUT` (30 s).
    let flooder = Flooder::start(&server);
    assert!(flooder.wait_until_stuck(|| {}), "the server kept reading");
    server.process.signal(libc::SIGTERM);
    // The first signal has been taken once the listener is closed and connects are refused;
    // only then is a second one a second one (two pending signals would merge into one).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = std::iter::from_fn(|| Some(TcpStream::connect(server.addr).is_err()))
        .take_while(|_| std::time::Instant::now() < deadline)
        .any(|refused| refused);
    assert!(refused, "the listener stayed open after SIGTERM");
    server.process.signal(libc::SIGTERM);
    let status = server.process.wait_exit(Duration::from_secs(10));
    flooder.stop();
    let status = status.expect("the second signal ends the drain at once, well before 30 s");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_stops_the_server_with_exit_status_zero() {
    let mut server = Server::start();
    let mut client = server.connect();
    assert_eq!(exchange(&mut client, b"ping\n", 1), "pong\n");
    server.process.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let status = server.process.child_mut().wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn idle_connections_cost_little_memory() {
    // 1,000 connections that each sent one request: the server keeps no per-connection read
    // buffer between reads (a 64 KiB buffer each would be over 60 MiB).
    const CONNECTIONS: usize = 1000;
    let (soft, hard) = eventloop::sys::fd_limit().unwrap();
    if soft < 4096 {
        // The server inherits the raised limit; 1,000 clients plus the server's own fds fit.
        eventloop::sys::set_fd_limit(hard.min(4096).max(soft), hard).unwrap();
    }
    let server = Server::start();
    let baseline = server.rss_kib();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut client = server.connect();
        client.write_all(b"ping\n").unwrap();
        clients.push(client);
    }
    for client in &mut clients {
        let mut pong = [0u8; 5];
        client.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"pong\n");
    }
    let grown_mib = server.rss_kib().saturating_sub(baseline) / 1024;
    assert!(
        grown_mib < 16,
        "{CONNECTIONS} idle connections cost {grown_mib} MiB"
    );
}
