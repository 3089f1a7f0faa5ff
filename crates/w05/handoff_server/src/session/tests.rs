//! Unit tests of `session`: what this server makes of a line (hand-off, loop answer, overload
//! refusal, retry mark) and its answers, through the shared session. The shared session's own
//! rules (ordering, limits, close rules) are tested in `handoff_protocol::session`. In a file of
//! their own so the course's starter code can declare them and run these very tests against a
//! student's code.

use std::time::Instant;

use super::*;
use handoff_protocol::{MAX_LINE_LEN, expected_response};

/// A host that records submissions and can refuse them (like a full pool), and whose overload
/// controls refuse what it is told to.
#[derive(Default)]
struct FakeHost {
    submitted: Vec<(u64, Verb, Vec<u8>)>,
    room: usize,
    completed: u64,
    errors: u64,
    /// `(seq, retry)` of every admission asked for.
    asked: Vec<(u64, bool)>,
    /// Refuse every admission with this.
    refuse: Option<OverloadReply>,
    /// `timed_out` of every settled request.
    settled: Vec<bool>,
    overload: Option<OverloadStats>,
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
    fn admit(&mut self, seq: u64, retry: bool) -> Admission {
        self.asked.push((seq, retry));
        match self.refuse {
            Some(reply) => Admission::Refused(reply),
            None => Admission::Admitted {
                read_at: Instant::now(),
            },
        }
    }
    fn settled(&mut self, _read_at: Instant, timed_out: bool) {
        self.settled.push(timed_out);
    }
    fn overload_stats(&self) -> Option<OverloadStats> {
        self.overload
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
fn worker_verbs_go_to_the_pool_and_the_rest_is_answered_on_the_loop_in_order() {
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
    let submitted: Vec<(u64, Verb)> = host
        .submitted
        .iter()
        .map(|(seq, verb, _)| (*seq, *verb))
        .collect();
    assert_eq!(
        submitted,
        [
            (0, Verb::Compute),
            (2, Verb::Factorial),
            (5, Verb::Fail),
            (6, Verb::Sleep)
        ],
        "worker requests carry their own sequence numbers"
    );
    assert_eq!(host.asked, [(0, false), (2, false), (5, false), (6, false)]);
    run_all_backwards(&mut session, &mut host);
    assert_eq!(take_output(&mut session), expected_all(lines));
    assert_eq!((host.completed, host.errors), (8, 3));
    assert_eq!(host.settled, [false; 4]);
    assert_eq!(session.in_flight(), 0);
    assert_eq!(session.unanswered(), 0);
}

#[test]
fn a_full_pool_holds_the_request_and_offers_its_verb_and_arguments_again() {
    let mut session = Session::new();
    let mut host = FakeHost {
        room: 1,
        ..FakeHost::default()
    };
    session
        .framer_mut()
        .extend(b"compute 1\nretry compute 2\nping\ncompute 3\n");
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
        host.submitted[1],
        (1, Verb::Compute, b"2".to_vec()),
        "the held request, without its retry mark"
    );
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
        host.asked,
        [(0, false), (1, true), (3, false)],
        "admitted once each, when read"
    );
    run_all_backwards(&mut session, &mut host);
    let want = expected_all(&[b"compute 1", b"compute 2", b"ping", b"compute 3"]);
    assert_eq!(take_output(&mut session), want);
}

#[test]
fn a_refused_request_is_answered_at_once_in_its_place_and_costs_no_worker() {
    let mut session = Session::new();
    let mut host = host();
    session.framer_mut().extend(b"compute 1\n");
    let _ = session.process_lines(&ROOMY, &mut host);
    host.refuse = Some(OverloadReply::Overloaded { retry_after_ms: 7 });
    session
        .framer_mut()
        .extend(b"retry compute 2\nretry ping\n");
    let _ = session.process_lines(&ROOMY, &mut host);
    assert_eq!(host.submitted.len(), 1, "only the admitted request");
    assert_eq!(
        host.asked,
        [(0, false), (1, true)],
        "a loop verb is never asked about"
    );
    run_all_backwards(&mut session, &mut host);
    let mut want = expected_all(&[b"compute 1"]);
    want.extend_from_slice(b"ERROR: overloaded, retry after 7 ms\npong\n");
    assert_eq!(take_output(&mut session), want);
    assert_eq!((host.completed, host.errors), (3, 1));
}

#[test]
fn stats_carries_the_overload_keys_when_the_host_has_them() {
    let mut session = Session::new();
    let mut host = FakeHost {
        overload: Some(OverloadStats {
            shed: 4,
            ..OverloadStats::default()
        }),
        ..host()
    };
    session.framer_mut().extend(b"compute a\nstats\n");
    let _ = session.process_lines(&ROOMY, &mut host);
    run_all_backwards(&mut session, &mut host);
    let mut want = expected_all(&[b"compute a"]);
    host.overload
        .unwrap()
        .write_line(&Stats::default(), &mut want);
    assert_eq!(
        take_output(&mut session),
        want,
        "the counters of when it was read"
    );
    assert_eq!(host.errors, 0);
}

#[test]
fn an_expired_request_gets_the_timeout_in_its_place_and_its_late_result_is_dropped() {
    let mut session = Session::new();
    let mut host = host();
    session.framer_mut().extend(b"sleep 50\nping\n");
    let _ = session.process_lines(&ROOMY, &mut host);
    let timeout = OverloadReply::Timeout { after_ms: 10 };
    assert!(session.expire(0, timeout, &mut host));
    assert!(!session.expire(0, timeout, &mut host), "answered already");
    assert_eq!(
        take_output(&mut session),
        b"ERROR: timeout after 10 ms\npong\n"
    );
    run_all_backwards(&mut session, &mut host);
    assert!(session.unsent().is_empty(), "the late result is dropped");
    assert_eq!(host.settled, [true]);
    assert_eq!((host.completed, host.errors), (2, 1));
}

#[test]
fn a_line_too_long_is_answered_after_earlier_requests_then_the_connection_lingers() {
    let mut session = Session::new();
    let mut host = host();
    session.framer_mut().extend(b"compute first\nping\n");
    session.framer_mut().extend(&vec![b'x'; MAX_LINE_LEN + 1]);
    session.framer_mut().extend(b"\nping\n");
    assert_eq!(
        session.process_lines(&ROOMY, &mut host),
        Progress::InputEnded
    );
    run_all_backwards(&mut session, &mut host);
    let mut want = expected_all(&[b"compute first", b"ping"]);
    want.extend_from_slice(b"ERROR: line too long\n");
    assert_eq!(take_output(&mut session), want);
    assert_eq!(session.next_step(&ROOMY), Step::Linger);
    assert_eq!(host.errors, 1);
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
    assert_eq!(session.next_step(&ROOMY), Step::Close);
}
