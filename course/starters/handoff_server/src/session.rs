//! One connection's protocol state, without its socket: framing, ordering, output, limits.
//!
//! A [`Session`] turns received bytes into requests and requests into response bytes, in order.
//! It never touches a socket or the pool itself: the event loop feeds it bytes, sends what
//! [`Session::unsent`] holds, and lends it a [`Host`] that submits worker verbs and knows the
//! server's counters. That keeps the rules of the protocol (one response per request, in request
//! order, errors in their place, the line-too-long close, the half-close drain) in one small piece
//! of code that unit tests drive without a network.
//!
//! ## Ordering
//!
//! Every request takes the next sequence number and a slot at the back of a queue. Requests the
//! loop answers itself (`ping`, `stats`, the immediate errors) fill their slot at once; worker
//! verbs leave it waiting until [`Session::complete`] brings their reply. Responses are written
//! from the front only while the front slot is filled, so a client that pipelines gets its
//! answers in request order even when workers finish out of order. When nothing is waiting, a
//! loop-answered response skips the queue and goes straight to the output buffer.
//!
//! ## Limits
//!
//! A session reads more only while it has fewer than `max_in_flight` unanswered requests, fewer
//! than `max_unsent` bytes of output the client has not taken, and no request the pool had no room
//! for (see [`Session::wants_input`]). The loop stops polling the socket for input otherwise, so a
//! client that pipelines without reading cannot grow the server's memory: its bytes wait in the
//! kernel's buffers, and then in its own.

use std::collections::VecDeque;

use handoff_protocol::{ErrorReply, Frame, LineFramer, Reply, Stats, Verb, execute, split_request};

/// Per-connection limits, from the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Requests read but not yet answered (written to the output buffer) before reading pauses.
    pub(crate) max_in_flight: usize,
    /// Bytes of output not yet sent before reading pauses.
    pub(crate) max_unsent: usize,
}

/// What a session needs from the server while it handles requests.
pub(crate) trait Host {
    /// Hands a worker verb to the pool with the request's sequence number; `false` when the pool
    /// has no room now, in which case the session keeps the request and offers it again later.
    fn try_submit(&mut self, seq: u64, verb: Verb, args: &[u8]) -> bool;
    /// The counters for a `stats` response.
    fn stats(&self) -> Stats;
    /// Counts one response written to the output (`completed`, and `errors` for an error).
    fn responded(&mut self, is_error: bool);
}

/// Why [`Session::process_lines`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Progress {
    /// Every complete line is handled; more input is welcome.
    NeedInput,
    /// A per-connection limit is reached; input waits until answers are written and sent.
    AtLimit,
    /// A worker request is held because the pool was full; input waits for room in the pool.
    WaitingForPool,
    /// No more requests will come from this connection (EOF, line too long, or server stop).
    InputEnded,
}

/// Where the connection's input stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Reading.
    Open,
    /// The peer shut down its write side: the lines already received are still handled, and a
    /// last one without `\n` too.
    Eof,
    /// The server is shutting down: complete lines already received are handled, nothing more.
    Stopped,
    /// No more requests: everything received is handled.
    Ended,
    /// No more requests because the stream is unusable (a line too long), while the peer may
    /// still be sending: see [`Session::peer_may_still_send`].
    Abandoned,
}

/// A response slot in request order.
#[derive(Debug)]
enum Slot {
    /// A worker is computing this request's reply.
    Waiting,
    /// The reply, ready to be written once every earlier response is.
    Ready(Reply),
    /// A `stats` answer, with the counters as they were when the request was read.
    Stats(Stats),
}

/// A worker request the pool had no room for; offered again before any later line is read.
#[derive(Debug)]
struct Held {
    seq: u64,
    verb: Verb,
    args: Vec<u8>,
}

/// The ordered responses and the output bytes of one connection.
#[derive(Debug, Default)]
struct Responses {
    /// Unwritten responses, oldest first; `slots[0]` belongs to request `first_seq`.
    slots: VecDeque<Slot>,
    /// The sequence number of `slots[0]` (or of the next request, when `slots` is empty).
    first_seq: u64,
    held: Option<Held>,
    /// Response bytes; `out[sent..]` is not yet sent.
    out: Vec<u8>,
    sent: usize,
}

