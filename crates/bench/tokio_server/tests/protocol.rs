//! Integration tests: the Tokio comparison server speaks the handoff protocol byte for byte.
//!
//! Each test starts the real binary on port 0, talks to it over loopback and compares every
//! response with `handoff_protocol::expected_response`, the same oracle the load generator uses.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use handoff_protocol::{MAX_LINE_LEN, Stats, expected_response};
use test_support::ServerProcess;

/// Generous bound on any single socket read, so a hung server fails a test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `tokio_server`, killed and reaped when dropped (by its [`ServerProcess`]).
struct Server {
    _process: ServerProcess,
    port: u16,
}

impl Server {
    fn start(workers: usize) -> Server {
        let process = ServerProcess::start(
            Command::new(assert_cmd::cargo::cargo_bin!("tokio_server"))
                .args(["0", "--workers", &workers.to_string()])
                .env("RUST_BACKTRACE", "0")
                .stderr(Stdio::null()),
            IO_TIMEOUT,
        );
        assert_eq!(process.addr().ip().to_string(), "127.0.0.1");
        let port = process.port();
        Server {
            _process: process,
            port,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("sets a read timeout");
        stream
    }
}

/// Sends `input`, half-closes, and returns everything the server sends until it closes.
fn exchange(server: &Server, input: &[u8]) -> Vec<u8> {
    let mut stream = server.connect();
    stream.write_all(input).expect("sends the requests");
    stream.shutdown(Shutdown::Write).expect("half-closes");
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("reads until the server closes");
    received
}

/// The responses `expected_response` predicts for `lines`, concatenated in order.
fn expected(lines: &[&[u8]]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|line| expected_response(line).expect("not stats"))
        .collect()
}

fn assert_same_bytes(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "responses differ\n--- got\n{}\n--- want\n{}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want)
    );
}

#[test]
fn every_verb_is_answered_exactly_and_in_order_when_pipelined() {
    let server = Server::start(2);
    // The slow request comes first, so the quick ones behind it finish earlier on other workers
    // and only in-order answering passes.
    let lines: Vec<&[u8]> = vec![
        b"sleep 30",
        b"compute hello",
        b"ping",
        b"rehash 1000 abc",
        b"factorial 20",
        b"factorial 21",
        b"factorial x",
        b"fail disk \xff full",
        b"panic boom",
        b"compute after the panic",
        b"sleep 10001",
        b"rehash 0 x",
        b"",
        b"frobnicate",
        b"ping extra",
    ];
    let mut input = Vec::new();
    let mut all = Vec::new();
    for round in 0..20 {
        for line in &lines {
            // Every other round uses CRLF, which the framer strips.
            input.extend_from_slice(line);
            input.extend_from_slice(if round % 2 == 0 { b"\n" } else { b"\r\n" });
            all.push(*line);
        }
    }
    assert_same_bytes(&exchange(&server, &input), &expected(&all));
}

#[test]
fn final_line_without_newline_is_answered_after_half_close() {
    let server = Server::start(1);
    let got = exchange(&server, b"ping\ncompute last words");
    assert_same_bytes(&got, &expected(&[b"ping", b"compute last words"]));
}

#[test]
fn too_long_line_gets_an_error_after_the_earlier_answers_and_closes() {
    let server = Server::start(1);
    let mut stream = server.connect();
    let mut input = b"compute first\nping\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 1));
    input.extend_from_slice(b"\nping\n");
    // The server may close before reading everything; a reset on our write side is fine.
    let _ = stream.write_all(&input);
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let mut want = expected(&[b"compute first", b"ping"]);
    want.extend_from_slice(b"ERROR: line too long\n");
    assert_same_bytes(&received, &want);
}

#[test]
fn stats_reports_the_worker_count_and_the_open_connection() {
    let server = Server::start(3);
    let got = exchange(&server, b"compute a\nstats\n");
    let text = String::from_utf8(got).expect("ASCII responses");
    let compute_answer = expected(&[b"compute a"]);
    assert!(
        text.as_bytes().starts_with(&compute_answer),
        "first answer in {text:?}"
    );
    let stats_line = text.lines().nth(1).expect("a stats line");
    let stats = Stats::parse(stats_line.as_bytes()).expect("a parsable stats line");
    assert_eq!(stats.workers, 3);
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.panics, 0);
}

#[test]
fn many_connections_are_served_concurrently() {
    let server = Server::start(2);
    // Every connection has a request in flight before any answer is read, and each must get
    // exactly its own answers back.
    let mut streams: Vec<TcpStream> = (0..50).map(|_| server.connect()).collect();
    for (index, stream) in streams.iter_mut().enumerate() {
        write!(stream, "compute conn {index}\nping\n").expect("sends");
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        let line = format!("compute conn {index}");
        let want = expected(&[line.as_bytes(), b"ping"]);
        let mut got = vec![0; want.len()];
        stream.read_exact(&mut got).expect("reads both answers");
        assert_same_bytes(&got, &want);
    }
}
