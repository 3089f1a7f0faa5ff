//! Unit tests of `session`: what this server makes of a line (hand-off, loop answer, overload
//! refusal, retry mark) and its answers, through the shared session. The shared session's own
//! rules (ordering, limits, close rules) are tested in `handoff_protocol::session`. In a file of
//! their own so the course's starter code can declare them and run these very tests against a
//! student's code.

use super::*;
use crate::overload::LoopTime;
use handoff_protocol::session::{Limits, Progress, Step};
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

impl HandoffHost for FakeHost {
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
                read_at: LoopTime::default(),
            },
        }
    }
    fn settled(&mut self, _read_at: LoopTime, timed_out: bool) {
        self.settled.push(timed_out);
    }
    fn overload_stats(&self) -> Option<OverloadStats> {
        self.overload
    }
}

/// A host whose pool always has room.
fn host() -> FakeHost {
    FakeHost {
        room: usize::MAX,
        ..FakeHost::default()
    }
}

/// Limits no test here reaches (the limits themselves are the shared session's, tested there).
const ROOMY: Limits = Limits {
    max_in_flight: 64,
    max_unsent: 64 * 1024,
};

/// Feeds `bytes` to the session and handles what is complete.
fn read(session: &mut HandoffConnection, host: &mut FakeHost, bytes: &[u8]) -> Progress {
    session.framer_mut().extend(bytes);
    session.process_lines(&ROOMY, &mut Lines(host))
}

/// Runs every submitted request, in submission order, and hands its reply back.
fn run_submitted(session: &mut HandoffConnection, host: &mut FakeHost) {
    for (seq, verb, args) in std::mem::take(&mut host.submitted) {
        session.complete_reply(seq, execute(verb, &args), &mut *host);
    }
}

/// Everything written so far, marked sent.
fn written(session: &mut HandoffConnection) -> String {
    let out = String::from_utf8_lossy(session.unsent()).into_owned();
    session.mark_sent(out.len());
    out
}

fn answer_to(line: &[u8]) -> String {
    String::from_utf8(expected_response(line).unwrap()).unwrap()
}

#[test]
fn worker_verbs_go_to_the_pool_and_the_rest_is_answered_on_the_loop() {
    let mut session = HandoffConnection::new();
    let mut host = host();
    let progress = read(&mut session, &mut host, b"compute a\nping\nfail x\nstats\n");
    assert_eq!(progress, Progress::NeedInput);
    assert_eq!(
        host.submitted,
        [
            (0, Verb::Compute, b"a".to_vec()),
            (2, Verb::Fail, b"x".to_vec())
        ],
        "each worker request with its sequence number, verb and arguments"
    );
    assert_eq!(
        host.asked,
        [(0, false), (2, false)],
        "only worker verbs are asked about"
    );
    assert_eq!(session.in_flight(), 4);
    assert_eq!(session.unanswered(), 2);
    run_submitted(&mut session, &mut host);
    let mut stats = Vec::new();
    Stats::default().write_to(&mut stats);
    assert_eq!(
        written(&mut session),
        format!(
            "{}pong\nERROR: x\n{}",
            answer_to(b"compute a"),
            String::from_utf8(stats).unwrap()
        )
    );
    assert_eq!((host.completed, host.errors), (4, 1));
    assert_eq!(host.settled, [false, false]);
}

#[test]
fn a_full_pool_holds_the_request_and_offers_its_verb_and_arguments_again() {
    let mut session = HandoffConnection::new();
    let mut host = FakeHost::default();
    let progress = read(&mut session, &mut host, b"retry rehash 2 x\nping\n");
    assert_eq!(progress, Progress::WaitingForPool);
    assert!(session.is_holding());
    assert!(!session.wants_input(&ROOMY));
    assert!(!session.retry_held(&mut Lines(&mut host)), "still no room");
    host.room = 1;
    assert!(session.retry_held(&mut Lines(&mut host)));
    assert_eq!(
        host.submitted,
        [(0, Verb::Rehash, b"2 x".to_vec())],
        "the held request, without its retry mark"
    );
    assert_eq!(host.asked, [(0, true)], "admitted once, when it was read");
    assert_eq!(
        session.process_lines(&ROOMY, &mut Lines(&mut host)),
        Progress::NeedInput
    );
    run_submitted(&mut session, &mut host);
    assert_eq!(written(&mut session), answer_to(b"rehash 2 x") + "pong\n");
}

#[test]
fn a_refused_request_is_answered_at_once_in_its_place_and_costs_no_worker() {
    let mut session = HandoffConnection::new();
    let mut host = host();
    let _ = read(&mut session, &mut host, b"compute 1\n");
    host.refuse = Some(OverloadReply::Overloaded { retry_after_ms: 7 });
    let _ = read(&mut session, &mut host, b"retry compute 2\nretry ping\n");
    assert_eq!(host.submitted.len(), 1, "only the admitted request");
    assert_eq!(
        host.asked,
        [(0, false), (1, true)],
        "a loop verb is never asked about"
    );
    run_submitted(&mut session, &mut host);
    assert_eq!(
        written(&mut session),
        answer_to(b"compute 1") + "ERROR: overloaded, retry after 7 ms\npong\n"
    );
    assert_eq!((host.completed, host.errors), (3, 1));
}

#[test]
fn stats_carries_the_overload_keys_when_the_host_has_them() {
    let overload = OverloadStats {
        shed: 4,
        ..OverloadStats::default()
    };
    let mut session = HandoffConnection::new();
    let mut host = FakeHost {
        overload: Some(overload),
        ..host()
    };
    let _ = read(&mut session, &mut host, b"stats\n");
    let mut want = Vec::new();
    overload.write_line(&Stats::default(), &mut want);
    assert_eq!(written(&mut session).as_bytes(), want);
    assert_eq!(host.errors, 0);
}

#[test]
fn an_expired_request_gets_the_timeout_in_its_place_and_its_late_result_is_dropped() {
    let mut session = HandoffConnection::new();
    let mut host = host();
    let _ = read(&mut session, &mut host, b"sleep 50\nping\n");
    let timeout = OverloadReply::Timeout { after_ms: 10 };
    assert!(session.expire_with(0, timeout, &mut host));
    assert!(
        !session.expire_with(0, timeout, &mut host),
        "answered already"
    );
    assert_eq!(written(&mut session), "ERROR: timeout after 10 ms\npong\n");
    run_submitted(&mut session, &mut host);
    assert!(session.unsent().is_empty(), "the late result is dropped");
    assert_eq!(host.settled, [true]);
    assert_eq!((host.completed, host.errors), (2, 1));
}

#[test]
fn a_line_too_long_gets_the_protocols_error_and_the_connection_lingers() {
    let mut session = HandoffConnection::new();
    let mut host = host();
    let mut line = vec![b'x'; MAX_LINE_LEN + 1];
    line.extend_from_slice(b"\nping\n");
    assert_eq!(read(&mut session, &mut host, &line), Progress::InputEnded);
    assert_eq!(written(&mut session), "ERROR: line too long\n");
    assert_eq!(session.next_step(&ROOMY), Step::Linger);
    assert_eq!(host.errors, 1);
}
