//! What only the handoff server promises: CPU work on a pool while the loop stays responsive,
//! results routed to the right connection in request order, panics isolated, backpressure, the
//! thread layout, `--log`, and the SIGTERM drain. The per-connection promises (ordering, stale
//! results on a reused fd, backpressure, the drain) run with one loop and with `--loops 2`
//! (`handoff::one_loop::…`, `handoff::two_loops::…`).

use std::collections::{BTreeSet, HashSet};
use std::io::{ErrorKind, Write as _};
use std::time::{Duration, Instant};

use handoff_protocol::Stats;

use crate::util::{Client, Server, ServerKind, assert_responses, expected, wait_until};

/// A handoff server with `args` after the port.
fn start(args: &[&str]) -> Server {
    ServerKind::Handoff.builder().args(args).start()
}

/// A handoff server with `loops` event loops (`--loops`) and `args` after the port.
fn start_with(loops: usize, args: &[&str]) -> Server {
    let loops = loops.to_string();
    ServerKind::Handoff
        .builder()
        .args(args)
        .args(["--loops", &loops])
        .start()
}

/// Generates `one_loop::<test>` and `two_loops::<test>` for each listed function of the loop
/// count: what the server promises per connection holds however many loops serve them.
macro_rules! with_one_and_two_loops {
    ($($test:ident),* $(,)?) => {
        mod one_loop {
            $(#[test] fn $test() { super::$test(1); })*
        }
        mod two_loops {
            $(#[test] fn $test() { super::$test(2); })*
        }
    };
}

with_one_and_two_loops!(
    half_close_with_a_slow_task_pending_is_still_answered,
    results_that_finish_out_of_order_are_written_in_request_order,
    a_result_for_a_gone_connection_never_reaches_the_next_client_on_its_fd,
    a_client_that_never_reads_cannot_grow_server_memory,
    ping_is_answered_while_every_worker_is_busy,
    sigterm_answers_a_pending_slow_task_then_exits_zero,
    a_full_task_queue_stops_reading_without_dropping_a_request,
    a_connection_at_its_in_flight_limit_waits_for_its_own_answers,
    stats_counts_every_response_error_and_panic_exactly,
);

/// `stats` over an existing connection, so the query opens no fd of its own.
fn stats_on(client: &mut Client) -> Stats {
    let line = client.request("stats");
    Stats::parse(line.as_bytes()).unwrap_or_else(|| panic!("unparsable stats line {line:?}"))
}

fn half_close_with_a_slow_task_pending_is_still_answered(loops: usize) {
    let server = start_with(loops, &["--workers", "2"]);
    let mut client = server.client();
    client.send(b"sleep 300\nping\ncompute after the slow one\n");
    client.shutdown_write();
    let mut want = b"result: slept 300ms\npong\n".to_vec();
    want.extend(expected(b"compute after the slow one"));
    assert_responses(&client.read_to_end(), &want);
}

fn results_that_finish_out_of_order_are_written_in_request_order(loops: usize) {
    let server = start_with(loops, &["--workers", "2"]);
    let mut observer = server.client();
    let mut client = server.client();
    // The sleep occupies one worker while the other finishes the computes first.
    client.send(b"sleep 300\ncompute one\nping\nfactorial 10\nfail late\n");
    assert_eq!(client.read_line(), b"result: slept 300ms\n");
    let mut got = Vec::new();
    for _ in 0..4 {
        got.extend(client.read_line());
    }
    let mut want = expected(b"compute one");
    want.extend_from_slice(b"pong\nresult: 3628800\nERROR: late\n");
    assert_responses(&got, &want);
    let stats = stats_on(&mut observer);
    assert_eq!((stats.completed, stats.errors), (5, 1), "{stats:?}");
}

fn a_result_for_a_gone_connection_never_reaches_the_next_client_on_its_fd(loops: usize) {
    let server = start_with(loops, &["--workers", "1"]);
    let mut observer = server.client();
    assert_eq!(observer.request("ping"), "pong");
    let fds_before = server.proc().open_fds();
    let new_fd = |server: &Server| -> Option<u32> {
        server
            .proc()
            .open_fds()
            .difference(&fds_before)
            .next()
            .copied()
    };

    let mut doomed = server.client();
    doomed.send(b"ping\nsleep 400\n");
    wait_until(Duration::from_secs(10), "the slow task runs", || {
        stats_on(&mut observer).busy_workers == 1
    });
    let doomed_fd = new_fd(&server).expect("the doomed client's fd");
    // A reset, not a half-close: the server must drop the connection at once, task pending.
    doomed.reset();
    wait_until(
        Duration::from_secs(10),
        "the server closes the reset connection",
        || new_fd(&server).is_none(),
    );

    let mut fresh = server.client();
    wait_until(
        Duration::from_secs(10),
        "the server accepts the fresh client",
        || new_fd(&server).is_some(),
    );
    assert_eq!(
        new_fd(&server),
        Some(doomed_fd),
        "the fresh client reuses the fd number"
    );
    // With one worker, this compute runs after the sleep, so the stale result has reached the
    // loop before the fresh client's first answer.
    assert_eq!(fresh.request("compute fresh"), {
        let response = expected(b"compute fresh");
        String::from_utf8(response[..response.len() - 1].to_vec()).unwrap()
    });
    assert_eq!(fresh.request("ping"), "pong");
    fresh.stream().set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match fresh.stream().peek(&mut byte) {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the fresh client got bytes it never asked for: {other:?}"),
    }
}

fn a_client_that_never_reads_cannot_grow_server_memory(loops: usize) {
    const TOTAL: usize = 40 << 20;
    const RSS_LIMIT_KIB: u64 = 256 << 10;
    let server = start_with(loops, &["--workers", "2"]);
    let hog = server.client();
    // Long `fail` lines make big answers for little CPU, so the server's output piles up fast.
    let mut chunk = Vec::new();
    let text = "y".repeat(2_000);
    while chunk.len() < 256 << 10 {
        chunk.extend_from_slice(format!("fail {text}\nping\ncompute {text}\n").as_bytes());
    }
    hog.stream()
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut written = 0;
    let mut stream = hog.stream();
    while written < TOTAL {
        match stream.write(&chunk) {
            Ok(n) => written += n,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break;
            }
            Err(error) => panic!("pipelining to the server: {error}"),
        }
    }
    assert!(
        written < TOTAL,
        "the server read all {written} bytes of a client that reads nothing: no backpressure"
    );
    let rss = server.proc().rss_kib();
    assert!(
        rss < RSS_LIMIT_KIB,
        "server RSS {rss} KiB with a non-reading client"
    );
    let started = Instant::now();
    assert_eq!(server.client().request("ping"), "pong");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "ping took {elapsed:?} beside a non-reading client"
    );
    // Whatever the server did answer is right and in order.
    let mut hog = hog;
    hog.stream().set_write_timeout(None).unwrap();
    let mut want = expected(format!("fail {text}").as_bytes());
    want.extend_from_slice(b"pong\n");
    want.extend(expected(format!("compute {text}").as_bytes()));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(hog.read_line());
    }
    assert_responses(&got, &want);
    assert!(server.proc().rss_kib() < RSS_LIMIT_KIB);
}

