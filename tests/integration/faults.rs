//! The servers under the fault injector's destructive classes (built only with `--cfg
//! fault_injection`): `ECONNRESET`/`EPIPE` on sends, `EMFILE` and `ENFILE` on accept and `ENOMEM`
//! from registering a new connection close the connection they hit, by design, and nothing else.
//! Every answer a client does get is exact and in order (a prefix of what a fault-free connection
//! gets), the server answers again once the fault is past, it gives back every fd and it does not
//! spin.
//!
//! The transparent classes (`EINTR`, `EAGAIN`, short counts) need no test of their own: CI runs
//! this whole suite against servers built with the cfg, once per seed, with those classes on
//! (`.ci/run`, the fault-injection step).

use std::time::{Duration, Instant};

use crate::util::{Client, Server, ServerKind, wait_until};

/// A pipelined request: answers on the loop and on the pool, interleaved, so order matters.
const PIPELINE: &[u8] = b"ping\ncompute alpha\nping\ncompute beta\nsleep 1\nping\n";
const ANSWERS: usize = 6;

/// Sends the pipeline on a fresh connection and reads answers until all arrive or the server
/// closes it; `None` if the connection was refused at once.
fn exchange(server: &Server) -> Option<Vec<Vec<u8>>> {
    let mut client = Client::try_connect(server.addr()).ok()?;
    client.send(PIPELINE);
    let mut answers = Vec::new();
    while answers.len() < ANSWERS {
        match client.try_read_line() {
            Ok(Some(line)) if line.ends_with(b"\n") => answers.push(line),
            // A cut line, the end of the stream, or a reset: the connection was closed.
            Ok(_) | Err(_) => break,
        }
    }
    Some(answers)
}

/// What the clients of one run saw, and what the server logged.
#[derive(Debug)]
struct Outcome {
    /// Connections that got every answer.
    complete: usize,
    /// Connections a fault cut before their first answer (or refused).
    cut_before_any_answer: usize,
    /// Connections a fault cut after some of their answers.
    cut_later: usize,
    /// The server's stderr.
    log: String,
}

/// Runs 80 pipelined connections (and the few before them that find the reference answers)
/// against a server injecting `classes`, checks every answer, every fd and the idle CPU, and
/// stops it.
fn destructive_faults_close_only_their_connection(
    kind: ServerKind,
    args: &[&str],
    seed: u64,
    classes: &str,
) -> Outcome {
    let server = kind
        .builder()
        .args(args)
        .env("EVENTLOOP_FAULT_SEED", seed.to_string())
        .env("EVENTLOOP_FAULT_RATE", "0.1")
        .env("EVENTLOOP_FAULT_CLASSES", classes)
        .capture_stderr()
        .start();
    let mut outcome = Outcome {
        complete: 0,
        cut_before_any_answer: 0,
        cut_later: 0,
        log: String::new(),
    };
    let mut count = |answers: Option<&[Vec<u8>]>| match answers.map(<[_]>::len) {
        Some(ANSWERS) => outcome.complete += 1,
        None | Some(0) => outcome.cut_before_any_answer += 1,
        Some(_) => outcome.cut_later += 1,
    };

    // The reference answers: the first connection that gets every one of them.
    let started = Instant::now();
    let reference = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no connection got every answer"
        );
        let answers = exchange(&server);
        count(answers.as_deref());
        if let Some(answers) = answers.filter(|answers| answers.len() == ANSWERS) {
            break answers;
        }
    };
    let baseline = server.proc().open_fds().len();

    for round in 0..80 {
        let answers = exchange(&server);
        count(answers.as_deref());
        let Some(answers) = answers else {
            continue;
        };
        assert_eq!(
            answers[..],
            reference[..answers.len()],
            "round {round}: an answer changed or came out of order"
        );
    }

    // Every fd comes back (the EMFILE policy's spare is re-opened by the next accept, so a last
    // connection is made first), and an idle server stays idle.
    let last = exchange(&server);
    assert!(last.is_some());
    count(last.as_deref());
    wait_until(
        Duration::from_secs(10),
        "the server closes every fd",
        || server.proc().open_fds().len() <= baseline,
    );
    let cpu_before = server.proc().cpu_time();
    let window = Instant::now();
    // This wait is the measurement window itself, not a synchronisation.
    std::thread::sleep(Duration::from_millis(500));
    let used = server.proc().cpu_time().saturating_sub(cpu_before);
    assert!(
        used < window.elapsed() / 4,
        "the idle server used {used:?} of CPU after the faults"
    );
    let (status, log) = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    outcome.log = String::from_utf8_lossy(&log).into_owned();
    let cut = outcome.cut_before_any_answer + outcome.cut_later;
    println!(
        "{kind:?} {classes} seed {seed}: {} connections complete, {cut} cut by a fault",
        outcome.complete
    );
    assert!(outcome.complete > 0, "no connection got through");
    assert!(cut > 0, "no fault cut a connection (is the cfg on?)");
    outcome
}

