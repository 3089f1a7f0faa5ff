//! The wire protocol, tested once and run against every server that speaks it.
//!
//! Each test is a plain function of the [`ServerKind`]; [`for_each_server!`] turns the list into
//! one `#[test]` per server, so `cargo test conformance::epoll_server` or
//! `cargo test conformance::handoff_server` runs one server's suite (and
//! `conformance::handoff_server_two_loops` the handoff server's with `--loops 2`). Only what needs no thread
//! pool is here: the handoff server's own promises are in `handoff`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use handoff_protocol::{MAX_LINE_LEN, Stats};

use crate::util::{
    Client, READ_TIMEOUT, ServerKind, StatsOf as _, assert_responses, expected, fd_heavy_test,
    raise_fd_limit, show, wait_until,
};

/// Generates a module per server with one `#[test]` per listed function.
macro_rules! for_each_server {
    ($($test:ident),* $(,)?) => {
        mod handoff_server {
            $(#[test] fn $test() { super::$test(crate::util::ServerKind::Handoff); })*
        }
        mod handoff_server_two_loops {
            $(#[test] fn $test() { super::$test(crate::util::ServerKind::HandoffTwoLoops); })*
        }
        mod epoll_server {
            $(#[test] fn $test() { super::$test(crate::util::ServerKind::Epoll); })*
        }
    };
}

for_each_server!(
    every_verb_answers_with_its_exact_bytes,
    stats_reports_every_key_and_counts_responses,
    seed_ten_clients_each_send_one_line_and_half_close,
    quest_thirty_clients_mix_good_and_bad_input_for_five_rounds,
    five_thousand_pipelined_mixed_requests_are_answered_in_order,
    a_request_sent_a_byte_at_a_time_is_one_request,
    crlf_line_endings_are_stripped,
    a_last_line_without_newline_before_eof_is_answered,
    a_line_too_long_is_answered_after_earlier_requests_then_closed,
    a_client_still_sending_after_a_line_too_long_gets_every_answer_and_a_clean_eof,
    a_client_that_never_closes_after_a_line_too_long_is_closed_when_the_linger_ends,
    a_half_closed_client_gets_every_response_then_eof,
    a_reset_client_ends_only_its_own_connection,
    five_thousand_connections_leave_no_fd_behind,
    running_out_of_fds_neither_spins_nor_wedges,
    sigterm_with_idle_clients_exits_zero,
);

/// Request lines with fixed answers, covering every verb and every error the protocol names.
/// (`sleep` is kept short: the W04 server sleeps on its loop.)
const FIXED_REQUESTS: &[&[u8]] = &[
    b"compute hello",
    b"compute",
    b"compute ",
    b"compute  two  spaces ",
    b"compute \xff\xfe not utf-8",
    b"rehash 1 abc",
    b"rehash 1000 abc",
    b"rehash 0 abc",
    b"rehash 100000001 abc",
    b"rehash x abc",
    b"factorial 0",
    b"factorial 20",
    b"factorial 21",
    b"factorial -1",
    b"factorial x",
    b"sleep 0",
    b"sleep 3",
    b"sleep 10001",
    b"fail disk on fire",
    b"fail",
    b"panic at the disco",
    b"ping",
    b"ping with arguments",
    b"",
    b"PING",
    b"frobnicate now",
];

fn every_verb_answers_with_its_exact_bytes(kind: ServerKind) {
    let server = kind.start();
    let mut client = server.client();
    // A few answers spelled out here, so the test does not only trust `expected_response`.
    for (request, response) in [
        ("compute hello", "result: 9555e8555c62dcfd"),
        ("factorial 5", "result: 120"),
        ("factorial 21", "ERROR: overflow"),
        ("rehash 0 x", "ERROR: rounds out of range"),
        ("sleep 1", "result: slept 1ms"),
        ("sleep 10001", "ERROR: sleep out of range"),
        ("fail no disk", "ERROR: no disk"),
        ("panic boom", "ERROR: task panicked: boom"),
        ("ping", "pong"),
        ("", "ERROR: empty request"),
        ("nope", "ERROR: unknown command"),
    ] {
        assert_eq!(client.request(request), response, "request {request:?}");
    }
    for request in FIXED_REQUESTS {
        let mut line = request.to_vec();
        line.push(b'\n');
        client.send(&line);
        assert_responses(&client.read_line(), &expected(request));
    }
}

fn stats_reports_every_key_and_counts_responses(kind: ServerKind) {
    let server = kind.start();
    let mut client = server.client();
    let line = client.request("stats");
    let keys: Vec<&str> = line
        .split(' ')
        .map(|pair| pair.split('=').next().unwrap())
        .collect();
    for key in [
        "connections",
        "queue_depth",
        "workers",
        "busy_workers",
        "completed",
        "errors",
        "panics",
        "rejected",
    ] {
        assert!(keys.contains(&key), "stats line {line:?} lacks {key}");
    }
    let before = Stats::parse(line.as_bytes()).expect("a parsable stats line");
    assert_eq!(
        before.connections, 1,
        "this client is the only connection: {line}"
    );
    for request in [
        "compute a",
        "factorial 3",
        "ping",
        "nope",
        "factorial 99",
        "fail x",
    ] {
        client.request(request);
    }
    let after = Stats::parse(client.request("stats").as_bytes()).unwrap();
    // Six requests plus the first `stats`, whose own response was written before the second.
    assert_eq!(
        after.completed - before.completed,
        7,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.errors - before.errors, 3, "{before:?} -> {after:?}");
    assert_eq!(after.rejected, 0);
}

fn seed_ten_clients_each_send_one_line_and_half_close(kind: ServerKind) {
    let server = kind.start();
    let barrier = Barrier::new(10);
    std::thread::scope(|scope| {
        for i in 0..10 {
            let (server, barrier) = (&server, &barrier);
            scope.spawn(move || {
                let mut client = server.client();
                barrier.wait();
                // `echo "compute $i" | nc -q1 localhost PORT`: one line, then EOF.
                let request = format!("compute {i}");
                client.send(format!("{request}\n").as_bytes());
                client.shutdown_write();
                assert_responses(&client.read_to_end(), &expected(request.as_bytes()));
            });
        }
    });
}

fn quest_thirty_clients_mix_good_and_bad_input_for_five_rounds(kind: ServerKind) {
    let server = kind.start();
    let barrier = Barrier::new(30);
    for round in 0..5 {
        std::thread::scope(|scope| {
            for client_index in 0..30 {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    let requests: Vec<Vec<u8>> = vec![
                        format!("compute round {round} client {client_index}").into_bytes(),
                        b"factorial 12".to_vec(),
                        b"factorial nope".to_vec(),
                        b"".to_vec(),
                        b"launch missiles".to_vec(),
                        format!("rehash {} quest", client_index + 1).into_bytes(),
                        b"rehash 0 quest".to_vec(),
                        format!("fail client {client_index} gave up").into_bytes(),
                        b"ping".to_vec(),
                        b"\xff\x00\x01".to_vec(),
                        b"factorial 25".to_vec(),
                    ];
                    let mut sent = Vec::new();
                    let mut want = Vec::new();
                    for request in &requests {
                        sent.extend_from_slice(request);
                        sent.push(b'\n');
                        want.extend(expected(request));
                    }
                    let mut client = server.client();
                    barrier.wait();
                    client.send(&sent);
                    client.shutdown_write();
                    assert_responses(&client.read_to_end(), &want);
                });
            }
        });
    }
    let stats = server.stats();
    assert_eq!(stats.completed, 5 * 30 * 11, "{stats:?}");
}

/// A mix of every kind of request with a fixed answer, for the pipelining test.
fn mixed_request(index: usize) -> Vec<u8> {
    match index % 10 {
        0 => format!("compute pipelined {index}").into_bytes(),
        1 => b"ping".to_vec(),
        2 => format!("factorial {}", index % 23).into_bytes(),
        3 => format!("rehash {} r{index}", index % 50).into_bytes(),
        4 => format!("fail number {index}").into_bytes(),
        5 => b"".to_vec(),
        6 => b"sleep 0".to_vec(),
        7 => format!("unknown {index}").into_bytes(),
        8 => format!("compute {}", "x".repeat(index % 300)).into_bytes(),
        _ => b"factorial 1x".to_vec(),
    }
}

fn five_thousand_pipelined_mixed_requests_are_answered_in_order(kind: ServerKind) {
    let server = kind.start();
    let client = server.client();
    let mut sent = Vec::new();
    let mut want = Vec::new();
    for index in 0..5_000 {
        let request = mixed_request(index);
        sent.extend_from_slice(&request);
        sent.push(b'\n');
        want.extend(expected(&request));
    }
    let mut writer = client.stream().try_clone().expect("clone the stream");
    let mut client = client;
    std::thread::scope(|scope| {
        // Written from a second thread, so neither side's buffers can fill while the other waits.
        scope.spawn(move || {
            writer.write_all(&sent).expect("pipeline every request");
            writer
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
        });
        assert_responses(&client.read_to_end(), &want);
    });
}

fn a_request_sent_a_byte_at_a_time_is_one_request(kind: ServerKind) {
    let server = kind.start();
    let mut client = server.client();
    for byte in b"compute one byte at a time\nping\n" {
        client.send(&[*byte]);
    }
    assert_responses(
        &client.read_line(),
        &expected(b"compute one byte at a time"),
    );
    assert_eq!(client.read_line(), b"pong\n");
    // A line split across sends at awkward places: inside the verb and right before the `\n`.
    client.send(b"fact");
    client.send(b"orial 6\r");
    client.send(b"\n");
    assert_eq!(client.read_line(), b"result: 720\n");
}

fn crlf_line_endings_are_stripped(kind: ServerKind) {
    let server = kind.start();
    let mut client = server.client();
    client.send(b"compute crlf\r\nping\r\nfactorial 4\r\n\r\nfail a\r\r\n");
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(client.read_line());
    }
    let mut want = expected(b"compute crlf");
    want.extend_from_slice(b"pong\nresult: 24\nERROR: empty request\n");
    // Only one `\r` is stripped; the second belongs to the text.
    want.extend_from_slice(b"ERROR: a\r\n");
    assert_responses(&got, &want);
}

