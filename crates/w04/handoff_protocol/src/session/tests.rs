//! Unit tests of `session`: the connection state machine driven without a network, by a host
//! that hands worker verbs off like a pool (and can run out of room) and answers the rest.

use super::*;
use crate::{MAX_LINE_LEN, Verb, execute, expected_response, split_request};

/// A host that records hand-offs and can refuse them, like a full pool.
#[derive(Default)]
struct FakeHost {
    /// Handed-off requests, `(seq, line)`, in the order they were handed off.
    submitted: Vec<(u64, Vec<u8>)>,
    room: usize,
    completed: u64,
    errors: u64,
    /// One entry per settled request: whether it timed out.
    settled: Vec<bool>,
}

impl FakeHost {
    fn submit(&mut self, seq: u64, line: &[u8]) -> bool {
        if self.room == 0 {
            return false;
        }
        self.room -= 1;
        self.submitted.push((seq, line.to_vec()));
        true
    }
}

impl Host for FakeHost {
    type Response = Answer;
    type Pending = ();

    fn handle(&mut self, seq: u64, line: &[u8]) -> Handled<Answer, ()> {
        let (verb, args) = split_request(line);
        if verb.runs_on_worker() {
            if self.submit(seq, line) {
                Handled::Pending(())
            } else {
                Handled::Held(())
            }
        } else if verb == Verb::Stats {
            Handled::Answered(Answer::Stats(Stats {
                completed: self.completed,
                ..Stats::default()
            }))
        } else {
            Handled::Answered(Answer::Reply(execute(verb, args)))
        }
    }

    fn resubmit(&mut self, seq: u64, line: &[u8]) -> bool {
        self.submit(seq, line)
    }

    fn responded(&mut self, response: &Answer) {
        self.completed += 1;
        self.errors += u64::from(response.is_error());
    }

    fn settled(&mut self, (): (), timed_out: bool) {
        self.settled.push(timed_out);
    }
}

type TestSession = Session<Answer, ()>;

const ROOMY: Limits = Limits {
    max_in_flight: 1024,
    max_unsent: 1 << 20,
};

fn host() -> FakeHost {
    FakeHost {
        room: usize::MAX,
        ..FakeHost::default()
    }
}

/// Runs every handed-off request in reverse order (the worst order) and completes it.
fn run_all_backwards(session: &mut TestSession, host: &mut FakeHost) {
    let tasks = std::mem::take(&mut host.submitted);
    for (seq, line) in tasks.into_iter().rev() {
        let (verb, args) = split_request(&line);
        let reply = if verb == Verb::Panic {
            Reply::Error(ErrorReply::Panicked(
                String::from_utf8_lossy(args).into_owned(),
            ))
        } else {
            execute(verb, args)
        };
        session.complete(seq, Answer::Reply(reply), host);
    }
}

/// A new session that received `bytes` and handled their lines with a roomy host.
fn received(bytes: &[u8]) -> (TestSession, FakeHost) {
    let mut session = TestSession::new();
    let mut host = host();
    session.framer_mut().extend(bytes);
    let _ = session.process_lines(&ROOMY, &mut host);
    (session, host)
}

fn take_output(session: &mut TestSession) -> Vec<u8> {
    let out = session.unsent().to_vec();
    session.mark_sent(out.len());
    out
}

fn expected_all(lines: &[&[u8]]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|line| expected_response(line).unwrap())
        .collect()
}

