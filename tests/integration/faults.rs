//! The servers under the fault injector's destructive classes (built only with `--cfg
//! fault_injection`): `ECONNRESET`/`EPIPE` on sends and `EMFILE` on accept close the connection
//! they hit, by design, and nothing else. Every answer a client does get is exact and in order (a
//! prefix of what a fault-free connection gets), the server answers again once the fault is past,
//! it gives back every fd and it does not spin.
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

fn destructive_faults_close_only_their_connection(kind: ServerKind, args: &[&str], seed: u64) {
    let server = kind
        .builder()
        .args(args)
        .env("EVENTLOOP_FAULT_SEED", &seed.to_string())
        .env("EVENTLOOP_FAULT_RATE", "0.1")
        .env("EVENTLOOP_FAULT_CLASSES", "reset,emfile")
        .start();

    // The reference answers: the first connection that gets every one of them.
    let started = Instant::now();
    let reference = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no connection got every answer"
        );
        if let Some(answers) = exchange(&server) {
            if answers.len() == ANSWERS {
                break answers;
            }
        }
    };
    let baseline = server.proc().open_fds().len();

    let (mut complete, mut cut) = (0, 0);
    for round in 0..80 {
        let Some(answers) = exchange(&server) else {
            cut += 1;
            continue;
        };
        assert_eq!(
            answers[..],
            reference[..answers.len()],
            "round {round}: an answer changed or came out of order"
        );
        if answers.len() == ANSWERS {
            complete += 1;
        } else {
            cut += 1;
        }
    }
    println!("{kind:?} seed {seed}: {complete} connections complete, {cut} cut by a fault");
    assert!(complete > 0, "no connection got through");
    assert!(cut > 0, "no fault cut a connection (is the cfg on?)");

    // Every fd comes back (the EMFILE policy's spare is re-opened by the next accept, so a last
    // connection is made first), and an idle server stays idle.
    assert!(exchange(&server).is_some());
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
    let (status, _) = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");
}

#[test]
fn handoff_server_survives_resets_and_emfile() {
    destructive_faults_close_only_their_connection(ServerKind::Handoff, &["--workers", "2"], 11);
}

#[test]
fn handoff_server_with_two_loops_survives_resets_and_emfile() {
    destructive_faults_close_only_their_connection(
        ServerKind::Handoff,
        &["--workers", "2", "--loops", "2"],
        12,
    );
}

#[test]
fn epoll_server_survives_resets_and_emfile() {
    destructive_faults_close_only_their_connection(ServerKind::Epoll, &[], 13);
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