fn a_last_line_without_newline_before_eof_is_answered(kind: ServerKind) {
    let server = kind.start();
    let mut client = server.client();
    client.send(b"ping\ncompute no newline");
    client.shutdown_write();
    let mut want = b"pong\n".to_vec();
    want.extend(expected(b"compute no newline"));
    assert_responses(&client.read_to_end(), &want);
}

fn a_line_too_long_is_answered_after_earlier_requests_then_closed(kind: ServerKind) {
    let server = kind.start();
    // Exactly at the limit is still a request.
    let mut client = server.client();
    let mut at_limit = b"fail ".to_vec();
    at_limit.resize(MAX_LINE_LEN, b'a');
    let mut line = at_limit.clone();
    line.push(b'\n');
    client.send(&line);
    assert_responses(&client.read_line(), &expected(&at_limit));

    // One byte over is not: earlier responses, then the error, then EOF (no later response).
    let mut request = b"ping\ncompute before\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 1));
    request.extend_from_slice(b"\nping\n");
    client.send(&request);
    let mut want = b"pong\n".to_vec();
    want.extend(expected(b"compute before"));
    want.extend_from_slice(b"ERROR: line too long\n");
    let mut got = Vec::new();
    // The client's `ping` is never read as a request: the server half-closes after its error
    // line and discards what follows until the client closes too (see the next test).
    for _ in 0..3 {
        got.extend(client.read_line());
    }
    assert_responses(&got, &want);
    assert!(
        client.is_closed_by_server(),
        "the connection is closed after `line too long`"
    );
    // The server itself is fine.
    assert_eq!(server.client().request("ping"), "pong");
}

