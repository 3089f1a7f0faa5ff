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

// Starter code: the scaffolding is unused, and its parameters unread, until you write the
// bodies; remove this attribute once you have.
#![allow(dead_code, unused_variables, unused_imports, unused_mut, unreachable_code)]

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
    fn write_to(&self, out: &mut Vec<u8>) {
        todo!("W05 L04: write_to")
    }

    fn is_error(&self) -> bool {
        todo!("W05 L04: is_error")
    }

    fn line_too_long() -> Self {
        todo!("W05 L04: line_too_long")
    }
}

/// The server's [`Host`] as the shared session sees it: what a line means here.
struct Lines<'h> {
    host: &'h mut dyn Host,
}

impl shared::Host for Lines<'_> {
    type Response = Answer;
    type Pending = Instant;

    fn handle(&mut self, seq: u64, line: &[u8]) -> Handled<Answer, Instant> {
        todo!("W05 L04: handle")
    }

    fn resubmit(&mut self, seq: u64, line: &[u8]) -> bool {
        todo!("W05 L04: resubmit")
    }

    fn responded(&mut self, answer: &Answer) {
        todo!("W05 L04: responded")
    }

    fn settled(&mut self, read_at: Instant, timed_out: bool) {
        todo!("W05 L04: settled")
    }
}

/// One connection's protocol state (see the module docs): the shared session, driven with this
/// server's [`Host`].
#[derive(Debug)]
pub(crate) struct Session {
    shared: shared::Session<Answer, Instant>,
}

impl Session {
    /// A session for a new connection.
    pub(crate) fn new() -> Self {
        todo!("W05 L04: new")
    }

    /// The framer, for received bytes to go into.
    #[cfg(test)]
    pub(crate) fn framer_mut(&mut self) -> &mut handoff_protocol::LineFramer {
        todo!("W05 L04: framer_mut")
    }

    /// Whether the loop should read from the socket now.
    #[cfg(test)]
    pub(crate) fn wants_input(&self, limits: &Limits) -> bool {
        todo!("W05 L04: wants_input")
    }

    /// Stops taking requests beyond the complete lines already received (server shutdown).
    pub(crate) fn stop_input(&mut self) {
        todo!("W05 L04: stop_input")
    }

    /// Handles complete request lines until none is left or a limit stops it.
    #[cfg(test)]
    pub(crate) fn process_lines(&mut self, limits: &Limits, host: &mut dyn Host) -> Progress {
        todo!("W05 L04: process_lines")
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
        todo!("W05 L04: receive")
    }

    /// Handles buffered lines, makes one `send`, handles lines again (see
    /// [`shared::Session::advance`]); `Err` means the client is gone.
    pub(crate) fn advance(
        &mut self,
        limits: &Limits,
        host: &mut dyn Host,
        send: impl FnOnce(&[u8]) -> io::Result<usize>,
    ) -> io::Result<Progress> {
        todo!("W05 L04: advance")
    }

    /// What the loop should do with the connection now (see [`shared::Session::next_step`]).
    pub(crate) fn next_step(&self, limits: &Limits) -> Step {
        todo!("W05 L04: next_step")
    }

    /// Begins the linger after a line too long (see [`Step::Linger`]).
    pub(crate) fn start_linger(&mut self) {
        todo!("W05 L04: start_linger")
    }

    /// Reads and drops what a lingering client sends; `false` once the connection should close
    /// (see [`shared::Session::discard_input`]).
    pub(crate) fn discard_input(
        &mut self,
        buffer: &mut [u8],
        recv: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> bool {
        todo!("W05 L04: discard_input")
    }

    /// Offers the held request (the pool was full when it was read) to the pool again; `true` if
    /// the session is no longer waiting for the pool.
    pub(crate) fn retry_held(&mut self, host: &mut dyn Host) -> bool {
        todo!("W05 L04: retry_held")
    }

    /// Whether a request is held for lack of room in the pool.
    #[cfg(test)]
    pub(crate) fn is_waiting_for_pool(&self) -> bool {
        todo!("W05 L04: is_waiting_for_pool")
    }

    /// A worker's reply to request `seq` arrived: it is written as soon as its turn comes.
    ///
    /// The result of a request already answered with a timeout is dropped here.
    pub(crate) fn complete(&mut self, seq: u64, reply: Reply, host: &mut dyn Host) {
        todo!("W05 L04: complete")
    }

    /// Request `seq`'s deadline passed (W06 L03): if it is still waiting for its result, it is
    /// answered with `reply` (the timeout) now, and its result, when it comes, is dropped.
    /// Returns whether anything changed (`false` for a request answered in time).
    pub(crate) fn expire(&mut self, seq: u64, reply: OverloadReply, host: &mut dyn Host) -> bool {
        todo!("W05 L04: expire")
    }

    /// Admitted requests still waiting for their answer; the loop takes them off the books when
    /// the connection closes.
    pub(crate) fn unanswered(&self) -> usize {
        todo!("W05 L04: unanswered")
    }

    /// Response bytes not yet sent.
    #[cfg(test)]
    pub(crate) fn unsent(&self) -> &[u8] {
        todo!("W05 L04: unsent")
    }

    /// Records that the first `n` bytes of [`unsent`](Self::unsent) were sent.
    #[cfg(test)]
    pub(crate) fn mark_sent(&mut self, n: usize) {
        todo!("W05 L04: mark_sent")
    }

    /// Requests read and not yet answered.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        todo!("W05 L04: in_flight")
    }
}

#[cfg(test)]
mod tests;
