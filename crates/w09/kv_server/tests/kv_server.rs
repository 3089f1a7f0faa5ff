//! kv_server end to end: the by-hand checks of its lesson (as `nc -q1` does them: send, half-close,
//! read to EOF), pipelining against the store's own model, concurrent writers, expiry by the
//! sweep alone, line too long, and a SIGTERM with requests in flight.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, connect, start};
use kv_store::{KvEngine, LockStrategy};
use test_support::ServerProcess;

mod common;

/// What `printf "$input" | nc -q1` prints, from `server`.
fn exchange(server: &ServerProcess, input: &[u8]) -> String {
    test_support::client::exchange(server.addr(), input)
}

/// The value of `name` in a STATS line, a count.
fn stat(line: &str, name: &str) -> u64 {
    common::stat(line, name) as u64
}

#[test]
fn the_by_hand_checks_of_the_lesson() {
    let server = start(&["--workers", "2"]);
    assert_eq!(exchange(&server, b"SET foo bar\n"), "OK\n");
    assert_eq!(exchange(&server, b"GET foo\n"), "VALUE bar\n");
    assert_eq!(exchange(&server, b"BADCMD\n"), "ERROR unknown command\n");
    // A last line without `\n` is answered too.
    assert_eq!(exchange(&server, b"GET foo"), "VALUE bar\n");
}

#[test]
fn pipelined_requests_are_answered_in_order_exactly_as_the_store_answers() {
    for lock in ["single", "sharded:4"] {
        let server = start(&["--workers", "2", "--lock", lock]);
        let model = KvEngine::new(lock.parse::<LockStrategy>().unwrap());
        let mut input = Vec::new();
        for i in 0..500 {
            let line = match i % 7 {
                0 => format!("SET k{} v{i}", i % 13),
                1 => format!("DEL k{}", i % 11),
                2 => format!("KEYS k{}", i % 3),
                3 => "get lowercase".to_owned(),
                4 => format!("SET x{i} spaced value {i} EX 600"),
                _ => format!("GET k{}", i % 13),
            };
            input.extend_from_slice(line.as_bytes());
            input.push(b'\n');
        }
        let now = Instant::now();
        let expected: String = input
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| String::from_utf8(model.execute_line(line, now).to_bytes()).unwrap())
            .collect();
        assert_eq!(exchange(&server, &input), expected, "--lock {lock}");
    }
}

#[test]
fn eight_concurrent_writers_of_distinct_keys_leave_the_exact_key_count() {
    const WRITERS: usize = 8;
    const KEYS_EACH: usize = 250;
    let server = start(&["--workers", "2"]);
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let server = &server;
            scope.spawn(move || {
                let input: String = (0..KEYS_EACH)
                    .map(|k| format!("SET w{writer}:{k} value-{k}\n"))
                    .collect();
                let output = exchange(server, input.as_bytes());
                assert_eq!(output, "OK\n".repeat(KEYS_EACH), "writer {writer}");
            });
        }
    });
    let stats = exchange(&server, b"STATS\n");
    assert_eq!(
        stat(&stats, "keys"),
        (WRITERS * KEYS_EACH) as u64,
        "{stats}"
    );
    assert_eq!(
        stat(&stats, "sets"),
        (WRITERS * KEYS_EACH) as u64,
        "{stats}"
    );
    let keys = exchange(&server, b"KEYS w3:24\n");
    assert_eq!(
        keys,
        "KEYS 11 w3:24 w3:240 w3:241 w3:242 w3:243 w3:244 w3:245 w3:246 w3:247 w3:248 w3:249\n"
    );
}