impl Responses {
    fn next_seq(&self) -> u64 {
        todo!("W05 L04: next_seq")
    }

    /// Appends a response that needs no worker, writing it at once if nothing is waiting before it.
    fn push_ready(&mut self, slot: Slot, host: &mut dyn Host) {
        todo!("W05 L04: push_ready")
    }

    /// Writes every response at the front whose turn has come.
    fn write_ready(&mut self, host: &mut dyn Host) {
        todo!("W05 L04: write_ready")
    }

    /// Handles one complete request line.
    fn handle_line(&mut self, line: &[u8], host: &mut dyn Host) {
        todo!("W05 L04: handle_line")
    }
}

fn write_slot(slot: Slot, out: &mut Vec<u8>, host: &mut dyn Host) {
    todo!("W05 L04: write_slot")
}

/// One connection's protocol state (see the module docs).
#[derive(Debug)]
pub(crate) struct Session {
    framer: LineFramer,
    input: Input,
    responses: Responses,
}

impl Session {
    /// A session for a new connection.
    pub(crate) fn new() -> Self {
        todo!("W05 L04: new")
    }

    /// The framer, for the loop to `recv` straight into.
    pub(crate) fn framer_mut(&mut self) -> &mut LineFramer {
        todo!("W05 L04: framer_mut")
    }

    /// Whether the loop should read from the socket now.
    pub(crate) fn wants_input(&self, limits: &Limits) -> bool {
        todo!("W05 L04: wants_input")
    }

    /// Records that the peer shut down its write side (`recv` returned 0).
    pub(crate) fn peer_closed_input(&mut self) {
        todo!("W05 L04: peer_closed_input")
    }

    /// Stops taking requests beyond the complete lines already received (server shutdown).
    pub(crate) fn stop_input(&mut self) {
        todo!("W05 L04: stop_input")
    }

    /// Handles complete request lines until none is left or a limit stops it.
    pub(crate) fn process_lines(&mut self, limits: &Limits, host: &mut dyn Host) -> Progress {
        todo!("W05 L04: process_lines")
    }

    fn handle_frame(
        frame: Frame<'_>,
        input: &mut Input,
        responses: &mut Responses,
        host: &mut dyn Host,
    ) {
        todo!("W05 L04: handle_frame")
    }

    /// Offers the held request (the pool was full when it was read) to the pool again; `true` if
    /// the session is no longer waiting for the pool.
    pub(crate) fn retry_held(&mut self, host: &mut dyn Host) -> bool {
        todo!("W05 L04: retry_held")
    }

    /// Whether a request is held for lack of room in the pool.
    #[cfg(test)]
    pub(crate) fn is_waiting_for_pool(&self) -> bool {
        self.responses.held.is_some()
    }

    /// A worker's reply to request `seq` arrived: it is written as soon as its turn comes.
    pub(crate) fn complete(&mut self, seq: u64, reply: Reply, host: &mut dyn Host) {
        todo!("W05 L04: complete")
    }

    /// Response bytes not yet sent.
    pub(crate) fn unsent(&self) -> &[u8] {
        todo!("W05 L04: unsent")
    }

    /// Records that the first `n` bytes of [`unsent`](Self::unsent) were sent.
    pub(crate) fn mark_sent(&mut self, n: usize) {
        todo!("W05 L04: mark_sent")
    }

    /// Whether the connection has nothing left to do: no more requests will come, every
    /// response is written and sent. The loop closes it then.
    pub(crate) fn is_finished(&self) -> bool {
        todo!("W05 L04: is_finished")
    }

    /// Whether input stopped before the peer finished sending (a line too long). Closing such a
    /// socket with unread bytes makes the kernel send a reset, which can destroy responses not
    /// yet delivered, so the loop half-closes it and drains it first.
    pub(crate) fn peer_may_still_send(&self) -> bool {
        todo!("W05 L04: peer_may_still_send")
    }

    /// Requests read and not yet answered.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.responses.slots.len()
    }
}

#[cfg(test)]
mod tests {
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
}