fn a_client_still_sending_after_a_line_too_long_gets_every_answer_and_a_clean_eof(
    kind: ServerKind,
) {
    let server = kind.start();
    let client = server.client();
    let mut request = b"ping\ncompute before\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 1));
    request.push(b'\n');
    // The client goes on sending after the bad line, as a real pipelining client would: more
    // than a server reads in one turn (so closing at once would leave bytes unread and send a
    // reset), less than the linger's allowance.
    for _ in 0..100_000 {
        request.extend_from_slice(b"ping\n");
    }
    let mut writer = client.stream().try_clone().unwrap();
    let mut client = client;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // The server half-closes after its error and discards the rest; it may also close
            // before everything is written, which ends this write with an error.
            let _ = writer.write_all(&request);
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
        let mut want = b"pong\n".to_vec();
        want.extend(expected(b"compute before"));
        want.extend_from_slice(b"ERROR: line too long\n");
        // A clean EOF after the last answer, not a reset that could have destroyed answers
        // still in flight.
        assert_responses(&client.read_to_end(), &want);
    });
}

fn a_client_that_never_closes_after_a_line_too_long_is_closed_when_the_linger_ends(
    kind: ServerKind,
) {
    let server = kind.start();
    let mut observer = server.client();
    let mut client = server.client();
    let mut request = vec![b'x'; MAX_LINE_LEN + 1];
    request.extend_from_slice(b"\nping\n");
    client.send(&request);
    // The answer, then EOF: the server has shut its side down and lingers on the connection.
    assert_responses(&client.read_to_end(), b"ERROR: line too long\n");
    // The client neither closes nor sends more; the linger is bounded, so the server closes the
    // connection by itself (the observer is the one connection left).
    wait_until(
        Duration::from_secs(20),
        "the lingering connection is closed",
        || {
            let stats = Stats::parse(observer.request("stats").as_bytes()).unwrap();
            stats.connections == 1
        },
    );
    drop(client);
}

