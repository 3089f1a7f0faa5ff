//! One connection's protocol state: the shared connection state machine, with this server's
//! request handling — the handoff to the pool (W05) and the overload controls (W06).
//!
//! The state machine itself — framing, answers in request order, the output buffer, the limits
//! that switch reading off, the half-close drain and the line-too-long linger — is
//! [`handoff_protocol::session`], the one the W04 `epoll_server` runs too; a change to those
//! rules goes there. This module is what the handoff server adds: how a request line becomes a
//! hand-off ([`HandoffHost::try_submit`]) or an answer on the loop, and the answers only this server
//! gives ([`HandoffAnswer`]). The event loop lends a [`HandoffHost`] for each call, which [`Lines`] turns into
//! the shared session's host; [`HandoffConnection`] is the shared session with this server's answers, and
//! [`HandoffSession`] adds the answers only this server settles (worker results, gathered `stats`,
//! timeouts).
//!
//! ## Where a line goes
//!
//! A line marked `retry ` (W06 L04) is the request after the mark. Worker verbs
//! ([`Verb::runs_on_worker`]) are asked about at the overload controls first
//! ([`HandoffHost::admit`]): a refusal (shed, retry rejected) is answered at once, in the request's
//! place; an admitted request is handed to the pool, or, when the pool has no room, held by the
//! session (which then reads nothing more) and offered again by `HandoffConnection::retry_held`. `ping`,
//! empty lines and unknown verbs are answered on the loop, and `stats` with the counters as they
//! are when it is read.
//!
//! ## Overload (W06)
//!
//! [`HandoffSession::expire_with`] answers a request whose deadline passed with the timeout, and
//! [`HandoffSession::complete_reply`] then drops its late result. Either way the answer waits its turn in the
//! request order like any other.

use handoff_protocol::session::{self as shared, Handled, Response};
use handoff_protocol::{ErrorReply, Reply, Stats, Verb, execute, split_request};

use crate::admission::OverloadReply;
use crate::overload::{Admission, LoopTime};
use crate::retry::strip_retry;
use crate::telemetry::OverloadStats;

/// What a session needs from the server while it handles requests.
pub(crate) trait HandoffHost {
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
            read_at: LoopTime::default(),
        }
    }
    /// An admitted request read at `read_at` got its answer: the worker's result, or the
    /// timeout when `timed_out`.
    fn settled(&mut self, read_at: LoopTime, timed_out: bool) {
        let _ = (read_at, timed_out);
    }
    /// The overload keys that follow the protocol's keys in a `stats` line (W06 L05); a host
    /// without them answers with the protocol's keys only.
    fn overload_stats(&self) -> Option<OverloadStats> {
        None
    }
    /// Starts gathering the counters for `stats` request `seq` from elsewhere (every loop of a
    /// server with several); `true` if so, and the answer then comes through
    /// [`HandoffSession::complete_stats`]. A host whose counters are all at hand answers `false`.
    fn gather_stats(&mut self, seq: u64) -> bool {
        let _ = seq;
        false
    }
}

/// What an unanswered request waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pending {
    /// A worker's result for an admitted request read at this time on the loop's clock.
    Work(LoopTime),
    /// The counters of every loop, for a `stats` request ([`HandoffHost::gather_stats`]).
    Stats,
}

/// The answers this server writes.
#[derive(Debug)]
pub(crate) enum HandoffAnswer {
    /// A verb's reply (from a worker, or from the loop).
    Reply(Reply),
    /// An overload control's answer (shed, timeout, retry rejected).
    Overload(OverloadReply),
    /// A `stats` answer, with the counters as they were when the request was read. Boxed: the
    /// counters are four times the size of any other answer, and every answer waits in its
    /// connection's queue of slots, which is moved and copied for every request.
    Stats(Box<(Stats, Option<OverloadStats>)>),
}

impl Response for HandoffAnswer {
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            HandoffAnswer::Reply(reply) => reply.write_to(out),
            HandoffAnswer::Overload(reply) => reply.write_to(out),
            HandoffAnswer::Stats(stats) => match &**stats {
                (stats, Some(overload)) => overload.write_line(stats, out),
                (stats, None) => stats.write_to(out),
            },
        }
    }

    fn is_error(&self) -> bool {
        match self {
            HandoffAnswer::Reply(reply) => reply.is_error(),
            HandoffAnswer::Overload(_) => true,
            HandoffAnswer::Stats(..) => false,
        }
    }

    fn line_too_long() -> Self {
        HandoffAnswer::Reply(Reply::Error(ErrorReply::LineTooLong))
    }
}

/// Every `&mut` of a host is a host, so a caller can lend its host without giving it away.
impl<T: HandoffHost + ?Sized> HandoffHost for &mut T {
    fn try_submit(&mut self, seq: u64, verb: Verb, args: &[u8]) -> bool {
        (**self).try_submit(seq, verb, args)
    }
    fn stats(&self) -> Stats {
        (**self).stats()
    }
    fn responded(&mut self, is_error: bool) {
        (**self).responded(is_error);
    }
    fn admit(&mut self, seq: u64, retry: bool) -> Admission {
        (**self).admit(seq, retry)
    }
    fn settled(&mut self, read_at: LoopTime, timed_out: bool) {
        (**self).settled(read_at, timed_out);
    }
    fn overload_stats(&self) -> Option<OverloadStats> {
        (**self).overload_stats()
    }
    fn gather_stats(&mut self, seq: u64) -> bool {
        (**self).gather_stats(seq)
    }
}

/// One connection of the handoff server: the shared session, with this server's answers.
pub(crate) type HandoffConnection = shared::Session<HandoffAnswer, Pending>;

