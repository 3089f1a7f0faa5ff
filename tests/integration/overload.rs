//! The W06 overload controls of the handoff server, against the running binary: the admission
//! gate and shedding, request timeouts, the retry budget, and the telemetry that counts them.
//!
//! Every test states a limit and drives the server past it; each would fail without its
//! control (the flood would be answered late instead of shed, the slow request would hold up
//! the connection, the retries would all be admitted, the counters would be missing).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::util::{Client, Server, ServerKind, expected, show, wait_until};

/// A handoff server with `args` after the port.
fn start(args: &[&str]) -> Server {
    ServerKind::Handoff.builder().args(args).start()
}

/// The value of `key=` in a stats line.
fn stat(line: &str, key: &str) -> u64 {
    line.split(' ')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the stats line {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {line:?}"))
}

/// The stats line, over an existing connection (so the query opens no fd of its own).
fn stats_line(client: &mut Client) -> String {
    client.request("stats")
}

const SHED_PREFIX: &str = "ERROR: overloaded, retry after ";

fn is_shed(line: &str) -> bool {
    line.strip_prefix(SHED_PREFIX)
        .and_then(|rest| rest.strip_suffix(" ms"))
        .is_some_and(|ms| ms.parse::<u64>().is_ok_and(|ms| (1..=10_000).contains(&ms)))
}

#[test]
fn a_flood_past_the_gate_gets_one_answer_per_request_in_order_and_exact_counts() {
    const CONNECTIONS: usize = 40;
    const PER_CONNECTION: usize = 10;
    let server = start(&[
        "--workers",
        "2",
        "--max-inflight",
        "10",
        "--request-timeout-ms",
        "300",
    ]);
    let mut observer = server.client();
    assert_eq!(observer.request("ping"), "pong");
    let idle_fds = server.proc().open_fds();

    // One request that must time out: it is admitted into an idle server and sleeps past the
    // deadline, and the answer pipelined behind it must not wait for it.
    let mut slow = server.client();
    slow.send(b"sleep 2000\ncompute after the slow one\n");
    wait_until(
        Duration::from_secs(10),
        "the slow request is in flight",
        || stat(&stats_line(&mut observer), "inflight") == 1,
    );

    // The flood: every connection pipelines `sleep 40` and a distinct `compute` in turn, so a
    // result in the wrong place would show.
    let requests = |client: usize| -> Vec<String> {
        (0..PER_CONNECTION)
            .map(|i| match i % 2 {
                0 => "sleep 40".to_owned(),
                _ => format!("compute flood {client} {i}"),
            })
            .collect()
    };
    let mut clients: Vec<Client> = (0..CONNECTIONS).map(|_| server.client()).collect();
    for (index, client) in clients.iter_mut().enumerate() {
        let mut batch = requests(index).join("\n");
        batch.push('\n');
        client.send(batch.as_bytes());
    }
    let (mut results, mut shed, mut timeouts) = (0u64, 0u64, 0u64);
    for (index, client) in clients.iter_mut().enumerate() {
        for request in requests(index) {
            let line = String::from_utf8(client.read_line()).expect("utf-8 answer");
            let line = line.trim_end_matches('\n');
            let want = String::from_utf8(expected(request.as_bytes())).unwrap();
            if line == want.trim_end_matches('\n') {
                results += 1;
            } else if is_shed(line) {
                shed += 1;
            } else if line == "ERROR: timeout after 300 ms" {
                timeouts += 1;
            } else {
                panic!("client {index}, request {request:?}: unexpected answer {line:?}");
            }
        }
    }
    let started = Instant::now();
    assert_eq!(slow.read_line(), b"ERROR: timeout after 300 ms\n");
    assert_eq!(slow.read_line(), expected(b"compute after the slow one"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the answers behind the slow request waited for it"
    );
    timeouts += 1;
    results += 1;
    let total = (CONNECTIONS * PER_CONNECTION + 2) as u64;
    assert_eq!(results + shed + timeouts, total);
    assert!(
        shed > 0,
        "40 connections at once must overflow 10 in flight"
    );

    drop(clients);
    drop(slow);
    let line = stats_line(&mut observer);
    assert_eq!(stat(&line, "shed"), shed, "{line}");
    assert_eq!(stat(&line, "timeouts"), timeouts, "{line}");
    assert_eq!(stat(&line, "inflight"), 0, "{line}");
    assert!(
        stat(&line, "inflight_peak") <= 10,
        "the gate was exceeded: {line}"
    );
    // Every answer was written; the observer's pings and stats lines count too.
    assert!(stat(&line, "completed") > total, "{line}");
    assert_eq!(stat(&line, "errors"), shed + timeouts, "{line}");
    wait_until(Duration::from_secs(10), "the fds come back to idle", || {
        server.proc().open_fds() == idle_fds
    });
    // The late result of the timed-out sleep is dropped, not delivered to anyone.
    wait_until(Duration::from_secs(10), "the slow worker finishes", || {
        stat(&stats_line(&mut observer), "busy_workers") == 0
    });
    assert_eq!(observer.request("ping"), "pong");
}

#[test]
fn a_timed_out_request_is_answered_on_time_and_its_late_result_dropped() {
    let server = start(&["--workers", "2", "--request-timeout-ms", "200"]);
    let mut client = server.client();
    let started = Instant::now();
    client.send(b"sleep 1500\ncompute behind\nping\n");
    assert_eq!(client.read_line(), b"ERROR: timeout after 200 ms\n");
    assert_eq!(client.read_line(), expected(b"compute behind"));
    assert_eq!(client.read_line(), b"pong\n");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "the timeout waited for the worker"
    );
    wait_until(
        Duration::from_secs(10),
        "the late result comes back",
        || stat(&stats_line(&mut client), "busy_workers") == 0,
    );
    // The same connection goes on: the late `slept` line never shows up in its place.
    client.send(b"compute next\n");
    assert_eq!(show(&client.read_line()), show(&expected(b"compute next")));
    let line = stats_line(&mut client);
    assert_eq!(stat(&line, "timeouts"), 1, "{line}");
    assert_eq!(stat(&line, "inflight"), 0, "{line}");
}

#[test]
fn a_request_past_the_queue_depth_limit_is_shed_in_its_place() {
    let server = start(&["--workers", "1", "--max-queue-depth", "2"]);
    let mut busy = server.client();
    busy.send(b"sleep 400\n");
    let mut observer = server.client();
    wait_until(Duration::from_secs(10), "the worker is busy", || {
        stat(&stats_line(&mut observer), "busy_workers") == 1
    });
    let mut client = server.client();
    client.send(b"sleep 1\nsleep 2\nsleep 3\nping\n");
    // Two may wait for the worker; the third is shed, and its answer takes its place after
    // theirs.
    assert_eq!(client.read_line(), b"result: slept 1ms\n");
    assert_eq!(client.read_line(), b"result: slept 2ms\n");
    let third = String::from_utf8(client.read_line()).unwrap();
    assert!(is_shed(third.trim_end()), "{third:?}");
    assert_eq!(client.read_line(), b"pong\n");
    assert_eq!(busy.read_line(), b"result: slept 400ms\n");
    assert_eq!(stat(&stats_line(&mut observer), "shed"), 1);
}

#[test]
fn retries_beyond_the_budget_are_rejected_and_counted() {
    let server = start(&["--workers", "2", "--max-retry-ratio", "0.5"]);
    let mut client = server.client();
    client.send(
        b"compute a\ncompute b\ncompute c\ncompute d\n\
          retry compute a\nretry compute b\nretry compute c\nretry ping\n",
    );
    let mut want = Vec::new();
    for request in [&b"compute a"[..], b"compute b", b"compute c", b"compute d"] {
        want.extend(expected(request));
    }
    want.extend(expected(b"compute a"));
    want.extend(expected(b"compute b"));
    want.extend_from_slice(b"ERROR: retry budget exhausted\npong\n");
    let mut got = Vec::new();
    for _ in 0..8 {
        got.extend(client.read_line());
    }
    crate::util::assert_responses(&got, &want);
    let line = stats_line(&mut client);
    assert_eq!(stat(&line, "retry_rejects"), 1, "{line}");
    assert_eq!(stat(&line, "errors"), 1, "{line}");
}

#[test]
fn with_the_controls_off_a_retry_is_its_request_and_the_counters_stay_zero() {
    let server = start(&["--workers", "2"]);
    let mut client = server.client();
    client.send(b"retry compute x\nretry sleep 5\nretry\n");
    assert_eq!(client.read_line(), expected(b"compute x"));
    assert_eq!(client.read_line(), b"result: slept 5ms\n");
    assert_eq!(client.read_line(), b"ERROR: unknown command\n");
    let line = stats_line(&mut client);
    for key in ["inflight", "shed", "timeouts", "retry_rejects"] {
        assert_eq!(stat(&line, key), 0, "{key} in {line}");
    }
    assert!(stat(&line, "p99_us") >= stat(&line, "p50_us"), "{line}");
    assert!(
        stat(&line, "p99_us") >= 5_000,
        "the sleep took 5 ms: {line}"
    );
}

#[test]
fn the_stats_interval_prints_the_stats_line_on_stderr() {
    let server = ServerKind::Handoff
        .builder()
        .args(["--workers", "1", "--stats-interval-ms", "10"])
        .capture_stderr()
        .start();
    let mut client = server.client();
    // Long enough for several intervals; the answer, not a sleep in the test, marks the time.
    assert_eq!(client.request("sleep 100"), "result: slept 100ms");
    drop(client);
    let (status, stderr) = server.stop();
    assert!(status.success());
    let stderr = String::from_utf8(stderr).unwrap();
    let lines: BTreeSet<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("stats connections="))
        .collect();
    assert!(!lines.is_empty(), "no stats line on stderr: {stderr:?}");
    for line in &lines {
        let _ = stat(line, "inflight");
        let _ = stat(line, "p99_us");
    }
}