#[test]
fn an_expired_key_is_removed_by_the_sweep_without_being_read() {
    let server = start(&["--workers", "2"]);
    assert_eq!(
        exchange(&server, b"SET short lived EX 1\nSET stays here\n"),
        "OK\nOK\n"
    );
    // Nothing reads `short`: only the loop's periodic sweep can remove it. Polled, bounded in
    // time (the hang guard) and count.
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut stats = String::new();
    for _ in 0..1000 {
        stats = exchange(&server, b"STATS\n");
        if stat(&stats, "expired") == 1 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stat(&stats, "expired"), 1, "{stats}");
    assert_eq!(stat(&stats, "keys"), 1, "{stats}");
    assert_eq!(stat(&stats, "gets"), 0, "{stats}");
    assert_eq!(exchange(&server, b"GET stays\n"), "VALUE here\n");
}

#[test]
fn a_line_too_long_is_answered_after_the_earlier_ones_and_closes_the_connection() {
    let server = start(&["--workers", "1"]);
    let mut input = b"SET a 1\nGET a\nSET b ".to_vec();
    input.resize(input.len() + 70_000, b'x');
    input.extend_from_slice(b"\nGET a\n");
    assert_eq!(
        exchange(&server, &input),
        "OK\nVALUE 1\nERROR line too long\n"
    );
    let stats = exchange(&server, b"STATS\n");
    assert_eq!(stat(&stats, "errors"), 1, "{stats}");
}

#[test]
fn sigterm_answers_what_was_read_joins_everything_and_exits_zero() {
    let mut server = start(&["--workers", "2"]);
    let mut stream = connect(server.addr());
    let requests = 2000;
    let input: String = (0..requests).map(|i| format!("SET k{i} {i}\n")).collect();
    stream.write_all(input.as_bytes()).unwrap();
    // Wait for the first answer, so the server has read requests when the signal comes.
    let mut first = [0; 3];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"OK\n");
    let pid = i32::try_from(server.pid()).unwrap();
    eventloop::sys::kill(pid, libc::SIGTERM).expect("signals the server");
    let signalled = Instant::now();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("the server closes");
    // Every answer it sent is a whole `OK` line: what was read was answered, nothing was cut.
    assert!(rest.len() % 3 == 0 && rest.chunks(3).all(|ok| ok == b"OK\n"));
    let status = loop {
        if let Some(status) = server.child_mut().try_wait().unwrap() {
            break status;
        }
        // A hang guard only: the 2 s of the protocol is the lesson's `exits 0 within 2s`.
        assert!(
            signalled.elapsed() < IO_TIMEOUT,
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn a_tiny_budget_holds_lines_and_still_answers_every_client_exactly() {
    // One worker and one queue slot: two requests in flight server-wide, so nearly every line
    // is held by its session and offered again when results free the budget.
    let server = start(&["--workers", "1", "--queue", "1", "--max-in-flight", "4"]);
    std::thread::scope(|scope| {
        for client in 0..4 {
            let server = &server;
            scope.spawn(move || {
                let mut input = String::new();
                let mut expected = String::new();
                for i in 0..300 {
                    input.push_str(&format!("SET c{client}:{i} {i}\nGET c{client}:{i}\n"));
                    expected.push_str(&format!("OK\nVALUE {i}\n"));
                }
                assert_eq!(
                    exchange(server, input.as_bytes()),
                    expected,
                    "client {client}"
                );
            });
        }
    });
    let stats = exchange(&server, b"STATS\n");
    assert_eq!(stat(&stats, "keys"), 1200, "{stats}");
}

#[test]
fn clients_that_vanish_mid_pipeline_cost_the_others_nothing() {
    // A small budget, so each vanishing client has lines in the pool and held lines when it
    // goes: their replies must find a stale key and be dropped, and the server must go on.
    let server = start(&["--workers", "1", "--queue", "31"]);
    for _ in 0..20 {
        // Lines the server has read and not yet run when the client goes away.
        let mut stream = connect(server.addr());
        let input: String = (0..2000).map(|i| format!("SET gone{i} {i}\n")).collect();
        stream.write_all(input.as_bytes()).unwrap();
        let mut first = [0; 3];
        stream.read_exact(&mut first).unwrap();
        drop(stream);
    }
    assert_eq!(
        exchange(&server, b"SET here 1\nGET here\n"),
        "OK\nVALUE 1\n"
    );
}