/// A `recv` over a script of results, one per call; `WouldBlock` once the script is used up.
fn scripted(script: Vec<io::Result<Vec<u8>>>) -> impl FnMut(&mut [u8]) -> io::Result<usize> {
    let mut script = script.into_iter();
    move |buffer: &mut [u8]| match script.next() {
        Some(Ok(bytes)) => {
            buffer[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        }
        Some(Err(error)) => Err(error),
        None => Err(io::ErrorKind::WouldBlock.into()),
    }
}

#[test]
fn answers_come_out_in_request_order_whatever_order_workers_finish_in() {
    let mut session = TestSession::new();
    let mut host = host();
    let lines: &[&[u8]] = &[
        b"compute a",
        b"ping",
        b"factorial 5",
        b"",
        b"nope",
        b"fail x",
        b"sleep 0",
        b"ping",
    ];
    for line in lines {
        session.framer_mut().extend(line);
        session.framer_mut().extend(b"\n");
    }
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::NeedInput
    );
    assert!(
        session.unsent().is_empty(),
        "the pong waits behind the first compute"
    );
    assert_eq!(session.in_flight(), lines.len());
    assert_eq!(session.unanswered(), 4);
    let seqs: Vec<u64> = host.submitted.iter().map(|(seq, ..)| *seq).collect();
    assert_eq!(
        seqs,
        [0, 2, 5, 6],
        "handed-off requests carry their own sequence numbers"
    );
    run_all_backwards(&mut session, &mut host);
    assert_eq!(take_output(&mut session), expected_all(lines));
    assert_eq!((host.completed, host.errors), (8, 3));
    assert_eq!(host.settled, [false; 4]);
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn immediate_answers_skip_the_queue_when_nothing_waits() {
    let (mut session, _) = received(b"ping\nstats\n");
    let mut want = b"pong\n".to_vec();
    Stats {
        completed: 1,
        ..Stats::default()
    }
    .write_to(&mut want);
    assert_eq!(take_output(&mut session), want);
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn stats_waits_its_turn_with_the_counters_of_when_it_was_read() {
    let (mut session, mut host) = received(b"compute a\nstats\n");
    run_all_backwards(&mut session, &mut host);
    let mut want = expected_all(&[b"compute a"]);
    Stats::default().write_to(&mut want);
    assert_eq!(take_output(&mut session), want);
}

#[test]
fn a_request_without_room_is_held_and_stops_reading_until_it_is_taken() {
    let mut session = TestSession::new();
    let mut host = FakeHost {
        room: 1,
        ..FakeHost::default()
    };
    session
        .framer_mut()
        .extend(b"compute 1\ncompute 2\nping\ncompute 3\n");
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::WaitingForPool
    );
    assert!(!session.wants_input(&ROOMY));
    assert!(session.is_holding());
    assert!(!session.retry_held(&mut host), "still no room");
    host.room = 1;
    assert!(session.retry_held(&mut host));
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::WaitingForPool
    );
    host.room = 1;
    assert!(session.retry_held(&mut host));
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::NeedInput
    );
    let seqs: Vec<u64> = host.submitted.iter().map(|(seq, ..)| *seq).collect();
    assert_eq!(seqs, [0, 1, 3], "nothing dropped, nothing renumbered");
    assert_eq!(
        host.submitted[1].1, b"compute 2",
        "the held line is kept whole"
    );
    run_all_backwards(&mut session, &mut host);
    let want = expected_all(&[b"compute 1", b"compute 2", b"ping", b"compute 3"]);
    assert_eq!(take_output(&mut session), want);
}

#[test]
fn the_in_flight_limit_pauses_reading_until_answers_are_written() {
    let limits = Limits {
        max_in_flight: 2,
        max_unsent: 1 << 20,
    };
    let mut session = TestSession::new();
    let mut host = host();
    session
        .framer_mut()
        .extend(b"compute 1\ncompute 2\ncompute 3\n");
    assert_eq!(session.process_lines(&limits, &mut host), Progress::AtLimit);
    assert!(!session.wants_input(&limits));
    assert_eq!(host.submitted.len(), 2);
    run_all_backwards(&mut session, &mut host);
    assert_eq!(
        session.process_lines(&limits, &mut host),
        Progress::NeedInput
    );
    assert!(session.wants_input(&limits));
    run_all_backwards(&mut session, &mut host);
    let want = expected_all(&[b"compute 1", b"compute 2", b"compute 3"]);
    assert_eq!(take_output(&mut session), want);
}

#[test]
fn unsent_output_over_the_limit_pauses_reading_until_it_is_sent() {
    let limits = Limits {
        max_in_flight: 1024,
        max_unsent: 10,
    };
    let mut session = TestSession::new();
    let mut host = host();
    session.framer_mut().extend(b"ping\nping\nping\nping\n");
    assert_eq!(session.process_lines(&limits, &mut host), Progress::AtLimit);
    assert_eq!(session.unsent(), b"pong\npong\n");
    assert!(!session.wants_input(&limits));
    assert_eq!(
        session.next_step(&limits),
        Step::Poll {
            readable: false,
            writable: true
        }
    );
    session.mark_sent(3);
    assert!(
        session.wants_input(&limits),
        "7 bytes unsent is under the limit"
    );
    assert_eq!(session.process_lines(&limits, &mut host), Progress::AtLimit);
    assert_eq!(session.unsent(), b"g\npong\npong\n");
    session.mark_sent(session.unsent().len());
    assert_eq!(
        session.process_lines(&limits, &mut host),
        Progress::NeedInput
    );
    assert_eq!(session.unsent(), b"pong\n");
}