#[test]
fn loadgen_flood_counts_every_answer_exactly_and_finds_the_server_back_at_idle() {
    // A short flood: the objectives that are invariants (the gate, exact counts, the drain,
    // the harness) must hold whatever the machine's speed; the timing ones belong to the quest.
    let spawn = format!(
        "{} 0 --workers 2 --max-inflight 8 --request-timeout-ms 200 --max-retry-ratio 0.1",
        crate::util::binary_path("handoff_server").display()
    );
    let output = std::process::Command::new(crate::util::binary_path("loadgen"))
        .args([
            "--flood",
            "--spawn",
            &spawn,
            "--wave-seconds",
            "0.5",
            "--connections",
            "8",
            "--expect-max-inflight",
            "8",
            "--expect-timeout-ms",
            "200",
            "--quiet",
        ])
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for objective in [
        "objective 1 gate: PASS ",
        "objective 2 shed: PASS ",
        "objective 6 drain: PASS ",
        "objective 7 harness: PASS ",
    ] {
        assert!(
            stdout.lines().any(|line| line.starts_with(objective)),
            "no {objective:?} in:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(stdout.contains("server: exit 0 after SIGTERM"), "{stdout}");
}

#[test]
fn a_request_past_its_deadline_before_a_worker_takes_it_is_never_run() {
    let server = ServerKind::Handoff
        .builder()
        .args(["--workers", "1", "--request-timeout-ms", "100", "--log"])
        .capture_stderr()
        .start();
    let mut client = server.client();
    // The compute waits behind the sleep on the only worker; both time out at 100 ms, and when
    // the worker is free again the compute's deadline is long past.
    client.send(b"sleep 400\ncompute for nobody\n");
    assert_eq!(client.read_line(), b"ERROR: timeout after 100 ms\n");
    assert_eq!(client.read_line(), b"ERROR: timeout after 100 ms\n");
    wait_until(Duration::from_secs(10), "the worker is free again", || {
        let line = stats_line(&mut client);
        stat(&line, "busy_workers") == 0 && stat(&line, "queue_depth") == 0
    });
    client.send(b"compute for somebody\n");
    assert_eq!(client.read_line(), expected(b"compute for somebody"));
    let line = stats_line(&mut client);
    assert_eq!(stat(&line, "timeouts"), 2, "{line}");
    assert_eq!(stat(&line, "inflight"), 0, "{line}");
    drop(client);
    let (status, stderr) = server.stop();
    assert!(status.success());
    let stderr = String::from_utf8(stderr).unwrap();
    let computes = stderr
        .lines()
        .filter(|line| line.starts_with("worker ") && line.ends_with(" compute"))
        .count();
    assert_eq!(computes, 1, "only the compute in time runs:\n{stderr}");
}
