//! One connection's protocol state: the shared connection state machine, with this server's
//! request handling — the handoff to the pool (W05) and the overload controls (W06).
//!
//! The state machine itself — framing, answers in request order, the output buffer, the limits
//! that switch reading off, the half-close drain and the line-too-long linger — is
//! [`handoff_protocol::session`], the one the W04 `epoll_server` runs too; a change to those
//! rules goes there. This module is what the handoff server adds: how a request line becomes a
//! hand-off ([`Host::try_submit`]) or an answer on the loop, and the answers only this server
//! gives ([`Answer`]). The event loop lends a [`Host`] for each call; [`Session`] is the shared
//! session with that host's meaning of a line plugged in.
//!
//! ## Where a line goes
//!
//! A line marked `retry ` (W06 L04) is the request after the mark. Worker verbs
//! ([`Verb::runs_on_worker`]) are asked about at the overload controls first
//! ([`Host::admit`]): a refusal (shed, retry rejected) is answered at once, in the request's
//! place; an admitted request is handed to the pool, or, when the pool has no room, held by the
//! session (which then reads nothing more) and offered again by [`Session::retry_held`]. `ping`,
//! empty lines and unknown verbs are answered on the loop, and `stats` with the counters as they
//! are when it is read.
//!
//! ## Overload (W06)
//!
//! [`Session::expire`] answers a request whose deadline passed with the timeout, and
//! [`Session::complete`] then drops its late result. Either way the answer waits its turn in the
//! request order like any other.

use std::io;
use std::time::Instant;

use handoff_protocol::session::{self as shared, Handled, Response};
pub(crate) use handoff_protocol::session::{LINGER_TIMEOUT, Limits, Progress, Step};
use handoff_protocol::{ErrorReply, Reply, Stats, Verb, execute, split_request};

use crate::admission::OverloadReply;
use crate::overload::Admission;
use crate::retry::strip_retry;
use crate::telemetry::OverloadStats;

/// What a session needs from the server while it handles requests.
pub(crate) trait Host {
    /// Hands a worker verb to the pool with the request's sequence number; `false` when the pool
    /// has no room now, in which case the session keeps the request and offers it again later.
    fn try_submit(&mut self, seq: u64, verb: Verb, args: &[u8]) -> bool;
    /// The counters for a `stats` response.
    fn stats(&self) -> Stats;
    /// Counts one response written to the output (`completed`, and `errors` for an error).
    fn responded(&mut self, is_error: bool);
    /// Asks the overload controls (W06) about worker request `seq`, just read; `retry` when the
    /// line carried the `retry ` mark. A host without controls admits everything.
    fn admit(&mut self, seq: u64, retry: bool) -> Admission {
        let _ = (seq, retry);
        Admission::Admitted {
            read_at: Instant::now(),
        }
    }
    /// An admitted request read at `read_at` got its answer: the worker's result, or the
    /// timeout when `timed_out`.
    fn settled(&mut self, read_at: Instant, timed_out: bool) {
        let _ = (read_at, timed_out);
    }
    /// The overload keys that follow the protocol's keys in a `stats` line (W06 L05); a host
    /// without them answers with the protocol's keys only.
    fn overload_stats(&self) -> Option<OverloadStats> {
        None
    }
    /// Starts gathering the counters for `stats` request `seq` from elsewhere (every loop of a
    /// server with several); `true` if so, and the answer then comes through
    /// [`Session::complete_stats`]. A host whose counters are all at hand answers `false`.
    fn gather_stats(&mut self, seq: u64) -> bool {
        let _ = seq;
        false
    }
}

/// What an unanswered request waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pending {
    /// A worker's result for an admitted request read at this instant.
    Work(Instant),
    /// The counters of every loop, for a `stats` request ([`Host::gather_stats`]).
    Stats,
}

/// The answers this server writes.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A verb's reply (from a worker, or from the loop).
    Reply(Reply),
    /// An overload control's answer (shed, timeout, retry rejected).
    Overload(OverloadReply),
    /// A `stats` answer, with the counters as they were when the request was read.
    Stats(Stats, Option<Box<OverloadStats>>),
}