fn ping_is_answered_while_every_worker_is_busy(loops: usize) {
    let server = start_with(loops, &["--workers", "2"]);
    let mut busy = server.client();
    busy.send(b"sleep 3000\nsleep 3000\n");
    let mut observer = server.client();
    wait_until(Duration::from_secs(10), "both workers are busy", || {
        stats_on(&mut observer).busy_workers == 2
    });
    let started = Instant::now();
    assert_eq!(observer.request("ping"), "pong");
    let elapsed = started.elapsed();
    let stats = stats_on(&mut observer);
    assert_eq!(
        stats.busy_workers, 2,
        "ping was answered before the workers freed: {stats:?}"
    );
    // A hang guard, far below the sleeps: the proof is the busy count above.
    assert!(elapsed < Duration::from_secs(2), "ping took {elapsed:?}");
    assert_eq!(busy.read_line(), b"result: slept 3000ms\n");
    assert_eq!(busy.read_line(), b"result: slept 3000ms\n");
}

#[test]
fn a_panicking_task_is_isolated_and_counted() {
    let server = ServerKind::Handoff
        .builder()
        .args(["--workers", "1"])
        .capture_stderr()
        .start();
    let mut first = server.client();
    let mut second = server.client();
    assert_eq!(first.request("panic boom"), "ERROR: task panicked: boom");
    // The only worker survived (or was replaced): the pool still computes, for everyone.
    assert_eq!(first.request("factorial 3"), "result: 6");
    second.send(b"panic two\ncompute after\npanic \xff\n");
    assert_eq!(second.read_line(), b"ERROR: task panicked: two\n");
    assert_responses(&second.read_line(), &expected(b"compute after"));
    assert_eq!(
        second.read_line(),
        "ERROR: task panicked: \u{fffd}\n".as_bytes()
    );
    let stats = stats_on(&mut first);
    assert_eq!(
        (stats.panics, stats.errors, stats.workers),
        (3, 3, 1),
        "{stats:?}"
    );
    assert_eq!(
        server.proc().thread_count(),
        2,
        "the loop and its one worker"
    );
    let (status, stderr) = server.stop();
    assert_eq!(status.code(), Some(0));
    // Without --log, an expected task panic does not spam stderr with panic reports.
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        !stderr.contains("panicked at"),
        "panic reports on stderr: {stderr}"
    );
}

