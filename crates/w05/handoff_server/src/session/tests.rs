//! Unit tests of `session`, in a file of their own so the course's starter code
//! can declare them and run these very tests against a student's code.

use super::*;
use handoff_protocol::{MAX_LINE_LEN, expected_response};

/// A host that records submissions and can refuse them, like a full pool.
#[derive(Default)]
struct FakeHost {
    submitted: Vec<(u64, Verb, Vec<u8>)>,
    room: usize,
    completed: u64,
    errors: u64,
}

impl Host for FakeHost {
    fn try_submit(&mut self, seq: u64, verb: Verb, args: &[u8]) -> bool {
        if self.room == 0 {
            return false;
        }
        self.room -= 1;
        self.submitted.push((seq, verb, args.to_vec()));
        true
    }
    fn stats(&self) -> Stats {
        Stats {
            completed: self.completed,
            ..Stats::default()
        }
    }
    fn responded(&mut self, is_error: bool) {
        self.completed += 1;
        self.errors += u64::from(is_error);
    }
}

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

/// Runs every submitted task in reverse order (the worst order) and completes it.
fn run_all_backwards(session: &mut Session, host: &mut FakeHost) {
    let tasks = std::mem::take(&mut host.submitted);
    for (seq, verb, args) in tasks.into_iter().rev() {
        let reply = if verb == Verb::Panic {
            Reply::Error(ErrorReply::Panicked(
                String::from_utf8_lossy(&args).into_owned(),
            ))
        } else {
            execute(verb, &args)
        };
        session.complete(seq, reply, host);
    }
}

fn take_output(session: &mut Session) -> Vec<u8> {
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

#[test]
fn answers_come_out_in_request_order_whatever_order_workers_finish_in() {
    let mut session = Session::new();
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
    let seqs: Vec<u64> = host.submitted.iter().map(|(seq, ..)| *seq).collect();
    assert_eq!(
        seqs,
        [0, 2, 5, 6],
        "worker requests carry their own sequence numbers"
    );
    run_all_backwards(&mut session, &mut host);
    assert_eq!(take_output(&mut session), expected_all(lines));
    assert_eq!((host.completed, host.errors), (8, 3));
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn loop_answers_skip_the_queue_when_nothing_waits() {
    let mut session = Session::new();
    let mut host = host();
    session.framer_mut().extend(b"ping\nstats\n");
    let _ = session.process_lines(&ROOMY, &mut host);
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
    let mut session = Session::new();
    let mut host = host();
    session.framer_mut().extend(b"compute a\nstats\n");
    let _ = session.process_lines(&ROOMY, &mut host);
    run_all_backwards(&mut session, &mut host);
    let mut want = expected_all(&[b"compute a"]);
    Stats::default().write_to(&mut want);
    assert_eq!(take_output(&mut session), want);
}

#[test]
fn a_full_pool_holds_the_request_and_stops_reading() {
    let mut session = Session::new();
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
    assert!(session.is_waiting_for_pool());
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
    let mut session = Session::new();
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
    let mut session = Session::new();
    let mut host = host();
    session.framer_mut().extend(b"ping\nping\nping\nping\n");
    assert_eq!(session.process_lines(&limits, &mut host), Progress::AtLimit);
    assert_eq!(session.unsent(), b"pong\npong\n");
    assert!(!session.wants_input(&limits));
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
fn a_line_too_long_is_answered_after_earlier_requests_and_ends_input() {
    let mut session = Session::new();
    let mut host = host();
    session.framer_mut().extend(b"compute first\nping\n");
    session.framer_mut().extend(&vec![b'x'; MAX_LINE_LEN + 1]);
    session.framer_mut().extend(b"\nping\n");
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::InputEnded
    );
    assert!(!session.is_finished(), "the compute is still owed");
    run_all_backwards(&mut session, &mut host);
    let mut want = expected_all(&[b"compute first", b"ping"]);
    want.extend_from_slice(b"ERROR: line too long\n");
    assert_eq!(take_output(&mut session), want);
    assert!(session.is_finished());
    assert!(session.peer_may_still_send());
    assert_eq!(host.errors, 1);
}

#[test]
fn after_eof_the_last_line_without_newline_is_answered_then_the_session_finishes() {
    let mut session = Session::new();
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
}

#[test]
fn stopping_answers_complete_lines_but_not_a_partial_one() {
    let mut session = Session::new();
    let mut host = host();
    session.framer_mut().extend(b"ping\npartial");
    session.stop_input();
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::InputEnded
    );
    assert_eq!(take_output(&mut session), b"pong\n");
    assert!(session.is_finished());
}

#[test]
fn a_partly_sent_buffer_keeps_its_unsent_tail() {
    let mut session = Session::new();
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