#[test]
fn a_line_too_long_is_answered_after_earlier_requests_then_the_session_lingers() {
    let mut session = TestSession::new();
    let mut host = host();
    session.framer_mut().extend(b"compute first\nping\n");
    session.framer_mut().extend(&vec![b'x'; MAX_LINE_LEN + 1]);
    session.framer_mut().extend(b"\nping\n");
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::InputEnded
    );
    assert!(!session.is_finished(), "the compute is still owed");
    assert!(!session.wants_input(&ROOMY), "nothing after the bad line");
    run_all_backwards(&mut session, &mut host);
    let mut want = expected_all(&[b"compute first", b"ping"]);
    want.extend_from_slice(b"ERROR: line too long\n");
    assert_eq!(take_output(&mut session), want);
    assert!(session.is_finished());
    assert!(session.peer_may_still_send());
    assert_eq!(session.next_step(&ROOMY), Step::Linger);
    assert_eq!(host.errors, 1);
}

#[test]
fn a_lingering_session_discards_input_until_eof_an_error_or_the_allowance() {
    let mut buffer = vec![0; 1024];
    let mut session = TestSession::new();
    assert!(
        !session.discard_input(&mut buffer, scripted(vec![Ok(b"x".to_vec())])),
        "a session that is not lingering has nothing to wait for"
    );
    session.start_linger();
    assert!(session.is_lingering());
    let mut recv = scripted(vec![
        Ok(b"ping\n".to_vec()),
        Ok(b"ping\n".to_vec()),
        Err(io::ErrorKind::WouldBlock.into()),
        Ok(Vec::new()),
    ]);
    assert!(
        session.discard_input(&mut buffer, &mut recv),
        "discarded, then WouldBlock: wait on"
    );
    assert!(!session.discard_input(&mut buffer, &mut recv), "EOF: close");

    let mut session = TestSession::new();
    session.start_linger();
    let mut recv = scripted(vec![Err(io::ErrorKind::ConnectionReset.into())]);
    assert!(
        !session.discard_input(&mut buffer, &mut recv),
        "an error: close"
    );

    // A peer that keeps sending is cut off once it has sent the allowance.
    let mut session = TestSession::new();
    session.start_linger();
    let mut buffer = vec![0; 64 * 1024];
    let chunk = vec![b'x'; buffer.len()];
    let mut rounds = 0;
    while session.discard_input(&mut buffer, |buf: &mut [u8]| {
        buf.copy_from_slice(&chunk);
        Ok(chunk.len())
    }) {
        rounds += 1;
        assert!(rounds < 1000, "the allowance is bounded");
    }
    let most_reads = LINGER_MAX_BYTES / chunk.len();
    assert!(
        rounds * READS_PER_EVENT <= most_reads,
        "{rounds} rounds of {READS_PER_EVENT} reads of {} bytes",
        chunk.len()
    );
}

#[test]
fn after_eof_the_last_line_without_newline_is_answered_then_the_session_finishes() {
    let mut session = TestSession::new();
    let mut host = host();
    session.framer_mut().extend(b"sleep 0\nping\ncompute tail");
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::NeedInput
    );
    session.peer_closed_input();
    assert!(!session.wants_input(&ROOMY));
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::InputEnded
    );
    assert!(
        !session.is_finished(),
        "a half-closed client still gets what it is owed"
    );
    run_all_backwards(&mut session, &mut host);
    assert!(!session.is_finished(), "the bytes are not sent yet");
    assert_eq!(
        take_output(&mut session),
        expected_all(&[b"sleep 0", b"ping", b"compute tail"])
    );
    assert!(session.is_finished());
    assert!(
        !session.peer_may_still_send(),
        "the peer has finished sending"
    );
    assert_eq!(session.next_step(&ROOMY), Step::Close);
}

#[test]
fn stopping_answers_complete_lines_but_not_a_partial_one() {
    let mut session = TestSession::new();
    let mut host = host();
    session.framer_mut().extend(b"ping\npartial");
    session.stop_input();
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::InputEnded
    );
    assert_eq!(take_output(&mut session), b"pong\n");
    assert!(session.is_finished());
    // The peer had not ended its input: it lingers until what it sent is drained.
    assert_eq!(session.next_step(&ROOMY), Step::Linger);
}