#[test]
fn with_log_each_task_panic_is_one_line_of_the_log() {
    let server = ServerKind::Handoff
        .builder()
        .args(["--workers", "2", "--log"])
        .capture_stderr()
        .start();
    let mut client = server.client();
    client.send(b"panic one\npanic two\ncompute after\n");
    assert_eq!(client.read_line(), b"ERROR: task panicked: one\n");
    assert_eq!(client.read_line(), b"ERROR: task panicked: two\n");
    assert_responses(&client.read_line(), &expected(b"compute after"));
    let (status, stderr) = server.stop();
    assert_eq!(status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&stderr);
    // The default panic report spans several lines (and a backtrace under RUST_BACKTRACE); in
    // the log it would break up the `worker <tid> task` lines the lesson's proofs count.
    assert!(
        !stderr.contains("panicked at"),
        "a default panic report in the log: {stderr}"
    );
    let panic_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" panicked: "))
        .collect();
    assert_eq!(panic_lines.len(), 2, "one line per panic: {stderr}");
    for line in panic_lines {
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("worker"), "{line}");
        assert!(
            words.next().is_some_and(|tid| tid.parse::<u32>().is_ok()),
            "{line}"
        );
    }
    let task_lines = stderr
        .lines()
        .filter(|l| l.starts_with("worker ") && l.contains(" task "))
        .count();
    assert_eq!(
        task_lines, 3,
        "one `worker <tid> task` line per request: {stderr}"
    );
}

fn sigterm_answers_a_pending_slow_task_then_exits_zero(loops: usize) {
    let mut server = start_with(loops, &["--workers", "2"]);
    let mut client = server.client();
    let mut observer = server.client();
    client.send(b"sleep 300\n");
    wait_until(Duration::from_secs(10), "the slow task runs", || {
        stats_on(&mut observer).busy_workers == 1
    });
    server.signal(libc::SIGTERM);
    assert_eq!(client.read_line(), b"result: slept 300ms\n");
    assert!(
        client.is_closed_by_server(),
        "the connection is closed after its last answer"
    );
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // It stopped accepting: nobody is served any more.
    if let Ok(mut late) = Client::try_connect(server.addr()) {
        late.send(b"ping\n");
        assert!(
            !matches!(late.try_read_line(), Ok(Some(_))),
            "served after SIGTERM"
        );
    }
}

#[test]
fn sigint_drains_like_sigterm() {
    let mut server = start(&["--workers", "1"]);
    let mut client = server.client();
    client.send(b"compute before sigint\n");
    assert_responses(&client.read_line(), &expected(b"compute before sigint"));
    server.signal(libc::SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exit after SIGINT");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn log_shows_each_task_on_a_worker_thread_not_the_loop() {
    const WORKERS: usize = 2;
    let server = ServerKind::Handoff
        .builder()
        .args(["--workers", "2", "--log"])
        .capture_stderr()
        .start();
    let mut clients = [server.client(), server.client()];
    for client in &mut clients {
        let mut batch = Vec::new();
        for index in 0..10 {
            batch.extend_from_slice(format!("compute log {index}\n").as_bytes());
        }
        batch.extend_from_slice(b"ping\n");
        client.send(&batch);
    }
    for client in &mut clients {
        for index in 0..10 {
            assert_responses(
                &client.read_line(),
                &expected(format!("compute log {index}").as_bytes()),
            );
        }
        assert_eq!(client.read_line(), b"pong\n");
    }
    let pid = server.pid();
    let (status, stderr) = server.stop();
    assert_eq!(status.code(), Some(0));
    let stderr = String::from_utf8(stderr).expect("UTF-8 log");
    let main_tids: Vec<i64> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("main "))
        .map(|tid| tid.trim().parse().expect("a numeric main thread id"))
        .collect();
    assert_eq!(
        main_tids,
        [i64::from(pid)],
        "one `main <tid>` line, the process's main thread"
    );
    let mut worker_tids = BTreeSet::new();
    let mut task_ids = HashSet::new();
    for line in stderr.lines().filter(|line| line.starts_with("worker ")) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(
            fields.len() >= 4 && fields[2] == "task",
            "malformed log line {line:?}"
        );
        worker_tids.insert(
            fields[1]
                .parse::<i64>()
                .expect("a numeric worker thread id"),
        );
        assert!(
            task_ids.insert(fields[3].to_owned()),
            "task id repeated: {line:?}"
        );
        assert_eq!(
            fields.get(4),
            Some(&"compute"),
            "the verb is logged: {line:?}"
        );
    }
    assert_eq!(
        task_ids.len(),
        20,
        "one log line per task (pings run on the loop):\n{stderr}"
    );
    assert!(
        !worker_tids.contains(&i64::from(pid)),
        "a task ran on the loop thread"
    );
    assert!(
        worker_tids.len() <= WORKERS,
        "more worker threads than --workers: {worker_tids:?}"
    );
}