impl Response for Answer {
    // starter: w05-l04 todo "write_to"
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Answer::Reply(reply) => reply.write_to(out),
            Answer::Overload(reply) => reply.write_to(out),
            Answer::Stats(stats, Some(overload)) => overload.write_line(stats, out),
            Answer::Stats(stats, None) => stats.write_to(out),
        }
    }

    // starter: w05-l04 todo "is_error"
    fn is_error(&self) -> bool {
        match self {
            Answer::Reply(reply) => reply.is_error(),
            Answer::Overload(_) => true,
            Answer::Stats(..) => false,
        }
    }

    // starter: w05-l04 todo "line_too_long"
    fn line_too_long() -> Self {
        Answer::Reply(Reply::Error(ErrorReply::LineTooLong))
    }
}

/// The server's [`Host`] as the shared session sees it: what a line means here.
struct Lines<'h> {
    host: &'h mut dyn Host,
}

impl shared::Host for Lines<'_> {
    type Response = Answer;
    type Pending = Pending;

    // starter: w05-l04 todo "handle"
    fn handle(&mut self, seq: u64, line: &[u8]) -> Handled<Answer, Pending> {
        let (retry, line) = strip_retry(line);
        let (verb, args) = split_request(line);
        if verb.runs_on_worker() {
            let read_at = match self.host.admit(seq, retry) {
                Admission::Admitted { read_at } => read_at,
                Admission::Refused(reply) => return Handled::Answered(Answer::Overload(reply)),
            };
            if self.host.try_submit(seq, verb, args) {
                Handled::Pending(Pending::Work(read_at))
            } else {
                Handled::Held(Pending::Work(read_at))
            }
        } else if verb == Verb::Stats {
            if self.host.gather_stats(seq) {
                // Several loops: the answer comes once every loop has told its counters.
                return Handled::Pending(Pending::Stats);
            }
            let overload = self.host.overload_stats().map(Box::new);
            Handled::Answered(Answer::Stats(self.host.stats(), overload))
        } else {
            // `ping`, empty lines and unknown verbs: no work, answered on the loop.
            Handled::Answered(Answer::Reply(execute(verb, args)))
        }
    }

    // starter: w05-l04 todo "resubmit"
    fn resubmit(&mut self, seq: u64, line: &[u8]) -> bool {
        // Admitted when it was read; only the hand-off is tried again.
        let (_, line) = strip_retry(line);
        let (verb, args) = split_request(line);
        self.host.try_submit(seq, verb, args)
    }

    // starter: w05-l04 todo "responded"
    fn responded(&mut self, answer: &Answer) {
        self.host.responded(answer.is_error());
    }

    fn settled(&mut self, pending: Pending, timed_out: bool) {
        // Only admitted worker requests are on the overload controls' books.
        if let Pending::Work(read_at) = pending {
            self.host.settled(read_at, timed_out);
        }
    }
}

/// One connection's protocol state (see the module docs): the shared session, driven with this
/// server's [`Host`].
#[derive(Debug)]
pub(crate) struct Session {
    shared: shared::Session<Answer, Pending>,
}

impl Session {
    /// A session for a new connection.
    pub(crate) fn new() -> Self {
        Session {
            shared: shared::Session::new(),
        }
    }

    /// The framer, for received bytes to go into.
    #[cfg(test)]
    pub(crate) fn framer_mut(&mut self) -> &mut handoff_protocol::LineFramer {
        self.shared.framer_mut()
    }

    /// Whether the loop should read from the socket now.
    #[cfg(test)]
    pub(crate) fn wants_input(&self, limits: &Limits) -> bool {
        self.shared.wants_input(limits)
    }

    /// Stops taking requests beyond the complete lines already received (server shutdown).
    pub(crate) fn stop_input(&mut self) {
        self.shared.stop_input();
    }

    /// Handles complete request lines until none is left or a limit stops it.
    #[cfg(test)]
    pub(crate) fn process_lines(&mut self, limits: &Limits, host: &mut dyn Host) -> Progress {
        self.shared.process_lines(limits, &mut Lines { host })
    }

    /// Reads what the socket has through `recv` and handles the lines (see
    /// [`shared::Session::receive`]); `Err` means the connection is broken.
    pub(crate) fn receive(
        &mut self,
        limits: &Limits,
        host: &mut dyn Host,
        buffer: &mut [u8],
        recv: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.shared
            .receive(limits, &mut Lines { host }, buffer, recv)
    }