fn a_half_closed_client_gets_every_response_then_eof(kind: ServerKind) {
    let server = kind.start();
    let mut client = server.client();
    let mut sent = Vec::new();
    let mut want = Vec::new();
    for index in 0..200 {
        let request = mixed_request(index);
        sent.extend_from_slice(&request);
        sent.push(b'\n');
        want.extend(expected(&request));
    }
    client.send(&sent);
    client.shutdown_write();
    assert_responses(&client.read_to_end(), &want);
    wait_until(
        Duration::from_secs(10),
        "the half-closed connection is closed",
        || server.stats().connections == 1,
    );
}

fn a_reset_client_ends_only_its_own_connection(kind: ServerKind) {
    let server = kind.start();
    let mut survivor = server.client();
    assert_eq!(survivor.request("ping"), "pong");
    for _ in 0..5 {
        let mut doomed = server.client();
        doomed.send(b"ping\ncompute doomed\n");
        doomed.reset();
    }
    assert_eq!(
        survivor.request("compute still here"),
        show_ok(b"compute still here")
    );
    wait_until(
        Duration::from_secs(10),
        "every reset connection is closed",
        || server.stats().connections == 2,
    );
    assert_eq!(survivor.request("ping"), "pong");
}

fn show_ok(request: &[u8]) -> String {
    let response = expected(request);
    String::from_utf8(response[..response.len() - 1].to_vec()).unwrap()
}