#[test]
fn handoff_server_survives_resets_and_emfile() {
    destructive_faults_close_only_their_connection(
        ServerKind::Handoff,
        &["--workers", "2"],
        11,
        "reset,emfile",
    );
}

#[test]
fn handoff_server_with_two_loops_survives_resets_and_emfile() {
    destructive_faults_close_only_their_connection(
        ServerKind::Handoff,
        &["--workers", "2", "--loops", "2"],
        12,
        "reset,emfile",
    );
}

#[test]
fn epoll_server_survives_resets_and_emfile() {
    destructive_faults_close_only_their_connection(ServerKind::Epoll, &[], 13, "reset,emfile");
}

/// `ENFILE` (the system's file table full) is out of fds like `EMFILE`: the listener spends the
/// process's spare fd to accept the pending connection and close it, so the connection is
/// refused at once instead of waiting, and the loop neither spins nor pauses; the spare comes
/// back and the next connections are served. Were `ENFILE` not counted as out of fds, every
/// connection would be served late instead (after an `accept failed` line and a pause).
fn enfile_is_shed_like_emfile(kind: ServerKind, args: &[&str], seed: u64) {
    let outcome = destructive_faults_close_only_their_connection(kind, args, seed, "enfile");
    assert_eq!(
        outcome.cut_later, 0,
        "a shed connection is closed before it is read"
    );
    assert!(
        !outcome.log.contains("accept failed"),
        "the listener absorbed every ENFILE; the server logged:\n{}",
        outcome.log
    );
}

#[test]
fn handoff_server_sheds_a_connection_on_enfile_and_keeps_serving() {
    enfile_is_shed_like_emfile(ServerKind::Handoff, &["--workers", "2"], 14);
}

#[test]
fn epoll_server_sheds_a_connection_on_enfile_and_keeps_serving() {
    enfile_is_shed_like_emfile(ServerKind::Epoll, &[], 15);
}

/// `ENOMEM` from registering a new connection with epoll: the server closes that connection
/// (before reading any of it), logs one line for it, and keeps serving the others.
fn enomem_closes_the_new_connection_with_one_log_line(kind: ServerKind, args: &[&str], seed: u64) {
    let outcome = destructive_faults_close_only_their_connection(kind, args, seed, "enomem");
    assert_eq!(
        outcome.cut_later, 0,
        "a connection that was never registered was never read"
    );
    let lines = outcome
        .log
        .lines()
        .filter(|line| line.contains("cannot register a connection"))
        .count();
    assert_eq!(
        lines, outcome.cut_before_any_answer,
        "one log line per closed connection; the server logged:\n{}",
        outcome.log
    );
}

#[test]
fn handoff_server_closes_a_connection_it_cannot_register_and_keeps_serving() {
    enomem_closes_the_new_connection_with_one_log_line(
        ServerKind::Handoff,
        &["--workers", "2", "--loops", "2"],
        16,
    );
}

#[test]
fn epoll_server_closes_a_connection_it_cannot_register_and_keeps_serving() {
    enomem_closes_the_new_connection_with_one_log_line(ServerKind::Epoll, &[], 17);
}

/// Regression: a server stop closed a connection whose client had pipelined more than the
/// server had read, and a close over unread bytes is a reset, which destroyed answers in flight
/// (the client read `ECONNRESET` instead of its answers and the end of the stream). Here the
/// client pipelines far more than the server reads before it stops (it reads none of the
/// answers until then, so the server's backpressure stops its reading), and short reads make
/// the rest likelier still.
fn a_stop_answers_a_pipelining_client_without_a_reset(kind: ServerKind, args: &[&str]) {
    let mut server = kind
        .builder()
        .args(args)
        .env("EVENTLOOP_FAULT_SEED", "302")
        .env("EVENTLOOP_FAULT_RATE", "0.5")
        .env("EVENTLOOP_FAULT_CLASSES", "short")
        .start();
    let mut client = Client::connect(server.addr());
    let mut writer = client.stream().try_clone().expect("a second handle");
    std::thread::scope(|scope| {
        // The writer ends when everything is sent or when the server, stopped, refuses the rest.
        let sending = scope.spawn(move || {
            let requests = b"ping\n".repeat(200_000);
            let _ = std::io::Write::write_all(&mut writer, &requests);
        });
        assert_eq!(client.read_line(), b"pong\n");
        server.signal(libc::SIGTERM);
        // Every answer it sends is whole, and the stream ends with an EOF, not a reset.
        let rest = client.read_to_end();
        assert!(
            rest.chunks(5).all(|answer| answer == b"pong\n"),
            "a cut or wrong answer"
        );
        // The server is gone: the writer's last write fails, and it ends.
        sending.join().expect("the writer ends");
    });
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn handoff_server_stops_without_resetting_a_pipelining_client() {
    a_stop_answers_a_pipelining_client_without_a_reset(ServerKind::Handoff, &["--workers", "2"]);
}

#[test]
fn epoll_server_stops_without_resetting_a_pipelining_client() {
    a_stop_answers_a_pipelining_client_without_a_reset(ServerKind::Epoll, &[]);
}