    /// Handles buffered lines, makes one `send`, handles lines again (see
    /// [`shared::Session::advance`]); `Err` means the client is gone.
    pub(crate) fn advance(
        &mut self,
        limits: &Limits,
        host: &mut dyn Host,
        send: impl FnOnce(&[u8]) -> io::Result<usize>,
    ) -> io::Result<Progress> {
        self.shared.advance(limits, &mut Lines { host }, send)
    }

    /// What the loop should do with the connection now (see [`shared::Session::next_step`]).
    pub(crate) fn next_step(&self, limits: &Limits) -> Step {
        self.shared.next_step(limits)
    }

    /// Begins the linger after a line too long (see [`Step::Linger`]).
    pub(crate) fn start_linger(&mut self) {
        self.shared.start_linger();
    }

    /// Reads and drops what a lingering client sends; `false` once the connection should close
    /// (see [`shared::Session::discard_input`]).
    pub(crate) fn discard_input(
        &mut self,
        buffer: &mut [u8],
        recv: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> bool {
        self.shared.discard_input(buffer, recv)
    }

    /// Offers the held request (the pool was full when it was read) to the pool again; `true` if
    /// the session is no longer waiting for the pool.
    pub(crate) fn retry_held(&mut self, host: &mut dyn Host) -> bool {
        self.shared.retry_held(&mut Lines { host })
    }

    /// Whether a request is held for lack of room in the pool.
    #[cfg(test)]
    pub(crate) fn is_waiting_for_pool(&self) -> bool {
        self.shared.is_holding()
    }

    /// A worker's reply to request `seq` arrived: it is written as soon as its turn comes.
    ///
    /// The result of a request already answered with a timeout is dropped here.
    pub(crate) fn complete(&mut self, seq: u64, reply: Reply, host: &mut dyn Host) {
        self.shared
            .complete(seq, Answer::Reply(reply), &mut Lines { host });
    }

    /// The gathered counters of `stats` request `seq` arrived (see [`Host::gather_stats`]): its
    /// answer is written in turn.
    pub(crate) fn complete_stats(
        &mut self,
        seq: u64,
        stats: Stats,
        overload: Option<OverloadStats>,
        host: &mut dyn Host,
    ) {
        self.shared.complete(
            seq,
            Answer::Stats(stats, overload.map(Box::new)),
            &mut Lines { host },
        );
    }

    /// Request `seq`'s deadline passed (W06 L03): if it is still waiting for its result, it is
    /// answered with `reply` (the timeout) now, and its result, when it comes, is dropped.
    /// Returns whether anything changed (`false` for a request answered in time).
    pub(crate) fn expire(&mut self, seq: u64, reply: OverloadReply, host: &mut dyn Host) -> bool {
        self.shared
            .expire(seq, Answer::Overload(reply), &mut Lines { host })
    }

    /// A worker skipped request `seq` because its deadline had passed before it started
    /// (`Batch::skip`): no result will come. If the loop's timer already answered it, it is no
    /// longer late; otherwise the timer is due, and the timeout (`reply`) is answered now.
    pub(crate) fn skipped_past_deadline(
        &mut self,
        seq: u64,
        reply: OverloadReply,
        host: &mut dyn Host,
    ) {
        self.shared
            .abandon(seq, Answer::Overload(reply), &mut Lines { host });
    }

    /// Admitted requests still waiting for their answer; the loop takes them off the books when
    /// the connection closes.
    pub(crate) fn unanswered(&self) -> usize {
        self.shared
            .unanswered_where(|pending| matches!(pending, Pending::Work(_)))
    }

    /// Response bytes not yet sent.
    #[cfg(test)]
    pub(crate) fn unsent(&self) -> &[u8] {
        self.shared.unsent()
    }

    /// Records that the first `n` bytes of [`unsent`](Self::unsent) were sent.
    #[cfg(test)]
    pub(crate) fn mark_sent(&mut self, n: usize) {
        self.shared.mark_sent(n);
    }

    /// Requests read and not yet answered.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }
}

#[cfg(test)]
mod tests;