fn five_thousand_connections_leave_no_fd_behind(kind: ServerKind) {
    let _one_at_a_time = fd_heavy_test();
    raise_fd_limit();
    let server = kind.start();
    let baseline = server.proc().open_fds();
    const CONNECTIONS: usize = 5_000;
    let mut clients: Vec<TcpStream> = Vec::with_capacity(CONNECTIONS);
    for index in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(server.addr()).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        // Each connection sends a request at once, so the server holds every one of them open
        // with a request in its buffers, not merely in the accept backlog.
        stream.write_all(b"ping\n").unwrap();
        clients.push(stream);
        if index % 500 == 499 {
            // Reading the last batch's answers also paces the connects to the server's accepts.
            for stream in &mut clients[index - 499..=index] {
                let mut pong = [0u8; 5];
                stream
                    .read_exact(&mut pong)
                    .expect("a pong on every connection");
                assert_eq!(&pong, b"pong\n");
            }
        }
    }
    let stats = server.stats();
    assert_eq!(stats.connections, CONNECTIONS as u64 + 1, "{stats:?}");
    assert!(
        server.proc().open_fds().len() >= baseline.len() + CONNECTIONS,
        "one fd per connection"
    );
    drop(clients);
    wait_until(
        Duration::from_secs(30),
        "the server closed every connection's fd",
        || server.proc().open_fds().len() <= baseline.len(),
    );
    assert_eq!(
        server.proc().open_fds(),
        baseline,
        "the same fds as before the connections"
    );
    assert_eq!(server.client().request("ping"), "pong");
}

fn running_out_of_fds_neither_spins_nor_wedges(kind: ServerKind) {
    // Low enough that a few dozen clients exhaust it, high enough for the server's own fds.
    const LIMIT: u64 = 48;
    let args: &[&str] = match kind {
        ServerKind::Handoff => &["--workers", "1"],
        ServerKind::HandoffTwoLoops => &["--workers", "1", "--loops", "2"],
        ServerKind::Epoll => &[],
    };
    let server = kind.builder().args(args).nofile_limit(LIMIT).start();
    // Fill the server's fd table: every client that gets a `pong` holds one fd of the server.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..LIMIT {
        let mut client = Client::connect(server.addr());
        client.send(b"ping\n");
        match client.try_read_line() {
            Ok(Some(line)) if line == b"pong\n" => held.push(client),
            Ok(Some(line)) => panic!("unexpected response {}", show(&line)),
            Ok(None) => refused += 1,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => refused += 1,
            Err(error) => panic!("neither served nor refused: {error}"),
        }
        if refused > 0 {
            break;
        }
    }
    assert!(
        refused > 0,
        "{} clients held without ever running out of fds",
        held.len()
    );
    assert!(
        !held.is_empty(),
        "the server served nobody under the fd limit"
    );

    // While it is out of fds, a waiting connection must be refused, not left in the backlog
    // where a level-triggered listener would report it readable again and again. The server's
    // CPU time over a fixed window of wall time shows the difference: a spinning loop burns the
    // whole window, a refusing one almost none of it.
    let mut waiting = Client::connect(server.addr());
    let cpu_before = server.proc().cpu_time();
    let window = Duration::from_millis(600);
    let started = Instant::now();
    // This wait is the measurement window itself, not a synchronisation.
    std::thread::sleep(window);
    let used = server.proc().cpu_time().saturating_sub(cpu_before);
    let elapsed = started.elapsed();
    assert!(
        used < elapsed / 4,
        "the server used {used:?} of CPU in {elapsed:?} while out of fds"
    );
    // With several loops too: the loops share the process's one spare fd, and no loop's accept
    // can take the slot another has just freed with it, so whichever listener the connection
    // waits on refuses it.
    assert!(
        waiting.is_closed_by_server(),
        "a connection beyond the fd limit is refused"
    );

    // Once fds are free again it serves new clients.
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        let mut client = Client::connect(server.addr());
        client.send(b"ping\n");
        if let Ok(Some(line)) = client.try_read_line() {
            assert_eq!(line, b"pong\n");
            served = true;
            break;
        }
    }
    assert!(served, "the server did not recover after fds were freed");
    let stats = server.stats();
    assert!(
        stats.rejected > 0,
        "stats counts refused connections: {stats:?}"
    );
}

fn sigterm_with_idle_clients_exits_zero(kind: ServerKind) {
    let server = kind.start();
    let mut idle = server.client();
    assert_eq!(idle.request("ping"), "pong");
    let (status, _) = server.stop();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        idle.is_closed_by_server(),
        "the idle client's connection is closed"
    );
}