#[test]
fn a_stop_before_the_peers_eof_drains_unread_input_before_the_close() {
    // Regression: a server stop closed a connection whose peer had sent more than the server
    // read, and a close over unread bytes is a reset, which destroyed answers still in flight
    // (found by fault injection: short reads left a pipelining client's requests unread).
    let mut session = TestSession::new();
    let mut host = host();
    session.framer_mut().extend(b"ping\n");
    session.stop_input();
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::InputEnded
    );
    take_output(&mut session);
    assert!(session.is_finished());
    assert!(session.peer_may_still_send());
    assert_eq!(session.next_step(&ROOMY), Step::Linger);
    session.start_linger();
    // The unread requests are discarded, and the linger goes on while the peer sends; once a
    // pass finds nothing at all, it closes without waiting for the peer.
    let mut unread = vec![b"ping\n".repeat(100), b"ping\n".repeat(100)];
    let mut buffer = [0u8; 1024];
    let mut recv = |buffer: &mut [u8]| match unread.pop() {
        Some(chunk) => {
            buffer[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
        None => Err(std::io::ErrorKind::WouldBlock.into()),
    };
    assert!(
        session.discard_input(&mut buffer, &mut recv),
        "a peer still sending keeps the linger going"
    );
    assert!(
        !session.discard_input(&mut buffer, &mut recv),
        "a stopped connection closes once a pass finds nothing to read"
    );
    assert!(unread.is_empty(), "every unread byte is drained");
}

#[test]
fn a_stop_after_the_peers_eof_closes_at_once() {
    let mut session = TestSession::new();
    let mut host = host();
    session.framer_mut().extend(b"ping\n");
    session.peer_closed_input();
    session.stop_input();
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::InputEnded
    );
    take_output(&mut session);
    assert!(session.is_finished());
    assert!(!session.peer_may_still_send());
    assert_eq!(session.next_step(&ROOMY), Step::Close);
}

#[test]
fn a_partly_sent_buffer_keeps_its_unsent_tail() {
    let mut session = TestSession::new();
    let mut host = host();
    let mut lines = Vec::new();
    for _ in 0..30_000 {
        lines.extend_from_slice(b"ping\n");
    }
    session.framer_mut().extend(&lines);
    let _ = session.process_lines(&ROOMY, &mut host);
    let total = session.unsent().len();
    assert_eq!(total, 150_000);
    session.mark_sent(100_000);
    assert_eq!(session.unsent().len(), 50_000);
    assert!(session.unsent().starts_with(b"pong\n"));
    session.mark_sent(50_000);
    assert!(session.unsent().is_empty());
}

#[test]
fn receive_reads_a_bounded_number_of_times_and_notes_the_end_of_input() {
    let limits = ROOMY;
    let mut host = host();
    let mut buffer = vec![0; 5];

    // Full reads go on, at most READS_PER_EVENT of them per call.
    let mut session = TestSession::new();
    let mut calls = 0;
    session
        .receive(&limits, &mut host, &mut buffer, |buf: &mut [u8]| {
            calls += 1;
            buf.copy_from_slice(b"ping\n");
            Ok(5)
        })
        .unwrap();
    assert_eq!(calls, READS_PER_EVENT);
    assert_eq!(take_output(&mut session).len(), 5 * READS_PER_EVENT);

    // A short read ends the call; the next one sees EOF, and the last line is answered.
    let mut session = TestSession::new();
    let mut recv = scripted(vec![Ok(b"pi".to_vec()), Ok(b"ng".to_vec()), Ok(Vec::new())]);
    session
        .receive(&limits, &mut host, &mut buffer, &mut recv)
        .unwrap();
    assert!(session.wants_input(&limits));
    session
        .receive(&limits, &mut host, &mut buffer, &mut recv)
        .unwrap();
    session
        .receive(&limits, &mut host, &mut buffer, &mut recv)
        .unwrap();
    assert!(!session.wants_input(&limits), "EOF ends the input");
    let _ = session.process_lines(&limits, &mut host);
    assert_eq!(take_output(&mut session), b"pong\n");
    assert_eq!(session.next_step(&limits), Step::Close);

    // WouldBlock is quiet; any other error is the caller's to act on.
    let mut session = TestSession::new();
    let mut recv = scripted(vec![
        Err(io::ErrorKind::WouldBlock.into()),
        Err(io::ErrorKind::ConnectionReset.into()),
    ]);
    assert!(
        session
            .receive(&limits, &mut host, &mut buffer, &mut recv)
            .is_ok()
    );
    let error = session
        .receive(&limits, &mut host, &mut buffer, &mut recv)
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
}

#[test]
fn receive_reads_nothing_while_a_limit_holds() {
    let limits = Limits {
        max_in_flight: 1,
        max_unsent: 1 << 20,
    };
    let mut host = host();
    let mut session = TestSession::new();
    session.framer_mut().extend(b"compute 1\n");
    let _ = session.process_lines(&limits, &mut host);
    let mut buffer = vec![0; 64];
    session
        .receive(&limits, &mut host, &mut buffer, |_: &mut [u8]| {
            panic!("no recv while at the in-flight limit")
        })
        .unwrap();
}