#[test]
fn the_process_has_exactly_the_loop_plus_n_worker_threads() {
    for workers in [1, 3] {
        let server = start(&["--workers", &workers.to_string()]);
        let mut client = server.client();
        client.send(b"compute a\ncompute b\nsleep 5\nping\n");
        for _ in 0..4 {
            client.read_line();
        }
        assert_eq!(
            server.proc().thread_count(),
            workers + 1,
            "--workers {workers}"
        );
        assert_eq!(stats_on(&mut client).workers, workers as u64);
    }
}

fn a_full_task_queue_stops_reading_without_dropping_a_request(loops: usize) {
    let server = start_with(loops, &["--workers", "1", "--queue", "2"]);
    let mut observer = server.client();
    let mut client = server.client();
    let mut batch = b"sleep 300\n".to_vec();
    for index in 0..30 {
        batch.extend_from_slice(format!("compute queued {index}\n").as_bytes());
    }
    client.send(&batch);
    wait_until(Duration::from_secs(10), "the slow task runs", || {
        stats_on(&mut observer).busy_workers == 1
    });
    // Every request has arrived, but no more than the queue's capacity may wait in the pool.
    let stats = stats_on(&mut observer);
    assert!(stats.queue_depth <= 2, "queue bound exceeded: {stats:?}");
    assert_eq!(client.read_line(), b"result: slept 300ms\n");
    for index in 0..30 {
        let request = format!("compute queued {index}");
        assert_responses(&client.read_line(), &expected(request.as_bytes()));
    }
    let stats = stats_on(&mut observer);
    assert!(stats.queue_depth <= 2, "{stats:?}");
}

fn a_connection_at_its_in_flight_limit_waits_for_its_own_answers(loops: usize) {
    let server = start_with(loops, &["--workers", "2", "--max-in-flight", "1"]);
    let mut observer = server.client();
    let mut client = server.client();
    client.send(b"sleep 500\nsleep 500\n");
    wait_until(Duration::from_secs(10), "the first slow task runs", || {
        stats_on(&mut observer).busy_workers == 1
    });
    // Two idle workers could run both sleeps, but the connection may have only one in flight.
    let stats = stats_on(&mut observer);
    assert_eq!((stats.busy_workers, stats.queue_depth), (1, 0), "{stats:?}");
    assert_eq!(client.read_line(), b"result: slept 500ms\n");
    assert_eq!(client.read_line(), b"result: slept 500ms\n");
}

fn stats_counts_every_response_error_and_panic_exactly(loops: usize) {
    let server = start_with(loops, &["--workers", "2", "--queue", "16"]);
    let mut client = server.client();
    let mut requests = Vec::new();
    for index in 0..100 {
        requests.extend_from_slice(
            format!("compute {index}\nfail {index}\npanic {index}\n").as_bytes(),
        );
    }
    client.send(&requests);
    for index in 0..100 {
        assert_responses(
            &client.read_line(),
            &expected(format!("compute {index}").as_bytes()),
        );
        assert_eq!(client.read_line(), format!("ERROR: {index}\n").as_bytes());
        assert_eq!(
            client.read_line(),
            format!("ERROR: task panicked: {index}\n").as_bytes()
        );
    }
    let stats = stats_on(&mut client);
    let counts = (
        stats.connections,
        stats.workers,
        stats.completed,
        stats.errors,
        stats.panics,
    );
    assert_eq!(counts, (1, 2, 300, 200, 100), "{stats:?}");
    assert_eq!(stats.rejected, 0);
    wait_until(Duration::from_secs(10), "the pool is idle", || {
        let stats = stats_on(&mut client);
        stats.busy_workers == 0 && stats.queue_depth == 0
    });
}