/// The server's [`HandoffHost`] as the shared session sees it: what a line means here.
#[derive(Debug)]
pub(crate) struct Lines<H>(pub(crate) H);

// The hooks the shared session calls once per request are `#[inline]`: as separate calls, their
// argument passing and register saves were about 50 of the event loop's instructions per S2
// request (callgrind).
impl<H: HandoffHost> shared::Host for Lines<H> {
    type Response = HandoffAnswer;
    type Pending = Pending;

    #[inline]
    fn handle(&mut self, seq: u64, line: &[u8]) -> Handled<HandoffAnswer, Pending> {
        // W06 L04: a `retry ` mark only tells the retry budget; the request is what follows it.
        let (retry, line) = strip_retry(line);
        let (verb, args) = split_request(line);
        if verb.runs_on_worker() {
            // W06: the overload controls are asked first, and a refusal is answered at once.
            match self.0.admit(seq, retry) {
                Admission::Admitted { read_at } => self.hand_off(seq, verb, args, read_at),
                Admission::Refused(reply) => Handled::Answered(HandoffAnswer::Overload(reply)),
            }
        } else if verb == Verb::Stats && self.0.gather_stats(seq) {
            // Several loops (W05 L07): the answer comes once every loop has told its counters.
            Handled::Pending(Pending::Stats)
        } else if verb == Verb::Stats {
            let overload = self.0.overload_stats();
            Handled::Answered(HandoffAnswer::Stats(Box::new((self.0.stats(), overload))))
        } else {
            // `ping`, empty lines and unknown verbs: no work, answered on the loop.
            Handled::Answered(HandoffAnswer::Reply(execute(verb, args)))
        }
    }

    fn resubmit(&mut self, seq: u64, line: &[u8]) -> bool {
        // Admitted when it was read; only the hand-off is tried again.
        let (_, line) = strip_retry(line);
        let (verb, args) = split_request(line);
        self.0.try_submit(seq, verb, args)
    }

    #[inline]
    fn responded(&mut self, answer: &HandoffAnswer) {
        self.0.responded(answer.is_error());
    }

    #[inline]
    fn settled(&mut self, pending: Pending, timed_out: bool) {
        // Only admitted worker requests are on the overload controls' books.
        if let Pending::Work(read_at) = pending {
            self.0.settled(read_at, timed_out);
        }
    }
}

impl<H: HandoffHost> Lines<H> {
    // starter: w05-l04 todo "Do 2: offer the request to the host with try_submit; Pending if it took it, else Held"
    /// Hands worker request `seq`, admitted at `read_at`, to the pool through the host: the
    /// request is then pending until its result comes back, or, when the pool has no room, held
    /// by the session, which reads nothing more and offers it again later (`resubmit`).
    #[inline]
    fn hand_off(
        &mut self,
        seq: u64,
        verb: Verb,
        args: &[u8],
        read_at: LoopTime,
    ) -> Handled<HandoffAnswer, Pending> {
        if self.0.try_submit(seq, verb, args) {
            Handled::Pending(Pending::Work(read_at))
        } else {
            Handled::Held(Pending::Work(read_at))
        }
    }
}

/// The answers only this server settles, on the shared session.
pub(crate) trait HandoffSession {
    /// A worker's reply to request `seq` arrived: it is written as soon as its turn comes.
    ///
    /// The result of a request already answered with a timeout is dropped here.
    fn complete_reply(&mut self, seq: u64, reply: Reply, host: impl HandoffHost);

    /// The gathered counters of `stats` request `seq` arrived (see [`HandoffHost::gather_stats`]): its
    /// answer is written in turn.
    fn complete_stats(
        &mut self,
        seq: u64,
        stats: Stats,
        overload: Option<OverloadStats>,
        host: impl HandoffHost,
    );

    /// Request `seq`'s deadline passed (W06 L03): if it is still waiting for its result, it is
    /// answered with `reply` (the timeout) now, and its result, when it comes, is dropped.
    /// Returns whether anything changed (`false` for a request answered in time).
    fn expire_with(&mut self, seq: u64, reply: OverloadReply, host: impl HandoffHost) -> bool;

    /// A worker skipped request `seq` because its deadline had passed before it started
    /// (`Batch::skip`): no result will come. If the loop's timer already answered it, it is no
    /// longer late; otherwise the timer is due, and the timeout (`reply`) is answered now.
    fn skipped_past_deadline(&mut self, seq: u64, reply: OverloadReply, host: impl HandoffHost);

    /// Admitted requests still waiting for their answer; the loop takes them off the books when
    /// the connection closes.
    fn unanswered_work(&self) -> usize;
}

impl HandoffSession for HandoffConnection {
    fn complete_reply(&mut self, seq: u64, reply: Reply, host: impl HandoffHost) {
        self.complete(seq, HandoffAnswer::Reply(reply), &mut Lines(host));
    }

    fn complete_stats(
        &mut self,
        seq: u64,
        stats: Stats,
        overload: Option<OverloadStats>,
        host: impl HandoffHost,
    ) {
        self.complete(
            seq,
            HandoffAnswer::Stats(Box::new((stats, overload))),
            &mut Lines(host),
        );
    }

    fn expire_with(&mut self, seq: u64, reply: OverloadReply, host: impl HandoffHost) -> bool {
        self.expire(seq, HandoffAnswer::Overload(reply), &mut Lines(host))
    }

    fn skipped_past_deadline(&mut self, seq: u64, reply: OverloadReply, host: impl HandoffHost) {
        self.abandon(seq, HandoffAnswer::Overload(reply), &mut Lines(host));
    }

    fn unanswered_work(&self) -> usize {
        self.unanswered_where(|pending| matches!(pending, Pending::Work(_)))
    }
}

#[cfg(test)]
mod tests;