#[test]
fn advance_sends_once_then_answers_lines_the_limit_held_back() {
    let limits = Limits {
        max_in_flight: 1024,
        max_unsent: 5,
    };
    let mut host = host();
    let mut session = TestSession::new();
    session.framer_mut().extend(b"ping\nping\n");
    let mut wire = Vec::new();
    let progress = session
        .advance(&limits, &mut host, |bytes| {
            wire.extend_from_slice(bytes);
            Ok(bytes.len())
        })
        .unwrap();
    assert_eq!(
        progress,
        Progress::AtLimit,
        "the second pong fills the limit"
    );
    assert_eq!(wire, b"pong\n", "one send per call");
    assert_eq!(
        session.unsent(),
        b"pong\n",
        "answered after the send made room"
    );

    // A full socket leaves the output in place; a broken one is an error.
    let progress = session
        .advance(
            &limits,
            &mut host,
            |_| Err(io::ErrorKind::WouldBlock.into()),
        )
        .unwrap();
    assert_eq!(progress, Progress::AtLimit);
    assert_eq!(session.unsent(), b"pong\n");
    let error = session
        .advance(
            &limits,
            &mut host,
            |_| Err(io::ErrorKind::BrokenPipe.into()),
        )
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    let _ = session
        .advance(&limits, &mut host, |bytes| Ok(bytes.len() - 2))
        .unwrap();
    assert_eq!(session.unsent(), b"g\n", "a partial send keeps the tail");
}

#[test]
fn an_expired_request_is_answered_in_its_place_and_its_late_result_is_dropped() {
    let (mut session, mut host) = received(b"sleep 5\nping\n");
    let timeout = Answer::Reply(Reply::Error(ErrorReply::Failed(b"timeout".to_vec())));
    assert!(session.expire(0, timeout.clone(), &mut host));
    assert!(
        !session.expire(0, timeout.clone(), &mut host),
        "answered already"
    );
    assert!(
        !session.expire(1, timeout, &mut host),
        "the pong is written already"
    );
    assert_eq!(take_output(&mut session), b"ERROR: timeout\npong\n");
    run_all_backwards(&mut session, &mut host);
    assert!(session.unsent().is_empty(), "the late result is dropped");
    assert_eq!(host.settled, [true]);
    assert_eq!(session.unanswered(), 0);
}

#[test]
fn an_abandoned_request_is_answered_once_and_expects_no_late_result() {
    let (mut session, mut host) = received(b"sleep 5\nsleep 6\nping\n");
    let timeout = Answer::Reply(Reply::Error(ErrorReply::Failed(b"timeout".to_vec())));
    // The first timed out on the loop before its worker gave it up: no second answer.
    assert!(session.expire(0, timeout.clone(), &mut host));
    assert_eq!(session.responses.late, [0]);
    assert!(!session.abandon(0, timeout.clone(), &mut host));
    assert!(
        session.responses.late.is_empty(),
        "no result will come for it"
    );
    // The second is given up while still waiting: answered now, and nothing stays late.
    assert!(session.abandon(1, timeout.clone(), &mut host));
    assert!(session.responses.late.is_empty());
    assert!(!session.abandon(1, timeout, &mut host), "answered already");
    assert_eq!(
        take_output(&mut session),
        b"ERROR: timeout\nERROR: timeout\npong\n"
    );
    assert_eq!(host.settled, [true, true]);
    assert_eq!(session.unanswered(), 0);
}

#[test]
fn an_expired_held_request_frees_the_session_to_read_on() {
    let mut session = TestSession::new();
    let mut host = FakeHost::default();
    session.framer_mut().extend(b"compute 1\nping\n");
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::WaitingForPool
    );
    let timeout = Answer::Reply(Reply::Error(ErrorReply::Failed(b"timeout".to_vec())));
    assert!(session.expire(0, timeout, &mut host));
    assert!(!session.is_holding());
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::NeedInput
    );
    assert_eq!(take_output(&mut session), b"ERROR: timeout\npong\n");
}

#[test]
fn a_sent_burst_gives_its_memory_back() {
    let (mut session, _) = received(&b"ping\n".repeat(30_000));
    let _ = take_output(&mut session);
    assert!(session.responses.out.capacity() <= KEPT_OUTPUT_CAPACITY);
}
